"""The monitoring dashboard (``python -m live.dashboard``, ``make dashboard``): see app.py."""
