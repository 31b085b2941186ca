//! Where the filesystem core gets its answers: the [`Backend`] trait, and [`RpcBackend`], which
//! answers it by asking fetchd over its socket.
//!
//! The trait is synchronous because fuser calls the filesystem from its own threads; the RPC
//! implementation blocks such a thread until fetchd answers. Tests put an in-memory fake behind
//! the same trait.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use musicfs_ipc::blocking::Blocking;
use musicfs_ipc::client::{CallError, Context, Reconnecting, RpcError};
use musicfs_ipc::{
    Attr, DirEntry, FetchClient, FetchError, FsStats, Hello, IndexError, Ino, TrackRef, CURRENT,
};

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// fetchd answered with an error.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// fetchd did not answer before the deadline (down, restarting for too long, or hung).
    #[error("{0}")]
    Unavailable(String),
    /// fetchd answered, but not in a way this build understands.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// indexd answered a search with an error.
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl From<CallError> for BackendError {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Unavailable { .. } => BackendError::Unavailable(err.to_string()),
            CallError::Protocol(detail) => BackendError::Protocol(detail),
        }
    }
}

/// The namespace and bytes the filesystem shows. Every method may block.
///
/// The namespace calls answer from the generation of the tree last given to
/// [`show`](Backend::show), so that what the kernel is handed between two invalidations comes
/// from one tree (see `invalidate.rs`).
pub trait Backend: Send + Sync + 'static {
    fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, BackendError>;
    /// The node's attributes; a wrapper may answer from what it remembers.
    fn getattr(&self, ino: Ino) -> Result<Attr, BackendError>;
    /// The node's attributes as fetchd has them now, in its current tree, never remembered:
    /// what an open reads by, so a file changed at its origin is read at its new version once
    /// fetchd has it.
    fn current(&self, ino: Ino) -> Result<Attr, BackendError> {
        self.getattr(ino)
    }
    /// The entries of a directory, without `.` and `..`.
    fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, BackendError>;
    /// Whether `readdir(ino)` gives only the entries' names, inode numbers and kinds (their other
    /// attributes cost more, and come from `getattr`).
    fn lists_names_only(&self, _ino: Ino) -> bool {
        false
    }
    fn readlink(&self, ino: Ino) -> Result<String, BackendError>;
    /// Bytes `[offset, offset+len)` of a track at one content version, short at end of file.
    fn read(&self, track: TrackRef, offset: u64, len: u32) -> Result<Vec<u8>, BackendError>;
    /// The node's `user.musicfs.*` attributes, as (full name, value).
    fn xattrs(&self, ino: Ino) -> Result<Vec<(String, String)>, BackendError>;
    fn statfs(&self) -> Result<FsStats, BackendError>;
    /// fetchd's namespace generation. `shown` is the generation shown (or
    /// [`CURRENT`]): the answer may wait, a few seconds at most, until fetchd's differs from
    /// it. Asking changes nothing shown.
    fn generation(&self, shown: u64) -> Result<u64, BackendError>;
    /// Answers from the tree of `generation` from now on, forgetting whatever was remembered
    /// of the one shown before.
    fn show(&self, _generation: u64) {}
}

/// [`Backend`] over fetchd's `Fetch` service. The client reconnects and retries by itself until
/// its deadline; only then does a call fail with [`BackendError::Unavailable`]. Each call is
/// driven by the calling (FUSE) thread on a pooled connection ([`Blocking`]).
pub struct RpcBackend {
    fetchd: Blocking<FetchClient>,
    /// The generation asked for ([`CURRENT`] until one is shown).
    shown: AtomicU64,
}

impl RpcBackend {
    /// Calls block the calling thread, which must not be a runtime's own.
    pub fn new(fetchd: Reconnecting<FetchClient>) -> Self {
        Self {
            fetchd: Blocking::new(fetchd),
            shown: AtomicU64::new(CURRENT),
        }
    }

    /// The handshake, retried until `within` has passed: used to wait for fetchd at start-up.
    pub fn hello(&self, within: Duration) -> Result<Hello, BackendError> {
        let hello = self
            .fetchd
            .call_within(within, |c, ctx| async move { c.hello(ctx).await });
        Ok(hello?)
    }

    /// Blocks on a call whose answer is itself a `Result` from fetchd.
    fn wait<T, F, Fut>(&self, f: F) -> Result<T, BackendError>
    where
        F: Fn(FetchClient, Context) -> Fut,
        Fut: Future<Output = Result<Result<T, FetchError>, RpcError>>,
    {
        Ok(self.fetchd.call(f)??)
    }
}

impl Backend for RpcBackend {
    fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, BackendError> {
        let at = self.shown.load(Ordering::Acquire);
        self.wait(|c, ctx| {
            let name = name.to_owned();
            async move { c.lookup(ctx, at, parent, name).await }
        })
    }

    fn getattr(&self, ino: Ino) -> Result<Attr, BackendError> {
        let at = self.shown.load(Ordering::Acquire);
        self.wait(|c, ctx| async move { c.getattr(ctx, at, ino).await })
    }

    fn current(&self, ino: Ino) -> Result<Attr, BackendError> {
        self.wait(|c, ctx| async move { c.getattr(ctx, CURRENT, ino).await })
    }

    fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, BackendError> {
        let at = self.shown.load(Ordering::Acquire);
        self.wait(|c, ctx| async move { c.readdir(ctx, at, ino).await })
    }

    fn readlink(&self, ino: Ino) -> Result<String, BackendError> {
        let at = self.shown.load(Ordering::Acquire);
        self.wait(|c, ctx| async move { c.readlink(ctx, at, ino).await })
    }

    fn read(&self, track: TrackRef, offset: u64, len: u32) -> Result<Vec<u8>, BackendError> {
        let bytes = self.wait(|c, ctx| async move { c.read(ctx, track, offset, len).await })?;
        Ok(bytes.into_vec())
    }

    fn xattrs(&self, ino: Ino) -> Result<Vec<(String, String)>, BackendError> {
        self.wait(|c, ctx| async move { c.xattrs(ctx, ino).await })
    }

    fn statfs(&self) -> Result<FsStats, BackendError> {
        self.wait(|c, ctx| async move { c.statfs(ctx).await })
    }

    fn generation(&self, shown: u64) -> Result<u64, BackendError> {
        let generation = self
            .fetchd
            .call_within(GENERATION_DEADLINE, |c, ctx| async move {
                c.generation(ctx, shown).await
            });
        Ok(generation?)
    }

    fn show(&self, generation: u64) {
        self.shown.store(generation, Ordering::Release);
    }
}

/// How long one request for the namespace generation waits for fetchd, which holds it for up
/// to 5 s when nothing changed; past this the watcher asks again.
const GENERATION_DEADLINE: Duration = Duration::from_secs(15);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_fetchd_fails_after_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let fetchd = Reconnecting::new(
            "fetchd",
            dir.path().join("missing.sock"),
            Duration::from_millis(50),
        );
        let backend = RpcBackend::new(fetchd);
        assert!(matches!(
            backend.getattr(1),
            Err(BackendError::Unavailable(_))
        ));
        assert!(matches!(
            backend.hello(Duration::from_millis(20)),
            Err(BackendError::Unavailable(_))
        ));
    }
}
