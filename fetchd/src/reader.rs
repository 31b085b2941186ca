//! Serving track bytes: a byte range is mapped to the chunks of the track's manifest, each chunk
//! comes from the chunk store or, when missing or corrupt, is fetched again from the origin and
//! verified before it is stored and served. The first read of a track version cuts it into
//! chunks (FastCDC) and records its manifest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fastcdc::v2020::StreamCDC;
use musicfs_ipc::{FetchError, TrackRef};

use crate::catalog::{Catalog, Manifest};
use crate::chunks::{chunk_hash, ChunkStore, AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
use crate::origins::Origins;
use crate::track::TrackRecord;

/// A manifest ready for range lookups.
#[derive(Debug, Clone)]
pub struct Layout {
    record: TrackRecord,
    /// Start offset of each chunk, ascending.
    starts: Vec<u64>,
    chunks: Vec<(u32, u128)>,
}

impl Layout {
    fn new(record: TrackRecord, manifest: Manifest) -> Self {
        let mut starts = Vec::with_capacity(manifest.chunks.len());
        let mut at = 0u64;
        for (len, _) in &manifest.chunks {
            starts.push(at);
            at += u64::from(*len);
        }
        Self {
            record,
            starts,
            chunks: manifest.chunks,
        }
    }

    /// Indices of the chunks covering `[offset, end)`.
    pub fn covering(&self, offset: u64, end: u64) -> std::ops::Range<usize> {
        let first = self
            .starts
            .partition_point(|s| *s <= offset)
            .saturating_sub(1);
        let last = self.starts.partition_point(|s| *s < end);
        first..last.max(first)
    }
}

pub struct TrackReader {
    catalog: Catalog,
    store: Arc<ChunkStore>,
    origins: Arc<Origins>,
    layouts: moka::sync::Cache<TrackRef, Arc<Layout>>,
    ingesting: Mutex<HashMap<TrackRef, Arc<Mutex<()>>>>,
}

fn cache_err(e: std::io::Error) -> FetchError {
    FetchError::Cache(e.to_string())
}

impl TrackReader {
    pub fn new(catalog: Catalog, store: Arc<ChunkStore>, origins: Arc<Origins>) -> Self {
        Self {
            catalog,
            store,
            origins,
            layouts: moka::sync::Cache::new(4096),
            ingesting: Mutex::new(HashMap::new()),
        }
    }

    /// Bytes `[offset, offset + len)` of a track version, short only at its end.
    pub fn read(&self, track: TrackRef, offset: u64, len: u32) -> Result<Vec<u8>, FetchError> {
        let layout = self.layout(track)?;
        let size = layout.record.size;
        let end = offset.saturating_add(u64::from(len)).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for i in layout.covering(offset, end) {
            let start = layout.starts[i];
            let bytes = self.chunk(&layout, i)?;
            let from = offset.saturating_sub(start) as usize;
            let to = ((end - start) as usize).min(bytes.len());
            out.extend_from_slice(&bytes[from..to]);
        }
        Ok(out)
    }

    fn chunk(&self, layout: &Layout, i: usize) -> Result<Vec<u8>, FetchError> {
        let (len, hash) = layout.chunks[i];
        if let Some(bytes) = self.store.get(hash).map_err(cache_err)? {
            return Ok(bytes);
        }
        let location = &layout.record.location;
        let origin = self.origins.get(&location.origin)?;
        let bytes = self
            .origins
            .file(origin, &location.path)
            .and_then(|file| file.read_range(layout.starts[i], len as usize))
            .map_err(|e| FetchError::OriginUnavailable(format!("{}: {e}", location.path)))?;
        if chunk_hash(&bytes) != hash {
            return Err(FetchError::OriginChanged(format!(
                "{} changed since it was scanned",
                location.path
            )));
        }
        self.store.put(hash, &bytes).map_err(cache_err)?;
        Ok(bytes)
    }

    fn layout(&self, track: TrackRef) -> Result<Arc<Layout>, FetchError> {
        if let Some(layout) = self.layouts.get(&track) {
            return Ok(layout);
        }
        let gate = self
            .ingesting
            .lock()
            .expect("ingest table poisoned")
            .entry(track)
            .or_default()
            .clone();
        let _one_at_a_time = gate.lock().expect("ingest gate poisoned");
        let result = self.load_or_ingest(track);
        self.ingesting
            .lock()
            .expect("ingest table poisoned")
            .remove(&track);
        let layout = Arc::new(result?);
        self.layouts.insert(track, layout.clone());
        Ok(layout)
    }

    fn load_or_ingest(&self, track: TrackRef) -> Result<Layout, FetchError> {
        if let Some(layout) = self.layouts.get(&track) {
            return Ok(Arc::unwrap_or_clone(layout));
        }
        let catalog_err = |e: crate::catalog::CatalogError| FetchError::Catalog(e.to_string());
        let record = self
            .catalog
            .track(track.id)
            .map_err(catalog_err)?
            .ok_or(FetchError::NotFound)?;
        if record.version != track.version {
            return Err(FetchError::Stale);
        }
        if let Some(manifest) = self.catalog.manifest(track.id).map_err(catalog_err)? {
            if manifest.version == track.version {
                return Ok(Layout::new(record, manifest));
            }
        }
        let manifest = self.ingest(&record)?;
        self.catalog
            .put_manifest(track.id, &manifest)
            .map_err(catalog_err)?;
        Ok(Layout::new(record, manifest))
    }

    /// Cuts the origin file into chunks, storing each, and returns its manifest.
    fn ingest(&self, record: &TrackRecord) -> Result<Manifest, FetchError> {
        let location = &record.location;
        let origin = self.origins.get(&location.origin)?;
        let unavailable =
            |e: std::io::Error| FetchError::OriginUnavailable(format!("{}: {e}", location.path));
        let changed =
            || FetchError::OriginChanged(format!("{} changed since it was scanned", location.path));
        if origin.stat(&location.path).map_err(unavailable)? != (record.size, record.mtime_ns) {
            return Err(changed());
        }
        let reader = self
            .origins
            .file(origin, &location.path)
            .map_err(unavailable)?
            .stream();
        let mut chunks = Vec::new();
        let mut total = 0u64;
        for chunk in StreamCDC::new(
            reader,
            MIN_CHUNK as usize,
            AVG_CHUNK as usize,
            MAX_CHUNK as usize,
        ) {
            let chunk = chunk.map_err(|e| unavailable(std::io::Error::other(e.to_string())))?;
            let hash = chunk_hash(&chunk.data);
            self.store.put(hash, &chunk.data).map_err(cache_err)?;
            chunks.push((chunk.length as u32, hash));
            total += chunk.length as u64;
        }
        if total != record.size {
            return Err(changed());
        }
        Ok(Manifest {
            version: record.version,
            chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::{Location, TrackInfo};

    fn layout(lens: &[u32]) -> Layout {
        let record = TrackRecord {
            location: Location {
                origin: "/o".into(),
                path: "a".into(),
            },
            size: lens.iter().map(|l| u64::from(*l)).sum(),
            mtime_ns: 0,
            version: 1,
            info: TrackInfo::default(),
            added_secs: 0,
        };
        let chunks = lens.iter().map(|l| (*l, u128::from(*l))).collect();
        Layout::new(record, Manifest { version: 1, chunks })
    }

    #[test]
    fn byte_ranges_map_to_the_chunks_that_cover_them() {
        let l = layout(&[100, 50, 200]); // [0,100) [100,150) [150,350)
        assert_eq!(l.covering(0, 1), 0..1);
        assert_eq!(l.covering(0, 100), 0..1);
        assert_eq!(l.covering(99, 101), 0..2);
        assert_eq!(l.covering(100, 150), 1..2);
        assert_eq!(l.covering(120, 350), 1..3);
        assert_eq!(l.covering(349, 350), 2..3);
        assert_eq!(l.covering(0, 350), 0..3);
    }
}
