//! The content-addressed chunk store: one file per chunk under `chunks/xx/<xxh3-128 hex>`,
//! written atomically (temporary file + rename) and checked against its name on every read. A
//! chunk that fails the check is deleted and reported missing, so it is fetched again, never
//! served.
//!
//! The store keeps to its [`Limits`]: before a chunk is written, least recently used chunks
//! that are not pinned are deleted until the new one fits under the budget with the free-disk
//! floor kept, and bytes being written count from the moment they are admitted, so many
//! concurrent writers together never overshoot; a writer whose room is taken by writes in
//! flight waits for them to end. When nothing more can be evicted (only pinned chunks are left)
//! the write fails (`StorageFull`) and the caller serves the bytes without keeping them. Recency lives in
//! memory ([`Lru`]), seeded from the files' mtimes at start; a hit refreshes a file's mtime at
//! most every few minutes, so the order survives restarts roughly.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use xxhash_rust::xxh3::xxh3_128;

use crate::cache::{Limits, Lru};

/// FastCDC sizes (bytes): minimum, average, maximum.
pub const MIN_CHUNK: u32 = 16 * 1024;
pub const AVG_CHUNK: u32 = 64 * 1024;
pub const MAX_CHUNK: u32 = 256 * 1024;

/// A hit refreshes the chunk file's mtime (its recency after a restart) when it is older.
const TOUCH_EVERY: Duration = Duration::from_secs(600);
/// `clear` deletes this many chunks per turn of the lock, so writers are not held up long.
const CLEAR_BATCH: usize = 256;
/// How long a writer waits for writes in flight to make room before it gives up.
const ROOM_WAIT: Duration = Duration::from_secs(10);

pub fn chunk_hash(bytes: &[u8]) -> u128 {
    xxh3_128(bytes)
}

#[derive(Debug, Default)]
struct Held {
    lru: Lru,
    /// Bytes admitted and being written (temporary files, renames not yet recorded).
    writing: u64,
    /// Bytes being written outside the store that the free-disk floor must leave room for
    /// (staging files; see [`ChunkStore::reserve_disk`]).
    outside: u64,
}

#[derive(Debug)]
pub struct ChunkStore {
    dir: PathBuf,
    limits: Limits,
    held: Mutex<Held>,
    /// Signalled when room may have appeared: a write in flight ended (its bytes are now
    /// evictable, or released), chunks were deleted or unpinned.
    written: Condvar,
    next_tmp: AtomicU64,
}

/// Room kept on the disk for bytes being written outside the store, until dropped.
#[derive(Debug)]
#[must_use = "the room is given back when the reservation is dropped"]
pub struct DiskReservation<'a> {
    store: &'a ChunkStore,
    len: u64,
}

impl Drop for DiskReservation<'_> {
    fn drop(&mut self) {
        if self.len > 0 {
            self.store.lock().outside -= self.len;
        }
    }
}

fn storage_full(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, message)
}

