//! The catalog: LMDB (heed) tables for tracks, the files they came from, files that could not be
//! read, the rendered namespace with its stable inode numbers, chunk manifests, and the paths
//! pinned in the cache.
//!
//! Keys that are paths are stored as their XXH3-128 (LMDB keys are limited to 511 bytes); the
//! full path is kept in the value. Every table's values are MessagePack. The format is
//! versioned: a catalog written by another format version is refused with a clear message.

use std::collections::HashMap;
use std::path::Path;

use heed::byteorder::BigEndian;
use heed::types::{Bytes, SerdeRmp, Str, U64};
use heed::{CommitOrAbort, Env, EnvOpenOptions, WithoutTls};
use musicfs_ipc::{Ino, NodeKind, TrackId, TrackRef};
use serde::{Deserialize, Serialize};

use crate::track::{Location, Problem, TrackRecord};

pub const FORMAT_VERSION: u64 = 2;
const MAP_SIZE: usize = 16 << 30;

type Id = U64<BigEndian>;
type Database<K, V> = heed::Database<'static, K, V>;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog at {path}: {source}")]
    Lmdb { path: String, source: heed::Error },
    #[error("catalog at {path} has format {found}, this fetchd reads format {FORMAT_VERSION}; move the state dir aside or run a matching version")]
    Format { path: String, found: u64 },
    #[error("catalog: {0}")]
    Txn(#[from] heed::Error),
}

/// One node of the rendered tree, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub parent: Ino,
    pub name: String,
    pub kind: NodeKind,
    pub size: u64,
    pub mtime_ns: i128,
    pub track: Option<TrackRef>,
    /// A file whose track is read from a remote origin (nodes persisted before this field
    /// read as local until the tree is built again).
    #[serde(default)]
    pub remote: bool,
}

/// The chunks a track version is made of, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u64,
    /// `(length, xxh3-128)` of each chunk.
    pub chunks: Vec<(u32, u128)>,
}

/// The blocks of a file the scanner read (its tag bytes), kept in the chunk store, so reads of
/// a remote file's head or tail before it is cached need not ask the origin again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// The file version the blocks are of.
    pub size: u64,
    pub mtime_ns: i128,
    /// `(offset, length, xxh3-128)` of each block.
    pub blocks: Vec<(u64, u32, u128)>,
}

/// What one scan batch changes, applied in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub upserts: Vec<(Location, u64, i128, crate::track::TrackInfo)>,
    pub problems: Vec<(Location, Problem)>,
    pub removed: Vec<Location>,
    pub heads: Vec<(Location, Head)>,
    /// `(from, to)`: a file gone and one new on the same origin, with the same size and mtime
    /// and no other such file: taken for the same file moved, keeping its track (id, cached
    /// chunks), if `to` is upserted in the same batch and the tag blocks the scan kept of both
    /// agree. Otherwise `from` is removed.
    pub moves: Vec<(Location, Location)>,
}

#[derive(Clone)]
pub struct Catalog {
    env: Env<WithoutTls>,
    meta: Database<Str, U64<BigEndian>>,
    tracks: Database<Id, SerdeRmp<TrackRecord>>,
    files: Database<Bytes, Id>,
    problems: Database<Bytes, SerdeRmp<(Location, Problem)>>,
    nodes: Database<Id, SerdeRmp<Node>>,
    inos: Database<Bytes, Id>,
    manifests: Database<Id, SerdeRmp<Manifest>>,
    /// Change sequence number of each removal → the removed track (for indexd's catch-up).
    removed: Database<Id, Id>,
    /// Paths pinned in the chunk cache (relative to the mount's root), keyed by their hash.
    pins: Database<Bytes, Str>,
    /// Tag blocks the scanner read, by location key.
    heads: Database<Bytes, SerdeRmp<Head>>,
}

/// Catalog changes after some sequence number, for indexd.
#[derive(Debug, Default)]
pub struct Changes {
    pub catalog_id: u64,
    /// The sequence number the catalog is at: every change up to it is included.
    pub seq: u64,
    /// Tracks added or changed, with their sequence number (the record's `version`).
    pub upserts: Vec<(TrackId, TrackRecord)>,
    /// Removed tracks, with the sequence number of the removal.
    pub removed: Vec<(u64, TrackId)>,
}

