# Contributor tasks (see README "Contributing"). Every target uses the .venv that `make setup` creates.
PY := .venv/bin/python
FAST := not slow and not integration and not notebook

.PHONY: setup lint format test test-fast bench

setup:  ## create .venv with every extra, both adapters and the dev tools
	bash scripts/setup.sh

lint:  ## what CI checks before the tests: lint, formatting, types
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

format:  ## apply the safe lint fixes and the formatter
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

test:  ## the whole suite, as CI runs it
	HF_HUB_OFFLINE=1 $(PY) -m pytest

test-fast:  ## the inner loop (< 60 s): no slow, integration or notebook tests
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "$(FAST)"

bench:  ## the solver benchmark (minutes): benchmarks/RESULTS.md and benchmarks/results/solver.json
	$(PY) benchmarks/bench_solver.py
