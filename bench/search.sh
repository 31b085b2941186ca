#!/usr/bin/env bash
# bench/search.sh [TRACKS]: search benchmark on a synthetic library (default 100,000 tracks).
# Side by side in one run: MusicFS indexing throughput and index size, and the latency (p50/p99)
# of ten representative queries through the mount (a directory listing of /.search/<query>, as
# `ls` does), through `musicfsctl search`, and MPD's `search` on the same library (over its
# socket, like `mpc search`, without process start-up on either side).
# Prints the report and writes bench/search-report.txt. Needs root, mpd and mpc.
# BENCH_SKIP_BUILD=1 uses the release binaries already built (to compare builds side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
TRACKS=${1:-100000}
ROOT=${BENCH_DIR:-target/bench}
CORPUS=${MUSICFS_CORPUS:-../shared/corpus}
mkdir -p "$ROOT"; ROOT=$(cd "$ROOT" && pwd)
LIB=$ROOT/lib-$TRACKS
need=(); for p in fuse3 ffmpeg mpd mpc; do dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "ok installed" || need+=($p); done
[ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release --quiet --bins
BIN=$(pwd)/target/release
if [ ! -f "$LIB/MANIFEST.tsv" ]; then
  rm -rf "$LIB.partial"; bash "$CORPUS/make-synthetic.sh" "$TRACKS" "$LIB.partial" >/dev/null; mv "$LIB.partial" "$LIB"
fi
STATE=$ROOT/search-state; MNT=$ROOT/search-mnt; MPDDIR=$ROOT/search-mpd
cleanup() {
  [ -n "${SUP:-}" ] && kill "$SUP" 2>/dev/null && wait "$SUP" 2>/dev/null || true
  [ -n "${MPD_PID:-}" ] && kill "$MPD_PID" 2>/dev/null || true
  mountpoint -q "$MNT" && fusermount3 -uz "$MNT" || true
}
trap cleanup EXIT
rm -rf "$STATE" "$MPDDIR"; mkdir -p "$MNT" "$MPDDIR/playlists"

"$BIN/musicfsctl" mount --state-dir "$STATE" "$LIB" "$MNT" >/dev/null 2>"$ROOT/search-musicfs.log" & SUP=$!
until mountpoint -q "$MNT"; do sleep 0.05; done
"$BIN/musicfsctl" --state-dir "$STATE" status --wait-idle >/dev/null
# Every feed round logs what it sent and how long it took; wait until the whole catalog is in.
sum() { grep "index caught up" "$ROOT/search-musicfs.log" | sed "s/.*$1=\([0-9]*\).*/\1/" | awk '{s+=$1} END {print s+0}'; }
until [ "$(sum changes)" -ge "$TRACKS" ]; do sleep 0.1; done
INDEXED=$(sum changes); INDEX_MS=$(sum ms)
INDEX_BYTES=$(du -sb "$STATE/index" | cut -f1)

cat > "$MPDDIR/mpd.conf" <<CONF
music_directory "$LIB"
db_file "$MPDDIR/db"
state_file "$MPDDIR/state"
playlist_directory "$MPDDIR/playlists"
bind_to_address "$MPDDIR/socket"
audio_output {
  type "null"
  name "null"
}
CONF
mpd --no-daemon "$MPDDIR/mpd.conf" 2>"$MPDDIR/log" & MPD_PID=$!
for _ in $(seq 200); do mpc -h "$MPDDIR/socket" status >/dev/null 2>&1 && break; sleep 0.05; done
mpc -q -h "$MPDDIR/socket" update --wait

python3 - "$MNT" "$MPDDIR/socket" "$BIN/musicfsctl" "$STATE" "$INDEXED" "$INDEX_MS" "$INDEX_BYTES" <<'PY' | tee bench/search-report.txt
import os, socket, subprocess, sys, time, statistics
mnt, mpd_sock, ctl, state, indexed, index_ms, index_bytes = sys.argv[1:]
indexed, index_ms, index_bytes = int(indexed), int(index_ms), int(index_bytes)
# (MusicFS query, MPD query) pairs asking the same thing.
queries = [
    ("artist:ada", 'search artist "ada"'),
    ("album:night", 'search album "night"'),
    ("title:love", 'search title "love"'),
    ("genre:rock", 'search genre "rock"'),
    ("blue*", 'search any "blue"'),
    ("year:1990..1999", 'search "(date =~ \\"^199\\")"'),
    ("bjork", 'search any "bjork"'),
    ('"the night"', 'search any "the night"'),
    ("mor*", 'search any "mor"'),
    ("artist:alvarez title:song", 'search artist "alvarez" title "song"'),
]
RUNS = 30
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000
def ls(q, i):
    # A distinct (equivalent) query each run, so neither the kernel's nor mountd's one-second
    # result cache answers: `-zzzN` excludes nothing.
    t = time.perf_counter(); n = len(os.listdir(os.path.join(mnt, ".search", f"{q} -zzz{i}"))); return time.perf_counter() - t, n
def ctl_search(q, i):
    t = time.perf_counter()
    out = subprocess.run([ctl, "--state-dir", state, "search", "--json", f"{q} -zzz{i}"], capture_output=True, check=True)
    return time.perf_counter() - t, out.stdout.count(b'"rank"')
class Mpd:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX); self.s.connect(path); self.f = self.s.makefile("rwb"); self.f.readline()
    def ask(self, cmd):
        t = time.perf_counter(); self.f.write(cmd.encode() + b"\n"); self.f.flush(); n = 0
        while True:
            line = self.f.readline()
            if line.startswith(b"OK") or line.startswith(b"ACK"): break
            if line.startswith(b"file:"): n += 1
        return time.perf_counter() - t, n
