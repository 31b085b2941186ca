//! [`RpcSearch`]: the views' [`Search`] over indexd's `Index` service (and fetchd's `paths` and
//! `hidden`).
//! Searches wait at most [`SEARCH_DEADLINE`] for a restarting indexd: a listing should fail fast
//! rather than hang a file manager for the library's full retry deadline.

use std::time::Duration;

use musicfs_ipc::blocking::Blocking;
use musicfs_ipc::client::Reconnecting;
use musicfs_ipc::{FetchClient, Hit, IndexClient, TrackId};

use crate::backend::BackendError;
use crate::views::Search;

pub const SEARCH_DEADLINE: Duration = Duration::from_secs(5);

pub struct RpcSearch {
    indexd: Blocking<IndexClient>,
    fetchd: Blocking<FetchClient>,
}

impl RpcSearch {
    /// Calls block the calling thread, which must not be a runtime's own.
    pub fn new(indexd: Reconnecting<IndexClient>, fetchd: Reconnecting<FetchClient>) -> Self {
        Self {
            indexd: Blocking::new(indexd),
            fetchd: Blocking::new(fetchd),
        }
    }
}

impl Search for RpcSearch {
    fn search(&self, query: &str, limit: u32) -> Result<Vec<Hit>, BackendError> {
        let query = query.to_owned();
        let hits = self.indexd.call_within(SEARCH_DEADLINE, |c, ctx| {
            let query = query.clone();
            async move { c.search(ctx, query, limit).await }
        });
        Ok(hits??)
    }

    fn collections(&self) -> Result<Vec<(String, String)>, BackendError> {
        let collections = self
            .indexd
            .call_within(
                SEARCH_DEADLINE,
                |c, ctx| async move { c.collections(ctx).await },
            )??;
        Ok(collections.into_iter().map(|c| (c.name, c.query)).collect())
    }

    fn paths(&self, tracks: Vec<TrackId>) -> Result<Vec<Option<String>>, BackendError> {
        let paths = self.fetchd.call(|c, ctx| {
            let tracks = tracks.clone();
            async move { c.paths(ctx, tracks).await }
        });
        Ok(paths?)
    }

    fn hidden(&self) -> Result<(u64, Vec<TrackId>), BackendError> {
        let hidden = self
            .fetchd
            .call(|c, ctx| async move { c.hidden(ctx).await });
        Ok(hidden?)
    }
}
