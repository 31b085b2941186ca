//! What each hit is shown as (track id, artist, title, extension), kept in memory per segment.
//!
//! Reading 1,000 hits from tantivy's doc store costs about 0.9 ms: a block lookup and a
//! document parse each. Segments never change once written, so each segment's rows are read
//! from its doc store in one sequential pass, at the first search that sees the segment, and
//! kept until the segment leaves the index (merged or deleted). A hit is then a table lookup.
//! The rows hold the stored fields only: about 60 bytes a track.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use musicfs_ipc::{Hit, TrackId};
use tantivy::index::SegmentId;
use tantivy::schema::Value;
use tantivy::{DocAddress, Searcher, SegmentReader, TantivyDocument};

use crate::schema::Fields;

/// The rows of every segment seen by the latest searches.
#[derive(Default)]
pub struct Shown {
    segments: Mutex<HashMap<SegmentId, Arc<Rows>>>,
}

/// One segment's rows, by document id (`None`: a document deleted before the pass).
type Rows = Vec<Option<Row>>;

struct Row {
    track: u64,
    artist: Box<str>,
    title: Box<str>,
    ext: Box<str>,
}

impl Shown {
    /// The hits for `addresses`, in their order.
    pub fn hits(
        &self,
        fields: &Fields,
        searcher: &Searcher,
        addresses: &[DocAddress],
    ) -> tantivy::Result<Vec<Hit>> {
        let rows = self.rows(fields, searcher)?;
        addresses
            .iter()
            .map(|address| {
                let row = rows[address.segment_ord as usize]
                    .get(address.doc_id as usize)
                    .and_then(Option::as_ref)
                    .ok_or_else(|| {
                        tantivy::TantivyError::InternalError(format!(
                            "no stored fields for {address:?}"
                        ))
                    })?;
                Ok(Hit {
                    track: TrackId(row.track),
                    artist: row.artist.to_string(),
                    title: row.title.to_string(),
                    ext: row.ext.to_string(),
                })
            })
            .collect()
    }

    /// The rows of each of `searcher`'s segments (by segment ordinal), reading the segments
    /// not seen before and forgetting those gone.
    fn rows(&self, fields: &Fields, searcher: &Searcher) -> tantivy::Result<Vec<Arc<Rows>>> {
        let readers = searcher.segment_readers();
        let known: HashMap<SegmentId, Arc<Rows>> = {
            let segments = self.lock();
            readers
                .iter()
                .filter_map(|r| Some((r.segment_id(), segments.get(&r.segment_id())?.clone())))
                .collect()
        };
        let mut all = Vec::with_capacity(readers.len());
        for reader in readers {
            let rows = match known.get(&reader.segment_id()) {
                Some(rows) => rows.clone(),
                None => Arc::new(read_rows(fields, reader)?),
            };
            all.push(rows);
        }
        // Keep exactly the current segments: a merged-away segment's rows go with it.
        *self.lock() = readers
            .iter()
            .zip(&all)
            .map(|(r, rows)| (r.segment_id(), rows.clone()))
            .collect();
        Ok(all)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SegmentId, Arc<Rows>>> {
        self.segments.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One sequential pass over a segment's doc store.
fn read_rows(f: &Fields, reader: &SegmentReader) -> tantivy::Result<Rows> {
    let store = reader.get_store_reader(1)?;
    let mut rows = Vec::with_capacity(reader.max_doc() as usize);
    for doc in store.iter::<TantivyDocument>(None) {
        let doc = doc?;
        let text = |field| -> Box<str> {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .into()
        };
        rows.push(
            doc.get_first(f.track_id)
                .and_then(|v| v.as_u64())
                .map(|track| Row {
                    track,
                    artist: text(f.display_artist),
                    title: text(f.display_title),
                    ext: text(f.ext),
                }),
        );
    }
    Ok(rows)
}
