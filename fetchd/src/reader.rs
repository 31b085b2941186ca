//! Serving track bytes. A track version that has been cut into chunks is read from its
//! manifest: each chunk from the chunk store or, when missing or corrupt, fetched again from a
//! copy of the track on any healthy origin and verified before it is stored and served. A
//! version not yet cut is served through a [`Partial`] staging file that fetches exactly the
//! pages asked for, reads ahead while the reader is sequential, and warms the head of the next
//! track of the album; once complete it is cut into chunks (FastCDC) and its manifest recorded.
//! A retagged file is seeded from its previous version's chunks ([`crate::delta`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use musicfs_ipc::{FetchError, TrackId, TrackRef};

use crate::catalog::{Catalog, Manifest};
use crate::chunks::{chunk_hash, ChunkStore, MAX_CHUNK};
use crate::delta;
use crate::origins::Origins;
use crate::partial::{Partial, Run, FIRST_WINDOW};
use crate::replicas::Replicas;
use crate::track::TrackRecord;

/// Runs of one fetch requested from origins at once.
const PARALLEL_RUNS: usize = 6;

/// How long a complete staging file must go unread before it is cut into chunks: cutting
/// (FastCDC, hashing, a file per chunk) took a fifth of the 2 cores while a reader was still
/// streaming through the file.
const CUT_WHEN_QUIET: std::time::Duration = std::time::Duration::from_millis(300);

/// Staging files kept at once; the least recently used one goes first.
const MAX_PARTIALS: usize = 64;

/// Reads at least this long come from a sequential reader (the kernel's read-ahead).
const LARGE_READ: u64 = 256 << 10;

/// A manifest ready for range lookups.
#[derive(Debug)]
pub struct Layout {
    size: u64,
    /// Start offset of each chunk, ascending.
    starts: Vec<u64>,
    chunks: Vec<(u32, u128)>,
    /// Where the last read's hint to the kernel ended: a sequential reader's next read finds
    /// its chunks hinted already, and hints only the stretch after it.
    hinted_to: std::sync::atomic::AtomicU64,
}

