//! The set of configured origins, looked up by name; files are opened through here so every
//! read is counted in one [`OriginStats`].

use std::path::PathBuf;
use std::sync::Arc;

use musicfs_ipc::FetchError;

use crate::local::LocalOrigin;
use crate::origin::{Origin, OriginFile, OriginStats};

#[derive(Debug)]
pub struct Origins {
    list: Vec<Box<dyn Origin>>,
    stats: Arc<OriginStats>,
}

impl Origins {
    /// Opens every origin; a missing or unreadable one is an error naming it.
    pub fn open(paths: &[PathBuf], stats: Arc<OriginStats>) -> std::io::Result<Self> {
        let mut list: Vec<Box<dyn Origin>> = Vec::new();
        for path in paths {
            let origin = LocalOrigin::new(path)?;
            if !list.iter().any(|o| o.name() == origin.name()) {
                list.push(Box::new(origin));
            }
        }
        Ok(Self { list, stats })
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn Origin> {
        self.list.iter().map(|o| o.as_ref())
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|o| o.name().to_owned()).collect()
    }

    pub fn get(&self, name: &str) -> Result<&dyn Origin, FetchError> {
        self.iter().find(|o| o.name() == name).ok_or_else(|| {
            FetchError::OriginUnavailable(format!("origin {name} is not configured"))
        })
    }

    /// Opens a file of `origin`, counting it and every byte read from it.
    pub fn file(&self, origin: &dyn Origin, rel: &str) -> std::io::Result<OriginFile> {
        OriginFile::open(origin, rel, &self.stats)
    }
}
