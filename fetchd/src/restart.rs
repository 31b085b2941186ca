//! fetchd asking to be restarted, when the sandbox it entered at start keeps it from something
//! it must reach. Landlock admits the files and folders it was given by inode: a local
//! origin's folder that is another folder now (a disk mounted there since), or a known_hosts
//! file replaced by a new one (as `ssh-keygen -R` does), is refused for ever. fetchd stops as
//! on SIGTERM, then exits with [`EXIT_RESTART`], which the supervisor and systemd
//! (`Restart=on-failure`) both answer with a restart; the mount stays up meanwhile, as for any
//! worker restart, and the new sandbox takes the new file or folder in.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// `EX_TEMPFAIL`: not a failure of fetchd, but a reason to start it again.
pub const EXIT_RESTART: u8 = 75;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Stops fetchd so that it is started again; `why` is logged (once, however often asked).
pub fn request(why: &str) {
    if REQUESTED.swap(true, Ordering::AcqRel) {
        return;
    }
    tracing::warn!("restarting fetchd: {why}");
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGTERM) {
        tracing::error!("cannot stop fetchd to restart it: {e}");
    }
}

/// Whether fetchd stopped to be restarted.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Acquire)
}

/// A path as fetchd's sandbox admitted it at start, to tell when it is another file or folder.
#[derive(Debug)]
pub struct Admitted {
    path: PathBuf,
    kind: Kind,
    at_start: Option<Identity>,
}

/// What an [`Admitted`] path must be for a new one there to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

impl Admitted {
    pub fn new(path: &Path, kind: Kind) -> Self {
        Self {
            path: path.to_owned(),
            kind,
            at_start: identity(path, kind),
        }
    }

    /// Restarts fetchd (saying `why`) when the path is another one of its kind than at start:
    /// not when it has only gone.
    pub fn check(&self, why: &str) {
        let now = identity(&self.path, self.kind);
        if now.is_some() && now != self.at_start {
            request(why);
        }
    }
}

/// Which file or directory `path` is now: its device and inode, and the mount it is on. The
/// mount tells a disk mounted again from the one before: a tmpfs's root is always inode 1, and
/// a device number freed by an unmount is handed to the next mount. `None` when nothing of
/// `kind` is there.
fn identity(path: &Path, kind: Kind) -> Option<Identity> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mask = libc::STATX_TYPE | libc::STATX_INO | libc::STATX_MNT_ID_UNIQUE;
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `c_path` is NUL-terminated and `stx` is a statx-sized buffer the call fills.
    let rc = unsafe { libc::statx(libc::AT_FDCWD, c_path.as_ptr(), 0, mask, stx.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statx succeeded and filled the buffer (zeroed before, so no field is undefined).
    let stx = unsafe { stx.assume_init() };
    let format = u32::from(stx.stx_mode) & libc::S_IFMT;
    let wanted = match kind {
        Kind::Dir => libc::S_IFDIR,
        Kind::File => libc::S_IFREG,
    };
    (format == wanted).then_some(Identity {
        device: (stx.stx_dev_major, stx.stx_dev_minor),
        inode: stx.stx_ino,
        mount: stx.stx_mnt_id,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    device: (u32, u32),
    inode: u64,
    /// The kernel's unique mount id (or, before Linux 6.8, its reusable one).
    mount: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_or_file_put_in_the_place_of_another_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("music");
        std::fs::create_dir(&root).unwrap();
        let first = identity(&root, Kind::Dir).expect("a directory has one");
        assert_eq!(identity(&root, Kind::Dir), Some(first), "asked twice");
        std::fs::rename(&root, dir.path().join("old")).unwrap();
        std::fs::create_dir(&root).unwrap();
        assert_ne!(identity(&root, Kind::Dir), Some(first));
        assert_eq!(identity(&root, Kind::File), None, "not a file");

        let file = dir.path().join("known_hosts");
        std::fs::write(&file, b"a").unwrap();
        let first = identity(&file, Kind::File).expect("a file has one");
        std::fs::write(dir.path().join("new"), b"a").unwrap();
        std::fs::rename(dir.path().join("new"), &file).unwrap();
        assert_ne!(identity(&file, Kind::File), Some(first));
        assert_eq!(identity(&file, Kind::Dir), None, "not a directory");
        assert_eq!(identity(&dir.path().join("missing"), Kind::File), None);
    }
}
