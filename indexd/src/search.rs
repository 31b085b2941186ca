//! Running a query: parse, compile against the current searcher, rank, and turn the best
//! documents into [`Hit`]s.
//!
//! Ranking is BM25 (tantivy's score), ties broken by artist, album and track number (the
//! folded sort keys of `schema.rs`; a track without album or number comes after those with
//! one). The ordering is one tantivy sort key, so the cut at `limit` honours the ties too.

use musicfs_ipc::{Hit, IndexError, TrackId};
use tantivy::collector::sort_key::{SortBySimilarityScore, SortByStaticFastValue, SortByString};
use tantivy::collector::TopDocs;
use tantivy::schema::Value;
use tantivy::{DocAddress, Order, TantivyDocument};

use crate::compile::Compiler;
use crate::query;
use crate::schema::{ALBUM_SORT, ARTIST_SORT, TRACK_NUMBER};
use crate::store::IndexStore;

/// Runs `query` on what the index has committed: best hits first, at most `limit`.
pub fn search(store: &IndexStore, query: &str, limit: u32) -> Result<Vec<Hit>, IndexError> {
    let parsed = query::parse(query).map_err(|e| IndexError::BadQuery(e.to_string()))?;
    if !store.is_ready() {
        return Err(IndexError::NotReady(
            "the index is being rebuilt from the catalog".to_owned(),
        ));
    }
    if limit == 0 {
        return Ok(Vec::new());
    }
    let failed = |e: tantivy::TantivyError| IndexError::Index(format!("search failed: {e}"));
    let searcher = store.searcher();
    let compiled = Compiler::new(store.fields(), &searcher, store.analyzers())
        .compile(&parsed)
        .map_err(failed)?;
    // Nested pairs rather than a 4-tuple: tantivy 0.27's 4-tuple sort key ignores the orders
    // of its parts when merging segments (it sorts every part descending).
    let ranking = TopDocs::with_limit(limit as usize).order_by((
        (SortBySimilarityScore, Order::Desc),
        (
            (SortByString::for_field(ARTIST_SORT), Order::Asc),
            (
                (SortByString::for_field(ALBUM_SORT), Order::Asc),
                (
                    SortByStaticFastValue::<u64>::for_field(TRACK_NUMBER),
                    Order::Asc,
                ),
            ),
        ),
    ));
    let best = searcher.search(&compiled, &ranking).map_err(failed)?;
    best.into_iter()
        .map(|(_, address)| hit(store, &searcher, address).map_err(failed))
        .collect()
}

/// What a result is shown as, from the stored fields of one document.
fn hit(
    store: &IndexStore,
    searcher: &tantivy::Searcher,
    address: DocAddress,
) -> tantivy::Result<Hit> {
    let f = store.fields();
    let doc: TantivyDocument = searcher.doc(address)?;
    let text = |field| {
        doc.get_first(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let track = doc
        .get_first(f.track_id)
        .and_then(|v| v.as_u64())
        .ok_or_else(|| {
            tantivy::TantivyError::InternalError("a document without a track id".into())
        })?;
    Ok(Hit {
        track: TrackId(track),
        artist: text(f.display_artist),
        title: text(f.display_title),
        ext: text(f.ext),
    })
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
