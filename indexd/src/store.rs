//! The tantivy index on disk: opening it (or rebuilding it when it is missing or unusable),
//! applying catalog batches, and what it has committed.
//!
//! The index lives in `<state>/index/tantivy/`. What it holds is stored *in* each commit: the
//! commit payload (in tantivy's `meta.json`, written atomically with the list of segments) is
//! `{"format":1,"catalog_id":C,"seq":S}`. So the index can never claim a sequence number whose
//! changes it does not hold, and a crash before a commit loses only uncommitted work, which the
//! feeder sends again.
//!
//! An index that cannot be opened (corrupt, or from another format) is moved aside to
//! `tantivy.broken/` and replaced by an empty one at catalog 0, seq 0: searches answer "not
//! ready" until the feeder (which sees seq 0) has sent the catalog again.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use musicfs_ipc::{Collection, IndexBatch, IndexError, IndexedUpTo};
use serde::{Deserialize, Serialize};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyError, Term};

use crate::rank::TieOrder;
use crate::schema::{self, Analyzers, Fields};
use crate::shown::Shown;

/// The index's subdirectory of the index dir (collections.json sits beside it).
pub const TANTIVY_DIR: &str = "tantivy";
/// Where an unusable index is moved.
pub const BROKEN_DIR: &str = "tantivy.broken";
/// Indexing memory shared by the writer's threads.
const WRITER_MEMORY: usize = 50_000_000;
/// Bumped whenever the schema or the analyzers change: an index of another format is rebuilt.
const FORMAT: u32 = 1;

/// What a commit records about itself.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    format: u32,
    catalog_id: u64,
    seq: u64,
}

/// The index, its one writer and its reader.
pub struct IndexStore {
    fields: Fields,
    analyzers: Analyzers,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    committed: Mutex<IndexedUpTo>,
    /// Built-in collections and the ranking's tie order, as of the last commit.
    builtins: PerCommit<Vec<Collection>>,
    tie_order: PerCommit<Arc<TieOrder>>,
    /// What hits are shown as, per segment.
    shown: Shown,
}

/// A value computed from the index, kept until the next commit.
struct PerCommit<T>(Mutex<Option<(u64, T)>>);

impl<T: Clone> PerCommit<T> {
    fn new() -> Self {
        Self(Mutex::new(None))
    }

    /// The value for `searcher`'s commit, computed by `compute` unless already known.
    fn get(
        &self,
        searcher: &Searcher,
        compute: impl FnOnce(&Searcher) -> tantivy::Result<T>,
    ) -> tantivy::Result<T> {
        let generation = searcher.generation().generation_id();
        let mut slot = lock(&self.0);
        match slot.as_ref() {
            Some((known, value)) if *known == generation => Ok(value.clone()),
            _ => {
                let value = compute(searcher)?;
                *slot = Some((generation, value.clone()));
                Ok(value)
            }
        }
    }
}

impl std::fmt::Debug for IndexStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexStore")
            .field("committed", &self.indexed_up_to())
            .finish_non_exhaustive()
    }
}

/// Why an existing index was not opened.
enum OpenFailure {
    /// There is none yet.
    Missing,
    /// It is unusable: move it aside and build a new one.
    Rebuild(String),
    /// Another writer holds it (another indexd on the same state dir): never touch it.
    Locked(TantivyError),
}

impl IndexStore {
    /// Opens the index under `index_dir`, rebuilding it empty when it is missing or unusable.
    pub fn open(index_dir: &Path) -> tantivy::Result<Self> {
        let dir = index_dir.join(TANTIVY_DIR);
        std::fs::create_dir_all(&dir)?;
        let existing = if dir.join("meta.json").exists() {
            Self::open_existing(&dir)
        } else {
            Err(OpenFailure::Missing)
        };
        match existing {
            Ok(store) => return Ok(store),
            Err(OpenFailure::Locked(e)) => return Err(e),
            Err(OpenFailure::Missing) => tracing::info!("no index yet: starting an empty one"),
            Err(OpenFailure::Rebuild(why)) => {
                let broken = index_dir.join(BROKEN_DIR);
                tracing::warn!(
                    "the index is unusable ({why}): moving it to {} and rebuilding it",
                    broken.display()
                );
                move_aside(&dir, &broken)?;
            }
        }
        std::fs::create_dir_all(&dir)?;
        let (schema, fields) = schema::build();
        let index = Index::create_in_dir(&dir, schema)?;
        Self::start(
            index,
            fields,
            IndexedUpTo {
                catalog_id: 0,
                seq: 0,
            },
        )
    }

