//! The tarpc service traits. Server and client both come from these definitions.

use crate::error::{FetchError, IndexError, WorkerError};
use crate::types::{
    Attr, CacheStats, Cleared, Collection, DirEntry, FetchStatus, FsStats, Health, Hello, Hit,
    IndexBatch, IndexedUpTo, Ino, Rescanned, Subtree, TrackId, TrackRef,
};

/// fetchd: the catalog's namespace, track bytes, and status. Every call is idempotent, so the
/// client may retry any of them across a reconnect.
#[tarpc::service]
pub trait Fetch {
    async fn hello() -> Hello;
    /// The namespace calls answer from the tree of generation `at` (the one mountd shows) while
    /// fetchd still holds it, else from its current tree ([`CURRENT`](crate::CURRENT) asks for
    /// that one outright).
    async fn lookup(at: u64, parent: Ino, name: String) -> Result<Attr, FetchError>;
    async fn getattr(at: u64, ino: Ino) -> Result<Attr, FetchError>;
    async fn readdir(at: u64, ino: Ino) -> Result<Vec<DirEntry>, FetchError>;
    async fn readlink(at: u64, ino: Ino) -> Result<String, FetchError>;
    /// Bytes `[offset, offset+len)` of a track at the given version (short at end of file).
    async fn read(
        track: TrackRef,
        offset: u64,
        len: u32,
    ) -> Result<serde_bytes::ByteBuf, FetchError>;
    /// `user.musicfs.*` attributes of a node: name and value.
    async fn xattrs(ino: Ino) -> Result<Vec<(String, String)>, FetchError>;
    async fn statfs() -> Result<FsStats, FetchError>;
    /// Changes whenever the namespace changes (and when fetchd restarts); mountd then drops the
    /// kernel's cached entries, attributes and listings, and moves to it. mountd says which
    /// generation it shows; the answer comes at once if fetchd's differs, else when it changes
    /// (or after a few seconds), and a swap waits briefly until the mount shows it.
    async fn generation(shown: u64) -> u64;
    /// Where each track is shown, relative to the mount's root (`None`: not in the tree).
    async fn paths(tracks: Vec<TrackId>) -> Vec<Option<String>>;
    /// The generation, and every catalogued track the tree does not show (a copy of a file
    /// that a preferred origin also holds). Search results leave these out.
    async fn hidden() -> (u64, Vec<TrackId>);
}

/// fetchd's admin operations, on their own socket: only root, fetchd's own user, or the
/// configured admin group may connect (checked with `SO_PEERCRED`).
#[tarpc::service]
pub trait FetchAdmin {
    async fn hello() -> Hello;
    async fn status() -> Result<FetchStatus, FetchError>;
    /// The chunk cache: size, budget, hit ratio, bytes per origin, pins, background fetch.
    async fn cache_stats() -> Result<CacheStats, FetchError>;
    /// Pins a path (relative to the mount's root): its tracks' chunks are never evicted, and
    /// every track below it is fetched in the background. Pinning twice is pinning once.
    async fn pin(path: String) -> Result<Subtree, FetchError>;
    /// Removes a pin; false when the path was not pinned.
    async fn unpin(path: String) -> Result<bool, FetchError>;
    /// Fetches every track below a path in the background, once, without pinning.
    async fn prefetch(path: String) -> Result<Subtree, FetchError>;
    /// Deletes every chunk not pinned (reads fetch them again).
    async fn clear() -> Result<Cleared, FetchError>;
    /// Scans the named origins again now (every origin when none is named), one after the
    /// other, and says what each scan found; a scan already running finishes first.
    async fn rescan(origins: Vec<String>) -> Result<Vec<Rescanned>, FetchError>;
}

/// indexd: the search index over the catalog, and saved collections. fetchd feeds it catalog
/// changes; mountd and `musicfsctl` search it.
#[tarpc::service]
pub trait Index {
    async fn hello() -> Hello;
    async fn health() -> Result<Health, WorkerError>;
    /// What the index holds (committed), so the feeder knows what to send next.
    async fn indexed_up_to() -> Result<IndexedUpTo, IndexError>;
    /// Applies and commits one batch of catalog changes; returns what is now committed.
    async fn apply(batch: IndexBatch) -> Result<IndexedUpTo, IndexError>;
    /// Runs a query (see doc/SEARCH.md for the language), best hits first, at most `limit`.
    async fn search(query: String, limit: u32) -> Result<Vec<Hit>, IndexError>;
    /// Saved and built-in collections.
    async fn collections() -> Result<Vec<Collection>, IndexError>;
    /// Saves (or replaces) a collection; the query must parse.
    async fn add_collection(name: String, query: String) -> Result<(), IndexError>;
    async fn remove_collection(name: String) -> Result<(), IndexError>;
}

/// The part every worker answers (plugind answers only this for now).
#[tarpc::service]
pub trait Worker {
    async fn hello() -> Hello;
    async fn health() -> Result<Health, WorkerError>;
}
