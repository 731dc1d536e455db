#!/usr/bin/env bash
# Fuzz smoke test: runs every fuzz target for N seconds (default 30; first argument overrides)
# starting from its committed seed corpus. Fails if any target crashes.
#
# New inputs libFuzzer finds go to a scratch directory (the first corpus directory is the one
# libFuzzer writes to; the committed corpus is only read), so a smoke run never grows
# corpus/. Crash inputs land in artifacts/<target>/ (git-ignored): minimize one with
# `cargo fuzz tmin <target> <artifact>` and commit it under corpus/<target>/ as a regression
# seed; `cargo test -p token-core --test fuzz_corpus` then replays it forever.
set -euo pipefail

seconds="${1:-30}"
targets=(token_response error_response jwt_exp quota_header authorization_redirect)

cd "$(dirname "$0")"

# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer); RUSTC_BOOTSTRAP lets stable accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for target in "${targets[@]}"; do
    cargo fuzz build "$target"
done

failed=()
for target in "${targets[@]}"; do
    echo "=== fuzzing $target for ${seconds}s"
    mkdir -p "$scratch/$target"
    if ! cargo fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz smoke FAILED: ${failed[*]} (crash inputs in $(pwd)/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke passed: ${targets[*]}, ${seconds}s each"