    fn open_existing(dir: &Path) -> Result<Self, OpenFailure> {
        let rebuild =
            |what: &str, e: &dyn std::fmt::Display| OpenFailure::Rebuild(format!("{what}: {e}"));
        let index = Index::open_in_dir(dir).map_err(|e| rebuild("cannot open it", &e))?;
        let (schema, fields) = schema::build();
        if index.schema() != schema {
            return Err(OpenFailure::Rebuild(
                "its fields are not this version's".to_owned(),
            ));
        }
        let metas = index
            .load_metas()
            .map_err(|e| rebuild("cannot read its metadata", &e))?;
        let committed = match metas.payload.as_deref() {
            None => IndexedUpTo {
                catalog_id: 0,
                seq: 0,
            },
            Some(text) => {
                let payload: Payload = serde_json::from_str(text)
                    .map_err(|e| rebuild("unreadable commit payload", &e))?;
                if payload.format != FORMAT {
                    return Err(OpenFailure::Rebuild(format!(
                        "it is format {}, this indexd writes format {FORMAT}",
                        payload.format
                    )));
                }
                IndexedUpTo {
                    catalog_id: payload.catalog_id,
                    seq: payload.seq,
                }
            }
        };
        Self::start(index, fields, committed).map_err(|e| match e {
            TantivyError::LockFailure(..) => OpenFailure::Locked(e),
            e => rebuild("cannot read it", &e),
        })
    }

