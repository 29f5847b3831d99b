from core.cli import run_main
from live.dashboard.app import main

run_main(main)
