//! What the chunk store keeps and what it lets go: the cache's limits (a byte budget and a
//! free-disk floor) and the in-memory recency order of its chunks ([`Lru`]), with the chunks of
//! pinned tracks held out of it so they are never chosen for eviction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::Arc;

use musicfs_ipc::config::CacheConfig;

/// Free bytes on the filesystem holding a path (tests give a fake one).
pub type FreeSpace = Arc<dyn Fn(&Path) -> io::Result<u64> + Send + Sync>;

/// How much the store may hold.
#[derive(Clone)]
pub struct Limits {
    /// At most this many chunk bytes; `None`: no limit.
    pub budget: Option<u64>,
    /// Free bytes kept on the store's filesystem; 0: no floor.
    pub min_free: u64,
    pub free_space: FreeSpace,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("budget", &self.budget)
            .field("min_free", &self.min_free)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// No budget and no floor (tests and tools).
    pub fn unlimited() -> Self {
        Self {
            budget: None,
            min_free: 0,
            free_space: Arc::new(free_disk),
        }
    }

    pub fn from_config(config: &CacheConfig) -> Self {
        Self {
            budget: config.budget.map(|b| b.bytes()),
            min_free: config.min_free.bytes(),
            free_space: Arc::new(free_disk),
        }
    }
}

/// Bytes available to unprivileged writers on the filesystem holding `path` (statvfs).
pub fn free_disk(path: &Path) -> io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Position in the recency order (larger: used more recently).
    tick: u64,
    size: u64,
    /// Belongs to a pinned track: kept out of `order`, never evicted.
    pinned: bool,
}

/// The chunks held, their sizes and recency, and which are pinned. Only the store changes it,
/// under its lock, together with the files.
#[derive(Debug, Default)]
pub struct Lru {
    entries: HashMap<u128, Entry>,
    /// Evictable chunks, least recently used first.
    order: BTreeMap<u64, u128>,
    /// Chunks of pinned tracks, held or not.
    protected: HashSet<u128>,
    next_tick: u64,
    bytes: u64,
    pinned_chunks: u64,
    pinned_bytes: u64,
}

impl Lru {
    /// An order seeded from chunks found on disk, oldest first by the given time (mtime), so
    /// recency survives a restart roughly.
    pub fn seeded(mut found: Vec<(u128, u64, i128)>) -> Self {
        found.sort_by_key(|(hash, _, time)| (*time, *hash));
        let mut lru = Self::default();
        for (hash, size, _) in found {
            lru.insert(hash, size);
        }
        lru
    }

    pub fn contains(&self, hash: u128) -> bool {
        self.entries.contains_key(&hash)
    }

    /// (chunks, bytes) held.
    pub fn usage(&self) -> (u64, u64) {
        (self.entries.len() as u64, self.bytes)
    }

    /// (chunks, bytes) held that belong to pinned tracks.
    pub fn pinned_usage(&self) -> (u64, u64) {
        (self.pinned_chunks, self.pinned_bytes)
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// Records a chunk as held and just used; false if it was held already (then only used).
    pub fn insert(&mut self, hash: u128, size: u64) -> bool {
        if self.entries.contains_key(&hash) {
            self.touch(hash);
            return false;
        }
        let tick = self.tick();
        let pinned = self.protected.contains(&hash);
        self.entries.insert(hash, Entry { tick, size, pinned });
        self.bytes += size;
        if pinned {
            self.pinned_chunks += 1;
            self.pinned_bytes += size;
        } else {
            self.order.insert(tick, hash);
        }
        true
    }

    /// Marks a chunk as just used.
    pub fn touch(&mut self, hash: u128) {
        let tick = self.tick();
        let Some(entry) = self.entries.get_mut(&hash) else {
            return;
        };
        if !entry.pinned {
            self.order.remove(&entry.tick);
            self.order.insert(tick, hash);
        }
        entry.tick = tick;
    }

    /// Forgets a chunk; its size if it was held.
    pub fn remove(&mut self, hash: u128) -> Option<u64> {
        let entry = self.entries.remove(&hash)?;
        self.bytes -= entry.size;
        if entry.pinned {
            self.pinned_chunks -= 1;
            self.pinned_bytes -= entry.size;
        } else {
            self.order.remove(&entry.tick);
        }
        Some(entry.size)
    }

    /// The least recently used chunk that may be evicted.
    pub fn oldest_evictable(&self) -> Option<u128> {
        self.order.values().next().copied()
    }

    /// Whether a chunk is held and may be evicted.
    pub fn evictable_contains(&self, hash: u128) -> bool {
        self.entries.get(&hash).is_some_and(|e| !e.pinned)
    }

    /// Every held chunk that may be evicted.
    pub fn evictable(&self) -> Vec<u128> {
        self.order.values().copied().collect()
    }

    /// Makes `protected` the whole set of chunks never to evict.
    pub fn set_protected(&mut self, protected: HashSet<u128>) {
        let old = std::mem::take(&mut self.protected);
        for hash in old.difference(&protected) {
            self.set_pinned(*hash, false);
        }
        for hash in protected.difference(&old) {
            self.set_pinned(*hash, true);
        }
        self.protected = protected;
    }

    /// Adds chunks to the protected set.
    pub fn protect(&mut self, hashes: impl IntoIterator<Item = u128>) {
        for hash in hashes {
            if self.protected.insert(hash) {
                self.set_pinned(hash, true);
            }
        }
    }

    fn set_pinned(&mut self, hash: u128, pinned: bool) {
        let Some(entry) = self.entries.get_mut(&hash) else {
            return;
        };
        if entry.pinned == pinned {
            return;
        }
        entry.pinned = pinned;
        if pinned {
            self.order.remove(&entry.tick);
            self.pinned_chunks += 1;
            self.pinned_bytes += entry.size;
        } else {
            self.order.insert(entry.tick, hash);
            self.pinned_chunks -= 1;
            self.pinned_bytes -= entry.size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_least_recently_used_first_and_skips_protected_chunks() {
        let mut lru = Lru::seeded(vec![(1, 10, 300), (2, 10, 100), (3, 10, 200)]);
        assert_eq!(lru.oldest_evictable(), Some(2));
        lru.touch(2);
        assert_eq!(lru.evictable(), [3, 1, 2]);
        lru.protect([3]);
        assert_eq!(lru.evictable(), [1, 2]);
        assert_eq!(lru.pinned_usage(), (1, 10));
        lru.insert(4, 5);
        assert_eq!(lru.evictable(), [1, 2, 4]);
        lru.set_protected([1, 9].into());
        assert_eq!(lru.evictable(), [3, 2, 4]);
        assert_eq!(lru.pinned_usage(), (1, 10));
        // A protected chunk that arrives later is held out of the order at once.
        lru.insert(9, 7);
        assert_eq!(lru.evictable(), [3, 2, 4]);
        assert_eq!(lru.remove(9), Some(7));
        assert_eq!(lru.remove(3), Some(10));
        assert_eq!(lru.usage(), (3, 25));
        assert_eq!(lru.pinned_usage(), (1, 10));
    }
}