impl Layout {
    fn new(manifest: Manifest) -> Self {
        let mut starts = Vec::with_capacity(manifest.chunks.len());
        let mut at = 0u64;
        for (len, _) in &manifest.chunks {
            starts.push(at);
            at += u64::from(*len);
        }
        Self {
            size: at,
            starts,
            chunks: manifest.chunks,
            hinted_to: Default::default(),
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

/// Which track follows another in its album (the next file of its directory).
pub type NextTrack = Box<dyn Fn(TrackId) -> Option<TrackRef> + Send + Sync>;

#[derive(Clone)]
pub struct TrackReader {
    catalog: Catalog,
    store: Arc<ChunkStore>,
    replicas: Replicas,
    staging: PathBuf,
    layouts: moka::sync::Cache<TrackRef, Arc<(TrackRecord, Layout)>>,
    partials: Arc<Mutex<Partials>>,
    /// Tracks being cut into chunks.
    cutting: Arc<Mutex<HashSet<TrackRef>>>,
    /// Background jobs running (read-ahead, warming, cutting).
    busy: Arc<(Mutex<usize>, Condvar)>,
    next_track: Arc<OnceLock<NextTrack>>,
    counts: Arc<ReadCounts>,
}

/// Reads answered from local bytes alone (chunks, kept tag blocks, staged pages) and reads
/// that waited for bytes from an origin, since fetchd started: the cache's hit ratio.
#[derive(Default)]
struct ReadCounts {
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Partials {
    map: HashMap<TrackRef, (Arc<Partial>, u64)>,
    clock: u64,
}

/// Where a read is served from.
enum Source {
    Chunks(Arc<(TrackRecord, Layout)>),
    Partial(Arc<Partial>),
    /// The bytes asked for, all within the tag blocks the scanner kept.
    Kept(Vec<u8>),
}

fn cache_err(e: std::io::Error) -> FetchError {
    FetchError::Cache(e.to_string())
}

fn catalog_err(e: crate::catalog::CatalogError) -> FetchError {
    FetchError::Catalog(e.to_string())
}

/// Says once per staging file that its bytes cannot be kept (a full disk fails every write).
fn warn_once(partial: &Partial, why: &dyn std::fmt::Display) {
    if partial.note_failure(why.to_string()) {
        tracing::warn!(
            "staging {}: {why} (its reads are served without keeping them; further failures \
             for it are not logged)",
            partial.record.location.path
        );
    }
}

/// Writes a claimed run's bytes into the staging file (which also gives the claim back on
/// failure), with room for them kept above the chunk store's free-disk floor.
fn store(chunks: &ChunkStore, partial: &Partial, run: Run, bytes: &[u8]) -> Result<(), FetchError> {
    let _room = chunks.reserve_disk(run.end - run.start).map_err(|e| {
        partial.release(run);
        cache_err(e)
    })?;
    fill(partial, run, bytes)
}

/// Writes a claimed run's bytes into the staging file (which also gives the claim back on
/// failure).
fn fill(partial: &Partial, run: Run, bytes: &[u8]) -> Result<(), FetchError> {
    partial.fill(run, bytes).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FetchError::OriginChanged(format!(
            "{} is shorter than catalogued",
            partial.record.location.path
        )),
        _ => cache_err(e),
    })
}

impl TrackReader {
    /// A reader over `store`, staging partial tracks in `staging` (emptied here).
    pub fn new(
        catalog: Catalog,
        store: Arc<ChunkStore>,
        origins: Arc<Origins>,
        staging: PathBuf,
    ) -> std::io::Result<Self> {
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        Ok(Self {
            replicas: Replicas::new(catalog.clone(), origins),
            catalog,
            store,
            staging,
            layouts: moka::sync::Cache::new(4096),
            partials: Arc::default(),
            cutting: Arc::default(),
            busy: Arc::default(),
            next_track: Arc::default(),
            counts: Arc::default(),
        })
    }

    /// (hits, misses): reads answered from local bytes alone, and reads that waited for an
    /// origin (whether or not it answered).
    pub fn hits_and_misses(&self) -> (u64, u64) {
        let c = &self.counts;
        (
            c.hits.load(Ordering::Relaxed),
            c.misses.load(Ordering::Relaxed),
        )
    }

    /// Whether every byte of `track` is in the chunk store: it was cut into chunks at this
    /// version and none of them has been evicted since, so it reads without any origin.
    pub fn is_whole(&self, track: TrackRef) -> bool {
        let hashes: Vec<u128> = match self.layouts.get(&track) {
            Some(layout) => layout.1.chunks.iter().map(|c| c.1).collect(),
            None => match self.catalog.manifest(track.id) {
                Ok(Some(m)) if m.version == track.version => m.chunks.iter().map(|c| c.1).collect(),
                _ => return false,
            },
        };
        self.store.missing(&hashes).is_empty()
    }

    /// Why bytes read from `track` at `since` or later could not be kept in its staging file
    /// (a full disk), if that happened: the track will not be cut into chunks from that read.
    pub fn staging_failed_since(&self, track: TrackRef, since: Instant) -> Option<String> {
        let partial = lock(&self.partials)
            .map
            .get(&track)
            .map(|(p, _)| p.clone())?;
        partial.failed_since(since)
    }

    /// Staging files open now, and the disk space they take (allocated blocks: they are
    /// sparse, holding only the bytes fetched so far).
    pub fn staging_usage(&self) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let partials: Vec<Arc<Partial>> = lock(&self.partials)
            .map
            .values()
            .map(|(p, _)| p.clone())
            .collect();
        let bytes = partials
            .iter()
            .filter_map(|p| p.file().metadata().ok())
            .map(|m| m.blocks() * 512)
            .sum();
        (partials.len() as u64, bytes)
    }

    /// Tells the reader how to find the next track of an album (to warm its head).
    pub fn set_next_track(&self, next: NextTrack) {
        let _ = self.next_track.set(next);
    }

    /// Bytes `[offset, offset + len)` of a track version, short only at its end.
    pub fn read(&self, track: TrackRef, offset: u64, len: u32) -> Result<Vec<u8>, FetchError> {
        let mut from_origin = false;
        let read = match self.source(track, Some((offset, len)))? {
            Source::Chunks(layout) => {
                self.read_chunks(track.id, &layout, offset, len, &mut from_origin)
            }
            Source::Partial(partial) => {
                self.read_partial(track, &partial, offset, len, &mut from_origin)
            }
            Source::Kept(bytes) => Ok(bytes),
        };
        if from_origin {
            self.counts.misses.fetch_add(1, Ordering::Relaxed);
        } else if read.is_ok() {
            self.counts.hits.fetch_add(1, Ordering::Relaxed);
        }
        read
    }

    fn read_chunks(
        &self,
        id: TrackId,
        layout: &(TrackRecord, Layout),
        offset: u64,
        len: u32,
        from_origin: &mut bool,
    ) -> Result<Vec<u8>, FetchError> {
        let (record, layout) = layout;
        let end = offset.saturating_add(u64::from(len)).min(layout.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        // Room for the range and one whole chunk: each is appended whole, then cut to size.
        let mut out = Vec::with_capacity((end - offset) as usize + MAX_CHUNK as usize);
        let covering = layout.covering(offset, end);
        // A large read is the kernel's read-ahead of a sequential reader: the next stretch of
        // the same length is asked for next, so its chunks are read from disk meanwhile.
        let ahead = if end - offset >= LARGE_READ {
            (end + (end - offset)).min(layout.size)
        } else {
            end
        };
        if covering.len() > 1 || ahead > end {
            let hinted = layout
                .hinted_to
                .swap(ahead, std::sync::atomic::Ordering::Relaxed);
            let from = if (offset..ahead).contains(&hinted) {
                hinted
            } else {
                offset
            };
            let hint = layout.covering(from, ahead);
            self.store.prefetch(hint.map(|i| layout.chunks[i].1));
        }
        for i in covering {
            let (start, at) = (layout.starts[i], out.len());
            self.chunk_into(id, record, layout, i, &mut out, from_origin)?;
            // `out[at..]` is the whole chunk: keep the part asked for.
            let from = offset.saturating_sub(start) as usize;
            let to = ((end - start) as usize).min(out.len() - at);
            if from > 0 {
                out.copy_within(at + from..at + to, at);
            }
            out.truncate(at + to - from);
        }
        Ok(out)
    }

    /// Appends chunk `i` of the track to `out`, from the store or else from an origin.
    fn chunk_into(
        &self,
        id: TrackId,
        record: &TrackRecord,
        layout: &Layout,
        i: usize,
        out: &mut Vec<u8>,
        from_origin: &mut bool,
    ) -> Result<(), FetchError> {
        let (len, hash) = layout.chunks[i];
        if self.store.get_into(hash, out).map_err(cache_err)? {
            return Ok(());
        }
        *from_origin = true;
        let bytes = self
            .replicas
            .read(id, record, layout.starts[i], len as usize, &|bytes| {
                chunk_hash(bytes) == hash
            })?;
        if let Err(e) = self.store.put(hash, &bytes) {
            tracing::warn!("chunk not cached: {e}");
        }
        out.extend_from_slice(&bytes);
        Ok(())
    }

    fn read_partial(
        &self,
        track: TrackRef,
        partial: &Arc<Partial>,
        offset: u64,
        len: u32,
        from_origin: &mut bool,
    ) -> Result<Vec<u8>, FetchError> {
        let size = partial.record.size;
        let end = offset.saturating_add(u64::from(len)).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        partial.seeded.call_once(|| self.seed(track, partial));
        // Read-ahead goes out before this read's own fetch, side by side with it.
        if let Some((from, to)) = partial.read_ahead(offset, end) {
            if from <= crate::partial::MAX_WINDOW {
                // Playing from the start, not just reading tags: warm the next track too.
                self.warm_next(track.id);
            }
            let (reader, p) = (self.clone(), partial.clone());
            self.background(move || {
                if let Err(e) = reader.fetch(track.id, &p, from, to, &mut false) {
                    tracing::debug!("read-ahead of {}: {e}", p.record.location.path);
                }
                reader.cut_if_complete(track, &p);
            });
        }
        if let Some(bytes) = self.fetch_for_answer(track, partial, offset, end, from_origin)? {
            return Ok(bytes);
        }
        match self.fetch(track.id, partial, offset, end, from_origin) {
            // The staging file cannot take the bytes (the disk is full or at its floor): they
            // come straight from the origin, unkept.
            Err(FetchError::Cache(why)) => {
                return self.read_unstaged(track, partial, offset, end, &why)
            }
            done => done?,
        }
        let bytes = partial.read(offset, end).map_err(cache_err)?;
        self.cut_if_complete(track, partial);
        Ok(bytes)
    }

    /// `[offset, end)` read from the origin without staging it, after staging failed (`why`,
    /// logged once per staging file).
    fn read_unstaged(
        &self,
        track: TrackRef,
        partial: &Partial,
        offset: u64,
        end: u64,
        why: &str,
    ) -> Result<Vec<u8>, FetchError> {
        warn_once(partial, &why);
        let len = (end - offset) as usize;
        // (A copy shorter than catalogued is an error there.)
        self.replicas
            .read(track.id, &partial.record, offset, len, &|_| true)
    }

    /// Makes `[offset, end)` of a staging file present: fetches the missing pages nobody is
    /// fetching and waits for the ones others are (noted in `from_origin`).
    fn fetch(
        &self,
        id: TrackId,
        partial: &Partial,
        offset: u64,
        end: u64,
        from_origin: &mut bool,
    ) -> Result<(), FetchError> {
        for _ in 0..4 {
            let (runs, pending) = partial.claim(offset, end);
            *from_origin |= pending || !runs.is_empty();
            // Runs go out side by side (a read-ahead window is several), each on its own
            // origin file, so a remote origin has several requests in flight.
            let next = std::sync::atomic::AtomicUsize::new(0);
            let failed: Mutex<Option<FetchError>> = Mutex::new(None);
            let work = || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(run) = runs.get(i) else { break };
                if lock(&failed).is_some() {
                    partial.release(*run);
                    continue;
                }
                if let Err(e) = self.fetch_run(id, partial, *run) {
                    partial.release(*run);
                    lock(&failed).get_or_insert(e);
                }
            };
            let workers = runs.len().min(PARALLEL_RUNS);
            if workers > 1 {
                std::thread::scope(|s| {
                    for _ in 1..workers {
                        s.spawn(work);
                    }
                    work();
                });
            } else {
                work();
            }
            if let Some(e) = failed
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
            {
                return Err(e);
            }
            if partial.wait(offset, end) {
                return Ok(());
            }
        }
        Err(FetchError::OriginUnavailable(format!(
            "{}: the bytes did not arrive",
            partial.record.location.path
        )))
    }

    /// When no page of `[offset, end)` is present or being fetched, fetches them as one run
    /// and returns the bytes asked for, leaving the write into the staging file (and the cut,
    /// if the file is then complete) for after the answer has been sent: the write took
    /// 30 µs of a random 64 KiB read. `None`, with nothing claimed, otherwise.
    fn fetch_for_answer(
        &self,
        track: TrackRef,
        partial: &Arc<Partial>,
        offset: u64,
        end: u64,
        from_origin: &mut bool,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let Some(run) = partial.claim_all(offset, end) else {
            return Ok(None);
        };
        *from_origin = true;
        let len = (run.end - run.start) as usize;
        let bytes = match self
            .replicas
            .read(track.id, &partial.record, run.start, len, &|_| true)
        {
            Ok(bytes) if bytes.len() == len => bytes,
            // Short: the file shrank; storing says so (and gives the claim back).
            Ok(short) => return store(&self.store, partial, run, &short).map(|()| None),
            Err(e) => {
                partial.release(run);
                return Err(e);
            }
        };
        let answer = bytes[(offset - run.start) as usize..(end - run.start) as usize].to_vec();
        let (reader, partial) = (self.clone(), partial.clone());
        musicfs_ipc::server::after_answer(move || {
            if let Err(e) = store(&reader.store, &partial, run, &bytes) {
                warn_once(&partial, &e);
            }
            reader.cut_if_complete(track, &partial);
        });
        Ok(Some(answer))
    }

    /// Fetches one claimed run into the staging file (the caller gives the claim back if it
    /// fails). The room for it comes first: bytes that could not be kept (the disk at its
    /// floor) are not fetched ahead of the reader.
    fn fetch_run(&self, id: TrackId, partial: &Partial, run: Run) -> Result<(), FetchError> {
        let _room = self
            .store
            .reserve_disk(run.end - run.start)
            .map_err(cache_err)?;
        let len = (run.end - run.start) as usize;
        let bytes = self
            .replicas
            .read(id, &partial.record, run.start, len, &|_| true)?;
        fill(partial, run, &bytes)
    }

    /// The track's chunks if it has been cut; else, when `want` (offset, length) lies within
    /// the tag blocks the scanner kept and no staging file exists yet, those bytes; else its
    /// staging file.
    fn source(&self, track: TrackRef, want: Option<(u64, u32)>) -> Result<Source, FetchError> {
        if let Some(layout) = self.layouts.get(&track) {
            return Ok(Source::Chunks(layout));
        }
        if let Some(partial) = self.partial(track) {
            return Ok(Source::Partial(partial));
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
                let layout = Arc::new((record, Layout::new(manifest)));
                self.layouts.insert(track, layout.clone());
                return Ok(Source::Chunks(layout));
            }
        }
        if let Some(bytes) = want.and_then(|(offset, len)| self.read_kept(&record, offset, len)) {
            return Ok(Source::Kept(bytes));
        }
        let mut partials = lock(&self.partials);
        partials.clock += 1;
        let clock = partials.clock;
        if let Some((partial, used)) = partials.map.get_mut(&track) {
            *used = clock;
            return Ok(Source::Partial(partial.clone()));
        }
        if partials.map.len() >= MAX_PARTIALS {
            if let Some(oldest) = partials
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(t, _)| *t)
            {
                partials.map.remove(&oldest);
                self.replicas.close(oldest.id);
            }
        }
        let path = self
            .staging
            .join(format!("{}-{}", track.id.0, track.version));
        let partial = Arc::new(Partial::create(&path, record).map_err(cache_err)?);
        self.seed_head(&partial);
        partials.map.insert(track, (partial.clone(), clock));
        Ok(Source::Partial(partial))
    }

    /// Bytes `[offset, offset + len)` (cut at the end of the file) if the tag blocks the scanner
    /// kept of this file version hold all of them. A tag reader's or a player's first read then
    /// costs no staging file (creating one and copying the blocks in took about as long as
    /// sshfs's whole first read).
    fn read_kept(&self, record: &TrackRecord, offset: u64, len: u32) -> Option<Vec<u8>> {
        let end = offset.saturating_add(u64::from(len)).min(record.size);
        if offset >= end {
            return None;
        }
        let head = self.catalog.head(&record.location).ok()??;
        if (head.size, head.mtime_ns) != (record.size, record.mtime_ns) {
            return None;
        }
        // Which blocks cover the range, from their offsets alone: a read reaching past them
        // (a player's first big read) costs no block read here.
        let mut blocks = head.blocks;
        blocks.sort_unstable_by_key(|(start, _, _)| *start);
        let mut covering = Vec::new();
        let mut at = offset;
        for (start, len, hash) in blocks {
            let block_end = start + u64::from(len);
            if block_end <= at {
                continue;
            }
            if start > at {
                return None;
            }
            let until = block_end.min(end);
            covering.push((start, len, hash, at, until));
            at = until;
            if at == end {
                break;
            }
        }
        if at < end {
            return None;
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for (start, len, hash, from, until) in covering {
            let bytes = self.store.get(hash).ok()??;
            if bytes.len() != len as usize {
                return None;
            }
            out.extend_from_slice(&bytes[(from - start) as usize..(until - start) as usize]);
        }
        Some(out)
    }

    /// Fills a new staging file with the tag blocks the scanner kept of this file version.
    fn seed_head(&self, partial: &Partial) {
        let record = &partial.record;
        let Ok(Some(head)) = self.catalog.head(&record.location) else {
            return;
        };
        if (head.size, head.mtime_ns) != (record.size, record.mtime_ns) {
            return;
        }
        for (offset, len, hash) in head.blocks {
            if let Ok(Some(bytes)) = self.store.get(hash) {
                if bytes.len() == len as usize {
                    let _ = partial.seed(offset, &bytes);
                }
            }
        }
    }

    /// Forgets the tag blocks kept for a track that is now cut into chunks. The blocks stay
    /// in the store for the cache's LRU to drop: the same bytes may be another copy's head.
    fn forget_head(&self, record: &TrackRecord) {
        let _ = self.catalog.forget_head(&record.location);
    }

    fn partial(&self, track: TrackRef) -> Option<Arc<Partial>> {
        let mut partials = lock(&self.partials);
        partials.clock += 1;
        let clock = partials.clock;
        let (partial, used) = partials.map.get_mut(&track)?;
        *used = clock;
        Some(partial.clone())
    }

    /// Starts fetching the head of the track after this one in its album, so the next song
    /// starts at once.
    fn warm_next(&self, id: TrackId) {
        let Some(next) = self.next_track.get().and_then(|next| next(id)) else {
            return;
        };
        let reader = self.clone();
        self.background(move || {
            if let Ok(Source::Partial(partial)) = reader.source(next, None) {
                partial.seeded.call_once(|| reader.seed(next, &partial));
                if let Err(e) = reader.fetch(next.id, &partial, 0, FIRST_WINDOW, &mut false) {
                    tracing::debug!("warming {}: {e}", partial.record.location.path);
                }
            }
        });
    }

    /// Seeds a new version of a retagged track from the previous version's chunks.
    fn seed(&self, track: TrackRef, partial: &Partial) {
        let Ok(Some(old)) = self.catalog.manifest(track.id) else {
            return;
        };
        if old.version == track.version {
            return;
        }
        let old = Layout::new(old);
        match self.seed_from(track.id, &old, partial) {
            Ok(Some(reused)) => tracing::info!(
                path = partial.record.location.path,
                reused,
                "retagged track: audio reused from the previous version"
            ),
            Ok(None) => {}
            Err(e) => tracing::debug!("delta sync of {}: {e}", partial.record.location.path),
        }
    }

    fn seed_from(
        &self,
        id: TrackId,
        old: &Layout,
        partial: &Partial,
    ) -> Result<Option<u64>, FetchError> {
        let read_old = |offset: u64, len: u64| -> std::io::Result<Vec<u8>> {
            let end = (offset + len).min(old.size);
            let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
            for i in old.covering(offset, end) {
                let start = old.starts[i];
                let bytes = self.store.get(old.chunks[i].1)?.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "old chunk evicted")
                })?;
                let from = offset.saturating_sub(start) as usize;
                let to = ((end - start) as usize).min(bytes.len());
                out.extend_from_slice(&bytes[from..to]);
            }
            Ok(out)
        };
        let mut read_new = |offset: u64, len: u64| -> std::io::Result<Vec<u8>> {
            let end = (offset + len).min(partial.record.size);
            self.fetch(id, partial, offset, end, &mut false)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            partial.read(offset, end)
        };
        let Some(old_region) = delta::audio_region(old.size, &mut |o, l| read_old(o, l)) else {
            return Ok(None);
        };
        let Some(new_region) = delta::audio_region(partial.record.size, &mut read_new) else {
            return Ok(None);
        };
        let Some(shift) = delta::shift(old_region, new_region) else {
            return Ok(None);
        };
        for (at, len) in delta::samples(shift.len) {
            let new = read_new(shift.new_start + at, len).map_err(cache_err)?;
            if read_old(shift.old_start + at, len).map_err(cache_err)? != new {
                return Ok(None);
            }
        }
        // Steps end on page boundaries of the new file, so no page straddles two of them.
        let step: u64 = 1 << 20;
        let mut at = 0;
        while at < shift.len {
            let n = (step - (shift.new_start + at) % crate::partial::PAGE).min(shift.len - at);
            let bytes = read_old(shift.old_start + at, n).map_err(cache_err)?;
            let _room = self.store.reserve_disk(n).map_err(cache_err)?;
            partial
                .seed(shift.new_start + at, &bytes)
                .map_err(cache_err)?;
            at += n;
        }
        Ok(Some(shift.len))
    }

    fn background(&self, job: impl FnOnce() + Send + 'static) {
        *lock(&self.busy.0) += 1;
        let busy = self.busy.clone();
        let done = move || {
            *lock(&busy.0) -= 1;
            busy.1.notify_all();
        };
        let spawned = std::thread::Builder::new()
            .name("fetch-bg".into())
            .spawn(move || {
                job();
                done();
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a background fetch: {e}");
            *lock(&self.busy.0) -= 1;
        }
    }

    /// Waits until no background fetch or cutting runs (tests and benchmarks).
    pub fn wait_ingested(&self) {
        let mut busy = lock(&self.busy.0);
        while *busy > 0 {
            busy = self
                .busy
                .1
                .wait(busy)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

mod cut;
#[cfg(test)]
mod tests;
