"""The ``untraced`` mark (tests/conftest.py) and the tool that says which tests may carry it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import coverage_overlap
from tests.conftest import COVERAGE_VARS

MEASURED = "import sys; print('coverage' in sys.modules)"  # coverage starts before the command's code


@pytest.mark.untraced
def test_a_marked_test_starts_its_commands_unmeasured(request: pytest.FixtureRequest) -> None:
    if request.config.pluginmanager.has_plugin("tests.coverage_overlap"):
        pytest.skip("make overlap measures the marked tests too")
    assert not any(name in os.environ for name in COVERAGE_VARS)
    p = subprocess.run([sys.executable, "-c", MEASURED], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "False"


def test_an_unmarked_test_starts_its_commands_measured() -> None:
    if not any(name in os.environ for name in COVERAGE_VARS):
        pytest.skip("not run under coverage (pytest --cov)")
    p = subprocess.run([sys.executable, "-c", MEASURED], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "True"


def _run(root: Path, test: str, lines: dict[str, list[int]], cpu: float, untraced: bool) -> None:
    from coverage import CoverageData

    folder = root / coverage_overlap._folder(test)
    folder.mkdir(parents=True)
    if lines:
        data = CoverageData(basename=str(folder / ".coverage.host.1"))
        data.add_lines({os.path.abspath(f): n for f, n in lines.items()})
        data.write()
    (folder / "test.json").write_text(json.dumps({"id": test, "cpu": cpu, "untraced": untraced}))


def test_the_overlap_report_keeps_one_way_to_every_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from coverage import CoverageData

    in_process = CoverageData(basename=str(tmp_path / ".coverage"))
    in_process.add_lines({os.path.abspath("a.py"): [1, 2]})
    in_process.write()
    _run(tmp_path, "t::in_process_too", {"a.py": [1, 2]}, 9.0, untraced=False)  # nothing of its own
    _run(tmp_path, "t::heavy", {"a.py": [1, 3]}, 8.0, untraced=False)  # line 3: also t::light
    _run(tmp_path, "t::light", {"a.py": [3]}, 1.0, untraced=False)
    _run(tmp_path, "t::alone", {"a.py": [4]}, 5.0, untraced=False)  # the only way to line 4
    _run(tmp_path, "t::no_commands", {}, 0.0, untraced=False)
    assert coverage_overlap.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # the heavier of the two ways to line 3 goes; the lighter stays measured; line 4's only way stays
    assert "could be untraced (9.0 CPU-s of commands): t::in_process_too" in out
    assert "could be untraced (8.0 CPU-s of commands): t::heavy" in out
    assert "t::light" not in out and "t::alone" not in out and "t::no_commands" not in out

    _run(tmp_path, "t::marked_alone", {"a.py": [5]}, 2.0, untraced=True)
    _run(tmp_path, "t::marked_shared", {"a.py": [1, 3]}, 2.0, untraced=True)
    assert coverage_overlap.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "MARKED, BUT THE ONLY WAY TO 1 LINE(S): t::marked_alone: a.py:5" in out
    assert "t::marked_shared" not in out  # in-process and t::light reach its lines
    # the marked test is weighed first: after it, t::heavy is still one of two ways to line 3
    assert "could be untraced (8.0 CPU-s of commands): t::heavy" in out and "t::light" not in out
    assert coverage_overlap.main([str(tmp_path / "nowhere")]) == 2
