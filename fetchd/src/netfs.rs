//! Local folders on network file systems (NFS, SMB, and FUSE mounts such as sshfs or rclone).
//! A call into one may block for ever while its server is away (NFS's default `hard` mounts
//! do), which would hold a player's read until mountd's deadline and keep it from another copy
//! of the track. So fetchd makes the calls of such an origin (stat, open, read) on a thread of
//! their own and waits at most the origin's timeout; then the origin counts as unreachable,
//! health marks it down, and reads go to another copy. A call that never returns keeps its
//! thread; none is made on the origin again until a probe finds it answering. A walk is bounded
//! by its progress: it is given up once no entry has come for the timeout, and while one that
//! was given up has not returned, no other walk starts (a rescan fails at once instead, so the
//! scans of other origins, which run one at a time, are not held up behind it).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// `statfs` magic numbers of file systems whose files live on another machine.
const NETWORK: &[i64] = &[
    0x6969,      // NFS
    0x517b,      // SMB
    0xff53_4d42, // CIFS
    0xfe53_4d42, // SMB2
    0x6573_5546, // FUSE (sshfs, rclone mount, s3fs, ...)
    0x00c3_6400, // Ceph
    0x0102_1997, // 9P
    0x5346_414f, // AFS
    0x7375_7245, // Coda
];

/// Whether `path` lies on a network file system (false when that cannot be told).
pub fn is_network(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|fs| NETWORK.contains(&fs.filesystem_type().0))
}

/// How an origin's calls into its folder are made.
#[derive(Debug)]
pub struct Calls {
    /// The origin's name, for errors.
    name: String,
    /// `Some` for a folder on a network file system: the longest wait for one call.
    bound: Option<Duration>,
    /// A walk's thread is running (maybe given up, and blocked in the file system).
    walking: Arc<AtomicBool>,
}

/// How far a long call has come: it ticks once per step (a walk, per entry).
#[derive(Debug, Default)]
pub struct Progress(AtomicU64);

impl Progress {
    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn steps(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Calls {
    /// Calls into the folder at `root` of the origin `name`: bounded by `timeout` if it is on
    /// a network file system, direct otherwise.
    pub fn new(name: &str, root: &Path, timeout: Duration) -> Self {
        Self {
            name: name.to_owned(),
            bound: is_network(root).then_some(timeout),
            walking: Arc::default(),
        }
    }

    /// Whether calls wait on threads of their own.
    pub fn bounded(&self) -> bool {
        self.bound.is_some()
    }

    /// `f()`, or for a network file system `f()` on a thread of its own, given up (`TimedOut`)
    /// if it has not returned within the bound; `what` names the call in that error.
    pub fn call<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let Some(bound) = self.bound else {
            return f();
        };
        let (done, answer) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("netfs-call".into())
            .spawn(move || {
                let _ = done.send(f());
            })?;
        match answer.recv_timeout(bound) {
            Ok(result) => result,
            Err(_) => Err(self.timed_out(what, bound)),
        }
    }

    /// `f(progress)`, a walk, which ticks `progress` at each step; for a network file system on
    /// a thread of its own, given up (`TimedOut`) once no step has come for the bound, and
    /// refused at once while an earlier walk given up has not returned.
    pub fn walk<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Progress) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let Some(bound) = self.bound else {
            return f(&Progress::default());
        };
        if self.walking.swap(true, Ordering::AcqRel) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "origin {}: an earlier listing of it has not returned: the network file \
                     system still does not answer",
                    self.name
                ),
            ));
        }
        let progress = Arc::new(Progress::default());
        let (done, answer) = mpsc::sync_channel(1);
        let (steps, walking) = (progress.clone(), self.walking.clone());
        let spawned = std::thread::Builder::new()
            .name("netfs-walk".into())
            .spawn(move || {
                let result = f(&steps);
                walking.store(false, Ordering::Release);
                let _ = done.send(result);
            });
        if let Err(e) = spawned {
            self.walking.store(false, Ordering::Release);
            return Err(e);
        }
        let mut seen = 0;
        loop {
            match answer.recv_timeout(bound) {
                Ok(result) => return result,
                Err(mpsc::RecvTimeoutError::Timeout) if progress.steps() != seen => {
                    seen = progress.steps();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(self.timed_out("listing", bound))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other(format!(
                        "origin {}: the listing's thread ended without an answer",
                        self.name
                    )))
                }
            }
        }
    }

    fn timed_out(&self, what: &str, bound: Duration) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "origin {}: {what}: the network file system did not answer within {} s",
                self.name,
                bound.as_secs_f64()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_folder_is_called_directly_and_a_bounded_call_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let direct = Calls::new("here", dir.path(), Duration::from_millis(50));
        assert!(
            !direct.bounded(),
            "a temp dir is not on a network file system"
        );
        assert_eq!(direct.call("x", || Ok(7)).unwrap(), 7);

        let bounded = Calls {
            name: "nas".into(),
            bound: Some(Duration::from_millis(50)),
            walking: Arc::default(),
        };
        assert_eq!(bounded.call("x", || Ok(7)).unwrap(), 7);
        let err = bounded
            .call("reading a.flac", || {
                std::thread::sleep(Duration::from_secs(2));
                Ok(0)
            })
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("reading a.flac"), "{err}");
    }

    #[test]
    fn a_walk_is_given_up_only_when_it_stops_making_progress() {
        let bound = Duration::from_millis(100);
        let calls = Calls {
            name: "nas".into(),
            bound: Some(bound),
            walking: Arc::default(),
        };
        // Longer than the bound in all, never that long between two steps.
        let steps = calls
            .walk(move |progress| {
                for _ in 0..10 {
                    std::thread::sleep(bound / 4);
                    progress.tick();
                }
                Ok(10)
            })
            .unwrap();
        assert_eq!(steps, 10);

        let (release, released) = mpsc::channel::<()>();
        let err = calls
            .walk(move |progress| {
                progress.tick();
                let _ = released.recv();
                Ok(0)
            })
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        let err = calls.walk(|_| Ok(1)).unwrap_err();
        assert!(err.to_string().contains("has not returned"), "{err}");
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while calls.walk(|_| Ok(2)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the walk never returned"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
