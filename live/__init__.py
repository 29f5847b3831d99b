"""The live runner (issue 6): `python -m live.runner --paper`."""
