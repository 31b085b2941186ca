//! The filesystem itself, without FUSE: [`FsCore`] answers each operation from a [`Backend`] and
//! keeps the open-handle table. The fuser adapter only converts types and calls it, so tests drive
//! it directly.
//!
//! What it guarantees:
//! - Read-only: opening for writing and every modifying operation fail with `EROFS`.
//! - An open file reads one content version ([`TrackRef`]) from open to release, even if the
//!   track changes meanwhile.
//! - An open directory lists one snapshot; offsets index into it, so `readdir` resumes exactly
//!   where it stopped. Reading from offset 0 (a new listing or `rewinddir`) takes a fresh one.
//! - Names that are not UTF-8 cannot exist in the catalog: their lookup is `ENOENT` at once.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use musicfs_ipc::{Attr, DirEntry, FetchError, FsStats, Ino, NodeKind, TrackRef, ROOT_INO};

use crate::backend::{Backend, BackendError};

/// Why an operation failed; [`crate::errno`] turns it into an errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("read-only file system")]
    ReadOnly,
    #[error("no such open file or directory handle")]
    BadHandle,
    #[error("the caller's buffer is too small")]
    BufferTooSmall,
}

impl From<FetchError> for FsError {
    fn from(err: FetchError) -> Self {
        FsError::Backend(err.into())
    }
}

/// The operations that would change the filesystem; all of them are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    SetAttr,
    MkNod,
    MkDir,
    Unlink,
    RmDir,
    Symlink,
    Rename,
    Link,
    Write,
    Create,
    SetXattr,
    RemoveXattr,
    Fallocate,
    CopyFileRange,
}

/// A successful open: the handle, and whether the kernel may keep the pages it cached for this
/// inode (false when the track's content version differs from the previous open's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
    /// Bypass the page cache: the track is read across a network (see `Attr::direct_io`).
    pub direct: bool,
}

/// Answer to getxattr/listxattr: the size when the caller asked for it (size 0), else the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Xattr {
    Size(u32),
    Data(Vec<u8>),
}

/// The entries of an open directory from a given offset on.
#[derive(Debug, Clone)]
pub struct DirPage {
    entries: Arc<[DirEntry]>,
    /// The offset of `entries[0]` in the listing.
    base: usize,
    start: usize,
    end: usize,
}

impl DirPage {
    fn new(entries: Arc<[DirEntry]>, offset: u64) -> Self {
        let end = entries.len();
        let start = usize::try_from(offset).map_or(end, |o| o.min(end));
        Self {
            entries,
            base: 0,
            start,
            end,
        }
    }

    /// Each remaining entry with the offset to pass to `readdir` to continue after it.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &DirEntry)> {
        self.entries[self.start..self.end]
            .iter()
            .enumerate()
            .map(|(i, entry)| ((self.base + self.start + i) as u64 + 1, entry))
    }
}

/// Entries given attributes per readdirplus call in a names-only directory; the kernel asks
/// again for the rest.
const PLUS_BATCH: usize = 128;

/// What an open handle holds.
#[derive(Debug)]
enum Handle {
    File {
        track: TrackRef,
        size: u64,
    },
    Dir {
        ino: Ino,
        /// Filled by the first `readdir` at offset 0.
        entries: Option<Arc<[DirEntry]>>,
    },
}

pub struct FsCore<B> {
    backend: B,
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: AtomicU64,
    /// Every node handed to the kernel (by lookup or a listing): its parent and every name it
    /// was given under since the kernel was last told to forget. Answers `..`, and says what
    /// to invalidate when the namespace changes: a node a rescan renamed (a retagged track
    /// keeps its inode) has its old name invalidated too, even if a listing showed the new one
    /// before the change was noticed.
    known: Mutex<Known>,
    /// Listings being read without an open handle (the kernel skips `opendir` once told it is
    /// not needed): taken at offset 0, dropped when read to the end.
    unopened: Mutex<HashMap<Ino, Arc<[DirEntry]>>>,
    /// The content version each file was last opened at, to tell when cached pages are stale.
    opened_versions: Mutex<HashMap<Ino, TrackRef>>,
    /// Held for reading by each answer from the namespace (from asking to replying), for
    /// writing while another generation is shown: no answer from the old tree reaches the
    /// kernel after the switch without being recorded in `known` first.
    answers: RwLock<()>,
}

