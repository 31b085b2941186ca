//! Test fixtures: tracks and batches.

use musicfs_ipc::{IndexBatch, IndexDoc, TrackId};

pub const CATALOG: u64 = 0xc0ffee;

/// A track with an artist and a title; the rest plain (flac, no album, added at `id`).
pub fn track(id: u64, artist: &str, title: &str) -> IndexDoc {
    IndexDoc {
        track: TrackId(id),
        artists: vec![artist.to_owned()],
        album_artists: Vec::new(),
        album: None,
        title: Some(title.to_owned()),
        genres: Vec::new(),
        composers: Vec::new(),
        year: None,
        track_number: None,
        format: "flac".to_owned(),
        ext: "flac".to_owned(),
        duration_ms: 180_000,
        origin: "/music".to_owned(),
        added_secs: 1_700_000_000 + id as i64,
        file_stem: format!("{id:02} {title}"),
    }
}

/// A reset batch holding `docs`, at seq `to_seq` of [`CATALOG`].
pub fn reset(to_seq: u64, docs: Vec<IndexDoc>) -> IndexBatch {
    IndexBatch {
        catalog_id: CATALOG,
        reset: true,
        from_seq: 0,
        to_seq,
        upserts: docs,
        removed: Vec::new(),
    }
}

/// A delta of [`CATALOG`] from `from_seq` to `to_seq`.
pub fn delta(from_seq: u64, to_seq: u64, upserts: Vec<IndexDoc>, removed: &[u64]) -> IndexBatch {
    IndexBatch {
        catalog_id: CATALOG,
        reset: false,
        from_seq,
        to_seq,
        upserts,
        removed: removed.iter().map(|&id| TrackId(id)).collect(),
    }
}
