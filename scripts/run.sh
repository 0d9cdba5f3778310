#!/usr/bin/env bash
# Install what is needed (idempotent), then run the server on its own local
# TimescaleDB (under ./.eventbunker) and print a curl that sends a first event.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
exec .venv/bin/eventbunker serve --quickstart "$@"
