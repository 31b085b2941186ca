//! A remote origin whose options could not be used at start: an identity file with a
//! passphrase and no ssh-agent, no S3 credentials in the environment, an identity file not
//! there yet. Failing fetchd for it would take every other origin and the cache down with it
//! (the supervisor restarts a fetchd that exits, which would fail again, for ever).
//!
//! Instead it stands in under the name the origin will have: its tracks stay listed, their
//! cached chunks stay readable, every request fails with the reason (an error health counts as
//! "down", so scans keep what they knew), and each health probe tries to build the origin
//! again, so a cause fixed outside brings it in without a restart. A file the origin reads that
//! was not there at start (or was another file) cannot be read through the sandbox fetchd
//! entered then: one written since restarts fetchd (see `restart`), which takes it in.

use std::io;
use std::sync::{Arc, PoisonError, RwLock};

use musicfs_ipc::origin::OriginConfig;

use crate::origin::{Listing, Origin, RangeRead};
use crate::restart::{Admitted, Kind};

pub struct Deferred {
    name: String,
    config: OriginConfig,
    /// The origin once built, or why it could not be.
    built: RwLock<Result<Arc<dyn Origin>, String>>,
    /// The files its options name, as the sandbox admitted them.
    files: Vec<Admitted>,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Deferred({})", self.name)
    }
}

impl Deferred {
    /// `error` is what building `config` said; `name` the name the origin will have.
    pub fn new(name: String, config: OriginConfig, error: &io::Error) -> Self {
        let mut files = Vec::new();
        let named = [
            &config.identity_file,
            &config.certificate_file,
            &config.known_hosts,
            &config.ca_file,
        ];
        for file in named.into_iter().flatten() {
            files.push(Admitted::new(file, Kind::File));
        }
        if let Some(key) = &config.identity_file {
            for beside in [".pub", "-cert.pub"] {
                let mut file = key.as_os_str().to_owned();
                file.push(beside);
                files.push(Admitted::new(file.as_ref(), Kind::File));
            }
        }
        Self {
            name,
            config,
            built: RwLock::new(Err(error.to_string())),
            files,
        }
    }

    fn origin(&self) -> io::Result<Arc<dyn Origin>> {
        let built = self.built.read().unwrap_or_else(PoisonError::into_inner);
        built.clone().map_err(io::Error::other)
    }

    /// Builds the origin if it is not built yet; an origin built under another name (the
    /// user's name changed since start) is refused, since its tracks are filed under this one.
    fn build(&self) -> io::Result<Arc<dyn Origin>> {
        if let Ok(origin) = self.origin() {
            return Ok(origin);
        }
        for file in &self.files {
            file.check(&format!(
                "origin {}: a file its options name was written since start",
                self.name
            ));
        }
        let origin = crate::origins::connect(&self.config)?;
        if origin.name() != self.name {
            return Err(io::Error::other(format!(
                "origin {}: now named {}; restart to use it",
                self.name,
                origin.name()
            )));
        }
        tracing::info!(origin = self.name, "its options can be used now");
        *self.built.write().unwrap_or_else(PoisonError::into_inner) = Ok(origin.clone());
        Ok(origin)
    }
}

impl Origin for Deferred {
    fn name(&self) -> &str {
        &self.name
    }

    fn walk(&self) -> io::Result<Listing> {
        self.origin()?.walk()
    }

    fn stat(&self, rel: &str) -> io::Result<(u64, i128)> {
        self.origin()?.stat(rel)
    }

    fn open(&self, rel: &str) -> io::Result<Box<dyn RangeRead>> {
        self.origin()?.open(rel)
    }

    fn probe(&self) -> io::Result<()> {
        self.build()?.probe()
    }
}
