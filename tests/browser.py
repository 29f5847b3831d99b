"""Headless Debian chromium for the browser tests (driven by Playwright, never downloaded).

The tests skip without chromium on PATH, except where ``REQUIRE_BROWSER=1`` (CI: .ci/run installs
it), where they must run.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# offline: without the background-networking flags chromium keeps calling Google's hosts
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]  # fmt: skip


def browser_or_skip() -> str:
    """chromium's path; the test is skipped without it (failed where REQUIRE_BROWSER=1)."""
    if CHROMIUM is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return CHROMIUM


def launch(playwright: Any, chromium: str) -> Any:
    return playwright.chromium.launch(executable_path=chromium, args=FLAGS)
