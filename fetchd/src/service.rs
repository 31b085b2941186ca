//! The `Fetch` tarpc service: namespace calls are answered from memory, reads go through the
//! [`TrackReader`](crate::reader::TrackReader) on the blocking pool.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use musicfs_ipc::{
    Attr, CacheStats, Cleared, DirEntry, Fetch, FetchAdmin, FetchError, FetchStatus, FsStats,
    Hello, Ino, NodeKind, Rescanned, ScanState, Subtree, TrackId, TrackRef, Unreadable, CURRENT,
};
use tarpc::context::Context;

use crate::catalog::Catalog;
use crate::chunks::ChunkStore;
use crate::namespace::Namespace;
use crate::namespaces::Namespaces;
use crate::origin::OriginStats;
use crate::origins::Origins;
use crate::pins::Pins;
use crate::reader::TrackReader;
use crate::reread::Rereads;
use crate::scan::ScanProgress;
use crate::track::TrackInfo;
use crate::watch::Rescanner;

/// Largest read served in one call; mountd asks for at most 1 MiB.
const MAX_READ: u32 = 4 << 20;

/// How long a namespace swap waits for the mount to show it.
const SHOWN_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

pub struct State {
    pub catalog: Catalog,
    /// Woken when the catalog changed, so the index feeder sends the changes to indexd.
    pub catalog_changed: tokio::sync::Notify,
    /// The tree, its generation (bumped by every swap), and the tree before it while mountd
    /// still shows that one.
    pub namespaces: Namespaces,
    pub reader: TrackReader,
    pub store: Arc<ChunkStore>,
    pub origins: Arc<Origins>,
    pub stats: Arc<OriginStats>,
    pub progress: ScanProgress,
    /// Files to read again although their size and mtime are unchanged.
    pub rereads: Rereads,
    /// Pinned paths and the background fetch.
    pub pins: Arc<Pins>,
}

impl State {
    pub fn namespace(&self) -> Arc<Namespace> {
        self.namespaces.current()
    }

    /// Serves `ns` from now on and returns once the mount shows it (or after
    /// [`SHOWN_WITHIN`], or at once when no mount is attached), so a scan that has finished is
    /// visible through the mount.
    pub fn set_namespace(&self, ns: Namespace) {
        let generation = self.namespaces.replace(ns);
        self.catalog_changed.notify_one();
        self.pins.namespace_changed();
        if !self.namespaces.wait_shown(generation, SHOWN_WITHIN) {
            tracing::debug!(generation, "no mount showed the new tree yet");
        }
    }
}

#[derive(Clone)]
pub struct FetchServer(pub Arc<State>);

fn catalog_err(e: impl std::fmt::Display) -> FetchError {
    FetchError::Catalog(e.to_string())
}

impl Fetch for FetchServer {
    async fn hello(self, _: Context) -> Hello {
        Hello::new("fetchd")
    }

    async fn lookup(
        self,
        _: Context,
        at: u64,
        parent: Ino,
        name: String,
    ) -> Result<Attr, FetchError> {
        self.0.namespaces.at(at).lookup(parent, &name)
    }

    async fn getattr(self, _: Context, at: u64, ino: Ino) -> Result<Attr, FetchError> {
        let mut attr = self.0.namespaces.at(at).attr(ino)?;
        // What an open reads by: a remote track whole in the cache is opened as a local one,
        // so players get the kernel's readahead and a second play its page cache.
        if at == CURRENT && attr.direct_io {
            attr.direct_io = !attr.track.is_some_and(|t| self.0.reader.is_whole(t));
        }
        Ok(attr)
    }

    async fn readdir(self, _: Context, at: u64, ino: Ino) -> Result<Vec<DirEntry>, FetchError> {
        self.0.namespaces.at(at).readdir(ino)
    }

    async fn readlink(self, _: Context, at: u64, ino: Ino) -> Result<String, FetchError> {
        let attr = self.0.namespaces.at(at).attr(ino)?;
        match attr.kind {
            NodeKind::Symlink => Err(FetchError::NotFound),
            NodeKind::Dir | NodeKind::File => Err(FetchError::NotASymlink),
        }
    }

