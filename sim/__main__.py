"""``python -m sim compare``: the simulator's stylized facts against the real recordings.

    python -m sim compare                        # 1 h simulated vs ../shared/data, table + PNG
    python -m sim compare --duration 4h --out facts.png --json facts.json

The real recordings are Binance USD-M BTCUSDT episodes (see their PROVENANCE.md); they are read
through the same normalizer as the simulator's Bybit messages, so both are measured alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from core.cli import add_config_argument, run_main, setup_logging
from core.config import load_config
from core.errors import UserError
from core.timefmt import parse_duration_ns
from market.events import RawBatch
from market.sources.files import FileSource, check_paths
from market.venues import BYBIT
from sim import MarketSimulator, facts

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "binance-usdm-btcusdt"
EPISODES = {
    "real 2023-04-04": ["btcusdt_20230404.dat.gz", "btcusdt_20230405.dat.gz"],
    "real 2024-07-18": ["btcusdt_20240718.gz", "btcusdt_20240719.gz"],
}


def real_streams(data_dir: Path) -> dict[str, facts.Stream]:
    if not data_dir.is_dir():
        raise UserError(f"no recordings at {data_dir} (pass --data DIR)")
    out: dict[str, facts.Stream] = {}
    for name, files in EPISODES.items():
        src = FileSource(check_paths([str(data_dir / f) for f in files]))

        async def read(source: FileSource = src) -> list[RawBatch]:
            return [b async for b in source.raw_batches()]

        log.info("reading %s", name)
        out[name] = facts.collect(asyncio.run(read()), src.venue, "BTCUSDT", src.tick_size)
    return out


def sim_stream(config: str, duration_ns: int) -> facts.Stream:
    cfg = load_config(config)
    sim = MarketSimulator(cfg.sim, cfg.instrument, cfg.ingest.depth)
    log.info("simulating %.0f s", duration_ns / 1e9)
    return facts.collect(sim.batches(duration_ns), BYBIT, cfg.instrument.venue_symbol, cfg.instrument.tick_size)


def table(results: dict[str, list[facts.Fact]]) -> str:
    names = list(results)
    first = results[names[0]]
    width = max(len(f.name) for f in first) + 2
    lines = [f"{'fact':<{width}}" + "".join(f"{n:>18}" for n in names) + "  unit"]
    for i, f in enumerate(first):
        row = "".join(f"{results[n][i].value:>18.4f}" for n in names)
        lines.append(f"{f.name:<{width}}{row}  {f.unit}")
    return "\n".join(lines)


def plot(streams: dict[str, facts.Stream], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, 3, figsize=(17, 8))
    lags = np.unique(np.geomspace(1, 300, 25).astype(int))
    horizons = np.arange(2, 121, 2)
    for name, s in streams.items():
        for ax, values in ((axes[0, 0], s.trades.qty), (axes[0, 1], np.concatenate([s.bid_qty, s.ask_qty]))):
            v = np.sort(values)
            ax.plot(v, np.arange(1, v.size + 1) / v.size, label=name)
        p_up, _ = facts.imbalance_curve(s)
        centers = (np.array(facts.IMBALANCE_EDGES[:-1]) + np.array(facts.IMBALANCE_EDGES[1:])) / 2
        axes[1, 0].plot(centers, p_up, marker="o", label=name)
        mid = (s.bid + s.ask) / 2
        per_s = mid[:: 1_000_000_000 // facts.GRID_NS]
        r = np.diff(np.log(per_s)) * 1e4
        axes[1, 1].hist(r[r != 0], bins=np.linspace(-3, 3, 61), density=True, histtype="step", label=name)
        signs = facts.order_signs(s)
        axes[0, 2].plot(lags, [facts.sign_autocorrelation(signs, int(k)) for k in lags], marker=".", label=name)
        axes[1, 2].plot(horizons, [facts.variance_ratio(s, int(h)) for h in horizons], label=name)
    axes[0, 0].set(xscale="log", title="trade size (BTC), cumulative share", ylabel="share <= x")
    axes[0, 1].set(xscale="log", title="best bid / ask size (BTC), cumulative share")
    axes[1, 0].set(title="P(next mid move up) by best-level imbalance", xlabel="imbalance I", ylim=(0, 1))
    axes[1, 0].axhline(0.5, color="grey", lw=0.5)
    axes[1, 1].set(title="1 s mid return (bps, non-zero)", xlabel="bps")
    axes[0, 2].set(xscale="log", title="autocorrelation of market-order signs", xlabel="lag (orders)")
    axes[0, 2].axhline(0, color="grey", lw=0.5)
    axes[1, 2].set(title="variance ratio E[r_h^2] / (h E[r_1s^2])", xlabel="h (s)")
    axes[1, 2].axhline(1, color="grey", lw=0.5)
    for ax in axes.flat:
        ax.legend(fontsize=8)
    fig.suptitle("Simulator vs real BTCUSDT perpetual recordings")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="stylized facts: simulator vs real recordings (table + PNG)")
    c.add_argument("--duration", default="1h", help="simulated time to measure (default 1h)")
    c.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the Binance recordings")
    c.add_argument("--out", type=Path, default=Path("docs/simulator-facts.png"), help="where to write the plot")
    c.add_argument("--json", type=Path, help="also write the figures as JSON")
    add_config_argument(c)
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        duration = parse_duration_ns(args.duration)
    except ValueError as exc:
        raise UserError(f"--duration: {exc}") from None
    streams = real_streams(args.data)
    streams["simulator"] = sim_stream(args.config, duration)
    results = {name: facts.compute(s) for name, s in streams.items()}
    print(table(results))
    plot(streams, args.out)
    print(f"plot: {args.out}")
    if args.json:
        args.json.write_text(json.dumps({n: {f.name: f.value for f in fs} for n, fs in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    run_main(main)
