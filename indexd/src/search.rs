//! Running a query: parse, compile against the current searcher, rank, and turn the best
//! documents into [`Hit`]s (from the in-memory rows of `shown.rs`).
//!
//! Ranking is BM25 (tantivy's score), ties broken by artist, album and track number (see
//! `rank.rs`). The ordering is one sort key, so the cut at `limit` honours the ties too.

use musicfs_ipc::{Hit, IndexError};
use tantivy::DocAddress;

use crate::compile::Compiler;
use crate::store::IndexStore;
use crate::{query, rank};

/// Runs `query` on what the index has committed: best hits first, at most `limit`.
pub fn search(store: &IndexStore, query: &str, limit: u32) -> Result<Vec<Hit>, IndexError> {
    let parsed = query::parse(query).map_err(|e| IndexError::BadQuery(e.to_string()))?;
    if !store.is_ready() {
        return Err(IndexError::NotReady(
            "the index is being rebuilt from the catalog".to_owned(),
        ));
    }
    let failed = |e: tantivy::TantivyError| IndexError::Index(format!("search failed: {e}"));
    let searcher = store.searcher();
    // tantivy reserves room for the limit up front: never more than there are tracks.
    let limit = u64::from(limit).min(searcher.num_docs()) as usize;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let compiled = Compiler::new(store.fields(), &searcher, store.analyzers())
        .compile(&parsed)
        .map_err(failed)?;
    let best = searcher
        .search(&compiled, &rank::top(store.tie_order(&searcher)?, limit))
        .map_err(failed)?;
    let addresses: Vec<DocAddress> = best.into_iter().map(|(_, address)| address).collect();
    store
        .shown()
        .hits(store.fields(), &searcher, &addresses)
        .map_err(failed)
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
