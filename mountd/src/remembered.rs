//! [`Remembered`]: the library's entries and attributes, kept in mountd between calls.
//!
//! The kernel caches entries and attributes too, but forgets them under memory pressure (or
//! `drop_caches`); then opening a file costs a fetchd round trip per path component and one
//! more for the open. What is remembered comes from the tree of one generation, the one shown
//! (`invalidate.rs` moves mountd to a new one once the kernel's caches are dropped): everything
//! is forgotten when another generation is shown, and an answer that was on its way while that
//! happened is not kept. Failures are never remembered. An open asks for
//! [`Backend::current`], which always goes to fetchd: a file changed at its origin is read at
//! its new version as soon as fetchd has it, even before the next poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use moka::sync::Cache;
use musicfs_ipc::{Attr, DirEntry, FsStats, Ino, TrackRef};

use crate::backend::{Backend, BackendError};

/// Entries and attributes kept at most (each of the two), least recently used dropped first:
/// a large library's whole tree, at about 150 bytes an entry.
const KEPT: u64 = 250_000;

/// Where an answer's node is: its parent and its name there, when the question said.
type Named<'a> = Option<(Ino, &'a str)>;

/// A generation no namespace has: nothing seen yet.
const UNSEEN: u64 = u64::MAX;

pub struct Remembered<B> {
    inner: B,
    entries: Cache<(Ino, String), Attr>,
    attrs: Cache<Ino, Attr>,
    /// The last generation seen.
    generation: AtomicU64,
    /// Counts forgettings; an answer is kept only if none happened while it was asked for.
    /// Held for reading while keeping, for writing while forgetting.
    epoch: RwLock<u64>,
}

impl<B: Backend> Remembered<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            entries: Cache::new(KEPT),
            attrs: Cache::new(KEPT),
            generation: AtomicU64::new(UNSEEN),
            epoch: RwLock::new(0),
        }
    }

    fn epoch(&self) -> RwLockReadGuard<'_, u64> {
        self.epoch
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps answers asked for at `asked_at`: attributes, with the name they have in their
    /// parent where known; nothing if everything was forgotten meanwhile.
    fn keep<'a>(&self, asked_at: u64, answers: impl IntoIterator<Item = (Named<'a>, &'a Attr)>) {
        let epoch = self.epoch();
        if *epoch != asked_at {
            return;
        }
        for (named, attr) in answers {
            self.attrs.insert(attr.ino, attr.clone());
            if let Some((parent, name)) = named {
                self.entries.insert((parent, name.to_owned()), attr.clone());
            }
        }
    }

    fn forget_all(&self) {
        let mut epoch = self
            .epoch
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *epoch += 1;
        self.entries.invalidate_all();
        self.attrs.invalidate_all();
    }
}

impl<B: Backend> Backend for Remembered<B> {
    fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, BackendError> {
        let asked_at = *self.epoch();
        if let Some(attr) = self.entries.get(&(parent, name.to_owned())) {
            return Ok(attr);
        }
        let attr = self.inner.lookup(parent, name)?;
        self.keep(asked_at, [(Some((parent, name)), &attr)]);
        Ok(attr)
    }

    fn getattr(&self, ino: Ino) -> Result<Attr, BackendError> {
        let asked_at = *self.epoch();
        if let Some(attr) = self.attrs.get(&ino) {
            return Ok(attr);
        }
        let attr = self.inner.getattr(ino)?;
        self.keep(asked_at, [(None, &attr)]);
        Ok(attr)
    }

    /// Not kept: it comes from fetchd's current tree, which may be newer than the one shown.
    fn current(&self, ino: Ino) -> Result<Attr, BackendError> {
        self.inner.current(ino)
    }

    fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, BackendError> {
        let asked_at = *self.epoch();
        let entries = self.inner.readdir(ino)?;
        // Entries listed by name only have partial attributes: those are not kept.
        if !self.inner.lists_names_only(ino) {
            let named = entries
                .iter()
                .map(|e| (Some((ino, e.name.as_str())), &e.attr));
            self.keep(asked_at, named);
        }
        Ok(entries)
    }

    fn lists_names_only(&self, ino: Ino) -> bool {
        self.inner.lists_names_only(ino)
    }

    fn readlink(&self, ino: Ino) -> Result<String, BackendError> {
        self.inner.readlink(ino)
    }

    fn read(&self, track: TrackRef, offset: u64, len: u32) -> Result<Vec<u8>, BackendError> {
        self.inner.read(track, offset, len)
    }

    fn xattrs(&self, ino: Ino) -> Result<Vec<(String, String)>, BackendError> {
        self.inner.xattrs(ino)
    }

    fn statfs(&self) -> Result<FsStats, BackendError> {
        self.inner.statfs()
    }

    fn generation(&self, shown: u64) -> Result<u64, BackendError> {
        self.inner.generation(shown)
    }

    fn show(&self, generation: u64) {
        // Also the first time: what was kept before belongs to no known generation.
        if self.generation.swap(generation, Ordering::AcqRel) != generation {
            self.forget_all();
        }
        self.inner.show(generation);
    }
}

#[cfg(test)]
mod tests;
