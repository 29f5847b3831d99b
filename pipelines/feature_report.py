"""Feature information coefficients on simulated and real data: the job ``python -m flows.feature_report`` runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import AppConfig
from core.errors import UserError
from features import NAMES
from features.analysis import information_coefficient
from market.sources.files import FileSource
from pipelines.featurebuild import build
from pipelines.progress import StepProgress
from sim.source import SimSource
from warehouse.db import reading
from warehouse.feature_tables import horizon_name, ids
from warehouse.ingest import run_ingest

log = logging.getLogger(__name__)

DEFAULT_REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binance-usdm-btcusdt"
EPISODES = (
    ("2023-04-04", ("btcusdt_20230404.dat.gz", "btcusdt_20230405.dat.gz")),
    ("2024-07-18", ("btcusdt_20240718.gz", "btcusdt_20240719.gz")),
)


@dataclass
class Dataset:
    name: str
    rows: int
    ic: np.ndarray  # (features, horizons)


def _derived(cfg: AppConfig, directory: Path, grid_ns: int) -> AppConfig:
    """The user's config with its own warehouse under ``directory`` and the report's grid."""
    directory.mkdir(parents=True, exist_ok=True)
    wh = cfg.warehouse.model_copy(
        update={"path": directory / "l2.duckdb", "spool_dir": directory / "spool", "snapshot_levels": 20}
    )
    feats = cfg.features.model_copy(update={"grid": grid_ns})
    return cfg.model_copy(update={"warehouse": wh, "features": feats})


def _ic(cfg: AppConfig, name: str, venue: str) -> Dataset:
    fs, ls = ids(cfg, venue)
    horizons = [horizon_name(h) for h in cfg.labels.horizons]
    cols = ", ".join(f"f.{n}" for n in NAMES)
    rets = ", ".join(f"l.ret_{h}" for h in horizons)
    with reading(cfg.resolve(cfg.warehouse.path)) as con:
        data = con.execute(
            f"SELECT {cols}, {rets} FROM features f JOIN labels l USING (venue, symbol, ts_ns) "
            "WHERE f.feature_set = ? AND l.label_set = ? ORDER BY f.venue, f.symbol, ts_ns",
            [fs, ls],
        ).fetchnumpy()
    x = np.column_stack([np.asarray(data[n], float) for n in NAMES])
    ic = np.column_stack([information_coefficient(x, np.asarray(data[f"ret_{h}"], float)) for h in horizons])
    return Dataset(name, x.shape[0], ic)


def simulated(cfg: AppConfig, out: Path, duration_ns: int, grid_ns: int) -> Dataset:
    c = _derived(cfg, out / "sim", grid_ns)
    if not c.resolve(c.warehouse.path).exists():
        with StepProgress("simulate + ingest") as progress:
            result = run_ingest(
                SimSource(c.sim, c.instrument, 50, duration_ns),
                c,
                detail="feature report",
                on_progress=lambda p, counts: progress(p.done / (p.total or 1), f"{counts['book_updates']:,} updates"),
            )
        if result.status != "completed":
            raise UserError(f"simulated ingest failed: {result.error}")
    with StepProgress("features (simulated)") as progress:
        build(c, on_progress=progress)
    return _ic(c, "simulated", c.instrument.venue)


def real(cfg: AppConfig, out: Path, data_dir: Path, grid_ns: int) -> Dataset | None:
    if not data_dir.is_dir():
        log.warning("no recordings at %s: the report covers simulated data only", data_dir)
        return None
    c = _derived(cfg, out / "real", grid_ns)
    if not c.resolve(c.warehouse.path).exists():
        for episode, files in EPISODES:
            paths = [data_dir / f for f in files]
            missing = [p for p in paths if not p.is_file()]
            if missing:
                raise UserError(f"{missing[0]}: recording missing (see {data_dir / 'PROVENANCE.md'})")
            result = run_ingest(FileSource(paths), c, detail=f"feature report {episode}")
            if result.status != "completed":
                raise UserError(f"import of {episode} failed: {result.error}")
    with StepProgress("features (real)") as progress:
        build(c, on_progress=progress)
    return _ic(c, "real (Binance)", "binance")


def write(datasets: list[Dataset], cfg: AppConfig, out: Path) -> list[Path]:
    horizons = [horizon_name(h) for h in cfg.labels.horizons]
    heads = [f"{d.name} {h}" for d in datasets for h in horizons]
    table = np.column_stack([d.ic for d in datasets])
    csv = out / "feature-ic.csv"
    lines = ["feature," + ",".join(heads)]
    lines += [
        n + "," + ",".join("" if np.isnan(v) else f"{v:.4f}" for v in row) for n, row in zip(NAMES, table, strict=True)
    ]
    csv.write_text("\n".join(lines) + "\n")
    md = out / "feature-ic.md"
    rows = ", ".join(f"{d.name}: {d.rows:,} rows" for d in datasets)
    text = [
        "# Feature information coefficients",
        "",
        f"Spearman rank correlation of each feature with the forward mid return ({rows}).",
        "",
        "| feature | " + " | ".join(heads) + " |",
        "|---|" + "---:|" * len(heads),
    ]
    text += [
        f"| `{n}` | " + " | ".join("" if np.isnan(v) else f"{v:+.3f}" for v in row) + " |"
        for n, row in zip(NAMES, table, strict=True)
    ]
    md.write_text("\n".join(text) + "\n")
    png = out / "feature-ic.png"
    _plot(table, heads, png)
    return [md, csv, png]


def _plot(table: np.ndarray, heads: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = max(float(np.nanmax(np.abs(table))) if np.isfinite(table).any() else 0.1, 0.05)
    fig, ax = plt.subplots(figsize=(2.0 + 0.9 * len(heads), 0.22 * len(NAMES) + 1.5))
    im = ax.imshow(np.nan_to_num(table), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_yticks(range(len(NAMES)), NAMES, fontsize=7)
    ax.set_xticks(range(len(heads)), heads, rotation=45, ha="right", fontsize=8)
    ax.set_title("Spearman IC of each feature with the forward mid return")
    fig.colorbar(im, ax=ax, shrink=0.5, label="IC")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summary(datasets: list[Dataset], cfg: AppConfig, k: int = 5) -> str:
    horizons = [horizon_name(h) for h in cfg.labels.horizons]
    lines = []
    for d in datasets:
        for j, h in enumerate(horizons):
            col = d.ic[:, j]
            best = [i for i in np.argsort(-np.nan_to_num(np.abs(col))) if np.isfinite(col[i])][:k]
            top = ", ".join(f"{NAMES[i]} {col[i]:+.3f}" for i in best)
            lines.append(f"{d.name:<15} {h:>4} ({d.rows:,} rows): {top}")
    return "\n".join(lines)
