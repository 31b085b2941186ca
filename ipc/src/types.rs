//! Plain data types sent between processes.

use serde::{Deserialize, Serialize};

/// Inode number as seen by the kernel. `ROOT_INO` is the mount's root directory.
pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

/// The generation that asks fetchd's namespace calls for its current tree, whatever it is.
pub const CURRENT: u64 = u64::MAX;

/// Stable identity of a track in the catalog (survives restarts and rescans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrackId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    Dir,
    File,
    Symlink,
}

/// Attributes of one node of the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    pub ino: Ino,
    pub kind: NodeKind,
    /// Bytes a read of the whole file returns.
    pub size: u64,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    /// For files: the track and the version of its content the size and bytes belong to.
    pub track: Option<TrackRef>,
    /// For files: mountd opens it with direct I/O, so the kernel's readahead does not fetch
    /// what nobody asked for. Set for a file read from an origin across a network; in an
    /// answer at [`CURRENT`] (what an open reads by) only while some of its bytes are not in
    /// the cache: a track whole in the cache reads through the page cache, as a local one.
    pub direct_io: bool,
}

/// A track at one content version; reads name both so a changed track is never mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrackRef {
    pub id: TrackId,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: String,
    pub attr: Attr,
}

/// Answer to the handshake every service starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub service: String,
    pub protocol: u32,
    pub version: String,
    pub pid: u32,
}

impl Hello {
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            protocol: crate::PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
        }
    }
}

/// Health report of one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub service: String,
    pub pid: u32,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsStats {
    pub files: u64,
    pub bytes: u64,
}

/// A file the scanner could not catalog, or catalogued with a warning, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    pub origin: String,
    pub path: String,
    pub reason: String,
    /// True when the file still appears in the tree (its audio is usable, its tags are not).
    pub shown: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanState {
    /// A scan is running; `done` of `total` files seen so far (`total` grows while walking).
    Scanning {
        done: u64,
        total: u64,
    },
    /// No scan is running, one is scheduled within seconds: files read in the same second
    /// they were written are read again once that second is surely over.
    Settling,
    Idle,
}

/// fetchd's part of `musicfsctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchStatus {
    pub pid: u32,
    pub tracks: u64,
    pub directories: u64,
    pub origins: Vec<OriginStatus>,
    pub unreadable: Vec<Unreadable>,
    pub scan: ScanState,
    /// Number of completed scans since fetchd started.
    pub scans_completed: u64,
    /// Files whose bytes the scanner read from an origin since fetchd started.
    pub origin_files_read: u64,
    /// Bytes read from origins since fetchd started (scans and chunk fetches).
    pub origin_bytes_read: u64,
    pub cache_chunks: u64,
    pub cache_bytes: u64,
    /// The configured cache budget (`None`: no limit).
    pub cache_budget: Option<u64>,
    /// The background fetch of pinned and prefetched tracks.
    pub cache_fetch: BackgroundFetch,
}

/// One configured origin as fetchd sees it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginStatus {
    /// Its path or URL (never a secret).
    pub name: String,
    /// Answered its last request or probe.
    pub up: bool,
    /// Seconds since it went up or down.
    pub since_secs: u64,
    /// Why it is down (the last failure).
    pub error: Option<String>,
    /// What is wrong with its answers although it answers: it lists no files after it had
    /// some, which are kept listed meanwhile, or it has never listed an audio file.
    #[serde(default)]
    pub warning: Option<String>,
    /// Bytes read from it since fetchd started.
    pub bytes_read: u64,
}

/// Progress of fetchd's background fetch (`musicfsctl cache pin` / `prefetch`). Counts start
/// again from zero when work is queued while it is idle, and add up while it is busy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackgroundFetch {
    /// Tracks are queued or being fetched.
    pub active: bool,
    pub tracks_done: u64,
    pub tracks_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Tracks that could not be fetched (or kept, for pins); `last_error` says why.
    pub failed: u64,
    pub last_error: Option<String>,
}

