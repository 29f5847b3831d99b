"""prefect.yaml deploys real flows with parameters those flows accept."""

from __future__ import annotations

import importlib.util
import inspect

import pytest
import yaml
from prefect import Flow

from tests.conftest import REPO

DEPLOYMENTS = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


def load_entrypoint(entrypoint: str) -> object:
    path, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(path.replace("/", ".").removesuffix(".py"), REPO / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_points_at_a_flow_that_accepts_its_parameters(deployment: dict) -> None:
    flow = load_entrypoint(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    params = deployment.get("parameters", {})
    accepted = set(inspect.signature(flow.fn).parameters)
    assert set(params) <= accepted, f"unknown parameters {set(params) - accepted}"
    flow.validate_parameters(params)  # types check out
    assert (REPO / params.get("config", "config.yaml")).is_file()
    assert deployment.get("concurrency_limit") == 1


def test_deployment_names_are_unique() -> None:
    names = [d["name"] for d in DEPLOYMENTS]
    assert len(names) == len(set(names))


def test_schema_documentation_is_current() -> None:
    from core.config import WarehouseConfig
    from warehouse.schema import describe

    generated = (
        describe(WarehouseConfig().snapshot_levels)
        .replace("# Warehouse schema", "## Schema")
        .replace("\n## `", "\n### `")
    )
    assert generated.strip() in (REPO / "docs" / "warehouse.md").read_text()


def test_feature_catalog_documentation_is_current() -> None:
    from features.__main__ import catalog

    assert catalog("md").strip() in (REPO / "docs" / "features.md").read_text()
