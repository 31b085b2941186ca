//! Pins and the background fetch. A pinned path (relative to the mount's root, kept in the
//! catalog's `pins` table) protects the chunks of every track below it from eviction and has
//! all of them fetched in the background, so the subtree plays offline; `prefetch` fetches a
//! subtree once without protecting it.
//!
//! The protected chunks are those of the manifests of pinned tracks. They are computed again on
//! pin, unpin and every namespace swap, and added track by track as the background fetch gets
//! each pinned track cut into chunks. One worker thread fetches queued tracks one after another
//! by reading them through the [`TrackReader`](crate::reader::TrackReader) in 1 MiB pieces,
//! then checks every chunk of a pinned track is held, reading again what was evicted meanwhile.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use musicfs_ipc::{BackgroundFetch, FetchError, Subtree, TrackId, TrackRef};

use crate::catalog::{Catalog, Manifest};
use crate::chunks::ChunkStore;
use crate::namespace::Namespace;
use crate::service::State;

/// Size of each read the background fetch makes.
const PIECE: u32 = 1 << 20;
/// How long the fetch waits for a track it read whole to be cut into chunks: this, plus a
/// second per MB.
const CUT_WAIT: Duration = Duration::from_secs(30);
/// Rounds of reading again the chunks of a pinned track evicted before they were protected.
const KEEP_ROUNDS: usize = 3;

#[derive(Debug, Default)]
struct Pinned {
    paths: BTreeSet<String>,
    /// Tracks below the pinned paths in the namespace last seen.
    tracks: HashSet<TrackId>,
    /// The same, per pinned path: where a pin goes when its tracks are retagged away.
    by_path: HashMap<String, HashSet<TrackId>>,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    track: TrackRef,
    size: u64,
    pin: bool,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    queued: HashSet<TrackId>,
    /// The namespace changed: pinned tracks are to be found again.
    refresh: bool,
    /// The worker is on an item.
    busy: bool,
    progress: BackgroundFetch,
}

pub struct Pins {
    catalog: Catalog,
    store: Arc<ChunkStore>,
    pinned: Mutex<Pinned>,
    queue: Mutex<Queue>,
    wake: Condvar,
}

fn catalog_err(e: impl std::fmt::Display) -> FetchError {
    FetchError::Catalog(e.to_string())
}

/// `"/A//B/./"` → `"A/B"`; `..` names nothing.
pub fn normalize(path: &str) -> Result<String, FetchError> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(FetchError::NoSuchPath(format!(
            "{path} (paths are relative to the mount's root; no '..')"
        )));
    }
    Ok(parts.join("/"))
}

/// Where the tracks last seen below the vanished pinned `path` all are now: the one node at the
/// same depth that holds every one of them still shown, if there is one.
fn moved_to(
    ns: &Namespace,
    path: &str,
    tracks: Option<&HashSet<TrackId>>,
) -> Option<(String, musicfs_ipc::Ino)> {
    let depth = path.split('/').count();
    let mut at: Option<String> = None;
    for track in tracks? {
        let Some(now) = ns.path_of(*track) else {
            continue; // gone from the library
        };
        let parts: Vec<&str> = now.split('/').collect();
        let ancestor = parts.get(..depth)?.join("/");
        match &at {
            Some(other) if *other != ancestor => {
                tracing::warn!(
                    "pinned {path} is gone and its tracks are in several places now; \
                     pin them again where they are"
                );
                return None;
            }
            _ => at = Some(ancestor),
        }
    }
    let at = at?;
    Some((at.clone(), ns.resolve(&at)?))
}

impl Pins {
    /// Loads the pinned paths. Nothing is protected until the namespace is known
    /// ([`start`] refreshes at once).
    pub fn open(catalog: Catalog, store: Arc<ChunkStore>) -> Result<Self, FetchError> {
        let paths = catalog.pins().map_err(catalog_err)?.into_iter().collect();
        Ok(Self {
            catalog,
            store,
            pinned: Mutex::new(Pinned {
                paths,
                ..Default::default()
            }),
            queue: Mutex::default(),
            wake: Condvar::new(),
        })
    }