impl<B: Backend> FsCore<B> {
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            known: Mutex::new(Known::default()),
            unopened: Mutex::new(HashMap::new()),
            opened_versions: Mutex::new(HashMap::new()),
            answers: RwLock::new(()),
        }
    }

    /// Held while answering the kernel about `ino` (or a name in it) from the namespace:
    /// lookups, attributes, listings. `None` for the views' own nodes (searches, collections):
    /// they are not fetchd's tree, and a search waiting for indexd must not hold up a switch.
    pub fn answering(&self, ino: Ino) -> Option<RwLockReadGuard<'_, ()>> {
        (!crate::views::is_virtual(ino))
            .then(|| self.answers.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Shows another generation of the tree once the answers being given are done (the
    /// backend forgets what it remembered of the one before).
    pub fn show(&self, generation: u64) {
        let _no_answers = self.answers.write().unwrap_or_else(PoisonError::into_inner);
        self.backend.show(generation);
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// `(parent, name)` of every entry the kernel may hold, forgotten here as they are handed
    /// out: the caller tells the kernel to forget them. Entries handed to the kernel after this
    /// are recorded afresh.
    pub fn take_known_entries(&self) -> Vec<(Ino, String)> {
        lock(&self.known).names.drain().collect()
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, FsError> {
        let Some(name) = name.to_str() else {
            return Err(FetchError::NotFound.into());
        };
        let attr = self.backend.lookup(parent, name)?;
        lock(&self.known).remember(attr.ino, parent, name);
        Ok(attr)
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        Ok(self.backend.getattr(ino)?)
    }

    pub fn readlink(&self, ino: Ino) -> Result<String, FsError> {
        Ok(self.backend.readlink(ino)?)
    }

    pub fn statfs(&self) -> Result<FsStats, FsError> {
        Ok(self.backend.statfs()?)
    }

    /// Opens a file for reading. Any write access is `EROFS`.
    pub fn open(&self, ino: Ino, flags: i32) -> Result<Opened, FsError> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(FsError::ReadOnly);
        }
        let attr = self.backend.current(ino)?;
        let track = match attr.kind {
            NodeKind::Dir => return Err(FetchError::IsADirectory.into()),
            NodeKind::File | NodeKind::Symlink => attr.track.ok_or_else(|| {
                BackendError::Protocol(format!("node {ino} has no track to read"))
            })?,
        };
        let keep_cache = lock(&self.opened_versions)
            .insert(ino, track)
            .is_none_or(|previous| previous == track);
        let fh = self.insert(Handle::File {
            track,
            size: attr.size,
        });
        Ok(Opened {
            fh,
            keep_cache,
            direct: attr.direct_io,
        })
    }

    /// Up to `size` bytes at `offset` of the content version the handle was opened at.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let (track, file_size) = match lock(&self.handles).get(&fh) {
            Some(Handle::File { track, size }) => (*track, *size),
            _ => return Err(FsError::BadHandle),
        };
        let remaining = file_size.saturating_sub(offset);
        let len = u32::try_from(remaining).unwrap_or(u32::MAX).min(size);
        if len == 0 {
            return Ok(Vec::new());
        }
        Ok(self.backend.read(track, offset, len)?)
    }

    pub fn release(&self, fh: u64) {
        lock(&self.handles).remove(&fh);
    }

    /// Opens a directory; its entries are fetched by the first `readdir`.
    pub fn opendir(&self, ino: Ino) -> Result<u64, FsError> {
        Ok(self.insert(Handle::Dir { ino, entries: None }))
    }

    /// The entries from `offset` on, `.` and `..` first. Offset 0 takes a fresh snapshot.
    pub fn readdir(&self, fh: u64, offset: u64) -> Result<DirPage, FsError> {
        let (ino, snapshot) = match lock(&self.handles).get(&fh) {
            Some(Handle::Dir { ino, entries }) => (*ino, entries.clone()),
            _ => return Err(FsError::BadHandle),
        };
        let entries = match snapshot {
            Some(entries) if offset > 0 => entries,
            _ => {
                let fresh = self.list(ino)?;
                if let Some(Handle::Dir { entries, .. }) = lock(&self.handles).get_mut(&fh) {
                    *entries = Some(fresh.clone());
                }
                fresh
            }
        };
        Ok(DirPage::new(entries, offset))
    }

    /// Like [`readdir`](Self::readdir) for a directory the kernel did not open (no handle):
    /// offset 0 takes a snapshot that later offsets resume in, until the end is reached.
    pub fn readdir_unopened(&self, ino: Ino, offset: u64) -> Result<DirPage, FsError> {
        let kept = lock(&self.unopened).get(&ino).cloned();
        let entries = match kept {
            Some(entries) if offset > 0 => entries,
            _ => {
                let fresh = self.list(ino)?;
                lock(&self.unopened).insert(ino, fresh.clone());
                fresh
            }
        };
        let page = DirPage::new(entries, offset);
        if page.start >= page.end {
            lock(&self.unopened).remove(&ino);
        }
        Ok(page)
    }

    /// A page of a listing for readdirplus, whose entries the kernel takes attributes from.
    ///
    /// A directory the backend lists by names only (search results, whose attributes need
    /// fetchd) answers its first readdirplus with `.` and `..` alone: the kernel then reads the
    /// rest with plain readdir and asks for attributes only of the entries a program looks at.
    /// If it asks readdirplus past the start after all, the entries get their attributes from
    /// `getattr`, [`PLUS_BATCH`] at a time.
    pub fn readdirplus(&self, ino: Ino, page: DirPage) -> Result<DirPage, FsError> {
        if !self.backend.lists_names_only(ino) {
            return Ok(page);
        }
        if page.start == 0 {
            return Ok(DirPage {
                end: page.end.min(2),
                ..page
            });
        }
        let end = page.end.min(page.start + PLUS_BATCH);
        let mut filled = Vec::with_capacity(end - page.start);
        for entry in &page.entries[page.start..end] {
            let attr = match self.backend.getattr(entry.attr.ino) {
                // Gone since the listing was made: it keeps what the listing said.
                Err(BackendError::Fetch(FetchError::NotFound)) => entry.attr.clone(),
                other => other?,
            };
            filled.push(DirEntry {
                name: entry.name.clone(),
                attr,
            });
        }
        let len = filled.len();
        Ok(DirPage {
            entries: filled.into(),
            base: page.base + page.start,
            start: 0,
            end: len,
        })
    }

    pub fn releasedir(&self, fh: u64) {
        lock(&self.handles).remove(&fh);
    }

    /// The value of one attribute; with `size` 0 only its length, `ERANGE` if it does not fit.
    pub fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<Xattr, FsError> {
        let Some(name) = name.to_str() else {
            return Err(FetchError::NoAttribute.into());
        };
        let value = self
            .backend
            .xattrs(ino)?
            .into_iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.into_bytes())
            .ok_or(FetchError::NoAttribute)?;
        sized(value, size)
    }

    /// The attribute names, each followed by a NUL byte, sized like [`getxattr`](Self::getxattr).
    pub fn listxattr(&self, ino: Ino, size: u32) -> Result<Xattr, FsError> {
        let mut names = Vec::new();
        for (name, _) in self.backend.xattrs(ino)? {
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        sized(names, size)
    }

    /// Every modifying operation ends here.
    pub fn refuse(&self, op: WriteOp) -> FsError {
        tracing::debug!(?op, "refused on a read-only file system");
        FsError::ReadOnly
    }

    fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, handle);
        fh
    }

    /// A directory's entries from the backend, after `.` and `..`.
    fn list(&self, ino: Ino) -> Result<Arc<[DirEntry]>, FsError> {
        let children = self.backend.readdir(ino)?;
        let parent = {
            let mut known = lock(&self.known);
            for child in &children {
                known.remember(child.attr.ino, ino, &child.name);
            }
            known.parents.get(&ino).copied().unwrap_or(ROOT_INO)
        };
        let mut entries = Vec::with_capacity(children.len() + 2);
        entries.push(dot_entry(".", ino));
        entries.push(dot_entry("..", parent));
        entries.extend(children);
        Ok(entries.into())
    }
}

