//! Keeps indexd's search index in step with the catalog: indexd says what it has committed
//! (catalog id and change sequence number) and the feeder sends every change after it, in
//! batches, oldest first. A new catalog (or an index that lost everything) gets a full resend.
//! Runs whenever the catalog changes, and every few seconds in case indexd restarted with less.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use musicfs_ipc::client::{CallError, Reconnecting};
use musicfs_ipc::{IndexBatch, IndexClient, IndexDoc, IndexError, IndexedUpTo, TrackId};

use crate::catalog::Changes;
use crate::service::State;
use crate::track::TrackRecord;

/// Documents per batch: large enough for indexing speed, small enough for the 8 MiB frame.
const BATCH: usize = 2000;
/// How often indexd is asked what it holds when nothing changed.
const CHECK_EVERY: Duration = Duration::from_secs(2);
const CALL_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("{0}")]
    Index(#[from] IndexError),
    #[error("catalog: {0}")]
    Catalog(String),
}

pub async fn run(state: Arc<State>, indexd_socket: PathBuf) {
    let indexd = Reconnecting::<IndexClient>::new("indexd", indexd_socket, CALL_DEADLINE);
    loop {
        let started = std::time::Instant::now();
        match sync(&state, &indexd).await {
            Ok(Some(sent)) => tracing::info!(
                changes = sent,
                ms = started.elapsed().as_millis() as u64,
                "index caught up with the catalog"
            ),
            Ok(None) => {}
            Err(FeedError::Call(e)) => tracing::debug!("indexd not reachable: {e}"),
            Err(e) => tracing::warn!("feeding indexd failed: {e}"),
        }
        tokio::select! {
            () = state.catalog_changed.notified() => {}
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

/// Sends what indexd lacks; `Some(changes sent)` when it lacked anything.
async fn sync(
    state: &Arc<State>,
    indexd: &Reconnecting<IndexClient>,
) -> Result<Option<usize>, FeedError> {
    let held: IndexedUpTo = indexd
        .call(|c, ctx| async move { c.indexed_up_to(ctx).await })
        .await??;
    let catalog = state.catalog.clone();
    let (catalog_id, seq) = catalog
        .position()
        .map_err(|e| FeedError::Catalog(e.to_string()))?;
    if held.catalog_id == catalog_id && held.seq == seq {
        return Ok(None);
    }
    let reset = held.catalog_id != catalog_id || held.seq > seq;
    let since = if reset { 0 } else { held.seq };
    let changes = tokio::task::spawn_blocking(move || catalog.changes_since(since))
        .await
        .map_err(|e| FeedError::Catalog(e.to_string()))?
        .map_err(|e| FeedError::Catalog(e.to_string()))?;
    let batches = batches(changes, since, reset);
    let sent = batches
        .iter()
        .map(|b| b.upserts.len() + b.removed.len())
        .sum();
    for batch in batches {
        indexd
            .call(|c, ctx| {
                let batch = batch.clone();
                async move { c.apply(ctx, batch).await }
            })
            .await??;
    }
    Ok(Some(sent))
}

enum Change {
    Upsert(Box<IndexDoc>),
    Remove(TrackId),
}

/// Cuts the changes, in sequence order, into batches whose `from_seq`/`to_seq` chain.
fn batches(changes: Changes, since: u64, reset: bool) -> Vec<IndexBatch> {
    let mut all: Vec<(u64, Change)> = changes
        .upserts
        .into_iter()
        .map(|(id, r)| (r.version, Change::Upsert(Box::new(doc(id, &r)))))
        .chain(
            changes
                .removed
                .into_iter()
                .map(|(seq, id)| (seq, Change::Remove(id))),
        )
        .collect();
    all.sort_by_key(|(seq, _)| *seq);
    let chunks: Vec<&[(u64, Change)]> = all.chunks(BATCH).collect();
    let count = chunks.len().max(1);
    let mut from = since;
    (0..count)
        .map(|i| {
            let chunk = chunks.get(i).copied().unwrap_or_default();
            let to = match (i + 1 == count, chunk.last()) {
                (false, Some((seq, _))) => *seq,
                _ => changes.seq,
            };
            let mut batch = IndexBatch {
                catalog_id: changes.catalog_id,
                reset: reset && i == 0,
                from_seq: from,
                to_seq: to,
                upserts: Vec::new(),
                removed: Vec::new(),
            };
            for (_, change) in chunk {
                match change {
                    Change::Upsert(doc) => batch.upserts.push((**doc).clone()),
                    Change::Remove(id) => batch.removed.push(*id),
                }
            }
            from = to;
            batch
        })
        .collect()
}

fn doc(id: TrackId, r: &TrackRecord) -> IndexDoc {
    let info = &r.info;
    IndexDoc {
        track: id,
        artists: info.artists.clone(),
        album_artists: info.album_artists.clone(),
        album: info.album.clone(),
        title: info.title.clone(),
        genres: info.genres.clone(),
        composers: info.composers.clone(),
        year: info.year().and_then(|y| y.parse().ok()),
        track_number: info.track,
        format: info.format.clone(),
        ext: r.location.extension().unwrap_or_default(),
        duration_ms: info.duration_ms,
        origin: r.location.origin.clone(),
        added_secs: r.added_secs,
        file_stem: r.location.stem().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::{Location, TrackInfo};

    fn record(version: u64) -> TrackRecord {
        TrackRecord {
            location: Location {
                origin: "/o".into(),
                path: format!("{version}.flac"),
            },
            size: 1,
            mtime_ns: 0,
            version,
            info: TrackInfo::default(),
            added_secs: 0,
        }
    }

    #[test]
    fn batches_chain_their_sequence_numbers_and_end_at_the_catalog_seq() {
        let upserts = (1..=4500u64).map(|v| (TrackId(v), record(v))).collect();
        let changes = Changes {
            catalog_id: 7,
            seq: 4600,
            upserts,
            removed: vec![(4501, TrackId(1)), (4550, TrackId(2))],
        };
        let out = batches(changes, 0, true);
        assert_eq!(out.len(), 3);
        assert!(out[0].reset && !out[1].reset && !out[2].reset);
        assert_eq!((out[0].from_seq, out[0].to_seq), (0, 2000));
        assert_eq!((out[1].from_seq, out[1].to_seq), (2000, 4000));
        assert_eq!((out[2].from_seq, out[2].to_seq), (4000, 4600));
        assert_eq!(out[2].removed, [TrackId(1), TrackId(2)]);
        assert_eq!(out.iter().map(|b| b.upserts.len()).sum::<usize>(), 4500);
    }

    #[test]
    fn nothing_changed_but_a_reset_still_sends_one_batch() {
        let changes = Changes {
            catalog_id: 3,
            seq: 0,
            ..Default::default()
        };
        let out = batches(changes, 0, true);
        assert_eq!(out.len(), 1);
        assert!(out[0].reset && out[0].upserts.is_empty());
    }
}
