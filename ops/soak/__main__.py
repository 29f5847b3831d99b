from core.cli import run_main
from ops.soak.run import main

run_main(main)
