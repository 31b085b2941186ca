//! What is mounted where: parsing `/proc/self/mountinfo`, telling a live MusicFS mount from a
//! stale one (its FUSE server is gone), and lazily unmounting a stale one.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

const MOUNTINFO: &str = "/proc/self/mountinfo";
/// How long a `stat` of a mount point may take before the mount counts as hung.
const STAT_TIMEOUT: Duration = Duration::from_secs(2);

/// One line of mountinfo, reduced to what the supervisor needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl MountEntry {
    /// True for a MusicFS FUSE mount (`fuse.musicfs`, or a plain FUSE mount named `musicfs`).
    pub fn is_musicfs(&self) -> bool {
        self.fstype == "fuse.musicfs"
            || (self.fstype.starts_with("fuse") && self.source == "musicfs")
    }

    pub fn is_fuse(&self) -> bool {
        self.fstype == "fuse" || self.fstype.starts_with("fuse.")
    }
}

/// Parses mountinfo text (see proc(5)): field 5 is the mount point; after the `-` separator come
/// the filesystem type and the source. Paths have space, tab, newline and backslash escaped as
/// octal (`\040`). Malformed lines are skipped.
pub fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            let separator = fields.iter().position(|f| *f == b"-")?;
            let mount_point = fields.get(4).filter(|_| separator > 5)?;
            let fstype = fields.get(separator + 1)?;
            let source = fields.get(separator + 2).copied().unwrap_or_default();
            Some(MountEntry {
                mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
                fstype: String::from_utf8_lossy(&unescape(fstype)).into_owned(),
                source: String::from_utf8_lossy(&unescape(source)).into_owned(),
            })
        })
        .collect()
}

fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|digits| field[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// The topmost mount at exactly `path` (an absolute, symlink-free path), if any.
pub fn find(path: &Path) -> io::Result<Option<MountEntry>> {
    let text = std::fs::read(MOUNTINFO)?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .rfind(|entry| entry.mount_point == path))
}

/// True if something is mounted at `path`.
pub fn is_mounted(path: &Path) -> bool {
    find(path).is_ok_and(|entry| entry.is_some())
}

/// What sits at a mount point before MusicFS mounts there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountPointState {
    /// Not a FUSE mount (maybe a plain directory, maybe missing: later checks tell).
    Free,
    /// A FUSE mount whose server is gone or hung: safe to detach.
    Stale,
    /// A MusicFS mount that answers: some other instance serves it.
    LiveMusicfs,
}

/// Tells whether `path` holds a stale FUSE mount (stat fails with `ENOTCONN`, or a MusicFS mount
/// is listed but does not answer) or a live MusicFS mount.
pub fn probe(path: &Path) -> MountPointState {
    let entry = find(path).ok().flatten();
    let listed_musicfs = entry.as_ref().is_some_and(MountEntry::is_musicfs);
    let listed_fuse = entry.as_ref().is_some_and(MountEntry::is_fuse);
    match stat_within(path, STAT_TIMEOUT) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => MountPointState::Stale,
        Ok(()) if listed_musicfs => MountPointState::LiveMusicfs,
        Ok(()) => MountPointState::Free,
        Err(_) if listed_fuse => MountPointState::Stale,
        Err(_) => MountPointState::Free,
    }
}

/// True if `path` is mounted and answers a `stat` (not stale, not hung).
pub fn is_live(path: &Path) -> bool {
    is_mounted(path) && stat_within(path, STAT_TIMEOUT).is_ok()
}

/// `statfs(path)` on a helper thread, so a hung FUSE server cannot hang the caller. statfs, not
/// stat: the kernel answers a `stat` of a dead FUSE mount's root from its attribute cache, but
/// always takes a `statfs` to the server, so only a live server answers it.
pub fn stat_within(path: &Path, timeout: Duration) -> io::Result<()> {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_owned();
    std::thread::spawn(move || {
        let answer = nix::sys::statvfs::statvfs(&owned)
            .map(drop)
            .map_err(io::Error::from);
        drop(tx.send(answer));
    });
    rx.recv_timeout(timeout).unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("stat {} did not return", path.display()),
        ))
    })
}

/// Detaches the mount at `path` (lazy unmount): `umount2(MNT_DETACH)` as root, else
/// `fusermount3 -u -z`.
pub fn lazy_unmount(path: &Path) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        return nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("cannot unmount {}", path.display()));
    }
    let status = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(path)
        .status()
        .context("cannot run fusermount3; install fuse3 (apt-get install fuse3)")?;
    if !status.success() {
        bail!("fusermount3 -u -z {} failed ({status})", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 22 0:45 / /home/me/My\\040Music rw,nosuid,nodev shared:30 - fuse.musicfs musicfs rw,user_id=1000
37 22 0:46 / /mnt/tab\\011and\\134slash rw - tmpfs tmpfs rw
38 22 0:47 / /mnt/no-optional rw - fuse sshfs#host rw
garbage line
";

    #[test]
    fn parses_mount_points_types_and_sources() {
        let entries = parse_mountinfo(SAMPLE);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].mount_point, Path::new("/"));
        assert_eq!(entries[0].fstype, "ext4");
        assert_eq!(entries[1].source, "musicfs");
        assert_eq!(entries[3].fstype, "fuse");
    }

    #[test]
    fn unescapes_octal_sequences() {
        let entries = parse_mountinfo(SAMPLE);
        assert_eq!(entries[1].mount_point, Path::new("/home/me/My Music"));
        assert_eq!(entries[2].mount_point, Path::new("/mnt/tab\tand\\slash"));
        assert_eq!(unescape(b"a\\012b"), b"a\nb");
        assert_eq!(unescape(b"trailing\\04"), b"trailing\\04");
        assert_eq!(unescape(b"not\\999octal"), b"not\\999octal");
    }

    #[test]
    fn recognises_musicfs_and_fuse_mounts() {
        let entries = parse_mountinfo(SAMPLE);
        assert!(entries[1].is_musicfs() && entries[1].is_fuse());
        assert!(!entries[2].is_musicfs() && !entries[2].is_fuse());
        assert!(!entries[3].is_musicfs() && entries[3].is_fuse());
    }

    #[test]
    fn finds_the_root_mount_and_not_a_plain_dir() {
        assert!(is_mounted(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mounted(dir.path()));
        assert_eq!(probe(dir.path()), MountPointState::Free);
    }
}
