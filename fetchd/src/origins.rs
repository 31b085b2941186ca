//! The set of configured origins, looked up by name.

use std::path::PathBuf;
use std::sync::Arc;

use musicfs_ipc::FetchError;

use crate::origin::{LocalOrigin, OriginStats};

#[derive(Debug)]
pub struct Origins {
    list: Vec<LocalOrigin>,
}

impl Origins {
    /// Opens every origin; a missing or unreadable one is an error naming it.
    pub fn open(paths: &[PathBuf], stats: Arc<OriginStats>) -> std::io::Result<Self> {
        let mut list: Vec<LocalOrigin> = Vec::new();
        for path in paths {
            let origin = LocalOrigin::new(path, stats.clone())?;
            if !list.iter().any(|o| o.name() == origin.name()) {
                list.push(origin);
            }
        }
        Ok(Self { list })
    }

    pub fn iter(&self) -> impl Iterator<Item = &LocalOrigin> {
        self.list.iter()
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|o| o.name().to_owned()).collect()
    }

    pub fn get(&self, name: &str) -> Result<&LocalOrigin, FetchError> {
        self.list.iter().find(|o| o.name() == name).ok_or_else(|| {
            FetchError::OriginUnavailable(format!("origin {name} is not configured"))
        })
    }
}
