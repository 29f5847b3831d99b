# Two commands for a fresh machine: `make demo` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PREFECT_HOME ?= $(CURDIR)/.prefect
# Python writes the bytecode it compiles (git-ignored __pycache__), even where the shell says not to:
# without it every command the tests and the box start compiled the project's modules again (0.2 to
# 0.5 CPU-s a command) and each pytest process rewrote every test module (collecting the suite: 11.5
# CPU-s against 6.5). Python checks each file against its source before using it.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: help venv demo test lint typecheck warm unit interpreted suite overlap bench lock clean standin ui serve dashboard diagnose prefect-ui up down status soak

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

# uv (pinned in the lock, bootstrapped by pip) installs the lock: about 35 s on a fresh machine where
# pip takes 80; a mirror is UV_DEFAULT_INDEX=<url> (uv does not read pip's configuration). No
# --compile-bytecode: it compiled every module of every package (40 CPU-s, 54 s on the 2-core
# machine, against 2 CPU-s and 2.5 s without); Python compiles and keeps (above) only what is imported
$(STAMP): requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps "$$(grep '^uv==' requirements.lock)"
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -r requirements.lock
	$(PY) -m pip check
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv with the locked versions

demo: $(STAMP)  ## run the main job end to end on the built-in simulator, offline
	$(PY) -m flows.demo

lint: $(STAMP)  ## ruff lint + format check, import contracts
	$(BESIDE) $(VENV)/bin/ruff check .
	$(BESIDE) $(VENV)/bin/ruff format --check .
	$(BESIDE) $(VENV)/bin/lint-imports

typecheck: $(STAMP)  ## mypy --strict
	$(BESIDE) $(VENV)/bin/mypy .

# The numba kernels compile on first use into their on-disk cache (.cache/numba/<hash of their
# sources>, core/jit.py): compiled once here,
# by the kernel tests in one process, beside ruff and mypy, the test workers and every command they
# start load them instead of each compiling them again (about 2.5 minutes on a fresh clone).
# the files that hold kernel tests (the marker, by name): pytest then imports only those, not every
# test module of the suite (4.4 CPU-s to collect, 10.3 for all of them)
KERNEL_TESTS = $(shell grep -l 'pytest.mark.kernels' tests/test_*.py)
warm: $(STAMP)  ## run the numba kernel tests compiled, filling the kernels' on-disk cache
	$(VENV)/bin/pytest -q -m kernels -n 0 -p no:cacheprovider $(KERNEL_TESTS)

# three workers on the two cores: about a third of a two-worker run waits (wall-clock paced feeds,
# subprocesses starting); tests marked `first` start at once (tests/conftest.py). WORKERS=N changes
# it; PYTEST_ARGS="-n 0" runs them one at a time
WORKERS ?= 3
unit: $(STAMP)  ## the test suite with line coverage (numba kernels re-run interpreted so they are traced)
	$(VENV)/bin/coverage erase
	@$(MAKE) --no-print-directory interpreted
	@$(MAKE) --no-print-directory suite
	$(VENV)/bin/coverage report

# the kernel tests again with NUMBA_DISABLE_JIT=1, so coverage sees the kernels' lines (appends)
interpreted: $(STAMP)
	NUMBA_DISABLE_JIT=1 $(BESIDE) $(VENV)/bin/pytest -q -m kernels -n 0 -p no:cacheprovider --cov --cov-append --cov-report= --cov-fail-under=0 $(KERNEL_TESTS)

suite: $(STAMP)
	$(VENV)/bin/pytest -n $(WORKERS) --dist worksteal --durations=25 $(if $(WARMED),-m "not kernels") --cov --cov-append --cov-report= --cov-fail-under=0 $(PYTEST_ARGS)

# The first phase runs four independent jobs at once (ruff and the import contracts, mypy, the
# kernels compiled into their cache, the kernels interpreted under coverage); then the suite. The
# compiled kernels are the longest of the four, one process (about 110 CPU-s, most of it numba
# compiling), so the other three run beside it at a lower priority (BESIDE): it keeps a core and
# they share the other, instead of all four sharing both and the compile ending alone.
test: $(STAMP)  ## everything CI runs: ruff, import contracts, mypy and the kernel tests (compiled and interpreted) side by side, then pytest + coverage
	$(VENV)/bin/coverage erase
	@$(MAKE) --no-print-directory -j4 --output-sync=target lint typecheck warm interpreted BESIDE="nice -n 10"
	@$(MAKE) --no-print-directory suite WARMED=1
	$(VENV)/bin/coverage report

