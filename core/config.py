"""One YAML file, one frozen and strict section per component, validated at start-up.

A typo or a bad value fails with one line naming the key (``warehouse.flush_interval: ...``).
Relative paths are resolved against the directory of the config file, so a test can point the
whole system at another warehouse and MLflow store by writing one small file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal, overload
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from core.errors import ConfigError
from core.sections import DurationNs, InstantNs, Section, iso_to_str
from core.timefmt import parse_duration_ns, parse_time_ns
from core.trading_config import (
    BacktestConfig,
    ExecutionConfig,
    LiveConfig,
    MonitorConfig,
    RiskConfig,
    SizingConfig,
    StrategyConfig,
)


class InstrumentConfig(Section):
    """The traded instrument. Tick and lot are re-read from the exchange at start-up when online."""

    venue: Literal["bybit"] = "bybit"
    symbol: str = "BTC/USDT:USDT"
    venue_symbol: str = "BTCUSDT"
    tick_size: float = Field(0.1, gt=0)
    lot_size: float = Field(0.001, gt=0)
    min_notional: float = Field(5.0, ge=0)
    maker_fee: float = Field(0.0002, ge=0, lt=0.01)  # Bybit VIP 0 perpetuals; the labels' dead zone is built on it
    taker_fee: float = Field(0.00055, ge=0, lt=0.01)


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's bucket naming rules, in short
_CREDENTIALS_IN_URL = (
    "credentials in the URL: put them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment instead"
)


class S3Url(Section):
    """An S3 location, ``s3://bucket/prefix``: written so in YAML, dumped back as that text."""

    bucket: str
    prefix: str = ""  # no leading or trailing slash; '' is the bucket's top

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, rel: str) -> str:
        """The object ``rel`` (a POSIX path below the prefix) as pyarrow names it: ``bucket/prefix/rel``."""
        return "/".join(p for p in (self.bucket, self.prefix, rel) if p)

    def __str__(self) -> str:
        return self.url

    @model_serializer
    def _as_text(self) -> str:
        return self.url

    @classmethod
    def parse(cls, text: str) -> S3Url:
        """``s3://bucket[/prefix]``; credentials in it are refused without being repeated."""
        parts = urlsplit(text)
        if "@" in parts.netloc:
            raise ValueError(_CREDENTIALS_IN_URL)
        if parts.scheme != "s3" or parts.query or parts.fragment:
            raise ValueError("expected a local folder or s3://bucket/prefix")
        if not _BUCKET.match(parts.netloc):
            raise ValueError("the bucket must be 3-63 lowercase letters, digits, dots or hyphens")
        segments = [s for s in parts.path.split("/") if s]
        if any(s in (".", "..") for s in segments):
            raise ValueError("the prefix must not hold . or .. segments")
        return cls(bucket=parts.netloc, prefix="/".join(segments))


def _archive(value: object) -> object:
    """A folder stays a path; ``s3://...`` (or any URL) is read as an S3 location."""
    if isinstance(value, str) and "://" in value:
        return S3Url.parse(value)
    return value


def _s3_endpoint(value: str | None) -> str | None:
    """``http(s)://host[:port]`` of an S3-compatible store, without credentials (never repeated)."""
    if value is None:
        return None
    if "@" in urlsplit(value).netloc:
        raise ValueError(_CREDENTIALS_IN_URL)
    parts = urlsplit(_url(value, ("http", "https")))
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError("expected http(s)://host:port, without a path")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    return value.rstrip("/")


