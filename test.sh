#!/usr/bin/env bash
# test.sh: runs the whole MusicFS test suite (unit tests and real FUSE mounts driven by real
# players and tools). Installs the Debian packages the tests need first.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/deps.sh test
# The S3-compatible server the tests start on 127.0.0.1 (it checks SigV4 signatures).
command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --locked --features binary --quiet
# A clean build gains nothing from incremental state; it only costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
