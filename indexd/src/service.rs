//! The `Index` tarpc service: each call checked, run off the async thread when it touches the
//! index (tantivy blocks), and answered with an `IndexError` on failure.

use std::path::Path;
use std::sync::{Arc, Mutex};

use musicfs_ipc::{
    Collection, Health, Hello, Hit, Index, IndexBatch, IndexError, IndexedUpTo, WorkerError,
};
use tarpc::context::Context;

use crate::collections::{self, SavedCollections};
use crate::store::IndexStore;
use crate::SERVICE;

/// indexd's state behind its socket. Cloned per connection; the clones share everything.
#[derive(Clone, Debug)]
pub struct IndexServer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: IndexStore,
    saved: Mutex<SavedCollections>,
}

impl IndexServer {
    /// Opens (or rebuilds) the index and the saved collections under `index_dir`.
    pub fn open(index_dir: &Path) -> std::io::Result<Self> {
        let store = IndexStore::open(index_dir).map_err(std::io::Error::other)?;
        let saved = SavedCollections::load(index_dir)?;
        tracing::info!("{}", describe(&store));
        Ok(Self {
            shared: Arc::new(Shared {
                store,
                saved: Mutex::new(saved),
            }),
        })
    }

    pub fn store(&self) -> &IndexStore {
        &self.shared.store
    }

    /// Runs `f` on the blocking pool (tantivy work must not stall the async thread).
    async fn blocking<T, F>(&self, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T, IndexError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| IndexError::Index(format!("indexd task failed: {e}")))?
    }
}

fn describe(store: &IndexStore) -> String {
    let up_to = store.indexed_up_to();
    if store.is_ready() {
        format!(
            "{} tracks, catalog {:x} up to seq {}",
            store.num_tracks(),
            up_to.catalog_id,
            up_to.seq
        )
    } else {
        "rebuilding: waiting for the catalog".to_owned()
    }
}

impl Shared {
    fn saved(&self) -> std::sync::MutexGuard<'_, SavedCollections> {
        self.saved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Index for IndexServer {
    async fn hello(self, _: Context) -> Hello {
        Hello::new(SERVICE)
    }

    async fn health(self, _: Context) -> Result<Health, WorkerError> {
        Ok(Health {
            service: SERVICE.to_owned(),
            pid: std::process::id(),
            ok: true,
            detail: describe(self.store()),
        })
    }

    async fn indexed_up_to(self, _: Context) -> Result<IndexedUpTo, IndexError> {
        Ok(self.store().indexed_up_to())
    }

    async fn apply(self, _: Context, batch: IndexBatch) -> Result<IndexedUpTo, IndexError> {
        self.blocking(move |s| {
            let result = s.store.apply(&batch);
            match &result {
                Ok(up_to) => tracing::debug!(
                    "applied {} upserts, {} removals: now at seq {}",
                    batch.upserts.len(),
                    batch.removed.len(),
                    up_to.seq
                ),
                Err(e) => tracing::warn!("refused a batch: {e}"),
            }
            result
        })
        .await
    }

    async fn search(self, _: Context, query: String, limit: u32) -> Result<Vec<Hit>, IndexError> {
        self.blocking(move |s| {
            let result = crate::search::search(&s.store, &query, limit);
            if let Err(e) = &result {
                tracing::info!("search {query:?}: {e}");
            }
            result
        })
        .await
    }

    async fn collections(self, _: Context) -> Result<Vec<Collection>, IndexError> {
        self.blocking(|s| {
            let builtins = s.store.builtin_collections()?;
            Ok(s.saved().list(builtins))
        })
        .await
    }

    async fn add_collection(
        self,
        _: Context,
        name: String,
        query: String,
    ) -> Result<(), IndexError> {
        self.blocking(move |s| {
            collections::check_name(&name)?;
            crate::query::parse(&query).map_err(|e| IndexError::BadQuery(e.to_string()))?;
            let replacing = s.saved().get(&name).is_some();
            if !replacing
                && s.store
                    .builtin_collections()?
                    .iter()
                    .any(|c| c.name == name)
            {
                return Err(IndexError::BuiltinCollection(name));
            }
            s.saved()
                .insert(&name, &query)
                .map_err(|e| IndexError::Index(format!("cannot save collection {name:?}: {e}")))
        })
        .await
    }

    async fn remove_collection(self, _: Context, name: String) -> Result<(), IndexError> {
        self.blocking(move |s| {
            let removed = s.saved().remove(&name).map_err(|e| {
                IndexError::Index(format!("cannot remove collection {name:?}: {e}"))
            })?;
            if removed {
                Ok(())
            } else if s
                .store
                .builtin_collections()?
                .iter()
                .any(|c| c.name == name)
            {
                Err(IndexError::BuiltinCollection(name))
            } else {
                Err(IndexError::NoSuchCollection(name))
            }
        })
        .await
    }
}