impl ChunkStore {
    /// Opens (creating) the store without limits.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir, Limits::unlimited())
    }

    /// Opens (creating) the store, learns what it holds (recency from the files' mtimes) and
    /// evicts down to the budget if it holds more (a budget lowered since the last run).
    /// Leftover temporary files of an interrupted write are removed.
    pub fn open_with(dir: &Path, limits: Limits) -> io::Result<Self> {
        let tmp = dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().len() != 2 {
                continue;
            }
            for chunk in std::fs::read_dir(entry.path())? {
                let chunk = chunk?;
                let Some(hash) = chunk
                    .file_name()
                    .to_str()
                    .filter(|n| n.len() == 32)
                    .and_then(|n| u128::from_str_radix(n, 16).ok())
                else {
                    continue;
                };
                let meta = chunk.metadata()?;
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i128);
                found.push((hash, meta.len(), mtime));
            }
        }
        let store = Self {
            dir: dir.to_owned(),
            limits,
            held: Mutex::new(Held {
                lru: Lru::seeded(found),
                writing: 0,
                outside: 0,
            }),
            written: Condvar::new(),
            next_tmp: AtomicU64::new(0),
        };
        if let Some(budget) = store.limits.budget {
            let mut held = store.lock();
            let over = held.lru.usage().1.saturating_sub(budget);
            store.evict(&mut held, over)?;
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().expect("chunk store lock poisoned")
    }

    fn path(&self, hash: u128) -> PathBuf {
        let hex = format!("{hash:032x}");
        self.dir.join(&hex[..2]).join(hex)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Free bytes on the store's filesystem now.
    pub fn free_disk(&self) -> io::Result<u64> {
        (self.limits.free_space)(&self.dir)
    }

    /// The chunk's bytes if present and intact. A corrupt chunk is deleted and `None` returned.
    pub fn get(&self, hash: u128) -> io::Result<Option<Vec<u8>>> {
        let mut bytes = Vec::new();
        Ok(self.get_into(hash, &mut bytes)?.then_some(bytes))
    }

    /// Appends the chunk's bytes to `out` if present and intact (true), so a reader assembling
    /// a range copies them once. A corrupt chunk is deleted, and `out` is left as it was.
    pub fn get_into(&self, hash: u128, out: &mut Vec<u8>) -> io::Result<bool> {
        let at = out.len();
        let found = self.read_verified(hash, out);
        match found {
            Ok(true) => self.lock().lru.touch(hash),
            _ => out.truncate(at),
        }
        found
    }

    /// Asks the kernel to start reading these chunks from disk now, side by side, so the
    /// reads that follow one by one find them in memory (chunks not held are skipped).
    pub fn prefetch(&self, hashes: impl IntoIterator<Item = u128>) {
        use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
        for hash in hashes {
            if let Ok(file) = std::fs::File::open(self.path(hash)) {
                let _ = posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
            }
        }
    }

    /// Appends the chunk to `out` and checks it there (false, with `out` to be cut back by the
    /// caller, when it is missing or corrupt).
    fn read_verified(&self, hash: u128, out: &mut Vec<u8>) -> io::Result<bool> {
        let path = self.path(hash);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let at = out.len();
        out.reserve(meta.len() as usize);
        file.read_to_end(out)?;
        if chunk_hash(&out[at..]) != hash {
            tracing::warn!(chunk = %format!("{hash:032x}"), "chunk failed verification; dropped, will fetch again");
            self.remove(hash)?;
            return Ok(false);
        }
        let now = SystemTime::now();
        if meta
            .modified()
            .is_ok_and(|m| now.duration_since(m).unwrap_or_default() > TOUCH_EVERY)
        {
            // Recency for the next start; losing it costs nothing but order.
            let _ = file.set_modified(now);
        }
        Ok(true)
    }

    /// Whether the chunk is held (as far as the store has recorded).
    pub fn contains(&self, hash: u128) -> bool {
        self.lock().lru.contains(hash)
    }

    /// The chunks of `hashes` not held.
    pub fn missing(&self, hashes: &[u128]) -> Vec<u128> {
        let held = self.lock();
        hashes
            .iter()
            .copied()
            .filter(|h| !held.lru.contains(*h))
            .collect()
    }

    /// Stores `bytes` under `hash` (which the caller computed from them), evicting least
    /// recently used chunks first if the budget or the free-disk floor asks for it. Fails with
    /// `StorageFull` when enough room cannot be made (everything left is pinned).
    pub fn put(&self, hash: u128, bytes: &[u8]) -> io::Result<()> {
        debug_assert_eq!(chunk_hash(bytes), hash);
        let len = bytes.len() as u64;
        {
            let mut held = self.make_room(Some(hash), len)?;
            if held.lru.contains(hash) {
                held.lru.touch(hash);
                return Ok(());
            }
            held.writing += len;
        }
        let written = self.write_file(hash, bytes);
        let mut held = self.lock();
        held.writing -= len;
        if written.is_ok() {
            held.lru.insert(hash, len);
        }
        drop(held);
        self.written.notify_all();
        written
    }

    /// Takes the lock once `len` more bytes fit under the budget and above the free-disk floor,
    /// evicting least recently used chunks for it. While other writes are in flight, their
    /// bytes may be what stands in the way: it waits for them to end (then evictable) before it
    /// gives up. Returns early if the chunk arrived meanwhile.
    fn make_room(&self, hash: Option<u128>, len: u64) -> io::Result<MutexGuard<'_, Held>> {
        if let Some(budget) = self.limits.budget.filter(|b| len > *b) {
            return Err(storage_full(format!(
                "a chunk of {len} bytes is larger than the cache budget of {budget} bytes"
            )));
        }
        let give_up = std::time::Instant::now() + ROOM_WAIT;
        let mut held = self.lock();
        loop {
            if hash.is_some_and(|h| held.lru.contains(h)) {
                return Ok(held);
            }
            let needed = self.shortfall(&held, len)?;
            if self.evict(&mut held, needed)? >= needed {
                return Ok(held);
            }
            let now = std::time::Instant::now();
            if held.writing == 0 || now >= give_up {
                let (_, pinned) = held.lru.pinned_usage();
                return Err(storage_full(format!(
                    "the chunk cache cannot make room for {len} more bytes: everything left \
                     ({pinned} bytes) is pinned or the disk is short of its free-space floor; \
                     unpin something or raise [cache] budget"
                )));
            }
            held = self
                .written
                .wait_timeout(held, give_up - now)
                .expect("chunk store lock poisoned")
                .0;
        }
    }

    /// Room on the disk for `len` bytes about to be written outside the store (into a staging
    /// file), so they too leave the free-disk floor: least recently used chunks are evicted if
    /// the floor asks for it. The bytes count against the floor for every other writer until
    /// the reservation is dropped, when they are on disk. `StorageFull` when the room cannot be
    /// made (everything left is pinned).
    pub fn reserve_disk(&self, len: u64) -> io::Result<DiskReservation<'_>> {
        let floor = self.limits.min_free;
        if floor == 0 {
            return Ok(DiskReservation {
                store: self,
                len: 0,
            });
        }
        let mut held = self.lock();
        let needed = (floor + held.writing + held.outside + len).saturating_sub(self.free_disk()?);
        if self.evict(&mut held, needed)? < needed {
            return Err(storage_full(format!(
                "no room for {len} more bytes of staging above the cache's free-space floor \
                 ({floor} bytes) and nothing left to evict; free some disk space or lower \
                 [cache] min_free"
            )));
        }
        held.outside += len;
        Ok(DiskReservation { store: self, len })
    }

    /// Bytes to free before `len` more fit under the budget and above the free-disk floor.
    fn shortfall(&self, held: &Held, len: u64) -> io::Result<u64> {
        let (_, bytes) = held.lru.usage();
        let over_budget = self.limits.budget.map_or(0, |budget| {
            (bytes + held.writing + len).saturating_sub(budget)
        });
        let under_floor = match self.limits.min_free {
            0 => 0,
            floor => (floor + held.writing + held.outside + len).saturating_sub(self.free_disk()?),
        };
        Ok(over_budget.max(under_floor))
    }

    /// Deletes least recently used unpinned chunks until `needed` bytes are freed or none is
    /// left to delete; returns the bytes freed.
    fn evict(&self, held: &mut Held, needed: u64) -> io::Result<u64> {
        let mut freed = 0;
        while freed < needed {
            let Some(victim) = held.lru.oldest_evictable() else {
                break;
            };
            freed += self.delete(held, victim)?;
        }
        Ok(freed)
    }

    /// Deletes a held chunk's file and forgets it; the bytes freed.
    fn delete(&self, held: &mut Held, hash: u128) -> io::Result<u64> {
        match std::fs::remove_file(self.path(hash)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(held.lru.remove(hash).unwrap_or(0))
    }

    fn write_file(&self, hash: u128, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(hash);
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            drop(file);
            std::fs::create_dir_all(path.parent().expect("chunk path has a parent"))?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Deletes a chunk (pinned or not); a chunk not held is not an error.
    pub fn remove(&self, hash: u128) -> io::Result<()> {
        let mut held = self.lock();
        let deleted = self.delete(&mut held, hash).map(drop);
        drop(held);
        self.written.notify_all();
        deleted
    }

    /// Deletes every chunk that is not pinned; returns (chunks, bytes) deleted.
    pub fn clear(&self) -> io::Result<(u64, u64)> {
        let victims = self.lock().lru.evictable();
        let (mut chunks, mut bytes) = (0, 0);
        for batch in victims.chunks(CLEAR_BATCH) {
            let mut held = self.lock();
            for hash in batch {
                // Pinned since the list was taken: keep it.
                if held.lru.evictable_contains(*hash) {
                    bytes += self.delete(&mut held, *hash)?;
                    chunks += 1;
                }
            }
            drop(held);
            self.written.notify_all();
        }
        Ok((chunks, bytes))
    }

    /// Makes `protected` the set of chunks never evicted (those of pinned tracks).
    pub fn set_protected(&self, protected: HashSet<u128>) {
        self.lock().lru.set_protected(protected);
        self.written.notify_all();
    }

    /// Adds chunks to the protected set.
    pub fn protect(&self, hashes: impl IntoIterator<Item = u128>) {
        self.lock().lru.protect(hashes);
    }

    /// (chunks, bytes) held.
    pub fn usage(&self) -> (u64, u64) {
        self.lock().lru.usage()
    }

    /// (chunks, bytes) held that belong to pinned tracks.
    pub fn pinned_usage(&self) -> (u64, u64) {
        self.lock().lru.pinned_usage()
    }
}

#[cfg(test)]
#[path = "chunks_tests.rs"]
mod tests;