/// A catalog's identity, so indexd can tell a new catalog (rebuild) from the one it follows.
fn new_catalog_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    xxhash_rust::xxh3::xxh3_64(
        &[
            nanos.to_le_bytes(),
            u128::from(std::process::id()).to_le_bytes(),
        ]
        .concat(),
    )
    .max(1)
}

fn path_key(text: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(text.as_bytes()).to_be_bytes()
}

/// An error opening the catalog in `dir`.
fn at(dir: &Path, source: heed::Error) -> CatalogError {
    CatalogError::Lmdb {
        path: dir.display().to_string(),
        source,
    }
}

impl Catalog {
    /// [`open`](Self::open), except that a catalog LMDB cannot read (damaged, or not LMDB at
    /// all) is set aside in its folder (`data.mdb.damaged-<seconds>`, kept for inspection) with
    /// an error logged, and a new one is started. The catalog is derived state: the scan
    /// rebuilds it from the origins, and the chunk store keeps its chunks (a track cut again
    /// finds them held). Pins, kept in the catalog, are lost with it.
    pub fn open_or_set_aside(dir: &Path) -> Result<Self, CatalogError> {
        let unreadable = match Self::open(dir) {
            Err(CatalogError::Lmdb {
                source: heed::Error::Mdb(e),
                ..
            })
            | Err(CatalogError::Txn(heed::Error::Mdb(e)))
                if matches!(
                    e,
                    heed::MdbError::Invalid
                        | heed::MdbError::Corrupted
                        | heed::MdbError::PageNotFound
                        | heed::MdbError::VersionMismatch
                ) =>
            {
                e
            }
            opened => return opened,
        };
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = dir.join(format!("data.mdb.damaged-{secs}"));
        std::fs::rename(dir.join("data.mdb"), &aside).map_err(|e| at(dir, heed::Error::Io(e)))?;
        let _ = std::fs::remove_file(dir.join("lock.mdb"));
        tracing::error!(
            "catalog at {}: {unreadable}; set aside as {} and a new one started (the scan \
             rebuilds it from the origins; cached chunks are kept; pins must be made again)",
            dir.display(),
            aside.display()
        );
        Self::open(dir)
    }

