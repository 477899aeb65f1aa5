# The README's two commands: `make demo` (the main job) and `make test` (the whole suite).
VENV := .venv
BIN := $(VENV)/bin
CHECKED := shipsure tests bench scripts

.PHONY: setup demo test lint bench
setup:
	@bash scripts/setup.sh

demo: setup
	@$(BIN)/python scripts/demo.py

lint: setup
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/probe.py
	$(BIN)/python bench/scan.py
	$(BIN)/python bench/stacks_changed.py
	$(BIN)/python bench/client.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/restore.py
	$(BIN)/python bench/gc.py
