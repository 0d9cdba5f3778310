#!/usr/bin/env bash
# Everything EventBunker needs on a fresh Debian 12 or 13 machine, idempotently:
# system packages, PostgreSQL + TimescaleDB, a virtualenv with the Python
# dependencies and the Rust extension built in release mode.
#
#   scripts/setup.sh          server and tests (with Debian's chromium for the web tests)
#   EVENTBUNKER_SETUP_BROWSER=0 scripts/setup.sh   without chromium (server only)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }
# rustup's toolchain, when there is one, over Debian's (too old on Debian 12).
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed" || missing+=("$1"); }
command -v python3 >/dev/null || need python3
python3 -c 'import venv, ensurepip' 2>/dev/null || need python3-venv
command -v cc >/dev/null || need build-essential
command -v cargo >/dev/null || { need cargo; need rustc; }
# `make lint` (run by CI): clippy and rustfmt, from rustup when it manages the toolchain.
if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
else
    cargo clippy --version >/dev/null 2>&1 || need rust-clippy
    cargo fmt --version >/dev/null 2>&1 || need rustfmt
fi
command -v wrk >/dev/null || need wrk
command -v curl >/dev/null || need curl  # the quickstart's printed commands (tests/test_cli.py)
# Scale-out mode and its tests: a JetStream cluster, network namespaces.
command -v nats-server >/dev/null || need nats-server
command -v ip >/dev/null || need iproute2
if [ "${EVENTBUNKER_SETUP_BROWSER:-1}" = 1 ]; then
    command -v chromium >/dev/null || need chromium
    command -v npm >/dev/null || { need nodejs; need npm; }
fi
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

scripts/install-postgres.sh

if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi
# Reinstall the Python dependencies only when pyproject.toml changed.
stamp=.venv/.eventbunker-deps
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing Python dependencies"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q "maturin>=1.5,<2"
    .venv/bin/python - <<'PY' > .venv/requirements.txt
import tomllib
meta = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(meta["dependencies"] + meta["optional-dependencies"]["dev"]))
PY
    .venv/bin/pip install -q -r .venv/requirements.txt
    touch "$stamp"
fi

log "building the Rust extension (release)"
# Installs the package in editable mode (python/ is linked, the compiled
# module is copied next to it) plus the `eventbunker` command.
VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" .venv/bin/maturin develop --release -q >&2

if [ "${EVENTBUNKER_SETUP_BROWSER:-1}" = 1 ]; then
    # The browser SDKs tests/test_compat_browser.py loads, as locked.
    sdk_stamp=tests/sdk_web/node_modules/.package-lock.json
    if [ ! -f "$sdk_stamp" ] || [ tests/sdk_web/package-lock.json -nt "$sdk_stamp" ]; then
        log "installing the browser SDKs (npm ci in tests/sdk_web)"
        (cd tests/sdk_web && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
    fi
fi
