//! The set of configured origins, looked up by name, each with its options and its health;
//! files are opened through here so every read is counted in one [`OriginStats`]. A read that
//! finds a file not as the last scan saw it marks its origin suspect, and the origin's poller
//! (see `watch.rs`) lists it again at once instead of at its interval.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use musicfs_ipc::origin::{OriginConfig, OriginUrl};

use crate::deferred::Deferred;
use crate::health::Health;
use crate::local::LocalOrigin;
use crate::origin::{Origin, OriginFile, OriginStats};

#[derive(Debug)]
struct Entry {
    origin: Arc<dyn Origin>,
    config: OriginConfig,
    /// Read across a network (not a local folder).
    remote: bool,
    health: Arc<Health>,
    suspect: Suspect,
}

/// Set when a read found one of the origin's files changed since the last scan.
#[derive(Debug, Default)]
struct Suspect {
    set: Mutex<bool>,
    woken: Condvar,
}

#[derive(Debug)]
pub struct Origins {
    list: Vec<Entry>,
    stats: Arc<OriginStats>,
    stop: Arc<AtomicBool>,
}

/// Makes the origin a config names. Remote origins connect lazily: a server that is down now
/// is not an error here (it is reported by health and status), a bad option is.
pub fn connect(config: &OriginConfig) -> std::io::Result<Arc<dyn Origin>> {
    let url = config.parsed().map_err(std::io::Error::other)?;
    Ok(match url {
        OriginUrl::Local(path) => Arc::new(LocalOrigin::new(&path)?.with_timeout(config.timeout())),
        OriginUrl::Sftp { .. } => Arc::new(crate::sftp::SftpOrigin::new(config, &url)?),
        OriginUrl::S3 { .. } => Arc::new(crate::s3::S3Origin::new(config, &url)?),
        OriginUrl::Http { .. } => Arc::new(crate::http::HttpOrigin::new(config, &url)?),
    })
}

/// Makes the origin a config names; a remote one whose options cannot be used now stands in
/// as [`Deferred`] (logged), so the other origins and the cache serve meanwhile.
fn connect_or_defer(config: &OriginConfig) -> std::io::Result<Arc<dyn Origin>> {
    let url = config.parsed().map_err(std::io::Error::other)?;
    let error = match connect(config) {
        Err(e) if !url.is_local() => e,
        built => return built,
    };
    let name = match &url {
        OriginUrl::Sftp { .. } => crate::sftp::SftpOrigin::name_of(config)
            .map_err(|e| std::io::Error::other(format!("origin {}: {e}", config.url)))?,
        OriginUrl::S3 { .. } => crate::s3::S3Origin::name_of(&url)?,
        OriginUrl::Http { base } => base.clone(),
        OriginUrl::Local(_) => return Err(error),
    };
    tracing::error!(
        "{error}; its tracks stay listed and what is cached of them plays; it is tried again \
         at every health probe"
    );
    Ok(Arc::new(Deferred::new(name, config.clone(), &error)))
}

impl Origins {
    /// Opens every origin; a bad option of a local one is an error naming it (a missing local
    /// folder is not: see `LocalOrigin::new`), of a remote one it is logged (see [`Deferred`]).
    pub fn open(configs: &[OriginConfig], stats: Arc<OriginStats>) -> std::io::Result<Self> {
        let mut list: Vec<Entry> = Vec::new();
        for config in configs {
            let origin = connect_or_defer(config)?;
            if !list.iter().any(|e| e.origin.name() == origin.name()) {
                let health = Arc::new(Health::new(origin.name()));
                let remote = !matches!(config.parsed(), Ok(OriginUrl::Local(_)));
                list.push(Entry {
                    origin,
                    config: config.clone(),
                    remote,
                    health,
                    suspect: Suspect::default(),
                });
            }
        }
        Ok(Self {
            list,
            stats,
            stop: Arc::default(),
        })
    }

    /// Starts a health prober for every origin. (A local one fails fast by itself; its probe
    /// notices a disk mounted at its folder since fetchd started, see `LocalOrigin`.)
    pub fn start_probes(&self) {
        for entry in &self.list {
            let origin = entry.origin.clone();
            crate::health::spawn_prober(
                entry.health.clone(),
                move || origin.probe(),
                self.stop.clone(),
            );
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn Origin> {
        self.list.iter().map(|e| e.origin.as_ref())
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|e| e.origin.name() == name)
    }

    pub fn config(&self, index: usize) -> &OriginConfig {
        &self.list[index].config
    }

    pub fn health(&self, index: usize) -> &Health {
        &self.list[index].health
    }

    pub fn origin(&self, index: usize) -> &Arc<dyn Origin> {
        &self.list[index].origin
    }

    /// Whether an origin (by name) is read across a network; unknown origins are not.
    pub fn is_remote(&self, name: &str) -> bool {
        self.index_of(name).is_some_and(|i| self.list[i].remote)
    }

    /// The priority of an origin by name (lower is preferred); unknown origins come last.
    pub fn priority(&self, name: &str) -> i32 {
        self.index_of(name)
            .map_or(i32::MAX, |i| self.list[i].config.priority)
    }

    /// A read found a file of origin `index` not as the last scan left it (another size or
    /// mtime, shorter, other bytes): the origin is to be listed again soon.
    pub fn suspect_changed(&self, index: usize) {
        let suspect = &self.list[index].suspect;
        *suspect.set.lock().unwrap_or_else(PoisonError::into_inner) = true;
        suspect.woken.notify_all();
    }

    /// Waits until origin `index` is suspected of a change, for at most `timeout` (`None`: for
    /// ever). True if it was (the suspicion is then cleared), false after the timeout.
    pub fn wait_suspected(&self, index: usize, timeout: Option<Duration>) -> bool {
        let suspect = &self.list[index].suspect;
        let set = suspect.set.lock().unwrap_or_else(PoisonError::into_inner);
        let mut set = match timeout {
            Some(timeout) => {
                let waited = suspect.woken.wait_timeout_while(set, timeout, |set| !*set);
                waited.unwrap_or_else(PoisonError::into_inner).0
            }
            None => {
                let waited = suspect.woken.wait_while(set, |set| !*set);
                waited.unwrap_or_else(PoisonError::into_inner)
            }
        };
        std::mem::replace(&mut *set, false)
    }

    /// Records the outcome of a request to the named origin.
    pub fn record<T>(&self, name: &str, result: &std::io::Result<T>) {
        if let Some(i) = self.index_of(name) {
            match result {
                Ok(_) => self.list[i].health.succeeded(),
                Err(e) => self.list[i].health.failed(e),
            }
        }
    }

    /// Opens a file of `origin`, counting it and every byte read from it.
    pub fn file(&self, origin: &dyn Origin, rel: &str) -> std::io::Result<OriginFile> {
        OriginFile::open(origin, rel, &self.stats)
    }
}

impl Drop for Origins {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspected_change_wakes_its_origins_poller_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = OriginConfig::from_url(dir.path().to_str().unwrap());
        let origins = Origins::open(&[config], Arc::default()).unwrap();
        let moment = Some(Duration::from_millis(20));
        assert!(!origins.wait_suspected(0, moment));
        origins.suspect_changed(0);
        assert!(origins.wait_suspected(0, moment));
        assert!(!origins.wait_suspected(0, moment), "not cleared");
        std::thread::scope(|s| {
            let poller = s.spawn(|| origins.wait_suspected(0, None));
            std::thread::sleep(Duration::from_millis(50));
            origins.suspect_changed(0);
            assert!(poller.join().unwrap());
        });
    }
}