class RetentionConfig(Section):
    """What ``python -m warehouse retain`` moves out of the DuckDB file into Parquet, by age.

    Ages are measured on the data's own clock (back from the newest row of the table), so a
    replayed or simulated warehouse ages as a live one does. Rows are exported to
    ``archive/<table>/venue=V/symbol=S/date=YYYY-MM-DD/part-HH.parquet`` and verified before they
    are deleted. ``archive`` is a folder, or ``s3://bucket/prefix`` on AWS S3 or, with
    ``s3_endpoint``, an S3-compatible store; its credentials come from AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY in the environment only (warehouse/lakestore.py).
    """

    archive: Annotated[Path | S3Url, BeforeValidator(_archive)] = Path("warehouse/archive")
    s3_endpoint: Annotated[str | None, AfterValidator(_s3_endpoint)] = None  # http://127.0.0.1:9000; None: AWS
    s3_region: str | None = Field(None, pattern=r"^[a-z0-9-]{2,32}$")  # None: us-east-1
    raw: DurationNs | None = parse_duration_ns("3d")  # raw messages kept in DuckDB; None: kept for ever
    # book tables (book_updates, trades, snapshots, snapshots_1s) kept in DuckDB; None: kept for ever.
    # Never moved out, whatever this says: rows the next feature / label build of this config reads.
    book: DurationNs | None = None
    compact: bool = False  # after deleting, copy the file to a fresh one (gives the disk back)

    @model_validator(mode="after")
    def _s3_only(self) -> RetentionConfig:
        if not isinstance(self.archive, S3Url) and (self.s3_endpoint is not None or self.s3_region is not None):
            raise ValueError("s3_endpoint and s3_region apply to an s3:// archive only")
        return self


class WarehouseConfig(Section):
    """The DuckDB warehouse: where it lives, what it keeps, how the single writer behaves."""

    path: Path = Path("warehouse/l2.duckdb")
    spool_dir: Path = Path("warehouse/spool")
    snapshot_levels: int = Field(20, ge=1, le=200)
    store_raw: bool = True
    flush_interval: DurationNs = parse_duration_ns("500ms")
    flush_rows: int = Field(200_000, ge=1)
    lock_timeout: DurationNs = parse_duration_ns("30s")
    gap_threshold: DurationNs = parse_duration_ns("2s")
    retention: RetentionConfig = RetentionConfig()

    @model_validator(mode="after")
    def _flush_bound(self) -> WarehouseConfig:
        if self.flush_interval > 1_000_000_000 or self.flush_interval == 0:
            raise ValueError("flush_interval must be > 0 and <= 1s (at most 1 s of data may be lost)")
        return self


class IngestConfig(Section):
    """Market-data ingest from the exchange."""

    depth: Literal[1, 50, 200, 1000] = 50
    reconnect_initial: DurationNs = parse_duration_ns("500ms")
    reconnect_max: DurationNs = parse_duration_ns("30s")
    status_interval: DurationNs = parse_duration_ns("10s")
    stall_timeout: DurationNs = parse_duration_ns("10s")  # no market data for this long: reconnect
    max_pending_deltas: int = Field(10_000, ge=1)
    # archives (Bybit's, a Tardis trades-only file...) have no local receive time: their events are
    # stamped with the exchange's time, and replays read them this much later (the feed latency)
    archive_latency: DurationNs = parse_duration_ns("10ms")


class BybitConfig(Section):
    """Bybit v5 endpoints. Point them at the stand-in server or testnet to run offline."""

    rest_url: str = "https://api.bybit.com"
    ws_public_url: str = "wss://stream.bybit.com/v5/public/linear"
    timeout: DurationNs = parse_duration_ns("10s")
    # a runner's start meeting a transient failure (no answer, a rate limit, Bybit's 10016 system
    # error) tries again this many times in all, waiting start_backoff, then twice that, ...
    start_tries: int = Field(3, ge=1)
    start_backoff: DurationNs = parse_duration_ns("1s")

    @field_validator("rest_url")
    @classmethod
    def _http(cls, v: str) -> str:
        return _url(v, ("http", "https"))

    @field_validator("ws_public_url")
    @classmethod
    def _ws(cls, v: str) -> str:
        return _url(v, ("ws", "wss"))


def _url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"expected a {' or '.join(s + '://' for s in schemes)} URL, got {value!r}")
    return value


