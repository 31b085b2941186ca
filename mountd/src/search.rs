//! [`RpcSearch`]: the views' [`Search`] over indexd's `Index` service (and fetchd's `paths` and
//! `hidden`).
//! Searches wait at most [`SEARCH_DEADLINE`] for a restarting indexd: a listing should fail fast
//! rather than hang a file manager for the library's full retry deadline.

use std::time::Duration;

use musicfs_ipc::client::Reconnecting;
use musicfs_ipc::{FetchClient, Hit, IndexClient, TrackId};
use tokio::runtime::Handle;

use crate::backend::BackendError;
use crate::views::Search;

pub const SEARCH_DEADLINE: Duration = Duration::from_secs(5);

pub struct RpcSearch {
    runtime: Handle,
    indexd: Reconnecting<IndexClient>,
    fetchd: Reconnecting<FetchClient>,
}

impl RpcSearch {
    pub fn new(
        runtime: Handle,
        indexd: Reconnecting<IndexClient>,
        fetchd: Reconnecting<FetchClient>,
    ) -> Self {
        Self {
            runtime,
            indexd,
            fetchd,
        }
    }
}

impl Search for RpcSearch {
    fn search(&self, query: &str, limit: u32) -> Result<Vec<Hit>, BackendError> {
        let query = query.to_owned();
        let call = self.indexd.call_within(SEARCH_DEADLINE, |c, ctx| {
            let query = query.clone();
            async move { c.search(ctx, query, limit).await }
        });
        Ok(self.runtime.block_on(call)??)
    }

    fn collections(&self) -> Result<Vec<(String, String)>, BackendError> {
        let call =
            self.indexd.call_within(
                SEARCH_DEADLINE,
                |c, ctx| async move { c.collections(ctx).await },
            );
        let collections = self.runtime.block_on(call)??;
        Ok(collections.into_iter().map(|c| (c.name, c.query)).collect())
    }

    fn paths(&self, tracks: Vec<TrackId>) -> Result<Vec<Option<String>>, BackendError> {
        let call = self.fetchd.call(|c, ctx| {
            let tracks = tracks.clone();
            async move { c.paths(ctx, tracks).await }
        });
        Ok(self.runtime.block_on(call)?)
    }

    fn hidden(&self) -> Result<(u64, Vec<TrackId>), BackendError> {
        let call = self
            .fetchd
            .call(|c, ctx| async move { c.hidden(ctx).await });
        Ok(self.runtime.block_on(call)?)
    }
}
