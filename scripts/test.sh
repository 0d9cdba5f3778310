#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what it needs (idempotent),
# then the Rust tests and the Python tests (a real TimescaleDB cluster, the
# real server over HTTP on loopback, a real headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
cargo test
.venv/bin/python -m pytest -q "$@"