class SimModelConfig(Section):
    """Queue-reactive model parameters, calibrated against the real recordings (docs/simulator.md).

    Sizes are in BTC, rates in events per second (multiplied by the activity regime).
    """

    base_price: float = Field(65000.0, gt=0)
    best_queue_btc: float = Field(8.0, gt=0)  # median size of a freshly formed best queue
    best_queue_sigma: float = Field(1.0, ge=0)  # its log-normal spread
    limit_rate: float = Field(8.0, ge=0)  # limit orders joining each best queue
    refill_boost: float = Field(1.0, ge=0)  # extra joining when a best queue is below its median size
    cancel_rate: float = Field(7.0, ge=0)  # cancels on each best queue at median size (scales with size)
    cancel_imbalance: float = Field(3.0, ge=0)  # the thinner side cancels faster: x (1 + k * |I|)
    order_size_btc: float = Field(0.4, gt=0)  # median limit / cancel size at the best
    order_size_sigma: float = Field(1.3, ge=0)
    market_rate: float = Field(22.0, ge=0)  # market orders, both sides together
    market_imbalance: float = Field(0.45, ge=0, le=0.49)  # P(buy) = 0.5 + k * I (+ metaorder tilt)
    trade_size_btc: float = Field(0.012, gt=0)  # median market order size
    trade_size_sigma: float = Field(2.1, ge=0)
    trade_size_max_btc: float = Field(4.0, gt=0)
    depth_ticks: int = Field(150, ge=60, le=1000)  # ticks from the best that the thin book covers
    depth_occupancy: float = Field(0.45, gt=0, le=1)  # share of those ticks holding an order
    depth_size_btc: float = Field(0.04, gt=0)  # median size of a level behind the best
    depth_size_sigma: float = Field(1.6, ge=0)
    depth_rate: float = Field(300.0, ge=0)  # level refreshes behind the best, both sides
    pullback_ticks: float = Field(24.0, ge=0)  # mean extra ticks the new best steps back after a depletion
    away_queue_scale: float = Field(0.25, gt=0, le=1)  # the side that moved re-forms a smaller queue (momentum)
    reform_delay: DurationNs = parse_duration_ns("10ms")  # the other side follows after this (mean)
    regime_vol: float = Field(0.35, ge=0)  # log-activity standard deviation (volatility clustering)
    regime_half_life: DurationNs = parse_duration_ns("10m")
    # metaorders: large orders split into market orders over tens of seconds (docs/simulator.md)
    meta_rate: float = Field(2.0, ge=0)  # metaorder starts per minute (x the activity regime)
    meta_duration: DurationNs = parse_duration_ns("30s")  # median duration
    meta_duration_tail: float = Field(1.5, gt=1)  # Pareto tail exponent of the duration
    meta_duration_max: DurationNs = parse_duration_ns("10m")  # durations are capped here
    meta_tilt: float = Field(0.08, ge=0, le=0.49)  # each active one adds sign * k to P(buy)


class SimConfig(Section):
    """The built-in market simulator."""

    seed: int = 7
    start: Annotated[InstantNs, BeforeValidator(iso_to_str)] = parse_time_ns("2026-01-05T00:00:00Z")
    cadence: DurationNs = parse_duration_ns("20ms")
    feed_latency: DurationNs = parse_duration_ns("3ms")
    model: SimModelConfig = SimModelConfig()


class StandinConfig(Section):
    """The local Bybit v5 stand-in server."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    feed: Literal["sim", "file"] = "sim"
    path: Path | None = None
    speed: float = Field(1.0, gt=0)  # the market (or the file) this many times faster than the wall clock


class FeaturesConfig(Section):
    """The feature build: the sampling grid (training rows) and the book depth it reads."""

    not_results: ClassVar[frozenset[str]] = frozenset({"chunk"})  # a memory bound: same rows either way

    grid: DurationNs = parse_duration_ns("1s")  # one training row per grid time (features as of it)
    levels: int = Field(20, ge=10, le=200)  # book levels per side handed to the kernels
    chunk: DurationNs = parse_duration_ns("10m")  # data read and computed per step (memory bound)
    max_gap: DurationNs = parse_duration_ns("5s")  # a silence longer than this breaks the data: no rows
    # during it, and after it every window must fill again (5 min) before rows resume

    @model_validator(mode="after")
    def _positive(self) -> FeaturesConfig:
        if self.grid <= 0 or self.chunk < self.grid:
            raise ValueError("grid must be > 0 and chunk >= grid")
        return self


class LabelsConfig(Section):
    """Training labels (features/labels.py): horizons, the dead zone from costs, the triple barrier."""

    horizons: tuple[DurationNs, ...] = (
        parse_duration_ns("1s"),
        parse_duration_ns("5s"),
        parse_duration_ns("30s"),
        parse_duration_ns("60s"),
    )
    dead_zone_extra: float = Field(0.0, ge=0, lt=0.01)  # added to the round-trip maker fee
    barrier_horizon: DurationNs = parse_duration_ns("60s")
    barrier_vol_window: DurationNs = parse_duration_ns("5m")  # trailing realized vol that scales the barriers
    take_profit: float = Field(1.0, gt=0)  # barrier = multiple of the trailing vol
    stop_loss: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _horizons(self) -> LabelsConfig:
        if not self.horizons or any(h <= 0 for h in self.horizons) or len(set(self.horizons)) != len(self.horizons):
            raise ValueError("horizons must be distinct positive durations")
        if self.barrier_horizon <= 0 or self.barrier_vol_window <= 0:
            raise ValueError("barrier_horizon and barrier_vol_window must be positive")
        return self


def _database_url(url: str) -> str:
    """Empty (the SQLite default) or ``postgresql://user@host[:port]/database``, without a password:
    the password comes from PGPASSWORD in the environment (never from config.yaml, never logged)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.scheme != "postgresql":
        raise ValueError("expected postgresql://user@host:port/database (or empty: SQLite)")
    if parts.password is not None:
        raise ValueError("a password in config.yaml: put it in PGPASSWORD in the environment instead")
    if not parts.hostname or not parts.username or not parts.path.strip("/"):
        raise ValueError("expected postgresql://user@host:port/database: a user, a host and a database")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    return url


