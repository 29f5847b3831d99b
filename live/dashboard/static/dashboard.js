// The dashboard page: fetch /api/state every refresh_s, fill the cards and tables, draw the charts.
"use strict";

const $ = (id) => document.getElementById(id);
const isNum = (x) => typeof x === "number" && isFinite(x);
const fmt = (x, d = 2) => (isNum(x) ? x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }) : "n/a");
const signed = (x, d = 2) => (isNum(x) ? (x >= 0 ? "+" : "") + fmt(x, d) : "n/a");
const pct = (x, d = 0) => (isNum(x) ? (100 * x).toFixed(d) + " %" : "n/a");
const hhmmss = (iso) => (iso ? iso.slice(11, 19) : "");
const age = (s) => (!isNum(s) ? "n/a" : s < 120 ? s.toFixed(1) + " s" : s < 7200 ? (s / 60).toFixed(0) + " min" : s < 172800 ? (s / 3600).toFixed(1) + " h" : (s / 86400).toFixed(1) + " d");
const esc = (t) => String(t ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const layout = (extra) => Object.assign({ margin: { l: 48, r: 12, t: 26, b: 30 }, font: { size: 11 }, legend: { orientation: "h", y: 1.12 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" }, extra);
const plotCfg = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

function setText(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  if (cls !== undefined) el.parentElement.className = "card " + cls;
}

function table(id, head, rows) {
  $(id).innerHTML = "<tr>" + head.map((h) => `<th>${esc(h)}</th>`).join("") + "</tr>" +
    (rows.length ? rows.map((r) => "<tr>" + r.map((c) => (typeof c === "object" && c !== null ? `<td class="${c.cls}">${esc(c.v)}</td>` : `<td>${esc(c)}</td>`)).join("") + "</tr>").join("")
      : `<tr><td colspan="${head.length}" class="muted">none</td></tr>`);
}

function banner(s) {
  const items = [];
  if (s.runner.risk === "HALTED") items.push(["bad", `HALTED: ${s.runner.halted || "kill switch"}: every order cancelled; restart or send 'resume' (python -m live.journal ${s.journal.path} --command resume)`]);
  for (const a of s.alerts.active) items.push(["bad", `${a.line}  (since ${hhmmss(a.ts)})`]);
  if (s.runner.risk === "REDUCING") items.push(["warn", "REDUCING: drawdown past risk.reduce_drawdown, no new exposure"]);
  if (s.journal.error) items.push(["warn", s.journal.error]);
  else if (s.runner.not_responding) items.push(["bad", `the runner has written nothing for ${age(s.runner.silent_s)} and never stopped: killed or hung? (python -m live.diagnose; restart it)`]);
  else if (!s.runner.running && s.runner.session) items.push(["info", `the runner is not running (last session stopped: ${s.runner.stopped || "unknown"})`]);
  if (s.model.error) items.push(["warn", "registry: " + s.model.error]);
  $("banner").innerHTML = items.map(([c, t]) => `<div class="${c}">${esc(t)}</div>`).join("");
}

function header(s) {
  const r = s.runner;
  const run = $("runner");
  const state = r.running ? "RUNNING" : r.not_responding ? "NOT RESPONDING" : "STOPPED";
  run.textContent = r.session ? `${state} · ${r.mode} · ${r.source} · ${r.strategy}` : "no runner yet";
  run.className = "pill " + (r.running ? "ok" : r.not_responding ? "bad" : "");
  const risk = $("risk-state");
  risk.textContent = r.risk;
  risk.className = "pill " + ({ ACTIVE: "ok", REDUCING: "warn", HALTED: "bad" }[r.risk] || "");
  $("updated").textContent = "updated " + hhmmss(s.now) + " UTC";
  $("footer").textContent = `journal ${s.journal.path} · ${s.journal.sessions} session(s) · refresh every ${s.refresh_s} s`;
}

function account(s) {
  const a = s.account;
  $("account-ts").textContent = a.ts ? "as of " + a.ts : "";
  setText("equity", fmt(a.equity));
  setText("pnl", signed(a.pnl), isNum(a.pnl) ? (a.pnl >= 0 ? "ok" : "bad") : "");
  setText("position", signed(a.position, 3));
  setText("fees", fmt(a.fees));
  setText("funding", fmt(a.funding));
  setText("open-count", String(s.orders.length));
  Plotly.react("chart-equity", [
    { x: s.series.t, y: s.series.equity, name: "equity (USDT)", type: "scatter", mode: "lines", line: { color: "#2563eb" } },
    { x: s.series.t, y: s.series.position, name: "position (BTC)", type: "scatter", mode: "lines", line: { color: "#f59e0b", shape: "hv" }, yaxis: "y2" },
  ], layout({ title: { text: "equity and position", font: { size: 12 } }, margin: { l: 60, r: 60, t: 26, b: 30 }, yaxis: { title: "USDT" }, yaxis2: { title: "BTC", overlaying: "y", side: "right", zeroline: true } }), plotCfg);
  const side = (x) => (x > 0 ? { v: "buy", cls: "buy" } : { v: "sell", cls: "sell" });
  table("orders", ["id", "side", "price", "qty", "filled", "since"], s.orders.slice(0, 12).map((o) => [o.id, side(o.side), fmt(o.price, 1), fmt(o.qty, 3), fmt(o.filled, 3), hhmmss(o.ts)]));
  table("fills", ["time", "order", "side", "price", "qty", "fee", "liquidity"], s.fills.slice(0, 12).map((f) => [hhmmss(f.ts), f.id, side(f.side), fmt(f.price, 1), fmt(f.qty, 3), fmt(f.fee, 4), f.maker ? "maker" : "taker"]));
}

function execution(s) {
  const e = s.execution, limit = e.thresholds.slippage_bps;
  setText("slippage", signed(e.slippage_bps), isNum(e.slippage_bps) ? (e.slippage_bps > limit ? "bad" : "ok") : "");
  $("slippage-limit").textContent = `alert above ${limit} bp`;
  setText("fill-rate", pct(e.fill_rate));
  setText("maker-ratio", pct(e.maker_ratio));
  setText("rejects", isNum(e.post_only_rejects) ? String(e.post_only_rejects) : "n/a");
  $("reject-rate").textContent = isNum(e.reject_rate) ? pct(e.reject_rate, 1) + " of post-only requests" : "";
  const hs = e.horizons || [];
  Plotly.react("chart-markouts", [{ x: hs, y: hs.map((h) => e[`markout_${h}_bps`]), type: "bar", marker: { color: hs.map((h) => ((e[`markout_${h}_bps`] ?? 0) >= 0 ? "#16a34a" : "#dc2626")) } }],
    layout({ title: { text: "markouts after our fills (bp, + = good)", font: { size: 12 } }, showlegend: false }), plotCfg);
  Plotly.react("chart-slippage", [
    { x: s.series.slippage_t, y: s.series.slippage_bps, name: "rolling arrival slippage", type: "scatter", mode: "lines", line: { color: "#7c3aed" } },
    { x: [s.series.slippage_t[0], s.series.slippage_t[s.series.slippage_t.length - 1]], y: [limit, limit], name: "alert", mode: "lines", line: { dash: "dot", color: "#dc2626" } },
  ], layout({ title: { text: "arrival slippage (bp, + = paid)", font: { size: 12 } } }), plotCfg);
}

function model(s) {
  const m = s.model, c = m.champion, ch = m.challenger;
  setText("champion-version", c ? "v" + c.version : "none", c ? (c.age_h > m.max_age_h ? "bad" : "ok") : "bad");
  $("champion-age").textContent = c ? `${age(c.age_h * 3600)} old (max ${age(m.max_age_h * 3600)})` : "train and promote one";
  setText("model-in-use", m.in_use ? "v" + m.in_use : "n/a", c && m.in_use && m.in_use !== c.version ? "warn" : "");
  $("thresholds").textContent = m.thresholds ? `thresholds up ${fmt(m.thresholds.up, 3)} · down ${fmt(m.thresholds.down, 3)}` : "";
  setText("challenger-version", ch ? "v" + ch.version : "none");
  $("challenger-age").textContent = ch ? `${age(ch.age_h * 3600)} old` : "";
  const cf = s.confidence;
  setText("decisions", cf.decisions.toLocaleString("en-US"));
  $("signals").textContent = `${cf.signals} signals in the last ${cf.n_live}`;
  // one row per metric, a column per model and direction: champion and challenger side by side
  const models = [c, ch].filter(Boolean);
  const names = [...new Set(Object.keys((c || ch || { metrics: {} }).metrics).map((k) => k.split("_").slice(1).join("_")))];
  table("model-metrics", ["held-out", ...models.flatMap((x) => [`v${x.version} ${x === c ? "champion" : "challenger"} up`, "down"])],
    names.map((n) => [n.replace("_", " "), ...models.flatMap((x) => [fmt(x.metrics[`up_${n}`], 3), fmt(x.metrics[`down_${n}`], 3)])]));
  const mids = cf.edges.slice(0, -1).map((e, i) => (e + cf.edges[i + 1]) / 2);
  const traces = [];
  const colors = { up: "#16a34a", down: "#dc2626" };
  for (const d of ["up", "down"]) {
    if (cf[`live_${d}`]) traces.push({ x: mids, y: cf[`live_${d}`], name: `live P(${d})`, type: "bar", opacity: 0.55, marker: { color: colors[d] } });
    if (cf[`train_${d}`]) traces.push({ x: mids, y: cf[`train_${d}`], name: `training P(${d})`, type: "scatter", mode: "lines", line: { color: colors[d], dash: "dot" } });
  }
  const shapes = m.thresholds ? ["up", "down"].filter((d) => isNum(m.thresholds[d]) && m.thresholds[d] <= cf.edges[cf.edges.length - 1]).map((d) => ({ type: "line", x0: m.thresholds[d], x1: m.thresholds[d], yref: "paper", y0: 0, y1: 1, line: { color: colors[d], width: 1, dash: "dash" } })) : [];
  Plotly.react("chart-confidence", traces, layout({ title: { text: "confidence: live vs training (share of decisions)", font: { size: 12 } }, barmode: "overlay", shapes }), plotCfg);
  const top = (m.top_features || []).slice().reverse();
  Plotly.react("chart-importance", [{ x: top.map((t) => t[1]), y: top.map((t) => t[0]), type: "bar", orientation: "h", marker: { color: "#2563eb" } }],
    layout({ title: { text: "top features (LightGBM gain share)", font: { size: 12 } }, margin: { l: 150, r: 10, t: 26, b: 30 } }), plotCfg);
}

function drift(s) {
  const d = s.drift;
  $("drift-info").textContent = d.psi.length ? `PSI over the last ${d.rows} decisions, as of ${hhmmss(d.ts)}; alert above ${d.threshold}` + ((d.ignore || []).length ? `; never alerted on (grey): ${d.ignore.join(", ")}` : "") : `no PSI yet (after ${d.min_rows} decisions)`;
  const rows = d.psi.slice(0, 20).reverse();
  Plotly.react("chart-drift", [{ x: rows.map((r) => r[1]), y: rows.map((r) => r[0]), type: "bar", orientation: "h", marker: { color: rows.map((r) => ((d.ignore || []).includes(r[0]) ? "#9ca3af" : r[1] > d.threshold ? "#dc2626" : r[1] > 0.1 ? "#f59e0b" : "#16a34a")) } }],
    layout({ title: { text: "population stability index, live vs training, worst first", font: { size: 12 } }, margin: { l: 150, r: 10, t: 26, b: 30 },
      shapes: [{ type: "line", x0: d.threshold, x1: d.threshold, yref: "paper", y0: 0, y1: 1, line: { color: "#dc2626", dash: "dot" } }] }), plotCfg);
}

function health(s) {
  const h = s.health, f = h.feed_total || {};
  setText("data-age", age(h.data_age_s), isNum(h.data_age_s) ? (h.data_age_s > h.stale_alert_s ? "bad" : "ok") : "");
  $("data-ts").textContent = h.data_ts ? "newest " + h.data_ts : "";
  setText("book-valid", h.book_valid === undefined ? "n/a" : h.book_valid ? "valid" : "INVALID", h.book_valid === false ? "bad" : h.book_valid ? "ok" : "");
  setText("feed-events", `${f.gaps || 0} / ${f.reconnect || 0} / ${f.resubscribe || 0}`);
  setText("latency", isNum(h.latency_p50_us) ? `${fmt(h.latency_p50_us, 0)} / ${fmt(h.latency_p90_us, 0)} / ${fmt(h.latency_p99_us, 0)}` : "n/a");
  const w = h.warehouse || {};
  setText("warehouse", w.status === "ok" ? age(w.age_s) + " old" : w.status || "n/a", w.status === "ok" ? "" : "warn");
  $("warehouse-detail").textContent = w.status === "ok" ? `newest book ${w.newest}` : w.detail || "";
  table("alerts", ["time", "alert", "state", "detail"], s.alerts.recent.map((a) => [hhmmss(a.ts), a.what, a.active ? { v: "raised", cls: "sell" } : { v: "cleared", cls: "buy" }, a.line]));
}

async function refresh() {
  let s;
  try {
    const r = await fetch("/api/state", { cache: "no-store" });
    s = await r.json();
  } catch (err) {
    $("banner").innerHTML = `<div class="warn">the dashboard server does not answer (${esc(err)}); retrying</div>`;
    setTimeout(refresh, 5000);
    return;
  }
  for (const part of [header, banner, account, execution, model, drift, health]) {
    try { part(s); } catch (err) { console.error(part.name, err); }
  }
  document.body.dataset.loaded = s.now;
  setTimeout(refresh, 1000 * (s.refresh_s || 5));
}

refresh();