/// `.` or `..`. Only the inode number and the kind matter: the kernel does not take attributes
/// from these two entries, not even in readdirplus.
fn dot_entry(name: &str, ino: Ino) -> DirEntry {
    DirEntry {
        name: name.to_owned(),
        attr: Attr {
            ino,
            kind: NodeKind::Dir,
            size: 0,
            mtime_secs: 0,
            mtime_nanos: 0,
            track: None,
            direct_io: false,
        },
    }
}

/// The xattr convention: size 0 asks for the length; a buffer too small is `ERANGE`.
fn sized(data: Vec<u8>, size: u32) -> Result<Xattr, FsError> {
    let len = u32::try_from(data.len()).map_err(|_| FsError::BufferTooSmall)?;
    if size == 0 {
        Ok(Xattr::Size(len))
    } else if len > size {
        Err(FsError::BufferTooSmall)
    } else {
        Ok(Xattr::Data(data))
    }
}

/// Where the kernel saw nodes: see [`FsCore::known`].
#[derive(Default)]
struct Known {
    parents: HashMap<Ino, Ino>,
    names: HashSet<(Ino, String)>,
}

impl Known {
    /// Records where the kernel saw a node. Search results are not recorded: they come and go
    /// with every query (their one-second TTL keeps the kernel honest) and would only grow the
    /// tables.
    fn remember(&mut self, ino: Ino, parent: Ino, name: &str) {
        if crate::views::is_virtual(ino) {
            return;
        }
        self.parents.insert(ino, parent);
        self.names.insert((parent, name.to_owned()));
    }
}

/// A poisoned lock only means another thread panicked mid-operation; the maps stay usable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
