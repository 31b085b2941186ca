#!/usr/bin/env bash
# bench/crash-stall.sh: the longest stall a reader sees while workers are killed under load.
# Runs the crash-isolation scenario (8 readers streaming big tracks with their page cache dropped
# after every pass, mpv playing, fetchd killed 10 times, then indexd and plugind) against release
# builds and prints each reader's longest single read() and how fast each worker was back.
# Target: longest stall under 0.5 s. Needs root and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bins
out=$(cargo test --release --quiet -p musicfs-tests --test crash killing_workers_under_load -- --nocapture 2>&1)
echo "$out" | grep -E "passes, longest read|workers were back|test result"
echo "$out" | grep -o 'longest read [0-9.]*[mµ]*s' | sed 's/longest read //' | python3 -c '
import sys
def secs(v):
    for unit, f in (("ms", 1e-3), ("µs", 1e-6), ("s", 1.0)):
        if v.endswith(unit): return float(v[:-len(unit)]) * f
vals = [secs(l.strip()) for l in sys.stdin if l.strip()]
print(f"longest stall seen by any reader: {max(vals)*1000:.0f} ms (target < 500 ms)")'
