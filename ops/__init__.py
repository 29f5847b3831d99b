"""Operating the desk's box: every long-running service under one supervisor (ops/box.py)."""
