"""Shared command-line plumbing: --config, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from core.config import AppConfig, load_config
from core.errors import UserError

log = logging.getLogger(__name__)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default="config.yaml",
        metavar="PATH",
        help="configuration file (default: config.yaml)",
    )


def config_from(args: argparse.Namespace) -> AppConfig:
    return load_config(args.config)


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Run a CLI entry point: user errors print one line to stderr and exit non-zero."""
    try:
        code = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        code = 0
    sys.exit(code)


PROJECT_LOGGERS = ("__main__", "core", "market", "features", "warehouse", "models", "execution", "sim", "pipelines",
                   "standin", "flows", "live", "ops", "bench")  # fmt: skip


def setup_logging(verbose: bool = False) -> None:
    """Plain, timestamped log lines on stderr."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("asyncio", "aiohttp.access", "httpx", "ccxt", "numba", "distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The project's own loggers keep their level when Prefect configures logging for a flow (its root
    # logger is at WARNING, and its console handler passes everything): a flow command's INFO lines,
    # "recording clock of ..." and the like, reach the user too.
    for ours in PROJECT_LOGGERS:
        logging.getLogger(ours).setLevel(logging.DEBUG if verbose else logging.INFO)
