#!/usr/bin/env bash
# install.sh [BUILD_DIR]: installs MusicFS as systemd units.
#   binaries from BUILD_DIR (default target/release)  -> /usr/local/bin
#   units (*.service, *.socket, *.target)             -> /etc/systemd/system
#   users (sysusers.d) and /run/musicfs, /var/lib/musicfs/run (tmpfiles.d), created now
#   a sample /etc/musicfs/config.toml, only if there is none
# With DESTDIR=DIR the files are staged under DIR instead of / and nothing is created on this
# machine (the tests verify the units there).
# It enables nothing; it prints the command that does.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../target/release}
dest=${DESTDIR:-}
binaries=(musicfs-fetchd musicfs-indexd musicfs-plugind musicfs-mountd musicfsctl)

for b in "${binaries[@]}"; do
  [ -x "$build/$b" ] || { echo "install.sh: $build/$b is missing; run: cargo build --release" >&2; exit 1; }
done

install -d "$dest/usr/local/bin" "$dest/etc/systemd/system" "$dest/etc/sysusers.d" \
  "$dest/etc/tmpfiles.d" "$dest/etc/musicfs"
for b in "${binaries[@]}"; do install -m 0755 "$build/$b" "$dest/usr/local/bin/$b"; done
install -m 0644 "$here"/*.service "$here"/*.socket "$here"/*.target "$dest/etc/systemd/system/"
install -m 0644 "$here/musicfs.sysusers" "$dest/etc/sysusers.d/musicfs.conf"
install -m 0644 "$here/musicfs.tmpfiles" "$dest/etc/tmpfiles.d/musicfs.conf"
if [ ! -e "$dest/etc/musicfs/config.toml" ]; then
  # Root-only: fetchd gets it through LoadCredential=, and it may come to hold origin credentials.
  install -m 0600 "$here/config.toml" "$dest/etc/musicfs/config.toml"
fi

if [ -n "$dest" ]; then
  echo "install.sh: staged under $dest; on the target run systemd-sysusers, then" \
    "systemd-tmpfiles --create musicfs.conf, then systemctl daemon-reload" >&2
else
  # Users first: the tmpfiles entries and the socket units name the group musicfs.
  systemd-sysusers musicfs.conf
  if [ -d /var/lib/musicfs/run ] && [ ! -L /var/lib/musicfs/run ]; then
    echo "install.sh: /var/lib/musicfs/run is a directory (left by musicfsctl mount?);" \
      "remove it so that it can become a link to /run/musicfs" >&2
  fi
  systemd-tmpfiles --create musicfs.conf
  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
fi

cat <<MSG
MusicFS installed${dest:+ under $dest}. Set the origins in /etc/musicfs/config.toml, then:
  systemctl enable --now musicfs.target
This mounts the library at /srv/musicfs; for another mount point instead:
  systemctl disable --now musicfs-mountd@srv-musicfs.service
  systemctl enable --now musicfs-mountd@\$(systemd-escape --path /mnt/music).service
MSG
