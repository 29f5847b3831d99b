// The trading parts of the page: account, the price with our orders and fills, order history,
// fills, round trips, execution quality (each figure with its sample size and interval).
"use strict";

const side = (x) => (x > 0 ? { v: "buy", cls: "buy" } : { v: "sell", cls: "sell" });
const money = (x) => ({ v: signed(x), cls: isNum(x) ? (x >= 0 ? "buy" : "sell") : "" });

function account(s) {
  const a = s.account;
  $("account-ts").textContent = a.ts ? "as of " + when(a.ts) : "";
  setText("equity", fmt(a.equity));
  setText("pnl", signed(a.pnl), isNum(a.pnl) ? (a.pnl >= 0 ? "ok" : "bad") : "");
  $("pnl-split").textContent = isNum(a.realized) ? `realized ${signed(a.realized)} + unrealized ${signed(a.unrealized)}` : "";
  setText("realized", signed(a.realized), isNum(a.realized) ? (a.realized >= 0 ? "ok" : "bad") : "");
  setText("unrealized", signed(a.unrealized), isNum(a.unrealized) ? (a.unrealized >= 0 ? "ok" : "bad") : "");
  $("mark").textContent = isNum(a.mark) ? `at mid ${fmt(a.mark, 1)} (${hhmmss(a.mark_ts)})` : "no mid yet";
  setText("position", signed(a.position, 3));
  setText("fees", fmt(a.fees));
  setText("funding", fmt(a.funding));
  setText("open-count", String(s.orders.length));
  Plotly.react("chart-equity", [
    { x: s.series.t, y: s.series.equity, name: "equity (USDT)", type: "scatter", mode: "lines", line: { color: "#2563eb" } },
    { x: s.series.t, y: s.series.position, name: "position (BTC)", type: "scatter", mode: "lines", line: { color: "#f59e0b", shape: "hv" }, yaxis: "y2" },
  ], layout({ margin: { l: 60, r: 60, t: 22, b: 30 }, yaxis: { title: "USDT" }, yaxis2: { title: "BTC", overlaying: "y", side: "right", zeroline: true } }), plotCfg);
  table("orders", ["id", "side", "price", "qty", "filled", "since"], s.orders.slice(0, 12).map((o) => [o.id, side(o.side), fmt(o.price, 1), fmt(o.qty, 3), fmt(o.filled, 3), hhmmss(o.ts)]));
}

function prices(s) {
  const p = s.prices, traces = [];
  const notes = { book: "", account: "mid: the account's mark while a position is held (this journal's decisions carry no book prices)", none: "no prices in this range yet" };
  $("price-note").textContent = notes[p.source] + (p.orders_total > p.orders_drawn ? ` · the newest ${p.orders_drawn} of ${p.orders_total} orders drawn` : "");
  if (p.bid.length) {
    traces.push({ x: p.t, y: p.bid, name: "bid", type: "scatter", mode: "lines", line: { color: "#86efac", width: 1, shape: "hv" } });
    traces.push({ x: p.t, y: p.ask, name: "ask", type: "scatter", mode: "lines", line: { color: "#fca5a5", width: 1, shape: "hv" } });
  }
  traces.push({ x: p.t, y: p.mid, name: p.source === "account" ? "mid (account mark)" : "mid", type: "scatter", mode: p.source === "account" ? "lines+markers" : "lines", marker: { size: 3 }, line: { color: "#374151", width: 1 } });
  traces.push({ x: p.orders_buy.t, y: p.orders_buy.price, name: "our bids", type: "scatter", mode: "lines", connectgaps: false, line: { color: "#16a34a", width: 2, dash: "dot" } });
  traces.push({ x: p.orders_sell.t, y: p.orders_sell.price, name: "our asks", type: "scatter", mode: "lines", connectgaps: false, line: { color: "#dc2626", width: 2, dash: "dot" } });
  traces.push({ x: p.rejected.t, y: p.rejected.price, text: p.rejected.text, hoverinfo: "text+x", name: "post-only rejects", type: "scatter", mode: "markers", marker: { symbol: "x-thin-open", color: "#6b7280", size: 8, line: { width: 1.5 } } });
  const size = (q) => q.map((x) => 7 + Math.min(9, 30 * x));
  traces.push({ x: p.fills_buy.t, y: p.fills_buy.price, text: p.fills_buy.text, hoverinfo: "text+x", name: "buy fills", type: "scatter", mode: "markers", marker: { symbol: "triangle-up", color: "#15803d", size: size(p.fills_buy.qty), line: { color: "#fff", width: 1 } } });
  traces.push({ x: p.fills_sell.t, y: p.fills_sell.price, text: p.fills_sell.text, hoverinfo: "text+x", name: "sell fills", type: "scatter", mode: "markers", marker: { symbol: "triangle-down", color: "#b91c1c", size: size(p.fills_sell.qty), line: { color: "#fff", width: 1 } } });
  Plotly.react("chart-price", traces, layout({ margin: { l: 70, r: 12, t: 22, b: 30 }, yaxis: { title: "USDT", tickformat: ",.1f" }, hovermode: "closest" }), plotCfg);
}

