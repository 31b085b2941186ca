//! The set of configured origins, looked up by name, each with its options and its health;
//! files are opened through here so every read is counted in one [`OriginStats`].

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use musicfs_ipc::origin::{OriginConfig, OriginUrl};

use crate::health::Health;
use crate::local::LocalOrigin;
use crate::origin::{Origin, OriginFile, OriginStats};

#[derive(Debug)]
struct Entry {
    origin: Arc<dyn Origin>,
    config: OriginConfig,
    health: Arc<Health>,
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
        OriginUrl::Local(path) => Arc::new(LocalOrigin::new(&path)?),
        OriginUrl::Sftp { .. } => Arc::new(crate::sftp::SftpOrigin::new(config, &url)?),
        OriginUrl::S3 { .. } => Arc::new(crate::s3::S3Origin::new(config, &url)?),
        OriginUrl::Http { .. } => Arc::new(crate::http::HttpOrigin::new(config, &url)?),
    })
}

impl Origins {
    /// Opens every origin; a bad option is an error naming it (a missing local folder is not:
    /// see `LocalOrigin::new`).
    pub fn open(configs: &[OriginConfig], stats: Arc<OriginStats>) -> std::io::Result<Self> {
        let mut list: Vec<Entry> = Vec::new();
        for config in configs {
            let origin = connect(config)?;
            if !list.iter().any(|e| e.origin.name() == origin.name()) {
                let health = Arc::new(Health::new(origin.name()));
                list.push(Entry {
                    origin,
                    config: config.clone(),
                    health,
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

    /// The priority of an origin by name (lower is preferred); unknown origins come last.
    pub fn priority(&self, name: &str) -> i32 {
        self.index_of(name)
            .map_or(i32::MAX, |i| self.list[i].config.priority)
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