    async fn read(
        self,
        _: Context,
        track: TrackRef,
        offset: u64,
        len: u32,
    ) -> Result<serde_bytes::ByteBuf, FetchError> {
        // Read on this thread. On the data socket that is the connection's own thread, outside
        // any runtime, where `block_in_place` just runs the read; on a runtime worker it hands
        // the worker's other tasks to another thread first.
        // A panic fails this read at once instead of leaving mountd to wait for its deadline.
        let read = || self.0.reader.read(track, offset, len.min(MAX_READ));
        tokio::task::block_in_place(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)))
            .map_err(|_| {
                FetchError::Cache("reading failed: fetchd hit a bug (a panic, in its log)".into())
            })?
            .map(serde_bytes::ByteBuf::from)
    }

    async fn xattrs(self, _: Context, ino: Ino) -> Result<Vec<(String, String)>, FetchError> {
        let ns = self.0.namespace();
        let node = ns.node(ino).ok_or(FetchError::NotFound)?;
        let Some(track) = node.track else {
            return Ok(Vec::new());
        };
        let record = self
            .0
            .catalog
            .track(track.id)
            .map_err(catalog_err)?
            .ok_or(FetchError::NotFound)?;
        let mut out = tag_attributes(&record.info);
        out.push(("origin".into(), record.location.origin.clone()));
        out.push(("origin_path".into(), record.location.path.clone()));
        Ok(out
            .into_iter()
            .map(|(k, v)| (format!("user.musicfs.{k}"), v))
            .collect())
    }

    async fn statfs(self, _: Context) -> Result<FsStats, FetchError> {
        let ns = self.0.namespace();
        let (files, dirs) = ns.counts();
        let (_, bytes) = self.0.store.usage();
        Ok(FsStats {
            files: files + dirs,
            bytes,
        })
    }

    async fn generation(self, _: Context, shown: u64) -> u64 {
        // Waits on this thread: the connection's own on the data socket (see `read`).
        let wait = crate::namespaces::NEXT_GENERATION_WAIT;
        tokio::task::block_in_place(|| self.0.namespaces.next_generation(shown, wait))
    }

    async fn paths(self, _: Context, tracks: Vec<TrackId>) -> Vec<Option<String>> {
        let ns = self.0.namespace();
        tracks.into_iter().map(|t| ns.path_of(t)).collect()
    }

    async fn hidden(self, _: Context) -> (u64, Vec<TrackId>) {
        let (generation, ns) = self.0.namespaces.current_with_generation();
        (generation, ns.hidden().to_vec())
    }
}

/// The admin socket's service.
#[derive(Clone)]
pub struct AdminServer(pub Arc<State>, pub Arc<Rescanner>);

impl FetchAdmin for AdminServer {
    async fn hello(self, _: Context) -> Hello {
        Hello::new("fetchd")
    }

    async fn status(self, _: Context) -> Result<FetchStatus, FetchError> {
        self.blocking(status).await
    }

    async fn cache_stats(self, _: Context) -> Result<CacheStats, FetchError> {
        self.blocking(|state| Ok(cache_stats(state))).await
    }

    async fn pin(self, _: Context, path: String) -> Result<Subtree, FetchError> {
        self.blocking(move |state| state.pins.pin(&state.namespace(), &path))
            .await
    }

    async fn unpin(self, _: Context, path: String) -> Result<bool, FetchError> {
        self.blocking(move |state| state.pins.unpin(&state.namespace(), &path))
            .await
    }

    async fn prefetch(self, _: Context, path: String) -> Result<Subtree, FetchError> {
        self.blocking(move |state| state.pins.prefetch(&state.namespace(), &path))
            .await
    }

    async fn clear(self, _: Context) -> Result<Cleared, FetchError> {
        self.blocking(|state| {
            let (chunks, bytes) = state
                .store
                .clear()
                .map_err(|e| FetchError::Cache(e.to_string()))?;
            tracing::info!(chunks, bytes, "cache cleared of every unpinned chunk");
            Ok(Cleared { chunks, bytes })
        })
        .await
    }

