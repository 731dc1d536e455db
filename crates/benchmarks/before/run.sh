#!/bin/sh
# Builds and runs the scale bench against the engine before lifecycle v2 (commit 930f991),
# for the before/after table in BENCHMARKS.md. Run from the repository root:
#   crates/benchmarks/before/run.sh [SCALE_N] [extra bench args, e.g. --icount]
# It extracts 930f991 into /tmp/before (the repository's own worktrees are not touched), copies
# this commit's scale bench into it with the old engine adapter, and runs it with its own
# CARGO_TARGET_DIR. Run the current tree's bench right after it with the same SCALE_N.
set -eu
repo=$(git rev-parse --show-toplevel)
here="$repo/crates/benchmarks"
dir=${BEFORE_DIR:-/tmp/before}
rm -rf "$dir" && mkdir -p "$dir"
git -C "$repo" archive 930f991 | tar -x -C "$dir"
mkdir -p "$dir/crates/benchmarks/benches/scale"
cp "$here/benches/scale/main.rs" "$dir/crates/benchmarks/benches/scale/main.rs"
cp "$here/before/engine_930f991.rs" "$dir/crates/benchmarks/benches/scale/engine.rs"
cat >>"$dir/crates/benchmarks/Cargo.toml" <<'TOML'

[[bench]]
name = "scale"
path = "benches/scale/main.rs"
harness = false
TOML
n=${1:-100,500,4000}
[ $# -gt 0 ] && shift
cd "$dir"
SCALE_N="$n" CARGO_TARGET_DIR="${BEFORE_TARGET_DIR:-/tmp/target-before}" \
    cargo bench -p benchmarks --bench scale -- "$@"
