from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import AppConfig, WarehouseConfig, load_config
from core.errors import ConfigError, UserError
from core.timefmt import format_duration, format_ns, parse_duration_ns, parse_time_ns

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_repository_config_is_valid_and_explicit() -> None:
    cfg = load_config(REPO / "config.yaml")
    assert cfg.warehouse.snapshot_levels == 20
    assert cfg.warehouse.flush_interval == 500_000_000
    assert cfg.ingest.depth == 50


def test_unknown_key_names_the_key(tmp_path: Path) -> None:
    p = write(tmp_path, "warehouse:\n  flush_intervall: 1s\n")
    with pytest.raises(ConfigError, match=r"warehouse\.flush_intervall: unknown key"):
        load_config(p)


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"wharehouse: unknown key"):
        load_config(write(tmp_path, "wharehouse: {}\n"))


def test_bad_value_names_the_key_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "warehouse:\n  snapshot_levels: -3\n"))
    assert "warehouse.snapshot_levels" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_bad_duration_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"warehouse\.flush_interval: 'soon' is not a duration"):
        load_config(write(tmp_path, "warehouse:\n  flush_interval: soon\n"))


def test_flush_interval_above_one_second_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at most 1 s of data"):
        load_config(write(tmp_path, "warehouse:\n  flush_interval: 5s\n"))


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 2\)"):
        load_config(write(tmp_path, "warehouse:\n  path: a: b\n"))


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "warehouse:\n  path: data/x.duckdb\n"))
    assert cfg.resolve(cfg.warehouse.path) == (tmp_path / "data" / "x.duckdb").resolve()
    assert cfg.resolve(Path("/abs/y")) == Path("/abs/y")


def test_sections_are_frozen() -> None:
    cfg = AppConfig()
    with pytest.raises(ValidationError):
        cfg.warehouse.snapshot_levels = 3  # type: ignore[misc]


