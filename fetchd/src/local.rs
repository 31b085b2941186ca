//! Local origins: folders of audio files, read with positioned reads. On a network file
//! system, each stat, open and read waits at most the origin's timeout, and a walk at most
//! that long for each entry ([`crate::netfs`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::netfs::{Calls, Progress};
use crate::origin::{is_audio, Found, Listing, Origin, RangeRead};
use crate::restart::{Admitted, Kind};

#[derive(Debug)]
pub struct LocalOrigin {
    name: String,
    root: PathBuf,
    /// The root as fetchd's sandbox admitted it at start.
    admitted: Admitted,
    /// Direct, or bounded for a folder on a network file system.
    calls: Arc<Calls>,
}

/// How long a call into a folder on a network file system is waited for when the config says
/// nothing (`timeout_seconds`, as for remote origins).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl LocalOrigin {
    /// The folder at `root`. One that does not exist (a disk not mounted) is an origin that
    /// cannot be listed, whose tracks stay as the catalog knows them, until it appears.
    pub fn new(root: &Path) -> io::Result<Self> {
        let root = match root.canonicalize() {
            Ok(root) => root,
            Err(e) if e.kind() == io::ErrorKind::NotFound && root.is_absolute() => {
                let root = canonical_missing(root);
                tracing::warn!(
                    origin = %root.display(),
                    "the folder does not exist (a disk not mounted?); its tracks stay listed, \
                     and it is read once it appears"
                );
                root
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("origin {}: {e}", root.display()),
                ))
            }
        };
        if root.exists() && !root.is_dir() {
            return Err(io::Error::other(format!(
                "origin {} is not a directory",
                root.display()
            )));
        }
        let name = root.display().to_string();
        Ok(Self {
            calls: Arc::new(Calls::new(&name, &root, DEFAULT_TIMEOUT)),
            name,
            admitted: Admitted::new(&root, Kind::Dir),
            root,
        })
    }

    /// Waits at most `timeout` for a call into a folder on a network file system.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.calls = Arc::new(Calls::new(&self.name, &self.root, timeout));
        self
    }

    /// Restarts fetchd when the root is another directory than at start: a disk mounted or
    /// unmounted there, or a folder that has appeared. Landlock lets fetchd into the folder it
    /// saw at start only (a new one is refused for ever), and inotify watches the old one.
    fn check_root(&self) {
        self.admitted.check(&format!(
            "origin {}: its folder is another one than when fetchd started (a disk was mounted \
             or unmounted there), and the sandbox and the watch know only that one",
            self.name
        ));
    }
}

/// `root`, which does not exist, with its nearest existing ancestor made canonical: the name
/// it will have once it exists (unless it appears as a symlink itself), so the catalog's
/// tracks on it keep their origin across the restart that follows.
fn canonical_missing(root: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = root;
    while let Some(parent) = at.parent() {
        rest.push(at.file_name().unwrap_or_default().to_owned());
        if let Ok(base) = parent.canonicalize() {
            return rest.iter().rev().fold(base, |path, part| path.join(part));
        }
        at = parent;
    }
    root.to_owned()
}

impl Origin for LocalOrigin {
    /// The origin's name in the catalog and in status: its absolute path.
    fn name(&self) -> &str {
        &self.name
    }

    /// Every audio file below the root (following symlinks, loops skipped), and the entries
    /// that could not be listed or named, with the reason. An error that a network mount
    /// gives while its server is away (EIO, a timeout, a stale handle) fails the walk, and so
    /// does one that stops answering (on a network file system; see [`Calls::walk`]).
    fn walk(&self) -> io::Result<Listing> {
        let (root, name) = (self.root.clone(), self.name.clone());
        let walked = self
            .calls
            .walk(move |progress| walk_folder(&root, &name, progress));
        if walked
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        {
            self.check_root();
        }
        walked
    }

    fn stat(&self, rel: &str) -> io::Result<(u64, i128)> {
        let path = self.root.join(rel);
        let meta = self
            .calls
            .call(&format!("stat {rel:?}"), move || std::fs::metadata(path))?;
        Ok((meta.len(), mtime_ns(&meta)))
    }

