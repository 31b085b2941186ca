#!/usr/bin/env bash
# deps.sh run|test: installs the Debian packages MusicFS needs to run (fuse3) or to be tested
# (players and tools the tests drive through the mount). Uses apt-get as root, sudo otherwise;
# without either it prints the exact command to run and fails.
set -euo pipefail
case "${1:-}" in
  run)  packages=(fuse3) ;;
  test) packages=(fuse3 ffmpeg mpv attr systemd openssh-server openssh-client flac nginx-light rclone python3 openssl iproute2) ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then apt=(apt-get); elif command -v sudo >/dev/null; then apt=(sudo apt-get); else
  echo "missing packages: ${missing[*]}; install them with: apt-get install ${missing[*]}" >&2; exit 1
fi
echo "installing ${missing[*]}" >&2
DEBIAN_FRONTEND=noninteractive "${apt[@]}" update -qq
DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