    async fn rescan(self, _: Context, names: Vec<String>) -> Result<Vec<Rescanned>, FetchError> {
        let origins = &self.0.origins;
        let which: Vec<usize> = match names.is_empty() {
            true => (0..origins.len()).collect(),
            false => names
                .iter()
                .map(|name| {
                    origins.index_of(name).ok_or_else(|| {
                        let known: Vec<&str> = origins.iter().map(|o| o.name()).collect();
                        FetchError::NoSuchOrigin(format!("{name} (origins: {})", known.join(", ")))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let rescanner = self.1.clone();
        self.blocking(move |state| {
            which
                .into_iter()
                .map(|index| {
                    let started = std::time::Instant::now();
                    let origin = state.origins.origin(index).name().to_owned();
                    let s = rescanner
                        .rescan(Some(&[index]), false)
                        .map_err(|e| FetchError::Catalog(format!("scanning {origin}: {e}")))?;
                    Ok(Rescanned {
                        origin,
                        seen: s.seen,
                        read: s.parsed,
                        removed: s.removed,
                        problems: s.problems,
                        unreachable: s.unreachable > 0,
                        kept_while_empty: s.kept_while_empty,
                        unread: s.unread,
                        millis: started.elapsed().as_millis() as u64,
                    })
                })
                .collect()
        })
        .await
    }
}

impl AdminServer {
    /// Runs `f` on the blocking pool (catalog reads, file deletions).
    async fn blocking<T: Send + 'static>(
        self,
        f: impl FnOnce(&State) -> Result<T, FetchError> + Send + 'static,
    ) -> Result<T, FetchError> {
        let state = self.0;
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .map_err(|e| FetchError::Catalog(format!("admin task failed: {e}")))?
    }
}

fn cache_stats(state: &State) -> CacheStats {
    let (chunks, bytes) = state.store.usage();
    let (hits, misses) = state.reader.hits_and_misses();
    let (pinned_chunks, pinned_bytes) = state.store.pinned_usage();
    let (staging_files, staging_bytes) = state.reader.staging_usage();
    let limits = state.store.limits();
    CacheStats {
        bytes,
        chunks,
        budget: limits.budget,
        min_free: limits.min_free,
        free_disk: state.store.free_disk().ok(),
        hits,
        misses,
        pinned_chunks,
        pinned_bytes,
        staging_files,
        staging_bytes,
        per_origin: state.stats.bytes_per_origin(),
        pins: state.pins.paths(),
        fetch: state.pins.progress(),
    }
}

fn status(state: &State) -> Result<FetchStatus, FetchError> {
    let (tracks, directories) = state.namespace().counts();
    let unreadable = state
        .catalog
        .problems()
        .map_err(catalog_err)?
        .into_iter()
        .map(|(location, p)| Unreadable {
            origin: location.origin,
            path: location.path,
            reason: p.reason,
            shown: p.shown,
        })
        .collect();
    let (cache_chunks, cache_bytes) = state.store.usage();
    Ok(FetchStatus {
        pid: std::process::id(),
        tracks,
        directories,
        origins: origin_status(state),
        unreadable,
        scan: match state.progress.state() {
            ScanState::Idle if state.rereads.waiting() => ScanState::Settling,
            scan => scan,
        },
        scans_completed: state.progress.completed(),
        origin_files_read: state.stats.files_opened.load(Ordering::Relaxed),
        origin_bytes_read: state.stats.bytes_read.load(Ordering::Relaxed),
        cache_chunks,
        cache_bytes,
        cache_budget: state.store.limits().budget,
        cache_fetch: state.pins.progress(),
    })
}

/// The track's tags as `(name, value)`; several values are joined with `; `.
fn tag_attributes(info: &TrackInfo) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            out.push((k.to_owned(), v));
        }
    };
    put("artist", info.artists.join("; "));
    put("albumartist", info.album_artists.join("; "));
    put("album", info.album.clone().unwrap_or_default());
    put("title", info.title.clone().unwrap_or_default());
    let num = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_default();
    put("track", num(info.track));
    put("tracktotal", num(info.track_total));
    put("disc", num(info.disc));
    put("disctotal", num(info.disc_total));
    put("date", info.date.clone().unwrap_or_default());
    put("genre", info.genres.join("; "));
    put("composer", info.composers.join("; "));
    put("duration_ms", info.duration_ms.to_string());
    put("samplerate", num(info.sample_rate));
    put("bitrate_kbps", num(info.bitrate_kbps));
    put("has_cover", if info.has_cover { "1" } else { "0" }.into());
    put("format", info.format.clone());
    out
}

fn origin_status(state: &State) -> Vec<musicfs_ipc::OriginStatus> {
    let bytes: std::collections::HashMap<String, u64> =
        state.stats.bytes_per_origin().into_iter().collect();
    (0..state.origins.len())
        .map(|i| {
            let name = state.origins.origin(i).name().to_owned();
            let health = state.origins.health(i);
            let (since, error) = health.detail();
            musicfs_ipc::OriginStatus {
                bytes_read: bytes.get(&name).copied().unwrap_or(0),
                name,
                up: health.is_up(),
                since_secs: since.as_secs(),
                error,
                warning: health.warning(),
            }
        })
        .collect()
}
