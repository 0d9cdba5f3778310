#!/usr/bin/env bash
# Fuzz every target of fuzz/ for a bounded time (FUZZ_SECONDS each, default
# 60) with cargo-fuzz (libFuzzer, nightly), growing the corpora kept in
# fuzz/corpus/; prints executions per target and stops at the first crash
# (its input is left in fuzz/artifacts/<target>/: turn it into a unit test).
#
#   scripts/fuzz.sh [TARGET...]        (make fuzz)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
command -v rustup >/dev/null || { echo "fuzz: needs rustup (a nightly toolchain)" >&2; exit 1; }
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
cargo +nightly fuzz build -O
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    if ! cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz: $target crashed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')"
    echo "fuzz: $target: $runs executions in ${seconds}s, 0 crashes"
    rm -f "$log"
done
