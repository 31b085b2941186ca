#!/usr/bin/env bash
# bench/run.sh [TRACKS]: the walking-skeleton benchmark. Builds release binaries, makes a
# synthetic library of TRACKS (default 10000) tagged tracks plus 20 five-minute FLACs, and
# measures, side by side in one run:
#   - first scan (tracks/s) vs MPD's `mpc update` on the same library
#   - remount-to-ready time (mount start until the root lists entries)
#   - warm `find` over the mount vs native `find` on the origin
#   - sequential read of a big file through the mount (first, second) vs native read
#   - RSS of every worker
# Prints the report and writes it to bench/report.txt. Needs root (mounts, drop_caches) and
# Debian's ffmpeg, mpd and mpc (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
TRACKS=${1:-10000}
ROOT=${BENCH_DIR:-target/bench}
CORPUS=${MUSICFS_CORPUS:-../shared/corpus}
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
LIB=$ROOT/lib-$TRACKS
REPORT=bench/report.txt

need=(); for p in fuse3 ffmpeg mpd mpc bc; do dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "ok installed" || need+=($p); done
[ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
cargo build --release --quiet --bins
BIN=$(pwd)/target/release

if [ ! -f "$LIB/MANIFEST.tsv" ]; then
  rm -rf "$LIB.partial"
  bash "$CORPUS/make-synthetic.sh" "$TRACKS" "$LIB.partial" >/dev/null
  mkdir -p "$LIB.partial/big"
  for i in $(seq -w 1 20); do
    ffmpeg -nostdin -loglevel error -y -f lavfi -i "anoisesrc=d=300:c=pink:a=0.2:r=44100" -ac 2 \
      -metadata artist="Bench Noise" -metadata album="Long Pieces" -metadata title="Piece $i" \
      -metadata track="$i" -metadata date=2024 "$LIB.partial/big/piece-$i.flac"
  done
  mv "$LIB.partial" "$LIB"
fi
NTRACKS=$(find "$LIB" -type f \( -name '*.mp3' -o -name '*.flac' -o -name '*.ogg' -o -name '*.m4a' -o -name '*.opus' \) | wc -l)

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l | xargs printf '%.3f'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

STATE=$ROOT/state; MNT=$ROOT/mnt
cleanup() {
  [ -n "${SUP:-}" ] && kill "$SUP" 2>/dev/null && wait "$SUP" 2>/dev/null || true
  [ -n "${MPD_PID:-}" ] && kill "$MPD_PID" 2>/dev/null || true
  mountpoint -q "$MNT" && fusermount3 -uz "$MNT" || true
}
trap cleanup EXIT
rm -rf "$STATE"; mkdir -p "$MNT"

start_mount() {
  "$BIN/musicfsctl" mount --state-dir "$STATE" "$LIB" "$MNT" >/dev/null 2>"$ROOT/musicfs.log" &
  SUP=$!
}
stop_mount() { kill "$SUP"; wait "$SUP" || true; SUP=; }
wait_listed() { until [ -n "$(ls "$MNT" 2>/dev/null | head -1)" ]; do sleep 0.002; done; }

# --- MPD first (so MusicFS's page-cache advantage, if any, is MPD's too: both run warm) -----
MPDDIR=$ROOT/mpd; rm -rf "$MPDDIR"; mkdir -p "$MPDDIR/playlists"
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
find "$LIB" -type f -exec cat {} + >/dev/null   # warm the page cache for both scanners
mpd --no-daemon "$MPDDIR/mpd.conf" 2>"$MPDDIR/log" & MPD_PID=$!
for _ in $(seq 200); do mpc -h "$MPDDIR/socket" status >/dev/null 2>&1 && break; sleep 0.05; done
mpc -h "$MPDDIR/socket" status >/dev/null || { cat "$MPDDIR/log" >&2; exit 1; }
t0=$(now); mpc -q -h "$MPDDIR/socket" update --wait; t1=$(now)
MPD_SCAN=$(secs "$t0" "$t1")
kill "$MPD_PID"; wait "$MPD_PID" 2>/dev/null || true; MPD_PID=

# --- MusicFS first scan --------------------------------------------------------------------
t0=$(now); start_mount
until mountpoint -q "$MNT"; do sleep 0.005; done
"$BIN/musicfsctl" --state-dir "$STATE" status --wait-idle >/dev/null; t1=$(now)
SCAN=$(secs "$t0" "$t1")
SCAN_FETCHD=$(grep -o 'scan finished.*ms=[0-9]*' "$ROOT/musicfs.log" | tail -1 | sed 's/.*ms=//')
STATUS=$("$BIN/musicfsctl" --state-dir "$STATE" status --json)
stop_mount

# --- remount to ready ----------------------------------------------------------------------
t0=$(now); start_mount; wait_listed; t1=$(now)
REMOUNT=$(secs "$t0" "$t1")
"$BIN/musicfsctl" --state-dir "$STATE" status --wait-idle >/dev/null

# --- find ------------------------------------------------------------------------------------
find "$MNT" >/dev/null; find "$LIB" >/dev/null
t0=$(now); find "$MNT" >/dev/null; t1=$(now); FIND_MNT=$(secs "$t0" "$t1")
t0=$(now); find "$LIB" >/dev/null; t1=$(now); FIND_NATIVE=$(secs "$t0" "$t1")

# --- big file reads ------------------------------------------------------------------------
BIG_ORIGIN="$LIB/big/piece-01.flac"
BIG_MNT=$(find "$MNT/Bench Noise" -name '01 Piece 01.flac' | head -1)
SIZE_MB=$(( $(stat -c %s "$BIG_ORIGIN") / 1000000 ))
mbps() { echo "$SIZE_MB / $1" | bc -l | xargs printf '%.0f'; }
drop_caches
t0=$(now); cat "$BIG_MNT" >/dev/null; t1=$(now); READ1=$(secs "$t0" "$t1")
t0=$(now); cat "$BIG_MNT" >/dev/null; t1=$(now); READ2=$(secs "$t0" "$t1")
drop_caches
t0=$(now); cat "$BIG_ORIGIN" >/dev/null; t1=$(now); NATIVE_COLD=$(secs "$t0" "$t1")
t0=$(now); cat "$BIG_ORIGIN" >/dev/null; t1=$(now); NATIVE_WARM=$(secs "$t0" "$t1")
cmp "$BIG_MNT" "$BIG_ORIGIN"

# --- RSS ---------------------------------------------------------------------------------
RSS=$("$BIN/musicfsctl" --state-dir "$STATE" status --json | python3 -c '
import json,sys
for w in json.load(sys.stdin)["workers"]:
    pid=w.get("pid")
    try: kb=[int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0]
    except Exception: kb=0
    name=w["name"]
    print(f"  {name:8} {kb/1024:7.1f} MB")')
stop_mount

ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
{
echo "MusicFS walking-skeleton benchmark — $(date -u +%F) — $(nproc) cores, $(uname -r)"
echo "library: $NTRACKS tracks ($TRACKS synthetic + 20 five-minute FLACs), $(du -sh "$LIB" | cut -f1)"
echo
echo "first scan (warm page cache):"
echo "  MusicFS  $SCAN s   $(echo "$NTRACKS / $SCAN" | bc -l | xargs printf '%.0f') tracks/s   (mount start to scan idle; fetchd's own scan: $SCAN_FETCHD ms)"
echo "  MPD      $MPD_SCAN s   $(echo "$NTRACKS / $MPD_SCAN" | bc -l | xargs printf '%.0f') tracks/s   (mpc update --wait)"
echo "  speed-up vs MPD: $(ratio "$MPD_SCAN" "$SCAN")x   (target >= 2)"
echo "  origin bytes read by the scan: $(echo "$STATUS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["origin_reads"]["bytes"])') of $(du -sb "$LIB" | cut -f1)"
echo "remount to ready: $REMOUNT s   (target < 0.3)"
echo "find, warm: mount $FIND_MNT s, native $FIND_NATIVE s, ratio $(ratio "$FIND_MNT" "$FIND_NATIVE")   (target <= 1.5)"
echo "big file ($SIZE_MB MB) sequential read:"
echo "  mount first read   $(mbps "$READ1") MB/s   (origin page cache dropped; chunks the file)"
echo "  mount second read  $(mbps "$READ2") MB/s   (target >= 1000)"
echo "  native cold        $(mbps "$NATIVE_COLD") MB/s;  native warm $(mbps "$NATIVE_WARM") MB/s"
echo "  ratios: first/native-cold $(ratio "$NATIVE_COLD" "$READ1"), second/native-warm $(ratio "$NATIVE_WARM" "$READ2")"
echo "RSS after the run (target: mountd < 20 MB):"
echo "$RSS"
} | tee "$REPORT"