function orderHistory(s) {
  const h = s.order_history;
  $("orders-info").textContent = `${s.selection.range_label} of ${s.selection.session === "all" ? "all sessions" : "the session"}`;
  $("order-history-info").textContent = `${h.total} orders (${h.open} open, ${h.post_only_rejects} refused as post-only)${h.total > h.rows.length ? `; the newest ${h.rows.length} shown` : ""}`;
  const status = (o) => ({ v: o.status + (o.post_only_reject ? " (post-only reject)" : ""), cls: o.post_only_reject ? "sell" : o.status === "FILLED" ? "buy" : o.status === "OPEN" ? "" : "muted" });
  table("order-history", ["id", "submitted", "side", "kind", "price", "qty", "filled", "status", "lifecycle"],
    h.rows.map((o) => [o.id, hhmmss(o.ts), side(o.side), o.kind, fmt(o.price, 1), fmt(o.qty, 3), fmt(o.filled, 3), status(o), { v: o.lifecycle, cls: "life" }]));
  const f = s.fill_history, hs = f.horizons;
  $("fills-info").textContent = `${f.total} in range${f.total > f.rows.length ? `; the newest ${f.rows.length} shown` : ""}`;
  table("fills", ["time", "order", "side", "price", "qty", "fee", "liquidity", "slippage bp", ...hs.map((h) => `markout ${h}`)],
    f.rows.map((x) => [hhmmss(x.ts), x.id, side(x.side), fmt(x.price, 1), fmt(x.qty, 3), fmt(x.fee, 4), x.maker ? "maker" : "taker", signed(x.slippage_bps), ...hs.map((h) => signed(x[`markout_${h}_bps`]))]));
  const t = s.round_trips;
  $("round-trips-info").textContent = `${t.total} closed in range, ${t.won} won, net ${signed(t.net)} USDT (fees ${fmt(t.fees)})`;
  table("round-trips", ["opened", "closed", "side", "qty", "entry", "exit", "net USDT", "fees", "fills"],
    t.rows.map((r) => [hhmmss(r.opened), r.state === "open" ? { v: `open ${signed(r.side * r.open_qty, 3)}`, cls: "muted" } : hhmmss(r.closed), r.side > 0 ? { v: "long", cls: "buy" } : { v: "short", cls: "sell" },
      fmt(r.qty, 3), fmt(r.entry, 1), fmt(r.exit, 1), r.state === "open" ? { v: `${signed(r.net)} so far, ${signed(r.unrealized)} open`, cls: "muted" } : money(r.net), fmt(r.fees, 4), r.fills]));
}

// one card per execution figure: its value, n beside it, its interval, and a flag below MIN_EVIDENCE
function figure(key, label, est, show, unit) {
  const n = est.n, v = isNum(est.value) ? show(est.value) + unit : "n/a";
  const ci = isNum(est.lo) ? `95 % CI ${show(est.lo)} .. ${show(est.hi)}${unit}` : n === 1 ? "no interval from one sample" : "";
  const weak = n < MIN_N ? `<small class="evidence">not enough evidence (n < ${MIN_N})</small>` : "";
  return `<div class="card${n < MIN_N ? " weak" : ""}" data-figure="${key}" data-n="${n}"><label>${esc(label)}</label><b>${esc(v)}</b><small class="n">n = ${n}</small><small class="ci">${esc(ci)}</small>${weak}</div>`;
}
let MIN_N = 30;

function execution(s) {
  const e = s.execution_stats;
  MIN_N = e.min_n;
  $("execution-info").textContent = `over the ${e.fills} fills in range`;
  const bp = (x) => signed(x), share = (x) => (100 * x).toFixed(0) + " %";
  const cards = [figure("slippage", "arrival slippage, mean", e.slippage, bp, " bp")];
  for (const h of e.horizons) cards.push(figure(`markout_${h}`, `markout ${h}, mean`, e.markouts[h], bp, " bp"));
  cards.push(figure("maker", "maker fills", e.maker, share, ""));
  cards.push(figure("orders_filled", "orders filled", e.orders_filled, share, ""));
  cards.push(figure("rejects", `post-only rejects (${e.rejects.count})`, e.rejects, (x) => (100 * x).toFixed(1) + " %", " of requests"));
  $("exec-cards").innerHTML = cards.join("");
  const m = e.horizons.map((h) => e.markouts[h]);
  Plotly.react("chart-markouts", [{
    x: e.horizons, y: m.map((x) => x.value), type: "bar", text: m.map((x) => `n = ${x.n}`), textposition: "outside", cliponaxis: false,
    error_y: { type: "data", symmetric: false, array: m.map((x) => (isNum(x.hi) ? x.hi - x.value : null)), arrayminus: m.map((x) => (isNum(x.lo) ? x.value - x.lo : null)), color: "#374151" },
    marker: { color: m.map((x) => ((x.value ?? 0) >= 0 ? "#16a34a" : "#dc2626")), opacity: m.map((x) => (x.n < MIN_N ? 0.35 : 0.9)) },
  }], layout({ showlegend: false, margin: { l: 48, r: 12, t: 22, b: 30 },
    annotations: m.some((x) => x.n > 0) ? [] : [{ text: "no markouts yet: no fill with a mid D after it", xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { color: "#6b7280" } }] }), plotCfg);
  const limit = s.execution.thresholds.slippage_bps, st = s.series.slippage_t;
  Plotly.react("chart-slippage", [
    { x: st, y: s.series.slippage_bps, name: `rolling over the last ${s.execution.window} fills`, type: "scatter", mode: "lines", line: { color: "#7c3aed" } },
    { x: [st[0], st[st.length - 1]], y: [limit, limit], name: "alert", mode: "lines", line: { dash: "dot", color: "#dc2626" } },
  ], layout({}), plotCfg);
}

PARTS.push(account, prices, orderHistory, execution);
