//! Store tests: what is committed, across reopens, crashes and corruption.

use musicfs_ipc::{IndexError, IndexedUpTo};

use super::*;
use crate::search::search;
use crate::testutil::{delta, reset, track, CATALOG};

fn at(seq: u64) -> IndexedUpTo {
    IndexedUpTo {
        catalog_id: CATALOG,
        seq,
    }
}

fn titles(store: &IndexStore, query: &str) -> Vec<String> {
    let mut titles: Vec<String> = search(store, query, 100)
        .unwrap()
        .into_iter()
        .map(|h| h.title)
        .collect();
    titles.sort();
    titles
}

#[test]
fn a_new_index_is_empty_and_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::open(dir.path()).unwrap();
    assert_eq!(
        store.indexed_up_to(),
        IndexedUpTo {
            catalog_id: 0,
            seq: 0
        }
    );
    assert!(!store.is_ready());
    assert!(matches!(
        search(&store, "anything", 10),
        Err(IndexError::NotReady(_))
    ));
    // A query that does not parse says so even before the index is ready.
    assert!(matches!(
        search(&store, "(", 10),
        Err(IndexError::BadQuery(_))
    ));
}

#[test]
fn seq_and_catalog_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = IndexStore::open(dir.path()).unwrap();
        assert_eq!(
            store
                .apply(&reset(5, vec![track(1, "Björk", "Army of Me")]))
                .unwrap(),
            at(5)
        );
        assert_eq!(
            store
                .apply(&delta(5, 9, vec![track(2, "Blur", "Song 2")], &[]))
                .unwrap(),
            at(9)
        );
    }
    let store = IndexStore::open(dir.path()).unwrap();
    assert_eq!(store.indexed_up_to(), at(9));
    assert_eq!(store.num_tracks(), 2);
    assert_eq!(titles(&store, "bjork"), ["Army of Me"]);
}

#[test]
fn a_crash_before_the_commit_never_advances_the_seq() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = IndexStore::open(dir.path()).unwrap();
        store
            .apply(&reset(3, vec![track(1, "Blur", "Song 2")]))
            .unwrap();
        store.stage_only(&delta(3, 8, vec![track(2, "Pulp", "Disco 2000")], &[1]));
        // Dropped here: the staged batch was never committed.
    }
    let store = IndexStore::open(dir.path()).unwrap();
    assert_eq!(store.indexed_up_to(), at(3));
    assert_eq!(titles(&store, "blur"), ["Song 2"]);
    assert!(titles(&store, "pulp").is_empty());
    // The feeder resends from seq 3 and it goes through.
    assert_eq!(
        store
            .apply(&delta(3, 8, vec![track(2, "Pulp", "Disco 2000")], &[1]))
            .unwrap(),
        at(8)
    );
    assert_eq!(titles(&store, "pulp OR blur"), ["Disco 2000"]);
}

#[test]
fn an_empty_catalog_is_ready_and_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::open(dir.path()).unwrap();
    store.apply(&reset(0, Vec::new())).unwrap();
    assert!(store.is_ready());
    for query in ["blur", "recent:200", "-blur", "year:1990.."] {
        assert_eq!(search(&store, query, 1000).unwrap(), Vec::new(), "{query}");
    }
}

#[test]
fn upserts_replace_and_removals_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::open(dir.path()).unwrap();
    store
        .apply(&reset(
            1,
            vec![track(1, "Blur", "Song 2"), track(2, "Blur", "Parklife")],
        ))
        .unwrap();
    store
        .apply(&delta(1, 2, vec![track(1, "Blur", "Beetlebum")], &[2]))
        .unwrap();
    assert_eq!(titles(&store, "blur"), ["Beetlebum"]);
    assert_eq!(store.num_tracks(), 1);
}

#[test]
fn a_batch_out_of_sequence_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::open(dir.path()).unwrap();
    store
        .apply(&reset(4, vec![track(1, "Blur", "Song 2")]))
        .unwrap();
    let err = store
        .apply(&delta(6, 9, vec![track(2, "Pulp", "Common People")], &[]))
        .unwrap_err();
    match err {
        IndexError::Index(why) => assert!(why.contains("send from seq 4"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.indexed_up_to(), at(4));
    assert!(titles(&store, "pulp").is_empty());
    // Backwards ranges and the reserved catalog id are refused too.
    assert!(store.apply(&delta(4, 3, Vec::new(), &[])).is_err());
    let mut zero = reset(1, Vec::new());
    zero.catalog_id = 0;
    assert!(store.apply(&zero).is_err());
}

#[test]
fn a_retried_batch_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::open(dir.path()).unwrap();
    store
        .apply(&reset(4, vec![track(1, "Blur", "Song 2")]))
        .unwrap();
    let batch = delta(4, 7, vec![track(2, "Pulp", "Common People")], &[1]);
    assert_eq!(store.apply(&batch).unwrap(), at(7));
    assert_eq!(store.apply(&batch).unwrap(), at(7));
    assert_eq!(titles(&store, "pulp OR blur"), ["Common People"]);
}

