//! Local folders on network file systems (NFS, SMB, and FUSE mounts such as sshfs or rclone).
//! A call into one may block for ever while its server is away (NFS's default `hard` mounts
//! do), which would hold a player's read until mountd's deadline and keep it from another copy
//! of the track. So fetchd makes the calls of such an origin (stat, open, read) on a thread of
//! their own and waits at most the origin's timeout; then the origin counts as unreachable,
//! health marks it down, and reads go to another copy. A call that never returns keeps its
//! thread; while [`MAX_STUCK`] of them have not returned, further calls (health's probes every
//! two seconds among them) fail at once instead of leaving a thread each. A walk is bounded
//! by its progress: it is given up once no entry has come for the timeout, and while one that
//! was given up has not returned, no other walk starts (a rescan fails at once instead, so the
//! scans of other origins, which run one at a time, are not held up behind it).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// Calls given up on that may stay blocked before no more are tried: a `hard` NFS mount whose
/// server is away for a weekend would otherwise keep a thread per probe, one every few seconds.
pub const MAX_STUCK: usize = 4;

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
    /// Calls given up on whose threads have not returned yet.
    stuck: Arc<AtomicUsize>,
}

/// Runs its closure when dropped, also while a panic unwinds.
struct OnExit<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnExit<F> {
    fn drop(&mut self) {
        (self.0)()
    }
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
            stuck: Arc::default(),
        }
    }

    /// Whether calls wait on threads of their own.
    pub fn bounded(&self) -> bool {
        self.bound.is_some()
    }

    /// `f()`, or for a network file system `f()` on a thread of its own, given up (`TimedOut`)
    /// if it has not returned within the bound, and not made at all while [`MAX_STUCK`] calls
    /// given up have not returned; `what` names the call in that error.
    pub fn call<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let Some(bound) = self.bound else {
            return f();
        };
        let stuck = self.stuck.load(Ordering::Acquire);
        if stuck >= MAX_STUCK {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "origin {}: {what}: {stuck} earlier calls into its network file system have \
                     not returned; none is made until they do",
                    self.name
                ),
            ));
        }
        // Whichever of the caller (giving up) and the call (returning) comes second settles
        // the count: a call given up counts as stuck until it returns.
        let settled = Arc::new(AtomicBool::new(false));
        let (done, answer) = mpsc::sync_channel(1);
        let (call_settled, call_stuck) = (settled.clone(), self.stuck.clone());
        std::thread::Builder::new()
            .name("netfs-call".into())
            .spawn(move || {
                // Settled even if `f` panics (the caller then gets an error, not a hang).
                let settle = OnExit(move || {
                    if call_settled.swap(true, Ordering::AcqRel) {
                        call_stuck.fetch_sub(1, Ordering::AcqRel);
                    }
                });
                let result = f();
                drop(settle);
                let _ = done.send(result);
            })?;
        match answer.recv_timeout(bound) {
            Ok(result) => result,
            Err(_) => {
                self.stuck.fetch_add(1, Ordering::AcqRel);
                if settled.swap(true, Ordering::AcqRel) {
                    // It returned just now: not stuck after all.
                    self.stuck.fetch_sub(1, Ordering::AcqRel);
                    return answer
                        .recv()
                        .unwrap_or_else(|_| Err(self.timed_out(what, bound)));
                }
                Err(self.timed_out(what, bound))
            }
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
                // Cleared even if `f` panics, else no walk would ever start again.
                let done_walking = OnExit(move || walking.store(false, Ordering::Release));
                let result = f(&steps);
                drop(done_walking);
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

    /// Calls into the origin "nas" on a network file system, bounded by `bound`.
    fn nas_calls(bound: Duration) -> Calls {
        Calls {
            name: "nas".into(),
            bound: Some(bound),
            walking: Arc::default(),
            stuck: Arc::default(),
        }
    }

    #[test]
    fn a_local_folder_is_called_directly_and_a_bounded_call_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let direct = Calls::new("here", dir.path(), Duration::from_millis(50));
        assert!(
            !direct.bounded(),
            "a temp dir is not on a network file system"
        );
        assert_eq!(direct.call("x", || Ok(7)).unwrap(), 7);

        let bounded = nas_calls(Duration::from_millis(50));
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
        let calls = nas_calls(bound);
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

    #[test]
    fn calls_left_blocked_stop_further_calls_until_they_return() {
        let calls = nas_calls(Duration::from_millis(50));
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(std::sync::Mutex::new(released));
        for _ in 0..MAX_STUCK {
            let released = released.clone();
            let err = calls
                .call("probe", move || {
                    let _ = released.lock().unwrap().recv();
                    Ok(())
                })
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        }
        let made = Arc::new(AtomicBool::new(false));
        let flag = made.clone();
        let err = calls
            .call("probe", move || {
                flag.store(true, Ordering::Relaxed);
                Ok(())
            })
            .unwrap_err();
        assert!(err.to_string().contains("earlier calls"), "{err}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !made.load(Ordering::Relaxed),
            "a call was made past the limit"
        );

        for _ in 0..MAX_STUCK {
            release.send(()).unwrap();
        }
        // The released threads return one by one; a call is allowed again once the first has.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while calls.stuck.load(Ordering::Acquire) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the calls never counted as returned"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        calls.call("probe", || Ok(())).unwrap();
    }

    #[test]
    fn a_call_or_walk_that_panics_leaves_nothing_counted_as_running() {
        let calls = nas_calls(Duration::from_millis(50));
        // The caller gets an error, whether it gives up before the panic ends the thread or not.
        assert!(calls
            .walk(|_| -> io::Result<()> { panic!("a bug in the walk") })
            .is_err());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while calls.walk(|_| Ok(3)).is_err() {
            assert!(std::time::Instant::now() < deadline, "no walk starts again");
            std::thread::sleep(Duration::from_millis(10));
        }
        for _ in 0..=MAX_STUCK {
            let err = calls
                .call("stat", || -> io::Result<()> {
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("a bug in the call")
                })
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        }
        while calls.stuck.load(Ordering::Acquire) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "panicked calls still count as stuck"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(calls.call("stat", || Ok(4)).unwrap(), 4);
    }
}
