"""``python -m ops up | down | status``: the box (ops/box.py)."""

from core.cli import run_main
from ops.box import main

if __name__ == "__main__":
    run_main(main)
