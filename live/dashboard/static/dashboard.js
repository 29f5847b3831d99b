// The dashboard page: fetch /api/state for the chosen journal, session and range every refresh_s,
// then let each part (this file: controls, header, banner; trading.js; panels.js) draw its share.
"use strict";

const $ = (id) => document.getElementById(id);
const isNum = (x) => typeof x === "number" && isFinite(x);
const fmt = (x, d = 2) => (isNum(x) ? x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }) : "n/a");
const signed = (x, d = 2) => (isNum(x) ? (x >= 0 ? "+" : "") + fmt(x, d) : "n/a");
const pct = (x, d = 0) => (isNum(x) ? (100 * x).toFixed(d) + " %" : "n/a");
const hhmmss = (iso) => (iso ? iso.slice(11, 19) : "");
const when = (iso) => (iso ? iso.slice(0, 10) + " " + iso.slice(11, 19) : "n/a");
const age = (s) => (!isNum(s) ? "n/a" : s < 120 ? s.toFixed(1) + " s" : s < 7200 ? (s / 60).toFixed(0) + " min" : s < 172800 ? (s / 3600).toFixed(1) + " h" : (s / 86400).toFixed(1) + " d");
const esc = (t) => String(t ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
// chart titles are HTML headings above each chart, so Plotly's toolbar (top right) never covers one
const layout = (extra) => Object.assign({ margin: { l: 48, r: 12, t: 22, b: 30 }, font: { size: 11 }, legend: { orientation: "h", x: 0, xanchor: "left", y: 1, yanchor: "bottom" }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" }, extra);
const plotCfg = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d", "toImage"] };
const PARTS = []; // (state) => void, registered by each script
const pick = { journal: "", session: "", range: "all" };

function setText(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  if (cls !== undefined) el.parentElement.className = "card " + cls;
}

function table(id, head, rows) {
  const cell = (c) => (typeof c === "object" && c !== null ? (c.html !== undefined ? `<td class="${c.cls || ""}">${c.html}</td>` : `<td class="${c.cls || ""}">${esc(c.v)}</td>`) : `<td>${esc(c)}</td>`);
  $(id).innerHTML = "<tr>" + head.map((h) => `<th>${esc(h)}</th>`).join("") + "</tr>" +
    (rows.length ? rows.map((r) => "<tr>" + r.map(cell).join("") + "</tr>").join("") : `<tr><td colspan="${head.length}" class="muted">none</td></tr>`);
}

function options(id, items, value) {
  const el = $(id);
  const html = items.map(([v, label]) => `<option value="${esc(v)}"${v === value ? " selected" : ""}>${esc(label)}</option>`).join("");
  if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; }
  el.value = value;
}

function controls(s) {
  const sel = s.selection;
  if (!pick.journal) pick.journal = s.journal.name; // the newest when the page opened: it stays, even if another journal is written later
  options("pick-journal", s.journals.map((j) => [j.name, j.name]).concat(s.journals.some((j) => j.name === s.journal.name) ? [] : [[s.journal.name, s.journal.name]]), s.journal.name);
  $("pick-journal").disabled = s.journal.pinned;
  const sessions = s.sessions.map((x, i) => [x.id, `${i === 0 ? "this session, " : ""}${when(x.started)} · ${x.source || "?"} · ${x.strategy || "?"}${x.stopped ? " (stopped)" : ""}`]);
  options("pick-session", [["all", "all sessions"], ...sessions], sel.session);
  options("pick-range", [["all", "all of it"], ["15m", "last 15 min"], ["1h", "last hour"], ["6h", "last 6 h"], ["24h", "last 24 h"]], sel.range);
  $("selection-info").textContent = sel.from ? `${hhmmss(sel.from)} .. ${hhmmss(sel.to)} (data time)` : "";
}

function header(s) {
  const r = s.runner;
  const run = $("runner");
  const state = r.running ? "RUNNING" : r.not_responding ? "NOT RESPONDING" : "STOPPED";
  run.textContent = r.session ? `${state} · ${r.mode} · ${r.source} · ${r.strategy}` : "no runner yet";
  run.className = "pill " + (r.running ? "ok" : r.not_responding ? "bad" : "");
  // a runner that is not running has no live risk state: its last one, visibly history
  const risk = $("risk-state");
  risk.hidden = !r.session;
  risk.textContent = r.running ? r.risk : `last risk state: ${r.risk}`;
  risk.className = "pill " + (r.running ? { ACTIVE: "ok", REDUCING: "warn", HALTED: "bad" }[r.risk] || "" : "stale");
  $("updated").textContent = "updated " + hhmmss(s.now) + " UTC";
  $("footer").textContent = `journal ${s.journal.path} · ${s.journal.sessions} session(s) · refresh every ${s.refresh_s} s`;
}

function banner(s) {
  const items = [], r = s.runner;
  if (r.holding) {
    const h = r.holding, what = r.not_responding ? "runner not responding, holding" : "runner stopped holding";
    const since = r.not_responding ? `silent for ${age(r.silent_s)}` : `stopped at ${when(r.stopped_at)}`;
    items.push(["bad", `${what} ${signed(h.position, 3)} BTC (${since}; marked at ${fmt(h.mark, 1)}, unrealized ${signed(h.unrealized)} USDT): nothing manages this position: restart the runner or close it`]);
  }
  if (r.running && r.risk === "HALTED") items.push(["bad", `HALTED: ${r.halted || "kill switch"}: every order cancelled; restart or send 'resume' (python -m live.journal ${s.journal.path} --command resume)`]);
  for (const a of s.alerts.active) items.push([r.running ? "bad" : "info", `${r.running ? "" : "(last raised, runner not running) "}${a.line}  (since ${hhmmss(a.ts)})`]);
  if (r.running && r.risk === "REDUCING") items.push(["warn", "REDUCING: drawdown past risk.reduce_drawdown, no new exposure"]);
  if (s.journal.error) items.push(["warn", s.journal.error]);
  else if (r.not_responding) items.push(["bad", `the runner has written nothing for ${age(r.silent_s)} and never stopped: killed or hung? (python -m live.diagnose; restart it)`]);
  else if (!r.running && r.session && !r.holding) items.push(["info", `the runner is not running: stopped at ${when(r.stopped_at)} (${r.stopped || "unknown"})`]);
  if (s.model.error) items.push(["warn", "registry: " + s.model.error]);
  $("banner").innerHTML = items.map(([c, t]) => `<div class="${c}">${esc(t)}</div>`).join("");
}

PARTS.push(controls, header, banner);

let timer = 0, asked = 0;

async function refresh() {
  clearTimeout(timer);
  const mine = ++asked;
  const q = new URLSearchParams(Object.entries(pick).filter(([, v]) => v));
  let s;
  try {
    const r = await fetch("/api/state?" + q, { cache: "no-store" });
    s = await r.json();
  } catch (err) {
    $("banner").innerHTML = `<div class="warn">the dashboard server does not answer (${esc(err)}); retrying</div>`;
    timer = setTimeout(refresh, 5000);
    return;
  }
  if (mine !== asked) return; // a newer choice was asked for meanwhile
  for (const part of PARTS) {
    try { part(s); } catch (err) { console.error(part.name, err); }
  }
  window.lastState = s; // what the page shows, for the console (and the browser test)
  document.body.dataset.loaded = s.now;
  document.body.dataset.view = `${s.journal.name}|${s.selection.session}|${s.selection.range}`;
  timer = setTimeout(refresh, 1000 * (s.refresh_s || 5));
}

function choose(what, value) {
  pick[what] = value;
  if (what === "journal") pick.session = ""; // another journal: its newest session
  const q = new URLSearchParams(Object.entries(pick).filter(([, v]) => v));
  history.replaceState(null, "", "?" + q);
  refresh();
}

window.addEventListener("load", () => {
  const q = new URLSearchParams(location.search);
  for (const k of Object.keys(pick)) if (q.get(k)) pick[k] = q.get(k);
  $("pick-journal").addEventListener("change", (e) => choose("journal", e.target.value));
  $("pick-session").addEventListener("change", (e) => choose("session", e.target.value));
  $("pick-range").addEventListener("change", (e) => choose("range", e.target.value));
  refresh();
});
