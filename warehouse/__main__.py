from core.cli import run_main
from warehouse.cli import main

run_main(main)