# which tests' commands reach lines no other test reaches: whether each test marked `untraced` may
# keep its mark, and which others could take it (tests/coverage_overlap.py; a whole suite run)
overlap: $(STAMP)  ## which tests may run their commands unmeasured by coverage (the untraced mark)
	rm -rf .overlap && mkdir .overlap
	COVERAGE_FILE=.overlap/.coverage $(VENV)/bin/pytest -q -p tests.coverage_overlap -n $(WORKERS) -m "not kernels" --cov --cov-report= --cov-fail-under=0
	$(PY) -m tests.coverage_overlap .overlap

# hftbacktest for bench/bench_hftbacktest.py only: its own folder (git-ignored), never .venv
HBT := bench/.cache/hbt
HBT_STAMP := $(HBT)/.installed
$(HBT_STAMP): bench/requirements-hftbacktest.txt | $(STAMP)
	rm -rf $(HBT)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --target $(HBT) -r bench/requirements-hftbacktest.txt
	@touch $(HBT_STAMP)

bench: $(STAMP) $(HBT_STAMP)  ## benchmarks: prints a table, writes bench/results.json
	$(PY) -m bench

dashboard: $(STAMP)  ## the monitoring dashboard on the paper runner's journal: http://127.0.0.1:8050
	$(PY) -m live.dashboard

diagnose: $(STAMP)  ## check warehouse, model, exchange, clock, disk and journal; non-zero exit when wrong
	$(PY) -m live.diagnose

prefect-ui: $(STAMP)  ## the Prefect server and UI on the project's flow runs: http://127.0.0.1:4200 (make serve starts it too)
	$(PY) -m flows.prefect_server

ui: $(STAMP)  ## the MLflow UI on the project's store, one light process: http://127.0.0.1:5000 (UI_ARGS="--port 5001")
	$(PY) -m models ui $(UI_ARGS)

serve: $(STAMP)  ## run the prefect.yaml deployments on their schedules (finds or starts the Prefect server on :4200)
	$(PY) -m flows.serve

# The box: every long-running service under supervisord (ops/box.py). OFFLINE=1 adds the Bybit
# stand-in and points the feeds at it; BOX_ARGS="--config my.yaml" for another config.
up: $(STAMP)  ## start every long-running service (Prefect server + schedules, ingest, paper runner, dashboard, MLflow UI)
	$(PY) -m ops up $(if $(OFFLINE),--offline) $(BOX_ARGS)

down: $(STAMP)  ## stop every service gracefully, then the supervisor
	$(PY) -m ops down

status: $(STAMP)  ## one table: each service's state, pid, uptime, restarts and health
	$(PY) -m ops status

# The chaos soak (ops/soak): the whole box offline for SOAK_HOURS simulated hours, the market SPEED
# times faster, under every stand-in fault and SIGKILLs at seeded times; reports/soak/summary.json
SOAK_HOURS ?= 24
SPEED ?= 5
SEED ?= 1
soak: $(STAMP)  ## chaos soak: the box for an accelerated day under seeded faults, then its checks (SOAK_HOURS, SPEED, SEED)
	$(PY) -m ops.soak --hours $(SOAK_HOURS) --speed $(SPEED) --seed $(SEED) $(SOAK_ARGS)

standin: $(STAMP)  ## the Bybit v5 stand-in server on 127.0.0.1:8765, fed by the simulator
	$(PY) -m standin --port 8765

lock:  ## re-resolve requirements.lock from pyproject.toml (needs the package registry)
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --upgrade pip
	.lockenv/bin/python -c "import tomllib;d=tomllib.load(open('pyproject.toml','rb'));print('\n'.join(d['project']['dependencies']+d['project']['optional-dependencies']['dev']))" > .lockenv/in.txt
	.lockenv/bin/pip install --quiet -r .lockenv/in.txt
	.lockenv/bin/pip check
	{ echo "# Exact versions, resolved from pyproject.toml on Python 3.11 (make lock regenerates this file)."; .lockenv/bin/pip freeze; } > requirements.lock
	rm -rf .lockenv

clean:  ## remove generated data (warehouse file, mlruns, reports); keeps .venv
	rm -rf warehouse/*.duckdb warehouse/*.wal warehouse/spool mlruns/* reports .prefect .pytest_cache .coverage*