/// `musicfsctl cache stats`: the chunk cache and where its bytes came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Chunk bytes held (file sizes), never more than `budget`.
    pub bytes: u64,
    pub chunks: u64,
    pub budget: Option<u64>,
    /// Free space kept on the cache's filesystem.
    pub min_free: u64,
    /// Free space on the cache's filesystem now (`None`: could not be asked).
    pub free_disk: Option<u64>,
    /// Reads answered from the cache alone, and reads that waited for an origin (since fetchd
    /// started).
    pub hits: u64,
    pub misses: u64,
    /// Chunks held that belong to pinned tracks (never evicted), and their bytes.
    pub pinned_chunks: u64,
    pub pinned_bytes: u64,
    /// Staging files (tracks being read, not yet cut into chunks; outside the budget, held to
    /// `min_free`) and the disk space they take (they are sparse).
    pub staging_files: u64,
    pub staging_bytes: u64,
    /// Bytes read from each origin since fetchd started (scans and fetches), by origin name.
    pub per_origin: Vec<(String, u64)>,
    /// Pinned paths, relative to the mount's root.
    pub pins: Vec<String>,
    pub fetch: BackgroundFetch,
}

/// A subtree queued for fetching: its normalized path and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subtree {
    pub path: String,
    pub tracks: u64,
    pub bytes: u64,
}

/// One origin scanned again on request (`musicfsctl rescan`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rescanned {
    /// The origin's name, as `musicfsctl status` shows it.
    pub origin: String,
    /// Files listed; read again (new or changed); gone since the last scan; unreadable.
    pub seen: u64,
    pub read: u64,
    pub removed: u64,
    pub problems: u64,
    /// The origin could not be listed; the files known on it are kept as they were.
    pub unreachable: bool,
    /// It listed no files at all, after it had some: this many stay listed as they were.
    #[serde(default)]
    pub kept_while_empty: u64,
    /// New or changed files not read because the origin stopped answering after listing them:
    /// they stay as they were until the next scan.
    #[serde(default)]
    pub unread: u64,
    pub millis: u64,
}

/// What `clear` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleared {
    pub chunks: u64,
    pub bytes: u64,
}

/// One track as indexd indexes it (sent by fetchd as the catalog changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDoc {
    pub track: TrackId,
    pub artists: Vec<String>,
    pub album_artists: Vec<String>,
    pub album: Option<String>,
    pub title: Option<String>,
    pub genres: Vec<String>,
    pub composers: Vec<String>,
    pub year: Option<u32>,
    pub track_number: Option<u32>,
    /// Container format (`flac`, `mpeg`, ...).
    pub format: String,
    /// File name extension, lower case (`flac`, `mp3`, ...), for result names.
    pub ext: String,
    pub duration_ms: u64,
    /// The origin's name (its path or URL).
    pub origin: String,
    /// When the catalog first saw the track (seconds since the epoch).
    pub added_secs: i64,
    /// The file name without extension: the title of an untagged track.
    pub file_stem: String,
}

/// Catalog changes after `from_seq` up to and including `to_seq`. `reset` asks indexd to drop
/// everything first (a new or rebuilt catalog).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexBatch {
    /// Identifies the catalog; indexd rebuilds when it changes.
    pub catalog_id: u64,
    pub reset: bool,
    pub from_seq: u64,
    pub to_seq: u64,
    pub upserts: Vec<IndexDoc>,
    pub removed: Vec<TrackId>,
}

/// What indexd has committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedUpTo {
    pub catalog_id: u64,
    pub seq: u64,
}

/// One search result, with what a result's name is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub track: TrackId,
    pub artist: String,
    pub title: String,
    pub ext: String,
}

/// A saved query shown under `/.collections/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    pub name: String,
    pub query: String,
    /// Built in (Recently Added, decades, genres): cannot be removed.
    pub builtin: bool,
}
