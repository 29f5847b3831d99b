"""Which tests' commands reach lines that no other test reaches (``make overlap``).

The commands a test starts in subprocesses are measured by coverage (``patch = ["subprocess"]``),
which costs them a quarter to two fifths of their CPU. A test marked ``untraced`` runs them
unmeasured (tests/conftest.py): right for a test whose commands reach nothing the measured tests do
not reach, wrong for one whose commands are the only way to a line. This tells them apart.

As a pytest plugin (``-p tests.coverage_overlap``) it measures every test's commands, the marked
ones too, each test's into a folder of its own (``<dir>/<test>/``), and notes each test's
subprocess CPU. Then ``python -m tests.coverage_overlap <dir>`` reads them beside the in-process
data (``<dir>/.coverage``, the run's ``COVERAGE_FILE``) and prints, heaviest first:

- each marked test whose commands reach a line nothing measured reaches: take its mark off (or
  test that line elsewhere); the exit status is 1 when there is one;
- each unmarked test whose commands reach no such line, and how much CPU they took: candidates.

Marks are weighed together, heaviest test first: two tests that are each other's only other way to
a line are not both let go.
"""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

_CONFIG = "COVERAGE_PROCESS_CONFIG"
_ORIGINAL: dict[str, str] = {}  # coverage's variable as pytest-cov set it, read before any test's fixtures


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _CONFIG in os.environ:
        _ORIGINAL.setdefault(_CONFIG, os.environ[_CONFIG])


def _folder(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[:200]


@pytest.fixture(autouse=True)
def _measured_apart(request: pytest.FixtureRequest, _untraced_mark: None) -> Iterator[None]:
    """Runs after the ``untraced`` mark took coverage's variables away, and puts them back: with this
    test's commands writing their data under a folder of the test's own."""
    if _CONFIG not in _ORIGINAL:
        raise pytest.UsageError("tests.coverage_overlap needs pytest --cov (coverage's subprocess variables)")
    original = _ORIGINAL[_CONFIG]
    data = Path(os.environ.get("COVERAGE_FILE", ".coverage")).resolve().parent / _folder(request.node.nodeid)
    data.mkdir(parents=True, exist_ok=True)
    config = json.loads(base64.b64decode(original))
    config["data_file"] = str(data / ".coverage")
    os.environ[_CONFIG] = base64.b64encode(json.dumps(config).encode()).decode()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        yield
    finally:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        marked = request.node.get_closest_marker("untraced") is not None
        (data / "test.json").write_text(json.dumps({"id": request.node.nodeid, "cpu": cpu, "untraced": marked}))
        os.environ[_CONFIG] = original


def _lines(path: Path) -> set[tuple[str, int]]:
    from coverage import CoverageData

    data = CoverageData(basename=str(path))
    data.read()
    return {(f, n) for f in data.measured_files() for n in data.lines(f) or ()}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0], ".coverage").exists():
        print("usage: python -m tests.coverage_overlap <dir>  (the folder of a run with -p tests.coverage_overlap)")
        return 2
    root = Path(argv[0])
    measured_in_process = _lines(root / ".coverage")
    tests: dict[str, tuple[float, bool, set[tuple[str, int]]]] = {}
    for info in root.glob("*/test.json"):
        t = json.loads(info.read_text())
        parts = list(info.parent.glob(".coverage*"))
        if not parts:  # it started no command, or started them unmeasured itself (tests.conftest.untraced)
            continue
        reached: set[tuple[str, int]] = set()
        for part in parts:
            reached |= _lines(part)
        tests[t["id"]] = (float(t["cpu"]), bool(t["untraced"]), reached - measured_in_process)
    ways = Counter(line for _, _, reached in tests.values() for line in reached)  # tests reaching each line
    let_go: list[tuple[str, float]] = []
    wrong: list[tuple[str, list[tuple[str, int]]]] = []
    for nodeid, (cpu, marked, reached) in sorted(tests.items(), key=lambda kv: (not kv[1][1], -kv[1][0])):
        only = sorted(line for line in reached if ways[line] == 1)  # no measured test reaches them
        if marked and only:
            wrong.append((nodeid, only))
        elif not only:
            ways.subtract(reached)  # its commands go unmeasured: the lines it reached lose a way
            if not marked:
                let_go.append((nodeid, cpu))
    for nodeid, only in wrong:
        shown = ", ".join(f"{os.path.relpath(f)}:{n}" for f, n in only[:5])
        print(f"MARKED, BUT THE ONLY WAY TO {len(only)} LINE(S): {nodeid}: {shown}")
    for nodeid, cpu in let_go:
        print(f"could be untraced ({cpu:.1f} CPU-s of commands): {nodeid}")
    marked_cpu = sum(cpu for cpu, marked, _ in tests.values() if marked)
    print(f"{len(tests)} tests started commands; {sum(m for _, m, _ in tests.values())} marked untraced "
          f"({marked_cpu:.0f} CPU-s of commands, measured here); {len(wrong)} wrongly; {len(let_go)} more could be")  # fmt: skip
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
