#!/usr/bin/env bash
# bench/remote.sh: MusicFS over SFTP vs sshfs vs `rclone mount --vfs-cache-mode full`, side by
# side in one run, against the same OpenSSH sshd (on 127.0.0.1, with its own config and keys in a
# temp dir) and the same files: a library of 12 five-minute FLACs (~32 MB each, 4 albums of 3).
# The kernel counts the bytes sshd sends and receives on its port (bench/wirecount.py, nftables),
# so what each client pulls over the wire is counted the same way with nothing in its path.
# Measured for each system:
#   - time to first byte: open + read of the first 4 KiB of never-read files (median, max)
#   - cold sequential read of a never-read file (MB/s), the wire bytes it caused, and the CPU
#     time sshd and everything else used meanwhile; read again on COLD_ROUNDS more fresh mounts,
#     the systems taking turns, and reported as the median (one read swings by up to 1.7x)
#   - warm re-read of that file after dropping the page cache (MB/s, wire bytes)
#   - random 64 KiB reads on a never-read file: median and p99 latency, wire bytes / asked bytes
#     (and, as baselines, the same reads on the origin's own disk with no network in between, and
#     through fetchd's SFTP origin alone: no FUSE, no IPC, no cache; the same for the cold read);
#     then the same reads again (page cache dropped), served from each system's cache if it has one
#   - MusicFS only: the wire bytes of its own first scan, as a share of the library's size
#   - an MPD scan of the mount (on a fresh mount; for MusicFS after its own scan): wire bytes
# The page cache is dropped before every cold measurement, and every system reads the same files
# in the same order. Prints the report and writes it to bench/remote-report.txt.
# Needs root (mounts, drop_caches, sshd); installs what it needs with apt-get.
# BENCH_SKIP_BUILD=1 uses the release binaries already built; BENCH_DIR moves target/bench;
# BENCH_SYSTEMS="musicfs" measures only the systems named (the others show as "-");
# BENCH_COLD_ROUNDS=N sets how many more fresh-mount cold reads each system makes (default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${BENCH_DIR:-target/bench}
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
LIB=$ROOT/remote-lib          # the library, made once and kept (the sshd serves it)
COVERS=$ROOT/remote-covers    # a smaller one whose tracks embed a cover, for the MPD scan
RUN=$ROOT/remote-run          # this run: sshd dir, configs, state dirs, caches, logs
MNT=$RUN/mnt                  # every system mounts here, one after the other
RESULTS=$RUN/results.tsv      # "system key value" lines, rendered into the report at the end
REPORT=bench/remote-report.txt
BIN=$(pwd)/target/release
SFTP_PROBE=$BIN/examples/sftp_probe
PROBE=(python3 "$(pwd)/bench/readprobe.py")
SYSTEMS=(${BENCH_SYSTEMS:-musicfs sshfs rclone})

# The files each measurement reads, as "album/track" (origin: album-A/track-1.flac, title
# "Noise A1"). Opening track N makes MusicFS warm the head of track N+1 of the album, so the
# measured files are never a track that follows one opened before: tracks 2 stay unread.
FIRST_BYTE_FILES=(A/1 B/1 C/1 D/1 A/3 D/3)
SEQ_FILE=B/3
RANDOM_FILE=C/3
RANDOM_READS=200
COLD_ROUNDS=${BENCH_COLD_ROUNDS:-4}
RANDOM_SIZE=65536

log() { printf '== %s\n' "$*" >&2; }
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
result() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"; }
# Bytes sshd has sent to clients so far, once nothing more has been sent for 1.5 s (background
# read-ahead, warming and cache fills count towards the measurement that caused them).
wire_down() { "${PROBE[@]}" wait-quiet "$SSHD_PORT"; }

