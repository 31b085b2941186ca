#!/usr/bin/env bash
# test.sh: runs the whole MusicFS test suite (unit tests and real FUSE mounts driven by real
# players and tools). Installs the Debian packages the tests need first.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/deps.sh test
# The S3-compatible server the tests start on 127.0.0.1 (it checks SigV4 signatures).
command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --locked --features binary --quiet
# A clean build takes about 3 GB under target/. When the disk fills, the linker dies with a
# "Bus error", which says nothing about disk, so say it first.
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target"
free_kb=$(df -Pk "$target" | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((3 * 1024 * 1024)) ]; then
  echo "test.sh: warning: only $((free_kb / 1024)) MB free for $target; a clean build needs about 3 GB" >&2
fi
# A clean build gains nothing from incremental state; it only costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast "$@"