DatabaseUrl = Annotated[str, AfterValidator(_database_url)]


class MlflowConfig(Section):
    """The MLflow store: a SQLite registry and an artifact folder, both under mlruns/ by default."""

    store: Path = Path("mlruns/mlflow.db")  # the tracking + registry database (SQLite)
    database: DatabaseUrl = ""  # a shared PostgreSQL instead of ``store`` (docs/scaling.md)
    artifacts: Path = Path("mlruns/artifacts")
    experiment: str = "btc-l2"
    model_name: str = Field("btc-l2", pattern=r"^[A-Za-z0-9_.-]+$")
    ui_host: str = Field("127.0.0.1", min_length=1)  # python -m models ui (make ui), and its links
    ui_port: int = Field(5000, ge=1, le=65535)


class TrainingConfig(Section):
    """What the model learns from and how (models/, python -m flows.train)."""

    window: DurationNs = parse_duration_ns("24h")  # the most recent data with labels
    horizon: DurationNs = parse_duration_ns("30s")  # the label horizon the model predicts (one of labels.horizons)
    folds: int = Field(4, ge=2, le=20)  # walk-forward folds for the out-of-fold predictions
    shares: tuple[float, float, float] = (0.6, 0.2, 0.2)  # fit / calibrate / held-out test, by time
    min_rows: int = Field(2000, ge=300)
    rounds: int = Field(400, ge=10)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(7, ge=2)
    max_depth: int = Field(3, ge=1)
    min_child_samples: int = Field(2000, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)  # rows each tree sees
    colsample: float = Field(0.8, gt=0, le=1)  # features each tree sees
    early_stopping: int = Field(30, ge=1)
    min_orders: int = Field(30, ge=1)  # fewer orders (or filled round trips) than this are not enough evidence
    threshold_z: float = Field(2.0, ge=0)  # a threshold must earn above zero by this many standard errors
    inner_valid: float = Field(0.2, gt=0, lt=0.5)  # latest share of each training set, for early stopping
    threads: int = Field(2, ge=1)
    seed: int = 7
    # within a window of a day or two the time of day is a time index, not a pattern: left out
    exclude_features: tuple[str, ...] = ("tod_sin", "tod_cos")

    @model_validator(mode="after")
    def _shares(self) -> TrainingConfig:
        if abs(sum(self.shares) - 1.0) > 1e-9 or min(self.shares) <= 0:
            raise ValueError("shares must be three positive numbers summing to 1")
        return self


class PromotionConfig(Section):
    """When a challenger replaces the champion (python -m flows.promote)."""

    min_log_loss_gain: float = Field(0.0, ge=0)  # mean held-out log loss must drop by at least this
    min_auc: float = Field(0.5, ge=0, le=1)  # and both directions must rank better than this
    fresh: DurationNs = parse_duration_ns("2h")  # the fresh data both models are scored on
    require_backtest: bool = False  # also require a higher net-of-fee backtest PnL than the champion's
    backtest_strategy: Literal["baseline", "passive"] = "passive"


