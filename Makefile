# EventBunker: `make run` starts the server, `make test` passes the tests.
# Both install what they need first (idempotent, see scripts/setup.sh).
.DEFAULT_GOAL := help
VENV := .venv/bin
PORT ?= 8000

.PHONY: help setup run test test-rust test-python lint format bench fuzz

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: ## install PostgreSQL+TimescaleDB, the virtualenv and the Rust extension
	scripts/setup.sh

run: ## run the server on its own local TimescaleDB and print a first curl (scripts/run.sh)
	scripts/run.sh --port $(PORT)

test: ## the whole test suite: Rust, then Python against real TimescaleDB (scripts/test.sh)
	scripts/test.sh

test-rust: ## cargo tests of the pure Rust hot path
	cargo test

test-python: ## pytest: real cluster, real server over HTTP on loopback
	$(VENV)/python -m pytest -q

lint: ## ruff, mypy --strict, cargo fmt --check, clippy
	$(VENV)/ruff check python tests benches
	$(VENV)/ruff format --check python tests benches
	$(VENV)/mypy
	$(VENV)/python -m mypy.stubtest eventbunker._native
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --features python -- -D warnings

format: ## apply ruff and cargo formatting
	$(VENV)/ruff format python tests benches
	$(VENV)/ruff check --fix python tests benches
	cargo fmt

fuzz: ## fuzz the Rust parsers, FUZZ_SECONDS (60) each (cargo-fuzz, nightly; corpora in fuzz/corpus)
	scripts/fuzz.sh

bench: setup ## load benchmark: our ingest vs the bare Litestar ceiling
	$(VENV)/python benches/ingest_load.py
