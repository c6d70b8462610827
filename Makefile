# The two commands of the README. Each sets up what it needs first (see scripts/setup.sh).
.PHONY: run test setup setup-test lint

run: setup
	.venv/bin/mlbench run

test: setup-test
	.venv/bin/python -m pytest -q

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

lint:
	.venv/bin/ruff check src tests benchmarks