mpd = Mpd(mpd_sock)
rows = []; all_ls = []; all_mpd = []; all_ctl = []
for q, mq in queries:
    ls_t, ctl_t, mpd_t = [], [], []
    for i in range(RUNS):
        d, n_ls = ls(q, i); ls_t.append(d)
        d, n_mpd = mpd.ask(mq); mpd_t.append(d)
    for i in range(5):
        d, _ = ctl_search(q, 1000 + i); ctl_t.append(d)
    all_ls += ls_t; all_mpd += mpd_t; all_ctl += ctl_t
    rows.append((q, n_ls, pct(ls_t, 50), pct(ls_t, 99), pct(ctl_t, 50), n_mpd, pct(mpd_t, 50), pct(mpd_t, 99)))
print(f"MusicFS search benchmark — {time.strftime('%Y-%m-%d')} — {os.cpu_count()} cores")
print(f"indexing: {indexed} tracks in {index_ms} ms = {indexed / max(index_ms, 1) * 1000:.0f} tracks/s "
      f"(catalog feed + tantivy commits, through the socket); index {index_bytes / max(indexed, 1):.0f} bytes/track")
print(f"{'query':28} {'hits':>5} {'ls p50':>8} {'ls p99':>8} {'ctl p50':>8} | {'mpd hits':>8} {'mpd p50':>8} {'mpd p99':>8}  (ms)")
for q, n, a, b, c, nm, d, e in rows:
    print(f"{q:28} {n:5} {a:8.2f} {b:8.2f} {c:8.1f} | {nm:8} {d:8.2f} {e:8.2f}")
p50_ls, p99_ls, p50_mpd = pct(all_ls, 50), pct(all_ls, 99), pct(all_mpd, 50)
print(f"all queries: ls p50 {p50_ls:.2f} ms, p99 {pct(all_ls, 99):.2f} ms (targets < 5 and < 20); "
      f"musicfsctl search p50 {pct(all_ctl, 50):.1f} ms (includes process start); "
      f"MPD p50 {p50_mpd:.2f} ms, p99 {pct(all_mpd, 99):.2f} ms; MPD/ls at p50: {p50_mpd / p50_ls:.1f}x (target >= 10)")
PY