    pub fn open(dir: &Path) -> Result<Self, CatalogError> {
        let lmdb = |source| at(dir, source);
        std::fs::create_dir_all(dir).map_err(|e| lmdb(heed::Error::Io(e)))?;
        // SAFETY: the state dir's lock (held by the supervisor) keeps one fetchd per catalog,
        // and nothing else maps these files.
        let env = unsafe {
            EnvOpenOptions::new()
                .read_txn_without_tls()
                .map_size(MAP_SIZE)
                .max_dbs(16)
                .open(dir)
        }
        .map_err(lmdb)?;
        let wtxn = env.write_txn()?;
        let (meta, tracks, files, problems, nodes, inos, manifests, removed, pins, heads) = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    opener.create_database(wtxn, Some("meta"))?,
                    opener.create_database(wtxn, Some("tracks"))?,
                    opener.create_database(wtxn, Some("files"))?,
                    opener.create_database(wtxn, Some("problems"))?,
                    opener.create_database(wtxn, Some("nodes"))?,
                    opener.create_database(wtxn, Some("inos"))?,
                    opener.create_database(wtxn, Some("manifests"))?,
                    opener.create_database(wtxn, Some("removed"))?,
                    opener.create_database(wtxn, Some("pins"))?,
                    opener.create_database(wtxn, Some("heads"))?,
                )))
            })?
            .unwrap_commit();
        let catalog = Self {
            env: env.clone(),
            meta,
            tracks,
            files,
            problems,
            nodes,
            inos,
            manifests,
            removed,
            pins,
            heads,
        };
        let mut wtxn = env.write_txn()?;
        match catalog.meta.get(&wtxn, "format")? {
            None => {
                catalog.meta.put(&mut wtxn, "format", &FORMAT_VERSION)?;
                catalog
                    .meta
                    .put(&mut wtxn, "catalog_id", &new_catalog_id())?;
            }
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(CatalogError::Format {
                    path: dir.display().to_string(),
                    found,
                })
            }
        }
        wtxn.commit()?;
        Ok(catalog)
    }

    pub fn track(&self, id: TrackId) -> Result<Option<TrackRecord>, CatalogError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.tracks.get(&rtxn, &id.0)?)
    }

    /// The track catalogued at a location, if any (the same file on another origin).
    pub fn track_at(
        &self,
        location: &Location,
    ) -> Result<Option<(TrackId, TrackRecord)>, CatalogError> {
        let rtxn = self.env.read_txn()?;
        let Some(id) = self.files.get(&rtxn, &path_key(&location.key()))? else {
            return Ok(None);
        };
        Ok(self.tracks.get(&rtxn, &id)?.map(|r| (TrackId(id), r)))
    }

    /// The tag blocks the scanner kept of the file at `location`, if any.
    pub fn head(&self, location: &Location) -> Result<Option<Head>, CatalogError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.heads.get(&rtxn, &path_key(&location.key()))?)
    }

    /// Drops the tag blocks kept of a file (it is cut into chunks now).
    pub fn forget_head(&self, location: &Location) -> Result<(), CatalogError> {
        let mut wtxn = self.env.write_txn()?;
        self.heads.delete(&mut wtxn, &path_key(&location.key()))?;
        Ok(wtxn.commit()?)
    }

    pub fn tracks(&self) -> Result<Vec<(TrackId, TrackRecord)>, CatalogError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.tracks.iter(&rtxn)? {
            let (id, record) = item?;
            out.push((TrackId(id), record));
        }
        Ok(out)
    }

    /// Every track's id, without decoding the records.
    pub fn track_ids(&self) -> Result<Vec<TrackId>, CatalogError> {
        let rtxn = self.env.read_txn()?;
        let ids = self.tracks.remap_data_type::<heed::types::DecodeIgnore>();
        let mut out = Vec::new();
        for item in ids.iter(&rtxn)? {
            out.push(TrackId(item?.0));
        }
        Ok(out)
    }

    pub fn track_count(&self) -> Result<u64, CatalogError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.tracks.len(&rtxn)?)
    }

    /// Every file the catalog knows (tracks and problems) with the size and mtime it was read at.
    pub fn known_files(&self) -> Result<HashMap<Location, (u64, i128)>, CatalogError> {
        let rtxn = self.env.read_txn()?;
        let mut out = HashMap::new();
        for item in self.tracks.iter(&rtxn)? {
            let (_, r) = item?;
            out.insert(r.location, (r.size, r.mtime_ns));
        }
        for item in self.problems.iter(&rtxn)? {
            let (_, (location, p)) = item?;
            out.entry(location).or_insert((p.size, p.mtime_ns));
        }
        Ok(out)
    }

    pub fn problems(&self) -> Result<Vec<(Location, Problem)>, CatalogError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.problems.iter(&rtxn)? {
            out.push(item?.1);
        }
        Ok(out)
    }

    /// Applies a scan batch in one transaction. A changed file keeps its track id and gets a new
    /// content version; every change takes the next sequence number (indexd follows them).
    pub fn apply(&self, batch: Batch) -> Result<(), CatalogError> {
        let mut wtxn = self.env.write_txn()?;
        let mut seq = self.meta.get(&wtxn, "version")?.unwrap_or(0);
        for location in &batch.removed {
            let key = path_key(&location.key());
            self.heads.delete(&mut wtxn, &key)?;
            self.forget_track(&mut wtxn, &key, &mut seq)?;
            self.problems.delete(&mut wtxn, &key)?;
        }
        for (location, problem) in &batch.problems {
            let key = path_key(&location.key());
            self.problems
                .put(&mut wtxn, &key, &(location.clone(), problem.clone()))?;
            if !problem.shown {
                self.forget_track(&mut wtxn, &key, &mut seq)?;
            }
        }
        for (location, head) in &batch.heads {
            self.heads
                .put(&mut wtxn, &path_key(&location.key()), head)?;
        }
        let moved = self.apply_moves(&mut wtxn, &batch, &mut seq)?;
        let mut next_id = self.meta.get(&wtxn, "next_track")?.unwrap_or(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let with_problem: std::collections::HashSet<&Location> =
            batch.problems.iter().map(|(l, _)| l).collect();
        for (location, size, mtime_ns, info) in &batch.upserts {
            let key = path_key(&location.key());
            if !with_problem.contains(location) {
                self.problems.delete(&mut wtxn, &key)?;
            }
            let (id, added_secs) = match self.files.get(&wtxn, &key)? {
                Some(id) => {
                    let added = self.tracks.get(&wtxn, &id)?.map_or(now, |r| r.added_secs);
                    (id, added)
                }
                None => {
                    next_id += 1;
                    self.files.put(&mut wtxn, &key, &(next_id - 1))?;
                    (next_id - 1, now)
                }
            };
            seq += 1;
            let record = TrackRecord {
                location: location.clone(),
                size: *size,
                mtime_ns: *mtime_ns,
                version: seq,
                info: info.clone(),
                added_secs,
            };
            self.tracks.put(&mut wtxn, &id, &record)?;
            if moved.contains(&id) {
                if let Some(mut manifest) = self.manifests.get(&wtxn, &id)? {
                    manifest.version = seq;
                    self.manifests.put(&mut wtxn, &id, &manifest)?;
                }
            }
        }
        self.meta.put(&mut wtxn, "version", &seq)?;
        self.meta.put(&mut wtxn, "next_track", &next_id)?;
        wtxn.commit()?;
        Ok(())
    }

    /// Files the batch's moves (see [`Batch::moves`]) under their new keys and returns their
    /// track ids; moves that do not hold are removals. Runs after the batch's heads are stored.
    fn apply_moves(
        &self,
        wtxn: &mut heed::RwTxn,
        batch: &Batch,
        seq: &mut u64,
    ) -> Result<std::collections::HashSet<u64>, CatalogError> {
        let mut moved = std::collections::HashSet::new();
        if batch.moves.is_empty() {
            return Ok(moved);
        }
        let upserted: HashMap<&Location, (u64, i128)> = batch
            .upserts
            .iter()
            .map(|(location, size, mtime_ns, _)| (location, (*size, *mtime_ns)))
            .collect();
        for (from, to) in &batch.moves {
            let (from_key, to_key) = (path_key(&from.key()), path_key(&to.key()));
            let id = self.files.get(wtxn, &from_key)?;
            let record = match id {
                Some(id) => self.tracks.get(wtxn, &id)?,
                None => None,
            };
            let same = match (id, &record, upserted.get(to)) {
                (Some(_), Some(record), Some(&(size, mtime_ns))) => {
                    let heads = (
                        self.heads.get(wtxn, &from_key)?,
                        self.heads.get(wtxn, &to_key)?,
                    );
                    record.size == size
                        && record.mtime_ns == mtime_ns
                        && self.files.get(wtxn, &to_key)?.is_none()
                        && match heads {
                            (Some(old), Some(new)) => old.blocks == new.blocks,
                            (None, None) => true,
                            _ => false,
                        }
                }
                _ => false,
            };
            self.heads.delete(wtxn, &from_key)?;
            self.problems.delete(wtxn, &from_key)?;
            match (same, id) {
                (true, Some(id)) => {
                    self.files.delete(wtxn, &from_key)?;
                    self.files.put(wtxn, &to_key, &id)?;
                    moved.insert(id);
                }
                _ => self.forget_track(wtxn, &from_key, seq)?,
            }
        }
        Ok(moved)
    }

    /// Removes the track stored for a file key (if any), recording the removal's sequence number.
    fn forget_track(
        &self,
        wtxn: &mut heed::RwTxn,
        key: &[u8; 16],
        seq: &mut u64,
    ) -> Result<(), CatalogError> {
        if let Some(id) = self.files.get(wtxn, key)? {
            self.tracks.delete(wtxn, &id)?;
            self.manifests.delete(wtxn, &id)?;
            self.files.delete(wtxn, key)?;
            *seq += 1;
            self.removed.put(wtxn, seq, &id)?;
        }
        Ok(())
    }

    /// (catalog id, current change sequence number).
    pub fn position(&self) -> Result<(u64, u64), CatalogError> {
        let rtxn = self.env.read_txn()?;
        Ok((
            self.meta.get(&rtxn, "catalog_id")?.unwrap_or(0),
            self.meta.get(&rtxn, "version")?.unwrap_or(0),
        ))
    }

    /// Every change after `since` (all tracks when `since` is 0).
    pub fn changes_since(&self, since: u64) -> Result<Changes, CatalogError> {
        let rtxn = self.env.read_txn()?;
        let mut changes = Changes {
            catalog_id: self.meta.get(&rtxn, "catalog_id")?.unwrap_or(0),
            seq: self.meta.get(&rtxn, "version")?.unwrap_or(0),
            ..Default::default()
        };
        for item in self.tracks.iter(&rtxn)? {
            let (id, record) = item?;
            if record.version > since {
                changes.upserts.push((TrackId(id), record));
            }
        }
        if since > 0 {
            for item in self.removed.range(&rtxn, &((since + 1)..))? {
                let (seq, id) = item?;
                changes.removed.push((seq, TrackId(id)));
            }
        }
        changes.upserts.sort_by_key(|(_, r)| r.version);
        Ok(changes)
    }

    /// The persisted tree, in inode order.
    pub fn nodes(&self) -> Result<Vec<(Ino, Node)>, CatalogError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.nodes.iter(&rtxn)? {
            out.push(item?);
        }
        Ok(out)
    }

    /// The inode a virtual path had before, or a new one (remembered from now on).
    pub fn inode_allocator(&self) -> Result<InodeAllocator<'_>, CatalogError> {
        let wtxn = self.env.write_txn()?;
        let next = self.meta.get(&wtxn, "next_ino")?.unwrap_or(2);
        Ok(InodeAllocator {
            catalog: self,
            wtxn,
            next,
        })
    }

    pub fn manifest(&self, id: TrackId) -> Result<Option<Manifest>, CatalogError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.manifests.get(&rtxn, &id.0)?)
    }

    pub fn put_manifest(&self, id: TrackId, manifest: &Manifest) -> Result<(), CatalogError> {
        let mut wtxn = self.env.write_txn()?;
        self.manifests.put(&mut wtxn, &id.0, manifest)?;
        wtxn.commit()?;
        Ok(())
    }

    /// Paths pinned in the cache, sorted.
    pub fn pins(&self) -> Result<Vec<String>, CatalogError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.pins.iter(&rtxn)? {
            out.push(item?.1.to_owned());
        }
        out.sort();
        Ok(out)
    }

    /// Records a pinned path (pinning twice is pinning once).
    pub fn add_pin(&self, path: &str) -> Result<(), CatalogError> {
        let mut wtxn = self.env.write_txn()?;
        self.pins.put(&mut wtxn, &path_key(path), path)?;
        wtxn.commit()?;
        Ok(())
    }

    /// Forgets a pinned path; false if it was not pinned.
    pub fn remove_pin(&self, path: &str) -> Result<bool, CatalogError> {
        let mut wtxn = self.env.write_txn()?;
        let removed = self.pins.delete(&mut wtxn, &path_key(path))?;
        wtxn.commit()?;
        Ok(removed)
    }
}

/// Hands out stable inode numbers inside one write transaction, then saves the new tree with
/// them in the same transaction.
pub struct InodeAllocator<'c> {
    catalog: &'c Catalog,
    wtxn: heed::RwTxn<'c>,
    next: u64,
}

impl InodeAllocator<'_> {
    pub fn inode(&mut self, virtual_path: &str) -> Result<Ino, CatalogError> {
        let key = path_key(virtual_path);
        if let Some(ino) = self.catalog.inos.get(&self.wtxn, &key)? {
            return Ok(ino);
        }
        let ino = self.next;
        self.next += 1;
        self.catalog.inos.put(&mut self.wtxn, &key, &ino)?;
        Ok(ino)
    }

    /// Replaces the persisted tree with `nodes` and commits.
    pub fn commit(mut self, nodes: &[(Ino, Node)]) -> Result<(), CatalogError> {
        let c = self.catalog;
        c.nodes.clear(&mut self.wtxn)?;
        for (ino, node) in nodes {
            c.nodes.put(&mut self.wtxn, ino, node)?;
        }
        c.meta.put(&mut self.wtxn, "next_ino", &self.next)?;
        self.wtxn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