    fn start(index: Index, fields: Fields, committed: IndexedUpTo) -> tantivy::Result<Self> {
        schema::register_analyzers(&index);
        let writer = index.writer(WRITER_MEMORY)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            fields,
            analyzers: Analyzers::new(),
            reader,
            writer: Mutex::new(writer),
            committed: Mutex::new(committed),
            builtins: PerCommit::new(),
            tie_order: PerCommit::new(),
            shown: Shown::default(),
        })
    }

    /// What the index has committed.
    pub fn indexed_up_to(&self) -> IndexedUpTo {
        *lock(&self.committed)
    }

    /// False until the index holds a catalog (after a rebuild, until the first batch).
    pub fn is_ready(&self) -> bool {
        self.indexed_up_to().catalog_id != 0
    }

    /// The searcher on the last commit.
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    pub fn analyzers(&self) -> Analyzers {
        self.analyzers.clone()
    }

    /// Tracks in the index (committed).
    pub fn num_tracks(&self) -> u64 {
        self.searcher().num_docs()
    }

    /// Applies and commits one batch. A batch that does not follow what is committed is refused
    /// (the feeder asks [`indexed_up_to`](Self::indexed_up_to) and sends from there); a batch
    /// already held (a retry after a lost answer) changes nothing.
    pub fn apply(&self, batch: &IndexBatch) -> Result<IndexedUpTo, IndexError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| {
            // A panic mid-batch may have left part of it staged: drop that first.
            let mut writer = poisoned.into_inner();
            if let Err(e) = writer.rollback() {
                tracing::error!("cannot roll back after a failed batch: {e}");
            }
            writer
        });
        self.writer.clear_poison();
        let committed = self.indexed_up_to();
        if !follows(batch, committed)? {
            return Ok(committed);
        }
        let result = self
            .stage(&writer, batch, committed)
            .and_then(|()| self.commit(&mut writer, batch));
        match result {
            Ok(up_to) => Ok(up_to),
            Err(e) => {
                if let Err(undo) = writer.rollback() {
                    tracing::error!("rolling back a failed batch failed too: {undo}");
                }
                Err(IndexError::Index(format!(
                    "cannot apply seq {}..{}: {e}",
                    batch.from_seq, batch.to_seq
                )))
            }
        }
    }

    /// Sends the batch's deletions and additions to the writer, without committing.
    fn stage(
        &self,
        writer: &IndexWriter,
        batch: &IndexBatch,
        committed: IndexedUpTo,
    ) -> tantivy::Result<()> {
        if batch.reset || batch.catalog_id != committed.catalog_id {
            writer.delete_all_documents()?;
        }
        let id = |track: u64| Term::from_field_u64(self.fields.track_id, track);
        for track in &batch.removed {
            writer.delete_term(id(track.0));
        }
        let mut analyzers = self.analyzers.clone();
        for doc in &batch.upserts {
            writer.delete_term(id(doc.track.0));
            writer.add_document(schema::document(&self.fields, &mut analyzers, doc))?;
        }
        Ok(())
    }

    /// Commits what is staged together with the batch's place in the catalog.
    fn commit(&self, writer: &mut IndexWriter, batch: &IndexBatch) -> tantivy::Result<IndexedUpTo> {
        let up_to = IndexedUpTo {
            catalog_id: batch.catalog_id,
            seq: batch.to_seq,
        };
        let payload = serde_json::to_string(&Payload {
            format: FORMAT,
            catalog_id: up_to.catalog_id,
            seq: up_to.seq,
        })
        .map_err(|e| TantivyError::InternalError(e.to_string()))?;
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&payload);
        prepared.commit()?;
        *lock(&self.committed) = up_to;
        // The commit holds; a reader that cannot see it yet is retried at the next commit.
        if let Err(e) = self.reader.reload() {
            tracing::warn!(
                "cannot reload the index after committing seq {}: {e}",
                up_to.seq
            );
        }
        Ok(up_to)
    }

    /// The built-in collections of the current commit (computed once per commit).
    pub fn builtin_collections(&self) -> Result<Vec<Collection>, IndexError> {
        self.builtins
            .get(&self.searcher(), crate::collections::builtins)
            .map_err(|e| IndexError::Index(format!("cannot list genres and decades: {e}")))
    }

    /// The ranking's tie order for `searcher`'s commit (computed once per commit).
    pub fn tie_order(&self, searcher: &Searcher) -> Result<Arc<TieOrder>, IndexError> {
        self.tie_order
            .get(searcher, |s| TieOrder::build(s).map(Arc::new))
            .map_err(|e| IndexError::Index(format!("cannot order artists and albums: {e}")))
    }

    pub fn shown(&self) -> &Shown {
        &self.shown
    }

    /// Stages a batch without committing, as a crash between the two would leave it (tests).
    #[cfg(test)]
    pub(crate) fn stage_only(&self, batch: &IndexBatch) {
        let writer = lock(&self.writer);
        self.stage(&writer, batch, self.indexed_up_to()).unwrap();
    }
}

/// Whether `batch` should be applied (`false`: it is already held), or why it is refused.
fn follows(batch: &IndexBatch, committed: IndexedUpTo) -> Result<bool, IndexError> {
    let refuse = |why: String| Err(IndexError::Index(why));
    if batch.catalog_id == 0 {
        return refuse("catalog id 0 is reserved for \"no catalog yet\"".to_owned());
    }
    if batch.to_seq < batch.from_seq {
        return refuse(format!(
            "batch ends (seq {}) before it starts (seq {})",
            batch.to_seq, batch.from_seq
        ));
    }
    if batch.reset {
        return Ok(true);
    }
    let same_catalog = batch.catalog_id == committed.catalog_id;
    if same_catalog && batch.to_seq <= committed.seq {
        return Ok(false);
    }
    let expected = if same_catalog { committed.seq } else { 0 };
    if batch.from_seq != expected {
        return refuse(if same_catalog {
            format!(
                "batch starts after seq {} but the index holds catalog {:x} up to seq {}: send from seq {}",
                batch.from_seq, committed.catalog_id, committed.seq, committed.seq
            )
        } else {
            format!(
                "batch is for catalog {:x} from seq {}, but the index holds catalog {:x}: send a reset batch, or from seq 0",
                batch.catalog_id, batch.from_seq, committed.catalog_id
            )
        });
    }
    Ok(true)
}

fn move_aside(dir: &Path, broken: &Path) -> std::io::Result<()> {
    if broken.exists() {
        std::fs::remove_dir_all(broken)?;
    }
    std::fs::rename(dir, broken)
}

/// Locks a mutex; a panic elsewhere while holding it leaves data that is still consistent
/// (every update is a single assignment), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
