//! Serving track bytes: a byte range is mapped to the chunks of the track's manifest, each chunk
//! comes from the chunk store or, when missing or corrupt, is fetched again from the origin and
//! verified before it is stored and served. The first read of a track version cuts it into
//! chunks (FastCDC) and records its manifest.

use std::collections::HashSet;
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

#[derive(Clone)]
pub struct TrackReader {
    catalog: Catalog,
    store: Arc<ChunkStore>,
    origins: Arc<Origins>,
    layouts: moka::sync::Cache<TrackRef, Arc<Layout>>,
    /// Tracks being cut into chunks in the background.
    ingesting: Arc<Mutex<HashSet<TrackRef>>>,
}

/// Where a read is served from.
enum Source {
    /// The track's chunks (from the store, fetched again if missing).
    Chunks(Arc<Layout>),
    /// Straight from the origin, while the track is being cut into chunks.
    Origin(Box<TrackRecord>),
}

fn cache_err(e: std::io::Error) -> FetchError {
    FetchError::Cache(e.to_string())
}

fn catalog_err(e: crate::catalog::CatalogError) -> FetchError {
    FetchError::Catalog(e.to_string())
}

impl TrackReader {
    pub fn new(catalog: Catalog, store: Arc<ChunkStore>, origins: Arc<Origins>) -> Self {
        Self {
            catalog,
            store,
            origins,
            layouts: moka::sync::Cache::new(4096),
            ingesting: Arc::default(),
        }
    }

    /// Bytes `[offset, offset + len)` of a track version, short only at its end. The first read
    /// of a version is served straight from the origin while the track is cut into chunks in
    /// the background, so a player's first byte does not wait for the whole file.
    pub fn read(&self, track: TrackRef, offset: u64, len: u32) -> Result<Vec<u8>, FetchError> {
        match self.source(track)? {
            Source::Chunks(layout) => self.read_chunks(&layout, offset, len),
            Source::Origin(record) => self.read_origin(&record, offset, len),
        }
    }

    fn read_chunks(&self, layout: &Layout, offset: u64, len: u32) -> Result<Vec<u8>, FetchError> {
        let size = layout.record.size;
        let end = offset.saturating_add(u64::from(len)).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for i in layout.covering(offset, end) {
            let start = layout.starts[i];
            let bytes = self.chunk(layout, i)?;
            let from = offset.saturating_sub(start) as usize;
            let to = ((end - start) as usize).min(bytes.len());
            out.extend_from_slice(&bytes[from..to]);
        }
        Ok(out)
    }

    /// A range read from the origin, after checking the file is still the version catalogued.
    fn read_origin(
        &self,
        record: &TrackRecord,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, FetchError> {
        let end = offset.saturating_add(u64::from(len)).min(record.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let location = &record.location;
        let origin = self.origins.get(&location.origin)?;
        let unavailable =
            |e: std::io::Error| FetchError::OriginUnavailable(format!("{}: {e}", location.path));
        if origin.stat(&location.path).map_err(unavailable)? != (record.size, record.mtime_ns) {
            return Err(FetchError::OriginChanged(format!(
                "{} changed since it was scanned",
                location.path
            )));
        }
        self.origins
            .file(origin, &location.path)
            .and_then(|file| file.read_range(offset, (end - offset) as usize))
            .map_err(unavailable)
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

    /// The track's chunks if it has been cut; else the origin, with the cutting started.
    fn source(&self, track: TrackRef) -> Result<Source, FetchError> {
        if let Some(layout) = self.layouts.get(&track) {
            return Ok(Source::Chunks(layout));
        }
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
                let layout = Arc::new(Layout::new(record, manifest));
                self.layouts.insert(track, layout.clone());
                return Ok(Source::Chunks(layout));
            }
        }
        self.ingest_in_background(track, record.clone());
        Ok(Source::Origin(Box::new(record)))
    }

    /// Cuts a track into chunks on a thread of its own (once, however many reads ask).
    fn ingest_in_background(&self, track: TrackRef, record: TrackRecord) {
        if !lock(&self.ingesting).insert(track) {
            return;
        }
        let reader = self.clone();
        let spawned = std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || {
                let result = reader.ingest(&record).and_then(|manifest| {
                    reader
                        .catalog
                        .put_manifest(track.id, &manifest)
                        .map_err(catalog_err)?;
                    Ok(manifest)
                });
                match result {
                    Ok(manifest) => {
                        let layout = Arc::new(Layout::new(record, manifest));
                        reader.layouts.insert(track, layout);
                    }
                    Err(e) => tracing::warn!(
                        path = record.location.path,
                        "cutting the track into chunks failed: {e}"
                    ),
                }
                lock(&reader.ingesting).remove(&track);
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start chunking {}: {e}", track.id.0);
            lock(&self.ingesting).remove(&track);
        }
    }

    /// Waits until no track is being cut (tests and benchmarks).
    pub fn wait_ingested(&self) {
        while !lock(&self.ingesting).is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::{Location, TrackInfo};
    use musicfs_ipc::origin::OriginConfig;

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

    /// A catalog holding one track: a 1 MB file in a temporary origin.
    fn one_track() -> (tempfile::TempDir, TrackReader, TrackRef, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let music = dir.path().join("music");
        std::fs::create_dir(&music).unwrap();
        let data: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(music.join("a.flac"), &data).unwrap();
        let origins = Arc::new(
            Origins::open(
                &[OriginConfig::from_url(music.to_str().unwrap())],
                Arc::default(),
            )
            .unwrap(),
        );
        let origin = origins.iter().next().unwrap();
        let (size, mtime_ns) = origin.stat("a.flac").unwrap();
        let location = Location {
            origin: origin.name().to_owned(),
            path: "a.flac".into(),
        };
        let catalog = Catalog::open(&dir.path().join("catalog")).unwrap();
        catalog
            .apply(crate::catalog::Batch {
                upserts: vec![(location, size, mtime_ns, TrackInfo::default())],
                ..Default::default()
            })
            .unwrap();
        let (id, record) = catalog.tracks().unwrap().remove(0);
        let store = Arc::new(ChunkStore::open(&dir.path().join("chunks")).unwrap());
        let reader = TrackReader::new(catalog, store, origins);
        let track = TrackRef {
            id,
            version: record.version,
        };
        (dir, reader, track, data)
    }

    #[test]
    fn the_first_read_comes_from_the_origin_while_chunking_runs_then_reads_use_chunks() {
        let (_dir, reader, track, data) = one_track();
        let first = reader.read(track, 4096, 100_000).unwrap();
        assert_eq!(first, data[4096..104_096]);
        reader.wait_ingested();
        assert!(
            reader.layouts.get(&track).is_some(),
            "the track was not cut into chunks"
        );
        let (chunks, bytes) = reader.store.usage();
        assert!(
            chunks >= 4 && bytes == data.len() as u64,
            "{chunks} chunks, {bytes} bytes"
        );
        assert_eq!(reader.read(track, 0, 2_000_000).unwrap(), data);
        assert_eq!(reader.read(track, 999_990, 100).unwrap(), data[999_990..]);
    }

    #[test]
    fn a_changed_origin_file_is_never_served_as_the_old_version() {
        let (dir, reader, track, _) = one_track();
        std::fs::write(dir.path().join("music/a.flac"), b"retagged").unwrap();
        assert!(matches!(
            reader.read(track, 0, 10),
            Err(FetchError::OriginChanged(_))
        ));
        let stale = TrackRef {
            version: track.version + 1,
            ..track
        };
        assert_eq!(reader.read(stale, 0, 10), Err(FetchError::Stale));
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
