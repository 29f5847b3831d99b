// The model, drift and health panels. A runner that is not running shows its last figures as
// history (greyed, "as of"), never as the present.
"use strict";

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
  $("signals").textContent = `${cf.signals} signals in the last ${cf.n_live} (in range)`;
  // one row per metric, a column per model and direction: champion and challenger side by side
  const models = [c, ch].filter(Boolean);
  const names = [...new Set(Object.keys((c || ch || { metrics: {} }).metrics).map((k) => k.split("_").slice(1).join("_")))];
  table("model-metrics", ["held-out", ...models.flatMap((x) => [`v${x.version} ${x === c ? "champion" : "challenger"} up`, "down"])],
    names.map((n) => [n.replace("_", " "), ...models.flatMap((x) => [fmt(x.metrics[`up_${n}`], 3), fmt(x.metrics[`down_${n}`], 3)])]));
  const b = m.backtests || { reports: [] };
  $("backtests-info").textContent = m.in_use ? `v${m.in_use}: ${b.reports.length} in ${b.dir}` + (b.error ? ` (${b.error})` : "") : "";
  table("backtests", ["report", "strategy", "window", "net PnL", "Sharpe", "slippage bp", "markout 10 s", "fills"], b.reports.map((r) => [
    { html: `<a href="${esc(r.url)}" target="_blank">${esc(r.name)}</a>` }, r.strategy, `${(r.start || "").slice(0, 16).replace("T", " ")} .. ${(r.end || "").slice(5, 16).replace("T", " ")}`,
    money(r.metrics.net_pnl), fmt(r.metrics.sharpe), signed(r.metrics.arrival_slippage_mean_bps, 3), signed(r.metrics.markout_10s_bps, 3), r.metrics.fills ?? "n/a"]));
  const mids = cf.edges.slice(0, -1).map((e, i) => (e + cf.edges[i + 1]) / 2);
  const traces = [];
  const colors = { up: "#16a34a", down: "#dc2626" };
  for (const d of ["up", "down"]) {
    if (cf[`live_${d}`]) traces.push({ x: mids, y: cf[`live_${d}`], name: `live P(${d})`, type: "bar", opacity: 0.55, marker: { color: colors[d] } });
    if (cf[`train_${d}`]) traces.push({ x: mids, y: cf[`train_${d}`], name: `training P(${d})`, type: "scatter", mode: "lines", line: { color: colors[d], dash: "dot" } });
  }
  const shapes = m.thresholds ? ["up", "down"].filter((d) => isNum(m.thresholds[d]) && m.thresholds[d] <= cf.edges[cf.edges.length - 1]).map((d) => ({ type: "line", x0: m.thresholds[d], x1: m.thresholds[d], yref: "paper", y0: 0, y1: 1, line: { color: colors[d], width: 1, dash: "dash" } })) : [];
  Plotly.react("chart-confidence", traces, layout({ barmode: "overlay", shapes, margin: { l: 48, r: 12, t: 40, b: 30 } }), plotCfg);
  const top = (m.top_features || []).slice().reverse();
  Plotly.react("chart-importance", [{ x: top.map((t) => t[1]), y: top.map((t) => t[0]), type: "bar", orientation: "h", marker: { color: "#2563eb" } }],
    layout({ margin: { l: 150, r: 10, t: 22, b: 30 } }), plotCfg);
}

function drift(s) {
  const d = s.drift, empty = !d.psi.length;
  // no PSI yet: a sentence saying why, not an empty chart
  $("drift-empty").hidden = !empty;
  $("drift-empty").textContent = d.why || "";
  $("drift-title").hidden = empty;
  $("chart-drift").hidden = empty;
  $("drift-info").textContent = empty ? "" : `PSI over the last ${d.rows} decisions, as of ${hhmmss(d.ts)}${s.runner.running ? "" : " (last known)"}; alert above ${d.threshold}` + ((d.ignore || []).length ? `; never alerted on (grey): ${d.ignore.join(", ")}` : "");
  if (empty) { Plotly.purge("chart-drift"); return; }
  const rows = d.psi.slice(0, 20).reverse();
  Plotly.react("chart-drift", [{ x: rows.map((r) => r[1]), y: rows.map((r) => r[0]), type: "bar", orientation: "h", marker: { color: rows.map((r) => ((d.ignore || []).includes(r[0]) ? "#9ca3af" : r[1] > d.threshold ? "#dc2626" : r[1] > 0.1 ? "#f59e0b" : "#16a34a")) } }],
    layout({ margin: { l: 150, r: 10, t: 22, b: 30 }, shapes: [{ type: "line", x0: d.threshold, x1: d.threshold, yref: "paper", y0: 0, y1: 1, line: { color: "#dc2626", dash: "dot" } }] }), plotCfg);
}

function health(s) {
  const h = s.health, f = h.feed_total || {}, r = s.runner;
  const was = h.live ? "" : "stale"; // the runner's last figures: history, greyed
  $("health-asof").textContent = h.live ? "" : h.ts ? `last known, as of ${when(h.ts)}: the runner is ${r.not_responding ? "not responding" : "not running"}` : "";
  if (h.live || r.not_responding) {
    // the newest data's age now: a silent runner's grows, it never reads as fresh
    const a = isNum(h.age_now_s) ? h.age_now_s : h.data_age_s;
    setText("data-age", h.live || isNum(a) ? age(a) : "n/a", isNum(a) ? (a > h.stale_alert_s ? "bad" : "ok") : "");
    $("data-ts").textContent = h.data_ts ? "newest " + when(h.data_ts) + (r.not_responding ? `; runner silent for ${age(r.silent_s)}` : "") : "";
  } else {
    setText("data-age", r.session ? "runner stopped" : "n/a", r.session ? "stale" : "");
    $("data-ts").textContent = r.session ? `stopped at ${when(h.stopped_at)}, last data at ${when(h.data_ts)}` : "";
  }
  setText("book-valid", h.book_valid === undefined ? "n/a" : h.book_valid ? "valid" : "INVALID", h.live ? (h.book_valid === false ? "bad" : h.book_valid ? "ok" : "") : was);
  setText("feed-events", `${f.gaps || 0} / ${f.reconnect || 0} / ${f.resubscribe || 0}`, was);
  setText("latency", isNum(h.latency_p50_us) ? `${fmt(h.latency_p50_us, 0)} / ${fmt(h.latency_p90_us, 0)} / ${fmt(h.latency_p99_us, 0)}` : "n/a", was);
  const w = h.warehouse || {};
  setText("warehouse", w.status === "ok" ? age(w.age_s) + " old" : w.status || "n/a", w.status === "ok" ? "" : "warn");
  $("warehouse-detail").textContent = w.status === "ok" ? `newest book ${w.newest}` : w.detail || "";
  table("alerts", ["time", "alert", "state", "detail"], s.alerts.recent.map((a) => [hhmmss(a.ts), a.what, a.active ? { v: "raised", cls: "sell" } : { v: "cleared", cls: "buy" }, a.line]));
}

PARTS.push(model, drift, health);
