//! Whether each origin answers: a probe thread per origin asks it a cheap question every few
//! seconds (bounded by the origin's timeout), and every failed or successful request made for a
//! read or a scan counts too. Reads skip origins that are down and go to another origin holding
//! the track; a returning origin is used again from its first good answer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time between probes of one origin.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Health {
    name: String,
    up: AtomicBool,
    /// Failures in a row.
    failures: AtomicU64,
    changed: Mutex<(Instant, Option<String>)>,
    /// Something wrong with what the origin answers, although it answers (it lists no files).
    warning: Mutex<Option<String>>,
}

impl Health {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            up: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            changed: Mutex::new((Instant::now(), None)),
            warning: Mutex::new(None),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The last error and how long the origin has been in its state.
    pub fn detail(&self) -> (Duration, Option<String>) {
        let changed = lock(&self.changed);
        (changed.0.elapsed(), changed.1.clone())
    }

    pub fn warning(&self) -> Option<String> {
        lock(&self.warning).clone()
    }

    /// Sets or clears the warning; true when that changed whether there is one.
    pub fn warn(&self, warning: Option<String>) -> bool {
        let mut current = lock(&self.warning);
        let changed = current.is_some() != warning.is_some();
        *current = warning;
        changed
    }

    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if !self.up.swap(true, Ordering::AcqRel) {
            *lock(&self.changed) = (Instant::now(), None);
            tracing::info!(origin = self.name, "origin is back");
        }
    }

    /// A request failed. Errors that say the origin is unreachable mark it down at once;
    /// others (a file that vanished) do not.
    pub fn failed(&self, error: &std::io::Error) {
        if !unreachable(error) {
            return;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        if self.up.swap(false, Ordering::AcqRel) {
            *lock(&self.changed) = (Instant::now(), Some(error.to_string()));
            tracing::warn!(origin = self.name, "origin is down: {error}");
        } else {
            lock(&self.changed).1 = Some(error.to_string());
        }
    }
}

/// Whether an error says, beyond doubt, that the origin stopped answering (a connection
/// refused, reset or timed out; a network file system's stale handle), not anything about the
/// file asked for. Narrower than [`unreachable`]: a server's error for one file (an SFTP
/// failure, an HTTP 5xx, EIO from a bad disk sector) may be that file's alone.
pub fn stopped_answering(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        TimedOut
            | ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | AddrNotAvailable
            | HostUnreachable
            | NetworkUnreachable
            | StaleNetworkFileHandle
    )
}

/// Whether an error means "the origin does not answer" rather than "no such file".
pub fn unreachable(error: &std::io::Error) -> bool {
    !matches!(
        error.kind(),
        std::io::ErrorKind::NotFound
            | std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::UnexpectedEof
    )
}

/// Probes `probe` every [`PROBE_INTERVAL`] until `stop` is set, updating `health`.
pub fn spawn_prober(
    health: Arc<Health>,
    probe: impl Fn() -> std::io::Result<()> + Send + 'static,
    stop: Arc<AtomicBool>,
) {
    let spawned = std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match probe() {
                    Ok(()) => health.succeeded(),
                    Err(e) => health.failed(&e),
                }
                std::thread::sleep(PROBE_INTERVAL);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the origin prober: {e}");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn unreachable_errors_mark_down_and_a_success_marks_up() {
        let h = Health::new("o");
        h.failed(&Error::from(ErrorKind::NotFound));
        assert!(h.is_up(), "a missing file says nothing about the origin");
        h.failed(&Error::from(ErrorKind::TimedOut));
        assert!(!h.is_up());
        assert!(h.detail().1.is_some());
        h.succeeded();
        assert!(h.is_up());
        assert_eq!(h.detail().1, None);
    }
}