    fn open(&self, rel: &str) -> io::Result<Box<dyn RangeRead>> {
        let path = self.root.join(rel);
        let (file, len) = self.calls.call(&format!("open {rel:?}"), move || {
            let file = File::open(path)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })?;
        Ok(Box::new(LocalFile {
            file: Arc::new(file),
            len,
            rel: rel.to_owned(),
            calls: self.calls.clone(),
        }))
    }

    fn probe(&self) -> io::Result<()> {
        self.check_root();
        let root = self.root.clone();
        self.calls
            .call("listing", move || std::fs::read_dir(root).map(drop))
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

struct LocalFile {
    file: Arc<File>,
    len: u64,
    /// For errors.
    rel: String,
    calls: Arc<Calls>,
}

impl RangeRead for LocalFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if !self.calls.bounded() {
            return read_fully(&self.file, offset, buf);
        }
        // The thread may outlive this call (a server gone): it reads into a buffer of its own.
        let (file, len) = (self.file.clone(), buf.len());
        let what = format!("reading {:?}", self.rel);
        let read = self.calls.call(&what, move || {
            let mut own = vec![0; len];
            let n = read_fully(&file, offset, &mut own)?;
            own.truncate(n);
            Ok(own)
        })?;
        buf[..read.len()].copy_from_slice(&read);
        Ok(read.len())
    }
}

/// Fills `buf` from `offset` of `file`; short only at its end.
fn read_fully(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Every audio file below `root`, the folder of origin `name` (see [`LocalOrigin::walk`]),
/// ticking `progress` at each entry.
fn walk_folder(root: &Path, name: &str, progress: &Progress) -> io::Result<Listing> {
    // The error of a walk that met `e`, an I/O error that may pass ([`transient`]), keeping
    // its kind (so health takes the origin for unreachable).
    let gave_out = |e: &walkdir::Error| {
        let kind = e.io_error().map_or(io::ErrorKind::Other, io::Error::kind);
        io::Error::new(kind, format!("walking {name}: {e}"))
    };
    let relative = |path: &Path| {
        path.strip_prefix(root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    };
    // A root that has gone (an unmounted disk) is an unreachable origin, not an empty one; it
    // is the only thing that fails the walk as not found.
    std::fs::read_dir(root)?;
    let mut found = Vec::new();
    let mut failed = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(true) {
        progress.tick();
        let entry = match entry {
            Ok(e) => e,
            // A folder on a network mount whose server stopped answering: a listing
            // without it would read as its files removed, so there is none.
            Err(e) if e.io_error().is_some_and(transient) => return Err(gave_out(&e)),
            Err(e) => {
                let path = e.path().map(relative).unwrap_or_else(|| name.to_owned());
                failed.push((path, format!("cannot list: {e}")));
                continue;
            }
        };
        if !entry.file_type().is_file() || !is_audio(entry.path()) {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let Some(rel) = rel.to_str() else {
            failed.push((
                rel.to_string_lossy().into_owned(),
                "file name is not valid UTF-8; rename it to be listed".into(),
            ));
            continue;
        };
        match entry.metadata() {
            Ok(meta) => found.push(Found {
                path: rel.to_owned(),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
            }),
            Err(e) if e.io_error().is_some_and(transient) => return Err(gave_out(&e)),
            Err(e) => failed.push((rel.to_owned(), format!("cannot stat: {e}"))),
        }
    }
    Ok((found, failed))
}

/// Whether a folder failed to list for a reason that may pass: the I/O errors a network mount
/// (NFS, SMB) gives while its server is away, not a folder gone or refused.
fn transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        TimedOut
            | HostUnreachable
            | NetworkUnreachable
            | NotConnected
            | ConnectionReset
            | ConnectionAborted
            | StaleNetworkFileHandle
            | Interrupted
            | WouldBlock
    ) || e.raw_os_error() == Some(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_named_as_it_will_be_once_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("media");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let missing = LocalOrigin::new(&link.join("usb/Music")).unwrap();
        assert!(missing.walk().is_err(), "a missing folder cannot be listed");
        std::fs::create_dir_all(real.join("usb/Music")).unwrap();
        let present = LocalOrigin::new(&link.join("usb/Music")).unwrap();
        assert_eq!(missing.name(), present.name());
        assert!(!missing.name().contains("link"), "{}", missing.name());
    }
}
