//! The tarpc service traits. Server and client both come from these definitions.

use crate::error::{FetchError, WorkerError};
use crate::types::{Attr, DirEntry, FetchStatus, FsStats, Health, Hello, Ino, TrackRef};

/// fetchd: the catalog's namespace, track bytes, and status. Every call is idempotent, so the
/// client may retry any of them across a reconnect.
#[tarpc::service]
pub trait Fetch {
    async fn hello() -> Hello;
    async fn lookup(parent: Ino, name: String) -> Result<Attr, FetchError>;
    async fn getattr(ino: Ino) -> Result<Attr, FetchError>;
    async fn readdir(ino: Ino) -> Result<Vec<DirEntry>, FetchError>;
    async fn readlink(ino: Ino) -> Result<String, FetchError>;
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
    /// kernel's cached entries, attributes and listings.
    async fn generation() -> u64;
}

/// fetchd's admin operations, on their own socket: only root, fetchd's own user, or the
/// configured admin group may connect (checked with `SO_PEERCRED`).
#[tarpc::service]
pub trait FetchAdmin {
    async fn hello() -> Hello;
    async fn status() -> Result<FetchStatus, FetchError>;
}

/// The part every worker answers (indexd and plugind answer only this for now).
#[tarpc::service]
pub trait Worker {
    async fn hello() -> Hello;
    async fn health() -> Result<Health, WorkerError>;
}