    fn pinned(&self) -> MutexGuard<'_, Pinned> {
        self.pinned.lock().expect("pins lock poisoned")
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().expect("fetch queue lock poisoned")
    }

    pub fn paths(&self) -> Vec<String> {
        self.pinned().paths.iter().cloned().collect()
    }

    pub fn progress(&self) -> BackgroundFetch {
        let queue = self.queue();
        BackgroundFetch {
            active: queue.busy || !queue.items.is_empty() || queue.refresh,
            ..queue.progress.clone()
        }
    }

    /// Pins `path` and queues every track below it for fetching.
    pub fn pin(&self, ns: &Namespace, path: &str) -> Result<Subtree, FetchError> {
        let (subtree, tracks) = subtree(ns, path)?;
        self.catalog.add_pin(&subtree.path).map_err(catalog_err)?;
        self.pinned().paths.insert(subtree.path.clone());
        self.refresh(ns)?;
        self.enqueue(&tracks, true);
        Ok(subtree)
    }

    /// Removes a pin; its chunks become evictable (unless another pin covers them).
    pub fn unpin(&self, ns: &Namespace, path: &str) -> Result<bool, FetchError> {
        let path = normalize(path)?;
        let was = self.catalog.remove_pin(&path).map_err(catalog_err)?;
        let had = self.pinned().paths.remove(&path);
        self.refresh(ns)?;
        Ok(was || had)
    }

    /// Queues every track below `path` for fetching, once, without pinning.
    pub fn prefetch(&self, ns: &Namespace, path: &str) -> Result<Subtree, FetchError> {
        let (subtree, tracks) = subtree(ns, path)?;
        self.enqueue(&tracks, false);
        Ok(subtree)
    }

    /// The namespace was swapped: the worker finds the pinned tracks again, protects their
    /// chunks and fetches those not complete.
    pub fn namespace_changed(&self) {
        self.queue().refresh = true;
        self.wake.notify_one();
    }

    /// Finds the tracks below the pinned paths and makes their chunks the protected set;
    /// returns the pinned tracks not complete in the cache. A pinned path that is gone because
    /// its tracks were retagged (an album's year corrected) moves to where they all are now.
    fn refresh(&self, ns: &Namespace) -> Result<Vec<(TrackRef, u64)>, FetchError> {
        let mut pinned = self.pinned();
        let mut tracks = Vec::new();
        let mut ids = HashSet::new();
        let mut by_path = HashMap::new();
        for path in pinned.paths.clone() {
            let (path, ino) = match ns.resolve(&path) {
                Some(ino) => (path, ino),
                None => match moved_to(ns, &path, pinned.by_path.get(&path)) {
                    Some((moved, ino)) => {
                        self.catalog.add_pin(&moved).map_err(catalog_err)?;
                        self.catalog.remove_pin(&path).map_err(catalog_err)?;
                        tracing::info!("pinned {path} is now {moved} (retagged); the pin follows");
                        pinned.paths.remove(&path);
                        pinned.paths.insert(moved.clone());
                        (moved, ino)
                    }
                    None => continue,
                },
            };
            let under: &mut HashSet<TrackId> = by_path.entry(path).or_default();
            for (track, size) in ns.tracks_under(ino) {
                under.insert(track.id);
                if ids.insert(track.id) {
                    tracks.push((track, size));
                }
            }
        }
        pinned.by_path = by_path;
        let mut protected = HashSet::new();
        let mut incomplete = Vec::new();
        for (track, size) in tracks {
            let manifest = self.catalog.manifest(track.id).map_err(catalog_err)?;
            let hashes: Vec<u128> = manifest
                .iter()
                .flat_map(|m| m.chunks.iter().map(|c| c.1))
                .collect();
            let current = manifest.is_some_and(|m| m.version == track.version);
            if !current || !self.store.missing(&hashes).is_empty() {
                incomplete.push((track, size));
            }
            protected.extend(hashes);
        }
        self.store.set_protected(protected);
        pinned.tracks = ids;
        Ok(incomplete)
    }

    fn enqueue(&self, tracks: &[(TrackRef, u64)], pin: bool) {
        let mut queue = self.queue();
        if !queue.busy && queue.items.is_empty() {
            queue.progress = BackgroundFetch::default();
        }
        for (track, size) in tracks {
            if !queue.queued.insert(track.id) {
                if let Some(item) = queue.items.iter_mut().find(|i| i.track.id == track.id) {
                    item.pin |= pin;
                }
                continue;
            }
            queue.items.push_back(Item {
                track: *track,
                size: *size,
                pin,
            });
            queue.progress.tracks_total += 1;
            queue.progress.bytes_total += size;
        }
        drop(queue);
        self.wake.notify_one();
    }

    /// The track's manifest if it is of the track's version.
    fn manifest(&self, track: TrackRef) -> Result<Option<Manifest>, FetchError> {
        Ok(self
            .catalog
            .manifest(track.id)
            .map_err(catalog_err)?
            .filter(|m| m.version == track.version))
    }

    /// Protects a manifest's chunks if its track is (still) pinned; true if it is.
    fn protect_if_pinned(&self, track: TrackId, manifest: &Manifest) -> bool {
        let pinned = self.pinned();
        let is = pinned.tracks.contains(&track);
        if is {
            self.store.protect(manifest.chunks.iter().map(|c| c.1));
        }
        is
    }

    /// Fetches one queued track: reads it whole unless every chunk is held already, and for a
    /// pinned one makes sure every chunk is held and protected.
    fn fetch(&self, state: &State, item: Item) -> Result<(), FetchError> {
        let track = item.track;
        let started = Instant::now();
        if let Some(manifest) = self.manifest(track)? {
            if item.pin {
                self.protect_if_pinned(track.id, &manifest);
            }
            if self.store.missing(&hashes(&manifest)).is_empty() {
                self.add_bytes(item.size);
                return Ok(());
            }
        }
        let mut offset = 0;
        while offset < item.size {
            let piece = state.reader.read(track, offset, PIECE)?;
            if piece.is_empty() {
                break;
            }
            offset += piece.len() as u64;
            self.add_bytes(piece.len() as u64);
        }
        if item.pin {
            self.keep(state, item, started)?;
        }
        Ok(())
    }

    /// Waits for a pinned track read from `started` on to be cut into chunks, protects them and
    /// reads again the ones evicted before they were protected. A read whose bytes could not be
    /// kept (a full disk) will never be cut: that fails at once, saying why.
    fn keep(&self, state: &State, item: Item, started: Instant) -> Result<(), FetchError> {
        let track = item.track;
        let deadline = Instant::now() + CUT_WAIT + Duration::from_micros(item.size);
        let manifest = loop {
            if let Some(manifest) = self.manifest(track)? {
                break manifest;
            }
            if let Some(why) = state.reader.staging_failed_since(track, started) {
                return Err(FetchError::Cache(format!(
                    "the track could not be kept: {why}"
                )));
            }
            if Instant::now() > deadline {
                return Err(FetchError::Cache(
                    "the track was read but not cut into chunks in time".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !self.protect_if_pinned(track.id, &manifest) {
            return Ok(());
        }
        let all = hashes(&manifest);
        for _ in 0..KEEP_ROUNDS {
            let missing: HashSet<u128> = self.store.missing(&all).into_iter().collect();
            if missing.is_empty() {
                return Ok(());
            }
            let mut start = 0u64;
            for (len, hash) in &manifest.chunks {
                if missing.contains(hash) {
                    state.reader.read(track, start, *len)?;
                }
                start += u64::from(*len);
            }
        }
        Err(FetchError::Cache(
            "the cache budget is too small to keep every pinned chunk; raise [cache] budget".into(),
        ))
    }

    fn add_bytes(&self, n: u64) {
        self.queue().progress.bytes_done += n;
    }

    /// The next thing to do, waiting for it.
    fn next_job(&self) -> Job {
        let mut queue = self.queue();
        queue.busy = false;
        loop {
            if std::mem::take(&mut queue.refresh) {
                queue.busy = true;
                return Job::Refresh;
            }
            if let Some(item) = queue.items.pop_front() {
                queue.queued.remove(&item.track.id);
                queue.busy = true;
                return Job::Fetch(item);
            }
            queue = self.wake.wait(queue).expect("fetch queue lock poisoned");
        }
    }

    fn finish(&self, item: Item, result: Result<(), FetchError>, ns: &Namespace) {
        let mut queue = self.queue();
        queue.progress.tracks_done += 1;
        if let Err(e) = result {
            let place = ns
                .path_of(item.track.id)
                .unwrap_or_else(|| format!("track {}", item.track.id.0));
            tracing::warn!(track = place, "background fetch failed: {e}");
            queue.progress.failed += 1;
            queue.progress.last_error = Some(format!("{place}: {e}"));
        }
    }
}

fn hashes(manifest: &Manifest) -> Vec<u128> {
    manifest.chunks.iter().map(|c| c.1).collect()
}

/// The subtree at `path` and its tracks; an unknown path is an error naming it.
fn subtree(ns: &Namespace, path: &str) -> Result<(Subtree, Vec<(TrackRef, u64)>), FetchError> {
    let normalized = normalize(path)?;
    let ino = ns
        .resolve(&normalized)
        .ok_or_else(|| FetchError::NoSuchPath(path.to_owned()))?;
    let tracks = ns.tracks_under(ino);
    let subtree = Subtree {
        path: normalized,
        tracks: tracks.len() as u64,
        bytes: tracks.iter().map(|t| t.1).sum(),
    };
    Ok((subtree, tracks))
}

enum Job {
    Refresh,
    Fetch(Item),
}

/// Starts the background fetch worker; it first protects the pinned tracks of the namespace
/// served now and fetches those not complete. It ends when the state is gone.
pub fn start(state: &Arc<State>) -> std::io::Result<()> {
    state.pins.namespace_changed();
    let pins = state.pins.clone();
    let weak: Weak<State> = Arc::downgrade(state);
    std::thread::Builder::new()
        .name("cache-fetch".into())
        .spawn(move || run(&pins, &weak))
        .map(drop)
}

fn run(pins: &Pins, weak: &Weak<State>) {
    loop {
        let job = pins.next_job();
        let Some(state) = weak.upgrade() else {
            return;
        };
        match job {
            Job::Refresh => match pins.refresh(&state.namespace()) {
                Ok(incomplete) => pins.enqueue(&incomplete, true),
                Err(e) => tracing::warn!("cannot find the pinned tracks: {e}"),
            },
            Job::Fetch(item) => {
                let result = match item.pin && !pins.pinned().tracks.contains(&item.track.id) {
                    true => Ok(()), // unpinned since it was queued
                    false => pins.fetch(&state, item),
                };
                pins.finish(item, result, &state.namespace());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use musicfs_ipc::config::DEFAULT_TEMPLATE;

    use super::*;
    use crate::catalog::Batch;
    use crate::chunks::chunk_hash;
    use crate::template::Templates;
    use crate::track::{Location, TrackInfo};

    /// Two albums of two tracks, each track cut into two chunks held by the store.
    fn library() -> (tempfile::TempDir, Pins, Arc<ChunkStore>, Namespace) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("catalog")).unwrap();
        let upserts = [("A", "One"), ("A", "Two"), ("B", "Three"), ("B", "Four")]
            .iter()
            .map(|(album, title)| {
                let location = Location {
                    origin: "/o".into(),
                    path: format!("{album}-{title}.flac"),
                };
                let info = TrackInfo {
                    artists: vec!["Artist".into()],
                    album: Some((*album).into()),
                    title: Some((*title).into()),
                    ..Default::default()
                };
                (location, 2000, 1, info)
            })
            .collect();
        upsert(&catalog, upserts);
        let store = Arc::new(ChunkStore::open(&dir.path().join("chunks")).unwrap());
        for (id, record) in &catalog.tracks().unwrap() {
            let chunks = (0..2u8)
                .map(|i| {
                    let bytes = vec![id.0 as u8 * 2 + i; 1000];
                    store.put(chunk_hash(&bytes), &bytes).unwrap();
                    (1000, chunk_hash(&bytes))
                })
                .collect();
            let manifest = Manifest {
                version: record.version,
                chunks,
            };
            catalog.put_manifest(*id, &manifest).unwrap();
        }
        let ns = namespace(&catalog);
        let pins = Pins::open(catalog, store.clone()).unwrap();
        (dir, pins, store, ns)
    }

    /// The tree the default template makes of the catalog.
    fn namespace(catalog: &Catalog) -> Namespace {
        let templates = Templates::parse(DEFAULT_TEMPLATE, &Default::default()).unwrap();
        let mut inodes = catalog.inode_allocator().unwrap();
        let tracks = catalog.tracks().unwrap();
        let (ns, nodes) =
            Namespace::build(&tracks, &templates, &|_| 0, &|_| false, &mut inodes).unwrap();
        inodes.commit(&nodes).unwrap();
        ns
    }

    /// The library's albums retagged: `renames` maps a title to its new album.
    fn retagged(pins: &Pins, renames: &[(&str, &str)]) -> Namespace {
        let catalog = &pins.catalog;
        let upserts = catalog
            .tracks()
            .unwrap()
            .into_iter()
            .map(|(_, record)| {
                let mut info = record.info.clone();
                let title = info.title.clone().unwrap();
                if let Some((_, album)) = renames.iter().find(|(t, _)| *t == title) {
                    info.album = Some((*album).into());
                }
                (record.location, record.size, record.mtime_ns + 1, info)
            })
            .collect();
        upsert(catalog, upserts);
        namespace(catalog)
    }

    /// Adds or replaces tracks in the catalog.
    fn upsert(catalog: &Catalog, upserts: Vec<(Location, u64, i128, TrackInfo)>) {
        let batch = Batch {
            upserts,
            ..Default::default()
        };
        catalog.apply(batch).unwrap();
    }

    #[test]
    fn a_pin_follows_its_album_when_it_is_retagged() {
        let (_dir, pins, store, ns) = library();
        pins.pin(&ns, "Artist/A").unwrap();
        pins.pin(&ns, "Artist/B").unwrap();
        // A's year corrected: both tracks move together; the pin goes with them.
        let ns = retagged(&pins, &[("One", "A (fixed)"), ("Two", "A (fixed)")]);
        pins.refresh(&ns).unwrap();
        assert_eq!(pins.paths(), ["Artist/A (fixed)", "Artist/B"]);
        assert_eq!(pins.catalog.pins().unwrap(), pins.paths());
        assert_eq!(store.pinned_usage(), (8, 8000));
        // B split in two: no one place to follow it to; the pin stays as it was.
        let ns = retagged(&pins, &[("Three", "C"), ("Four", "D")]);
        pins.refresh(&ns).unwrap();
        assert_eq!(pins.paths(), ["Artist/A (fixed)", "Artist/B"]);
        assert_eq!(store.pinned_usage(), (4, 4000));
    }

    #[test]
    fn paths_normalize_and_dot_dot_names_nothing() {
        assert_eq!(normalize("/A//B/./").unwrap(), "A/B");
        assert_eq!(normalize("").unwrap(), "");
        assert!(matches!(
            normalize("A/../B"),
            Err(FetchError::NoSuchPath(_))
        ));
    }

    #[test]
    fn a_pin_protects_its_tracks_chunks_until_unpinned_and_persists() {
        let (dir, pins, store, ns) = library();
        let err = pins.pin(&ns, "Artist/Nope (2001)").unwrap_err();
        assert_eq!(err, FetchError::NoSuchPath("Artist/Nope (2001)".into()));
        let album = "Artist/A/";
        let subtree = pins.pin(&ns, album).unwrap();
        assert_eq!(
            (subtree.path.as_str(), subtree.tracks, subtree.bytes),
            ("Artist/A", 2, 4000)
        );
        assert_eq!(store.pinned_usage(), (4, 4000));
        // Queued for the background fetch (no worker runs here).
        let progress = pins.progress();
        assert!(progress.active);
        assert_eq!((progress.tracks_total, progress.bytes_total), (2, 4000));
        assert_eq!(store.clear().unwrap(), (4, 4000));
        assert_eq!(store.usage(), (4, 4000));
        // Kept across a restart of fetchd.
        let reopened = Pins::open(pins.catalog.clone(), store.clone()).unwrap();
        assert_eq!(reopened.paths(), ["Artist/A"]);
        assert!(pins.unpin(&ns, "/Artist/A").unwrap());
        assert!(!pins.unpin(&ns, "Artist/A").unwrap());
        assert_eq!(store.pinned_usage(), (0, 0));
        assert_eq!(store.clear().unwrap(), (4, 4000));
        drop(dir);
    }
}