#[test]
fn a_batch_without_changes_still_advances_the_seq() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = IndexStore::open(dir.path()).unwrap();
        store
            .apply(&reset(4, vec![track(1, "Blur", "Song 2")]))
            .unwrap();
        assert_eq!(store.apply(&delta(4, 10, Vec::new(), &[])).unwrap(), at(10));
    }
    assert_eq!(
        IndexStore::open(dir.path()).unwrap().indexed_up_to(),
        at(10)
    );
}

#[test]
fn a_new_catalog_or_a_reset_replaces_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::open(dir.path()).unwrap();
    store
        .apply(&reset(4, vec![track(1, "Blur", "Song 2")]))
        .unwrap();
    // Another catalog, not flagged reset, from seq 0: everything before goes.
    let mut other = delta(0, 2, vec![track(7, "Pulp", "Babies")], &[]);
    other.catalog_id = 42;
    assert_eq!(
        store.apply(&other).unwrap(),
        IndexedUpTo {
            catalog_id: 42,
            seq: 2
        }
    );
    assert_eq!(titles(&store, "pulp OR blur"), ["Babies"]);
    // Another catalog from the middle of its sequence cannot be followed.
    let mut middle = delta(5, 6, Vec::new(), &[]);
    middle.catalog_id = 43;
    assert!(store.apply(&middle).is_err());
    // A reset of the first catalog.
    store
        .apply(&reset(9, vec![track(1, "Blur", "Song 2")]))
        .unwrap();
    assert_eq!(titles(&store, "pulp OR blur"), ["Song 2"]);
    assert_eq!(store.indexed_up_to(), at(9));
}

#[test]
fn a_corrupt_index_is_rebuilt_empty_and_not_ready_until_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = IndexStore::open(dir.path()).unwrap();
        store
            .apply(&reset(5, vec![track(1, "Blur", "Song 2")]))
            .unwrap();
    }
    std::fs::write(
        dir.path().join(TANTIVY_DIR).join("meta.json"),
        b"\x00garbage{",
    )
    .unwrap();
    let store = IndexStore::open(dir.path()).unwrap();
    assert_eq!(
        store.indexed_up_to(),
        IndexedUpTo {
            catalog_id: 0,
            seq: 0
        }
    );
    assert_eq!(store.num_tracks(), 0);
    assert!(dir.path().join(BROKEN_DIR).join("meta.json").exists());
    assert!(matches!(
        search(&store, "blur", 10),
        Err(IndexError::NotReady(_))
    ));
    store
        .apply(&reset(5, vec![track(1, "Blur", "Song 2")]))
        .unwrap();
    assert_eq!(titles(&store, "blur"), ["Song 2"]);
    drop(store);
    assert_eq!(IndexStore::open(dir.path()).unwrap().indexed_up_to(), at(5));
}

#[test]
fn a_missing_segment_file_is_a_corrupt_index_too() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = IndexStore::open(dir.path()).unwrap();
        store
            .apply(&reset(5, vec![track(1, "Blur", "Song 2")]))
            .unwrap();
    }
    let index_dir = dir.path().join(TANTIVY_DIR);
    for entry in std::fs::read_dir(&index_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "term") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let store = IndexStore::open(dir.path()).unwrap();
    assert_eq!(
        store.indexed_up_to(),
        IndexedUpTo {
            catalog_id: 0,
            seq: 0
        }
    );
}

#[test]
fn a_second_writer_on_the_same_index_fails_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = IndexStore::open(dir.path()).unwrap();
    first
        .apply(&reset(5, vec![track(1, "Blur", "Song 2")]))
        .unwrap();
    assert!(IndexStore::open(dir.path()).is_err());
    assert!(!dir.path().join(BROKEN_DIR).exists());
    assert_eq!(first.indexed_up_to(), at(5));
}
