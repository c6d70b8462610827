# The two commands of the README. Each sets up what it needs first (see scripts/setup.sh).
.PHONY: run test setup setup-test lint

run: setup
	.venv/bin/mlbench run

# Two test processes share the cores; the tests bounded by wall-clock deadlines then run alone (marker serial).
test: setup-test
	.venv/bin/python -m pytest -q -n 2 --dist worksteal -m "not serial"; a=$$?; \
	.venv/bin/python -m pytest -q -m serial; b=$$?; [ $$a = 0 ] && [ $$b = 0 ]

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

lint:
	.venv/bin/ruff check src tests benchmarks
