//! The content-addressed chunk store: one file per chunk under `chunks/xx/<xxh3-128 hex>`,
//! written atomically (temporary file + rename) and checked against its name on every read. A
//! chunk that fails the check is deleted and reported missing, so it is fetched again, never
//! served.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::xxh3_128;

/// FastCDC sizes (bytes): minimum, average, maximum.
pub const MIN_CHUNK: u32 = 16 * 1024;
pub const AVG_CHUNK: u32 = 64 * 1024;
pub const MAX_CHUNK: u32 = 256 * 1024;

pub fn chunk_hash(bytes: &[u8]) -> u128 {
    xxh3_128(bytes)
}

#[derive(Debug)]
pub struct ChunkStore {
    dir: PathBuf,
    chunks: AtomicU64,
    bytes: AtomicU64,
    next_tmp: AtomicU64,
}

impl ChunkStore {
    /// Opens (creating) the store and counts what it holds; leftover temporary files of an
    /// interrupted write are removed.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let tmp = dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        let store = Self {
            dir: dir.to_owned(),
            chunks: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            next_tmp: AtomicU64::new(0),
        };
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().len() != 2 {
                continue;
            }
            for chunk in std::fs::read_dir(entry.path())? {
                let meta = chunk?.metadata()?;
                store.chunks.fetch_add(1, Ordering::Relaxed);
                store.bytes.fetch_add(meta.len(), Ordering::Relaxed);
            }
        }
        Ok(store)
    }

    fn path(&self, hash: u128) -> PathBuf {
        let hex = format!("{hash:032x}");
        self.dir.join(&hex[..2]).join(hex)
    }

    /// The chunk's bytes if present and intact. A corrupt chunk is deleted and `None` returned.
    pub fn get(&self, hash: u128) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(hash);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if chunk_hash(&bytes) != hash {
            tracing::warn!(chunk = %format!("{hash:032x}"), "chunk failed verification; dropped, will fetch again");
            if std::fs::remove_file(&path).is_ok() {
                self.chunks.fetch_sub(1, Ordering::Relaxed);
                self.bytes.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
            }
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    pub fn contains(&self, hash: u128) -> bool {
        self.path(hash).exists()
    }

    /// Stores `bytes` under `hash` (which the caller computed from them).
    pub fn put(&self, hash: u128, bytes: &[u8]) -> io::Result<()> {
        debug_assert_eq!(chunk_hash(bytes), hash);
        let path = self.path(hash);
        if path.exists() {
            return Ok(());
        }
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        drop(file);
        std::fs::create_dir_all(path.parent().expect("chunk path has a parent"))?;
        std::fs::rename(&tmp, &path)?;
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// (chunks, bytes) held.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.chunks.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_roundtrip_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let data = b"some audio bytes".to_vec();
        let h = chunk_hash(&data);
        assert_eq!(store.get(h).unwrap(), None);
        store.put(h, &data).unwrap();
        store.put(h, &data).unwrap();
        assert_eq!(store.get(h).unwrap(), Some(data));
        assert_eq!(store.usage(), (1, 16));
        let reopened = ChunkStore::open(dir.path()).unwrap();
        assert_eq!(reopened.usage(), (1, 16));
    }

    #[test]
    fn corrupt_chunk_is_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let data = vec![7u8; 4096];
        let h = chunk_hash(&data);
        store.put(h, &data).unwrap();
        let path = store.path(h);
        let mut bad = data.clone();
        bad[100] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(store.get(h).unwrap(), None);
        assert!(!path.exists());
        store.put(h, &data).unwrap();
        assert_eq!(store.get(h).unwrap(), Some(data));
    }
}