install_deps() {
  local need=() p
  for p in openssh-server openssh-client sshfs rclone mpd mpc ffmpeg flac fuse3 bc nftables; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
  done
  [ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# 4 albums x 3 tracks of 300 s pink noise, each with its own noise seed (identical files would
# let a content-addressed cache share chunks between them).
make_library() {
  [ -f "$LIB.complete" ] && return
  log "making the library in $LIB"
  rm -rf "$LIB" "$LIB.complete"; mkdir -p "$LIB"
  local album track seed=0
  for album in A B C D; do
    mkdir -p "$LIB/album-$album"
    for track in 1 2 3; do
      seed=$((seed + 1))
      ffmpeg -nostdin -loglevel error -y -f lavfi -i "anoisesrc=d=300:c=pink:a=0.2:r=44100:seed=$seed" -ac 2 \
        -metadata artist="Bench Remote" -metadata album="Remote Album $album" \
        -metadata title="Noise $album$track" -metadata track="$track" -metadata date=2024 \
        "$LIB/album-$album/track-$track.flac"
    done
  done
  touch "$LIB.complete"
}

# 2 albums x 3 tracks of 120 s pink noise (about 20 MB each), every track with its album's
# cover embedded (a 1000x1000 JPEG of about 0.3 MB), as most tagged libraries have them.
make_cover_library() {
  [ -f "$COVERS.complete" ] && return
  log "making the library with covers in $COVERS"
  rm -rf "$COVERS"; mkdir -p "$COVERS"
  local album track seed=100
  for album in E F; do
    mkdir -p "$COVERS/album-$album"
    ffmpeg -nostdin -loglevel error -y -f lavfi -i "testsrc2=s=1000x1000:d=1,noise=alls=30:allf=t" \
      -frames:v 1 -q:v 3 "$COVERS/album-$album/cover.jpg"
    for track in 1 2 3; do
      seed=$((seed + 1))
      ffmpeg -nostdin -loglevel error -y -f lavfi -i "anoisesrc=d=120:c=pink:a=0.2:r=44100:seed=$seed" -ac 2 \
        -metadata artist="Bench Covers" -metadata album="Covered Album $album" \
        -metadata title="Covered $album$track" -metadata track="$track" -metadata date=2024 \
        "$COVERS/album-$album/track-$track.flac"
      metaflac --import-picture-from="$COVERS/album-$album/cover.jpg" "$COVERS/album-$album/track-$track.flac"
    done
  done
  touch "$COVERS.complete"
}

# Reads the whole library once on the server's side. On a virtual machine a file this machine
# has not read for a while comes from the host's disk, and a cold read of it ran 4-5x slower
# (78-128 against 400-500 MB/s through the SFTP origin alone) than one the host still had
# cached: whichever system read a file first in a sitting paid for it. After this every cold
# read starts alike: not in this machine's page cache (dropped before each read), nor in any
# client's cache.
warm_host_cache() {
  log "reading the library once on the server's side"
  cat "$LIB"/album-*/*.flac "$COVERS"/album-*/*.flac > /dev/null
}

origin_of() { echo "$LIB/$(rel_of "$1")"; }
rel_of() { echo "album-${1%/*}/track-${1#*/}.flac"; }

# Where a file of the library is in the mount: the same path for sshfs and rclone; by its tags
# in MusicFS (looked up before measuring: MusicFS's tree needs no origin request).
path_in_mount() {
  local system=$1 rel=$2
  if [ "$system" = musicfs ]; then
    find "$MNT" -name "* Noise ${rel%/*}${rel#*/}.flac" | head -1
  else
    echo "$MNT/album-${rel%/*}/track-${rel#*/}.flac"
  fi
}

# --- sshd and its byte counters -----------------------------------------------------------------
start_sshd() {
  local dir=$RUN/sshd
  mkdir -p "$dir" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -C musicfs-bench -f "$dir/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C musicfs-bench -f "$dir/client_ed25519"
  cp "$dir/client_ed25519.pub" "$dir/authorized_keys"
  SSHD_PORT=$(free_port)
  cat > "$dir/sshd_config" <<CONF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
Subsystem sftp internal-sftp
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 100
MaxSessions 100
LogLevel DEBUG1
CONF
  local key; key=$(cut -d' ' -f1,2 "$dir/host_ed25519.pub")
  printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$key" > "$dir/known_hosts"
  IDENTITY=$dir/client_ed25519; KNOWN_HOSTS=$dir/known_hosts
  /usr/sbin/sshd -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &
  SSHD_PID=$!
  python3 bench/wirecount.py start "$SSHD_PORT"
  COUNTING=$SSHD_PORT
  local _
  for _ in $(seq 300); do
    head -c4 2>/dev/null < /dev/tcp/127.0.0.1/"$SSHD_PORT" | grep -q SSH- && return
    sleep 0.05
  done
  cat "$dir/sshd.log" >&2; echo "sshd did not start" >&2; exit 1
}

# --- mounting each system -----------------------------------------------------------------------
wait_mounted() {   # PID of the mounting process
  local _
  for _ in $(seq 1200); do
    mountpoint -q "$MNT" && return
    kill -0 "$1" 2>/dev/null || { echo "the mount process exited" >&2; return 1; }
    sleep 0.05
  done
  echo "not mounted after 60 s" >&2; return 1
}

wait_unmounted() {   # PID of the mounting process
  local _
  for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  mountpoint -q "$MNT" && fusermount3 -uz "$MNT"
  wait "$1" 2>/dev/null || true
}

# MusicFS: a fresh state dir each session; returns once the mount is up and the first scan done.
mount_musicfs() {   # SESSION
  local state=$RUN/musicfs-state-$1
  rm -rf "$state"
  cat > "$RUN/musicfs.toml" <<CONF
[[origins]]
url = "sftp://root@127.0.0.1:$SSHD_PORT${ORIGIN_DIR:-$LIB}"
identity_file = "$IDENTITY"
known_hosts = "$KNOWN_HOSTS"
timeout_seconds = 10
CONF
  "$BIN/musicfsctl" mount --state-dir "$state" --config "$RUN/musicfs.toml" "$MNT" \
    >"$RUN/musicfs-$1.out" 2>"$RUN/musicfs-$1.log" &
  MOUNT_PID=$!
  wait_mounted "$MOUNT_PID"
  "$BIN/musicfsctl" --state-dir "$state" status --wait-idle --timeout 600 --json >"$RUN/musicfs-$1.status.json" || true
}
umount_musicfs() { kill -TERM "$MOUNT_PID"; wait_unmounted "$MOUNT_PID"; }

mount_sshfs() {
  sshfs -f -p "$SSHD_PORT" \
    -o "IdentityFile=$IDENTITY,UserKnownHostsFile=$KNOWN_HOSTS,GlobalKnownHostsFile=/dev/null" \
    -o StrictHostKeyChecking=yes,BatchMode=yes \
    "root@127.0.0.1:${ORIGIN_DIR:-$LIB}" "$MNT" 2>"$RUN/sshfs-$1.log" &
  MOUNT_PID=$!
  wait_mounted "$MOUNT_PID"
}
umount_sshfs() { fusermount3 -u "$MNT"; wait_unmounted "$MOUNT_PID"; }

mount_rclone() {   # SESSION: a fresh cache dir each session
  cat > "$RUN/rclone.conf" <<CONF
[bench]
type = sftp
host = 127.0.0.1
port = $SSHD_PORT
user = root
key_file = $IDENTITY
known_hosts_file = $KNOWN_HOSTS
CONF
  rm -rf "$RUN/rclone-cache-$1"
  rclone --config "$RUN/rclone.conf" mount "bench:${ORIGIN_DIR:-$LIB}" "$MNT" --vfs-cache-mode full \
    --cache-dir "$RUN/rclone-cache-$1" --log-file "$RUN/rclone-$1.log" &
  MOUNT_PID=$!
  wait_mounted "$MOUNT_PID"
}
umount_rclone() { fusermount3 -u "$MNT"; wait_unmounted "$MOUNT_PID"; }

# --- the measurements -----------------------------------------------------------------------------
# Session 1: first byte, cold and warm sequential reads, random reads (and MusicFS's scan).
measure_reads() {
  local system=$1 before after rel t bytes secs i=0
  log "$system: mounting"
  local mark; mark=$(wc -l < "$RUN/sshd/sshd.log")
  before=$(wire_down)
  "mount_$system" 1
  after=$(wire_down)
  result "$system" mount_wire $((after - before))
  if [ "$system" = musicfs ]; then
    # MusicFS's own first scan (mount start until idle): tag bytes only, ideally.
    result musicfs scan_origin_bytes "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["origin_reads"]["bytes"])' < "$RUN/musicfs-1.status.json")"
  fi
  declare -A paths
  for rel in "${FIRST_BYTE_FILES[@]}" "$SEQ_FILE" "$RANDOM_FILE"; do
    paths[$rel]=$(path_in_mount "$system" "$rel")
    [ -f "${paths[$rel]}" ] || { echo "$system: no $rel in the mount" >&2; exit 1; }
  done

  # Time to first byte: each file never read before, page cache dropped before each open.
  log "$system: first byte"
  for rel in "${FIRST_BYTE_FILES[@]}"; do
    drop_caches; before=$(wire_down)
    t=$("${PROBE[@]}" first "${paths[$rel]}" "$(origin_of "$rel")")
    after=$(wire_down)
    i=$((i + 1))
    result "$system" "first_byte_$i" "$t"
    result "$system" "first_byte_wire_$i" $((after - before))
  done

  # Cold sequential read of a whole never-read file.
  log "$system: cold sequential read"
  cold_read "$system" "${paths[$SEQ_FILE]}" 1
  sleep 1   # let MusicFS finish cutting the completed file into chunks (local work only)

  # Warm re-read: the page cache dropped again, so MusicFS and rclone serve it from their own
  # disk caches and sshfs goes to the wire.
  log "$system: warm re-read"
  drop_caches; before=$(wire_down)
  read -r bytes secs < <("${PROBE[@]}" seq "${paths[$SEQ_FILE]}")
  after=$(wire_down)
  result "$system" seq_warm_secs "$secs"
  result "$system" seq_warm_wire $((after - before))
  cmp "${paths[$SEQ_FILE]}" "$(origin_of "$SEQ_FILE")" || { echo "$system: $SEQ_FILE differs from the origin" >&2; exit 1; }

  # Random 64 KiB reads on a never-read file (the same offsets for every system).
  log "$system: random reads"
  drop_caches; before=$(wire_down)
  local median p99 asked unique
  read -r median p99 asked unique < <("${PROBE[@]}" random "${paths[$RANDOM_FILE]}" "$(origin_of "$RANDOM_FILE")" \
    "$RANDOM_READS" "$RANDOM_SIZE" 42)
  after=$(wire_down)
  result "$system" random_median "$median"; result "$system" random_p99 "$p99"
  result "$system" random_asked "$asked"; result "$system" random_unique "$unique"
  result "$system" random_wire $((after - before))

  # The same reads again, page cache dropped: MusicFS and rclone answer from their caches, sshfs
  # from the wire; this separates each system's own overhead from the origin's round trip.
  log "$system: random re-reads"
  drop_caches; before=$(wire_down)
  read -r median p99 asked unique < <("${PROBE[@]}" random "${paths[$RANDOM_FILE]}" "$(origin_of "$RANDOM_FILE")" \
    "$RANDOM_READS" "$RANDOM_SIZE" 42)
  after=$(wire_down)
  result "$system" random_again_median "$median"; result "$system" random_again_p99 "$p99"
  result "$system" random_again_wire $((after - before))

  log "$system: unmounting"
  "umount_$system"
  ssh_sessions "$system" "$mark"
}

# Reads FILE whole, never read before, page cache dropped: its time, wire bytes and where the
# machine's CPU time went meanwhile (sshd, and all the rest), as the results of round ROUND.
cold_read() {   # SYSTEM FILE ROUND
  local before after bytes secs cpu_sshd cpu_busy
  drop_caches; before=$(wire_down)
  read -r bytes secs cpu_sshd cpu_busy < <("${PROBE[@]}" seq "$2" "$SSHD_PID")
  after=$(wire_down)
  result "$1" "seq_cold_secs_$3" "$secs"; result "$1" seq_bytes "$bytes"
  result "$1" "seq_cold_wire_$3" $((after - before))
  result "$1" "seq_cold_cpu_sshd_$3" "$cpu_sshd"
  result "$1" "seq_cold_cpu_busy_$3" "$cpu_busy"
}

# SEQ_FILE read whole through fetchd's SFTP origin alone, as round ROUND.
sftp_cold_read() {   # ROUND
  local bytes secs cpu_self cpu_sshd cpu_busy
  read -r bytes secs cpu_self cpu_sshd cpu_busy < <("$SFTP_PROBE" "sftp://root@127.0.0.1:$SSHD_PORT$LIB" \
    "$IDENTITY" "$KNOWN_HOSTS" seq "$(rel_of "$SEQ_FILE")" "$(origin_of "$SEQ_FILE")" "$SSHD_PID")
  result sftp "seq_cold_secs_$1" "$secs"; result sftp seq_bytes "$bytes"
  result sftp "seq_cold_cpu_self_$1" "$cpu_self"; result sftp "seq_cold_cpu_sshd_$1" "$cpu_sshd"
  result sftp "seq_cold_cpu_busy_$1" "$cpu_busy"
}

# One more cold read of SEQ_FILE on a fresh mount (fresh caches), as round ROUND.
measure_cold_again() {   # SYSTEM ROUND
  local system=$1 path
  log "$system: cold sequential read, round $2"
  "mount_$system" "c$2"
  path=$(path_in_mount "$system" "$SEQ_FILE")
  cold_read "$system" "$path" "$2"
  "umount_$system"
}

# Baselines, once: the random reads' offsets read in place from the origin's own disk (page
# cache dropped, no network): the part of a remote read no client can avoid.
measure_baselines() {
  log "baseline: random reads on the origin's disk"
  drop_caches
  local median p99 asked unique origin; origin=$(origin_of "$RANDOM_FILE")
  read -r median p99 asked unique < <("${PROBE[@]}" random "$origin" "$origin" "$RANDOM_READS" "$RANDOM_SIZE" 42)
  result disk random_median "$median"

  # fetchd's SFTP origin on its own (fetchd/examples/sftp_probe.rs): the same files and offsets
  # read from this sshd with no FUSE, no IPC and no cache in the way; the floor under the
  # mounts' figures. It drops the page cache itself once connected.
  log "baseline: fetchd's SFTP origin alone"
  sftp_cold_read 1
  local sftp=("$SFTP_PROBE" "sftp://root@127.0.0.1:$SSHD_PORT$LIB" "$IDENTITY" "$KNOWN_HOSTS")
  origin=$(origin_of "$RANDOM_FILE")
  read -r median p99 < <("${PROBE[@]}" offsets "$origin" "$RANDOM_READS" "$RANDOM_SIZE" 42 |
    "${sftp[@]}" random "$(rel_of "$RANDOM_FILE")" "$origin" "$RANDOM_SIZE")
  result sftp random_median "$median"; result sftp random_p99 "$p99"
}

# The SSH connections a session made and the cipher sshd negotiated with them (from sshd's log).
ssh_sessions() {   # SYSTEM LOG_LINE_MARK
  local new; new=$(tail -n +"$(($2 + 1))" "$RUN/sshd/sshd.log")
  result "$1" ssh_connections "$(grep -c '^Connection from' <<<"$new" || true)"
  grep -o 'server->client cipher: [^ ]*' <<<"$new" | sort -u | cut -d' ' -f3 | paste -sd, > "$RUN/ciphers-$1"
}

# Session 2, on a fresh mount (fresh caches): MPD scans the whole mount; for MusicFS once its own
# scan is done. Counts the wire bytes from mpd's start until its update is finished.
measure_mpd_scan() {
  local system=$1 before after t0 t1
  log "$system: mounting for the MPD scan"
  "mount_$system" 2
  if [ "$system" = musicfs ]; then
    result musicfs scan2_origin_bytes "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["origin_reads"]["bytes"])' < "$RUN/musicfs-2.status.json")"
  fi
  log "$system: MPD scan"
  before=$(wire_down); t0=$(now)
  mpd_scan "$MNT" "$RUN/mpd-$system"
  t1=$(now)
  after=$(wire_down)
  result "$system" mpd_secs "$(echo "$t1 - $t0" | bc -l)"
  result "$system" mpd_songs "$MPD_SONGS"
  result "$system" mpd_wire $((after - before))
  "umount_$system"
}

# A fresh MPD's scan of MUSIC with its state in DIR, from its start until the scan is done;
# sets MPD_SONGS. mpd runs its first update itself at start (it has no database yet); `mpc
# update --wait` then waits for it and for a second pass that finds nothing new.
mpd_scan() {   # MUSIC DIR
  local dir=$2 port _
  rm -rf "$dir"; mkdir -p "$dir/playlists"; port=$(free_port)
  cat > "$dir/mpd.conf" <<CONF
music_directory "$1"
db_file "$dir/db"
state_file "$dir/state"
playlist_directory "$dir/playlists"
bind_to_address "127.0.0.1"
port "$port"
zeroconf_enabled "no"
log_file "$dir/log"
log_level "verbose"
audio_output {
  type "null"
  name "null"
}
CONF
  mpd --no-daemon "$dir/mpd.conf" 2>"$dir/stderr" &
  MPD_PID=$!
  for _ in $(seq 200); do mpc -p "$port" status >/dev/null 2>&1 && break; sleep 0.05; done
  mpc -q -p "$port" update --wait
  MPD_SONGS=$(mpc -p "$port" stats | awk '/^Songs:/{print $2}')
  kill "$MPD_PID"; wait "$MPD_PID" 2>/dev/null || true; MPD_PID=
}

# MPD's start from a cold page cache took 0.2 s more than from a warm one, and the reads before
# drop the cache: whichever system was scanned first paid for it. One scan of the library on the
# server's disk first, unmeasured, so every measured scan starts with MPD in memory.
warm_mpd() {
  log "MPD: one unmeasured scan, so its program is in memory"
  mpd_scan "$LIB" "$RUN/mpd-warm"
  mpd_scan "$COVERS" "$RUN/mpd-warm-covers"
}

# Session 3: the same on the library with covers. A tag reader takes in the whole cover
# (libFLAC reads every metadata block), and what the mount fetches around it is counted.
measure_cover_mpd_scan() {
  local system=$1 before after
  log "$system: MPD scan of the library with covers"
  ORIGIN_DIR=$COVERS "mount_$system" 3
  if [ "$system" = musicfs ]; then
    result musicfs covers_scan_origin_bytes "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["origin_reads"]["bytes"])' < "$RUN/musicfs-3.status.json")"
  fi
  before=$(wire_down)
  mpd_scan "$MNT" "$RUN/mpd-covers-$system"
  after=$(wire_down)
  result "$system" covers_mpd_songs "$MPD_SONGS"
  result "$system" covers_mpd_wire $((after - before))
  "umount_$system"
}

cleanup() {
  set +e
  [ -n "${MPD_PID:-}" ] && kill "$MPD_PID" 2>/dev/null && wait "$MPD_PID" 2>/dev/null
  if [ -n "${MOUNT_PID:-}" ] && kill -0 "$MOUNT_PID" 2>/dev/null; then
    kill -TERM "$MOUNT_PID"
    for _ in $(seq 100); do kill -0 "$MOUNT_PID" 2>/dev/null || break; sleep 0.05; done
  fi
  mountpoint -q "$MNT" 2>/dev/null && fusermount3 -uz "$MNT"
  [ -n "${MOUNT_PID:-}" ] && kill "$MOUNT_PID" 2>/dev/null && wait "$MOUNT_PID" 2>/dev/null
  [ -n "${COUNTING:-}" ] && python3 bench/wirecount.py stop "$COUNTING"
  if [ -n "${SSHD_PID:-}" ]; then
    # sshd's per-connection processes are its children; they are ours to end too.
    for pid in $(pgrep -P "$SSHD_PID"); do kill "$pid" 2>/dev/null; done
    kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
  fi
}

# --- the report ----------------------------------------------------------------------------------
report() {
  python3 - "$RESULTS" "$(du -sb "$LIB" | cut -f1)" "${#FIRST_BYTE_FILES[@]}" "$(nproc)" \
    "$(du -cb "$COVERS"/album-*/*.flac | tail -1 | cut -f1)" "$(du -cb "$COVERS"/album-*/cover.jpg | tail -1 | cut -f1)" <<'PY'
import statistics, sys
from collections import defaultdict
r = defaultdict(dict)
for line in open(sys.argv[1]):
    system, key, value = line.rstrip("\n").split("\t")
    r[system][key] = float(value)
lib_bytes, nfirst, ncpu = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
covers_bytes, cover_bytes = int(sys.argv[5]), int(sys.argv[6]) * 3  # each album's cover in 3 tracks
# The cold reads ran in rounds ("seq_cold_secs_2"...): each figure is the median over them.
for fig in r.values():
    for key in {k.rsplit("_", 1)[0] for k in fig if k.startswith("seq_cold_") and k[-1].isdigit()}:
        rounds = [v for k, v in fig.items() if k.rsplit("_", 1)[0] == key and k[-1].isdigit()]
        fig[key] = statistics.median(rounds)
        if key == "seq_cold_secs":
            fig["seq_cold_rounds"], fig["seq_cold_fastest"], fig["seq_cold_slowest"] = len(rounds), min(rounds), max(rounds)
S = ["musicfs", "sshfs", "rclone"]
def first(s):
    return [r[s][f"first_byte_{i}"] * 1000 for i in range(1, nfirst + 1)]
def mbps(s, k): return r[s]["seq_bytes"] / r[s][k] / 1e6
def row(label, f, fmt):
    cells = []
    for s in S:
        try: cells.append(fmt.format(f(s)))
        except (KeyError, ZeroDivisionError): cells.append("-")
    print(f"{label:<40}" + "".join(f"{c:>14}" for c in cells))
def mb(b): return b / 1e6
print(f"{'':<40}" + "".join(f"{n:>14}" for n in ["MusicFS", "sshfs", "rclone"]))
row("first byte (4 KiB), median ms", lambda s: statistics.median(first(s)), "{:.2f}")
row("first byte (4 KiB), max ms", lambda s: max(first(s)), "{:.2f}")
row("  wire KB per first-byte open", lambda s: statistics.mean(r[s][f"first_byte_wire_{i}"] for i in range(1, nfirst + 1)) / 1e3, "{:.0f}")
row("cold sequential read, MB/s (median)", lambda s: mbps(s, "seq_cold_secs"), "{:.0f}")
row("  slowest - fastest read", lambda s: f"{mbps(s, 'seq_cold_slowest'):.0f} - {mbps(s, 'seq_cold_fastest'):.0f}", "{}")
row("  reads (fresh mounts)", lambda s: r[s]["seq_cold_rounds"], "{:.0f}")
row("  wire bytes / file size", lambda s: r[s]["seq_cold_wire"] / r[s]["seq_bytes"], "{:.3f}")
def cpu_ms_per_mb(s, k): return r[s][f"seq_cold_cpu_{k}"] / 1e6 / mb(r[s]["seq_bytes"])
row("  CPU ms/MB: sshd", lambda s: cpu_ms_per_mb(s, "sshd"), "{:.2f}")
row("  CPU ms/MB: the rest (client side)", lambda s: cpu_ms_per_mb(s, "busy") - cpu_ms_per_mb(s, "sshd"), "{:.2f}")
row("  CPUs busy (of %d)" % ncpu, lambda s: r[s]["seq_cold_cpu_busy"] / 1e9 / r[s]["seq_cold_secs"], "{:.2f}")
row("warm re-read (page cache dropped), MB/s", lambda s: mbps(s, "seq_warm_secs"), "{:.0f}")
row("  wire bytes / file size", lambda s: r[s]["seq_warm_wire"] / r[s]["seq_bytes"], "{:.3f}")
row("random 64 KiB read, median ms", lambda s: r[s]["random_median"] * 1000, "{:.3f}")
row("random 64 KiB read, p99 ms", lambda s: r[s]["random_p99"] * 1000, "{:.3f}")
row("  wire bytes / asked bytes", lambda s: r[s]["random_wire"] / r[s]["random_asked"], "{:.2f}")
row("same reads again, median ms", lambda s: r[s]["random_again_median"] * 1000, "{:.3f}")
row("same reads again, p99 ms", lambda s: r[s]["random_again_p99"] * 1000, "{:.3f}")
row("  wire bytes / asked bytes", lambda s: r[s]["random_again_wire"] / r[s]["random_asked"], "{:.2f}")
row("mount (until idle), wire MB", lambda s: mb(r[s]["mount_wire"]), "{:.3f}")
row("SSH connections (reads session)", lambda s: r[s]["ssh_connections"], "{:.0f}")
row("MPD start + scan of a fresh mount, s", lambda s: r[s]["mpd_secs"], "{:.2f}")
row("MPD scan, songs found", lambda s: r[s]["mpd_songs"], "{:.0f}")
row("MPD scan, wire MB", lambda s: mb(r[s]["mpd_wire"]), "{:.3f}")
row("MPD scan, library with covers, songs", lambda s: r[s]["covers_mpd_songs"], "{:.0f}")
row("MPD scan, library with covers, wire MB", lambda s: mb(r[s]["covers_mpd_wire"]), "{:.3f}")
m, sh, rc = r["musicfs"], r["sshfs"], r["rclone"]
def ok(c): return "met" if c else "MISSED"
def say(f):
    """Prints f()'s line; with a system left out of the run (BENCH_SYSTEMS), says so instead."""
    try:
        print(f())
    except (KeyError, ZeroDivisionError, ValueError, statistics.StatisticsError):
        print("  (a figure this line needs was not measured in this run)")
def first_byte():
    fm, fs = statistics.median(first("musicfs")), statistics.median(first("sshfs"))
    worst = max(first("musicfs"))
    return f"  first byte median vs sshfs: {fm / fs:.2f}x (<= 1: {ok(fm <= fs)}); max {worst:.1f} ms (< 50 ms: {ok(worst < 50)})"
def cold():
    cs = mbps("musicfs", "seq_cold_secs") / mbps("sshfs", "seq_cold_secs")
    cr = mbps("musicfs", "seq_cold_secs") / mbps("rclone", "seq_cold_secs")
    return f"  cold sequential vs sshfs {cs:.2f}x, vs rclone {cr:.2f}x (>= 2x both: {ok(cs >= 2 and cr >= 2)})"
def cold_cpu():
    # What 2x sshfs would take: sshd costs what it costs per MB whoever reads.
    want = 2 * max(mbps("sshfs", "seq_cold_secs"), mbps("rclone", "seq_cold_secs"))
    fixed = cpu_ms_per_mb("musicfs", "sshd") * want / 1000
    mine = (cpu_ms_per_mb("musicfs", "busy") * want / 1000) - fixed
    return (f"    at {want:.0f} MB/s, sshd alone would keep {fixed:.2f} of the {ncpu} CPUs busy;"
            f" MusicFS's side, at its measured cost per MB, {mine:.2f} more")
def warm():
    w = mbps("musicfs", "seq_warm_secs")
    return f"  warm re-read vs sshfs {w / mbps('sshfs', 'seq_warm_secs'):.2f}x, vs rclone {w / mbps('rclone', 'seq_warm_secs'):.2f}x"
def random_reads():
    asked = m["random_asked"]
    return (f"  random 64 KiB median {m['random_median'] * 1000:.3f} ms (< 0.5 ms: {ok(m['random_median'] < 0.0005)}),"
            f" wire/asked {m['random_wire'] / asked:.2f} (<= 1.5: {ok(m['random_wire'] / asked <= 1.5)})")
def disk():
    return f"    the same preads on the origin's own disk, in place: median {r['disk']['random_median'] * 1000:.3f} ms"
def sftp_random():
    return (f"    the same reads through fetchd's SFTP origin alone (no FUSE, no IPC, no cache):"
            f" median {r['sftp']['random_median'] * 1000:.3f} ms, p99 {r['sftp']['random_p99'] * 1000:.3f} ms")
def sftp_seq():
    f = r["sftp"]
    mbs = f["seq_bytes"] / f["seq_cold_secs"] / 1e6
    per = lambda k: f[f"seq_cold_cpu_{k}"] / 1e6 / mb(f["seq_bytes"])
    return (f"    the same file through fetchd's SFTP origin alone: {mbs:.0f} MB/s"
            f" ({mbs / mbps('sshfs', 'seq_cold_secs'):.2f}x sshfs); CPU ms/MB: sshd {per('sshd'):.2f},"
            f" the SFTP client {per('self'):.2f}")
def scan():
    return (f"  first scan: {mb(m['mount_wire']):.3f} MB on the wire = {100 * m['mount_wire'] / lib_bytes:.3f} % of the library"
            f" (< 1 %: {ok(m['mount_wire'] < lib_bytes / 100)}); fetchd counted {mb(m['scan_origin_bytes']):.3f} MB of file bytes")
def mpd():
    return f"  MPD scan after MusicFS's own scan: {mb(m['mpd_wire']):.3f} MB from the origin (nothing: {ok(m['mpd_wire'] < 64 * 1024)})"
def mpd_others():
    return f"    sshfs {mb(sh['mpd_wire']):.3f} MB, rclone {mb(rc['mpd_wire']):.3f} MB"
def mpd_covers():
    return (f"  library with covers ({mb(covers_bytes):.0f} MB, of it {mb(cover_bytes):.1f} MB of embedded covers):"
            f" MusicFS's first scan fetched {mb(m['covers_scan_origin_bytes']):.3f} MB; MPD's scan after it"
            f" {mb(m['covers_mpd_wire']):.3f} MB (sshfs {mb(sh['covers_mpd_wire']):.3f} MB, rclone {mb(rc['covers_mpd_wire']):.3f} MB)")
print()
say(lambda: f"library: {lib_bytes / 1e6:.0f} MB; random reads: {m['random_asked'] / 65536:.0f} x 64 KiB ="
            f" {mb(m['random_asked']):.1f} MB asked ({mb(m['random_unique']):.1f} MB distinct)")
print("targets (MusicFS):")
for line in [first_byte, cold, cold_cpu, sftp_seq, warm, random_reads, disk, sftp_random, scan, mpd, mpd_others, mpd_covers]:
    say(line)
PY
}

main() {
  [ "$(id -u)" = 0 ] || { echo "bench/remote.sh needs root (mounts, drop_caches, sshd)" >&2; exit 1; }
  install_deps
  if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    log "building release binaries"
    cargo build --release --quiet --bins
    cargo build --release --quiet -p musicfs-fetchd --example sftp_probe
  fi
  [ -x "$SFTP_PROBE" ] || { echo "no $SFTP_PROBE: build it (or run without BENCH_SKIP_BUILD)" >&2; exit 1; }
  make_library
  make_cover_library
  warm_host_cache
  # A run that died may have left its mount behind: unmount it rather than delete through it.
  if mountpoint -q "$MNT" 2>/dev/null; then fusermount3 -uz "$MNT"; fi
  rm -rf --one-file-system "$RUN"; mkdir -p "$MNT"; : > "$RESULTS"
  trap cleanup EXIT
  start_sshd
  local system
  measure_baselines
  for system in "${SYSTEMS[@]}"; do measure_reads "$system"; done
  warm_mpd
  for system in "${SYSTEMS[@]}"; do measure_mpd_scan "$system"; done
  for system in "${SYSTEMS[@]}"; do measure_cover_mpd_scan "$system"; done
  local round
  for round in $(seq 2 $((COLD_ROUNDS + 1))); do
    for system in "${SYSTEMS[@]}"; do measure_cold_again "$system" "$round"; done
    log "baseline: fetchd's SFTP origin alone, round $round"
    sftp_cold_read "$round"
  done
  {
    echo "MusicFS remote-origin benchmark — $(date -u +%F) — $(nproc) cores, $(uname -r)"
    echo "one OpenSSH sshd on 127.0.0.1; wire = TCP payload bytes sshd sent to the client (SSH framing"
    echo "included), counted by the kernel on sshd's port; page cache dropped before each read"
    echo "sshfs $(sshfs --version 2>&1 | awk '/SSHFS version/{print $3}'), rclone $(rclone version | awk 'NR==1{print $2}'), $(mpd --version | head -1)"
    echo "ciphers sshd negotiated: MusicFS $(cat "$RUN/ciphers-musicfs" 2>/dev/null || echo -), sshfs $(cat "$RUN/ciphers-sshfs" 2>/dev/null || echo -), rclone $(cat "$RUN/ciphers-rclone" 2>/dev/null || echo -)"
    echo
    report
  } | tee "$REPORT"
}

main "$@"
