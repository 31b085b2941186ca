#!/usr/bin/env bash
# test.sh: runs the whole MusicFS test suite (unit tests and real FUSE mounts driven by real
# players and tools). Installs the Debian packages the tests need first.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/deps.sh test
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