class ComputeConfig(Section):
    """Where the commands' parallel jobs run (backtest sweeps, the feature build, training's walk-forward
    folds; the scheduled retrain chain runs its steps in its own process: docs/scaling.md)."""

    cluster: str | None = None  # None: in this process; "local": a Dask cluster for the run; tcp://host:port
    workers: int = Field(2, ge=1)  # the processes of a local cluster
    # the feature build's unit of work, grid times on the clock (1d: UTC days), built alone and stored in
    # order; None: the build in one pass here, by day on a cluster. Not a results setting: the same rows,
    # their values within rounding (windowed sums restart at each partition, pipelines/featurebuild.py)
    partition: DurationNs | None = None

    @model_validator(mode="after")
    def _cluster(self) -> ComputeConfig:
        if self.cluster is not None and self.cluster != "local" and not self.cluster.startswith(("tcp://", "tls://")):
            raise ValueError("cluster must be local or a Dask scheduler address tcp://host:port")
        if self.partition is not None and self.partition <= 0:
            raise ValueError("partition must be a positive duration (e.g. 1d) or null")
        return self


class PrefectConfig(Section):
    """The persistent Prefect server's database (python -m flows.prefect_server, make up)."""

    database: DatabaseUrl = ""  # empty: SQLite in PREFECT_HOME; or a shared PostgreSQL (docs/scaling.md)


class AppConfig(Section):
    """The whole configuration. Each component receives only its own section."""

    instrument: InstrumentConfig = InstrumentConfig()
    warehouse: WarehouseConfig = WarehouseConfig()
    ingest: IngestConfig = IngestConfig()
    bybit: BybitConfig = BybitConfig()
    sim: SimConfig = SimConfig()
    standin: StandinConfig = StandinConfig()
    features: FeaturesConfig = FeaturesConfig()
    labels: LabelsConfig = LabelsConfig()
    mlflow: MlflowConfig = MlflowConfig()
    training: TrainingConfig = TrainingConfig()
    promotion: PromotionConfig = PromotionConfig()
    execution: ExecutionConfig = ExecutionConfig()
    strategy: StrategyConfig = StrategyConfig()
    sizing: SizingConfig = SizingConfig()
    risk: RiskConfig = RiskConfig()
    backtest: BacktestConfig = BacktestConfig()
    live: LiveConfig = LiveConfig()
    monitor: MonitorConfig = MonitorConfig()
    compute: ComputeConfig = ComputeConfig()
    prefect: PrefectConfig = PrefectConfig()
    source_path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _horizon(self) -> AppConfig:
        if self.training.horizon not in self.labels.horizons:
            raise ValueError("training.horizon must be one of labels.horizons")
        return self

    @overload
    def resolve(self, path: Path) -> Path: ...
    @overload
    def resolve(self, path: S3Url) -> S3Url: ...
    @overload
    def resolve(self, path: Path | S3Url) -> Path | S3Url: ...
    def resolve(self, path: Path | S3Url) -> Path | S3Url:
        """Resolve a path from the config against the config file's directory (a URL is left as it is)."""
        if isinstance(path, S3Url) or path.is_absolute() or self.source_path is None:
            return path
        return (self.source_path.parent / path).resolve()


def format_error(source: str, err: ValidationError) -> str:
    """One line naming the first bad key of ``err``."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: {key}: unknown key"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{source}: {key}: {msg}"


def load_config(path: str | Path = "config.yaml") -> AppConfig:
    """Read and validate the config file; raise ConfigError with one line naming the bad key."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level")
    if "source_path" in data:
        raise ConfigError(f"{p}: source_path: unknown key")
    for key in ("maker_fee", "taker_fee"):
        if isinstance(data.get("labels"), dict) and key in data["labels"]:
            raise ConfigError(f"{p}: labels.{key}: moved to instrument.{key} (a venue fact labels and engine share)")
    try:
        return AppConfig.model_validate({**data, "source_path": p.resolve()})
    except ValidationError as exc:
        raise ConfigError(format_error(str(p), exc)) from None