def test_digest_changes_with_values_only() -> None:
    a = WarehouseConfig()
    assert a.digest() == WarehouseConfig().digest()
    assert a.digest() != WarehouseConfig(snapshot_levels=50).digest()


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).warehouse.snapshot_levels == 20


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("500ms", 500_000_000),
        ("1s", 10**9),
        ("2.5m", 150 * 10**9),
        ("1h", 3600 * 10**9),
        (3, 3 * 10**9),
        ("20", 20 * 10**9),
    ],
)
def test_durations_parse(text: str | int, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["-1s", "abc", "1 week", True])
def test_bad_durations_raise(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration_ns(text)  # type: ignore[arg-type]


def test_times_parse_iso_and_ns() -> None:
    assert parse_time_ns("2024-07-19T00:00:00Z") == 1_721_347_200 * 10**9
    assert parse_time_ns("2024-07-19T02:00:00+02:00") == 1_721_347_200 * 10**9
    assert parse_time_ns("1721347200000000000") == 1_721_347_200 * 10**9
    with pytest.raises(UserError, match="is not a time"):
        parse_time_ns("yesterday")


def test_formatting_is_readable() -> None:
    assert format_ns(1_721_347_200_123_000_000) == "2024-07-19T00:00:00.123Z"
    assert format_ns(None) == "-"
    assert format_duration(3_723 * 10**9) == "1h02m03s"
    assert format_duration(63 * 10**9) == "1m03s"
    assert format_duration(4_200_000_000) == "4.2s"
    assert format_duration(350_000_000) == "350ms"


def test_config_yaml_is_the_one_truth_of_every_default() -> None:
    """Every section's defaults are the repository config's values: no second set that can disagree."""
    shipped = load_config(REPO / "config.yaml").model_dump(mode="json")
    built_in = AppConfig().model_dump(mode="json")
    differ = {
        f"{section}.{key}": (value, built_in[section][key])
        for section, values in shipped.items()
        if isinstance(values, dict)
        for key, value in values.items()
        if value != built_in[section][key]
    }
    assert differ == {}


def test_the_learners_are_built_from_the_training_section() -> None:
    from dataclasses import asdict

    from core.config import TrainingConfig
    from models.learners import BoostParams

    t = TrainingConfig(num_leaves=5, subsample=0.5, inner_valid=0.3)
    got = asdict(BoostParams.of(t))
    assert got == {k: getattr(t, k) for k in got}  # every field, none invented


def test_ids_hash_only_what_changes_results() -> None:
    from warehouse.feature_tables import ids

    cfg = AppConfig()
    fs, ls = ids(cfg, cfg.instrument.venue)

    def with_(section: str, **values: object) -> tuple[str, str]:
        s = getattr(cfg, section).model_copy(update=values)
        return ids(cfg.model_copy(update={section: s}), cfg.instrument.venue)

    assert with_("features", chunk=parse_duration_ns("1h")) == (fs, ls)  # a memory bound
    assert with_("instrument", taker_fee=0.001) == (fs, ls)  # no label is built on it
    assert with_("instrument", maker_fee=0.0001)[1] != ls  # the dead zone is
    assert with_("features", grid=parse_duration_ns("2s")) != (fs, ls)


def test_a_fee_under_labels_names_where_it_moved(tmp_path: Path) -> None:
    p = write(tmp_path, "labels:\n  maker_fee: 0.0001\n")
    with pytest.raises(ConfigError, match=r"labels\.maker_fee: moved to instrument\.maker_fee"):
        load_config(p)


def test_the_archive_is_a_folder_or_an_s3_url_without_credentials(tmp_path: Path) -> None:
    from core.config import S3Url

    local = load_config(write(tmp_path, "warehouse:\n  retention:\n    archive: lake\n"))
    assert local.resolve(local.warehouse.retention.archive) == tmp_path / "lake"
    cfg = load_config(
        write(
            tmp_path,
            "warehouse:\n  retention:\n    archive: s3://my-bucket/l2/lake/\n"
            "    s3_endpoint: http://127.0.0.1:9000\n    s3_region: eu-west-1\n",
        )
    )
    rc = cfg.warehouse.retention
    assert rc.archive == S3Url(bucket="my-bucket", prefix="l2/lake") and cfg.resolve(rc.archive) is rc.archive
    assert rc.archive.key("raw_messages/part-00.parquet") == "my-bucket/l2/lake/raw_messages/part-00.parquet"
    assert cfg.model_dump(mode="json")["warehouse"]["retention"]["archive"] == "s3://my-bucket/l2/lake"
    dumped = {k: v for k, v in rc.model_dump(mode="json").items() if k in ("archive", "s3_endpoint", "s3_region")}
    assert type(rc).model_validate(dumped) == rc.model_copy(update={"raw": type(rc)().raw})  # dumped, read back
    refused = {
        "archive: s3://AKIDSECRETKEY:wJalrXsecret@my-bucket/lake": "archive: credentials in the URL",
        "archive: s3://My_Bucket/lake": "archive: the bucket must be",
        "archive: https://my-bucket/lake": "archive: expected a local folder or s3://bucket/prefix",
        "archive: s3://my-bucket/../lake": "archive: the prefix must not hold",
        "archive: s3://my-bucket/lake\n    s3_endpoint: http://key:wJalrXsecret@127.0.0.1:9000": (
            "s3_endpoint: credentials in the URL"
        ),
        "archive: s3://my-bucket/lake\n    s3_endpoint: 127.0.0.1:9000": "s3_endpoint: expected a http:// or https://",
        "archive: lake\n    s3_endpoint: http://127.0.0.1:9000": "s3_endpoint and s3_region apply to an s3:// archive",
    }
    for text, message in refused.items():
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path, f"warehouse:\n  retention:\n    {text}\n"))
        assert message in str(err.value) and "\n" not in str(err.value), text
        assert "wJalrXsecret" not in str(err.value) and "AKIDSECRETKEY" not in str(err.value)


def test_a_replay_chunk_is_a_positive_duration(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "live:\n  replay_chunk: 10m\n")).live.replay_chunk == 600 * 10**9
    for bad, message in (("0s", "replay_chunk must be a positive duration"), ("-5m", "is not a duration")):
        with pytest.raises(ConfigError, match=message):
            load_config(write(tmp_path, f"live:\n  replay_chunk: {bad}\n"))
