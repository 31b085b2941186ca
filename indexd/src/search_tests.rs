//! Search tests on a real index: every form of the language, ranking, limits, built-ins.

use musicfs_ipc::{IndexDoc, IndexError};

use super::*;
use crate::testutil::{reset, track};

fn library() -> Vec<IndexDoc> {
    let mut docs = Vec::new();
    let mut add =
        |id: u64, artist: &str, album: &str, n: u32, title: &str, year: u32, genre: &str| {
            let mut d = track(id, artist, title);
            d.album = Some(album.to_owned());
            d.track_number = Some(n);
            d.year = Some(year);
            d.genres = vec![genre.to_owned()];
            docs.push(d);
        };
    add(
        1,
        "The Beatles",
        "Abbey Road",
        1,
        "Come Together",
        1969,
        "Rock",
    );
    add(
        2,
        "The Beatles",
        "Abbey Road",
        7,
        "Here Comes the Sun",
        1969,
        "Rock",
    );
    add(3, "The Beatles", "Let It Be", 6, "Let It Be", 1970, "Rock");
    add(4, "Björk", "Post", 1, "Army of Me", 1995, "Electronic");
    add(
        5,
        "Björk",
        "Homogenic",
        10,
        "All Is Full of Love",
        1997,
        "Electronic",
    );
    add(
        6,
        "Beach Boys",
        "Pet Sounds",
        2,
        "God Only Knows",
        1966,
        "Pop",
    );
    add(7, "Miles Davis", "Kind of Blue", 1, "So What", 1959, "Jazz");
    add(
        8,
        "Motörhead",
        "Ace of Spades",
        1,
        "Ace of Spades",
        1980,
        "Rock",
    );
    add(
        9,
        "Queen",
        "A Night at the Opera",
        11,
        "Bohemian Rhapsody",
        1975,
        "rock",
    );
    // Composer and album artist, a track without a title, another format and origin.
    let mut d = track(10, "Glenn Gould", "Goldberg Aria");
    d.composers = vec!["Johann Sebastian Bach".into()];
    d.album_artists = vec!["Various Artists".into()];
    d.year = Some(1981);
    docs.push(d);
    let mut d = track(11, "Unknown", "x");
    d.title = None;
    d.file_stem = "field recording".into();
    d.format = "mpeg".into();
    d.ext = "mp3".into();
    d.origin = "sftp://Nas/Müsic".into();
    docs.push(d);
    docs
}

fn store() -> (tempfile::TempDir, IndexStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = IndexStore::open(dir.path()).unwrap();
    store.apply(&reset(1, library())).unwrap();
    (dir, store)
}

/// The ids of the hits, in rank order.
fn ids(store: &IndexStore, query: &str) -> Vec<u64> {
    search(store, query, 1000)
        .unwrap_or_else(|e| panic!("{query:?}: {e}"))
        .into_iter()
        .map(|h| h.track.0)
        .collect()
}

/// The ids of the hits, sorted (when the order is not the point).
fn set(store: &IndexStore, query: &str) -> Vec<u64> {
    let mut ids = ids(store, query);
    ids.sort();
    ids
}

#[test]
fn words_must_all_match_in_any_text_field() {
    let (_dir, s) = store();
    assert_eq!(set(&s, "beatles"), [1, 2, 3]);
    assert_eq!(set(&s, "beatles abbey"), [1, 2]);
    assert_eq!(set(&s, "beatles sun"), [2]);
    assert_eq!(set(&s, "bach"), [10]);
    assert_eq!(set(&s, "nothing-like-this"), Vec::<u64>::new());
}

#[test]
fn case_and_diacritics_are_folded() {
    let (_dir, s) = store();
    assert_eq!(set(&s, "bjork"), [4, 5]);
    assert_eq!(set(&s, "BJÖRK"), [4, 5]);
    assert_eq!(set(&s, "motorhead"), [8]);
    assert_eq!(set(&s, "ROCK"), [1, 2, 3, 8, 9]);
    assert_eq!(set(&s, "origin:\"sftp://nas/music\""), [11]);
}

#[test]
fn fields() {
    let (_dir, s) = store();
    assert_eq!(set(&s, "artist:beatles"), [1, 2, 3]);
    assert_eq!(set(&s, "title:abbey"), Vec::<u64>::new());
    assert_eq!(set(&s, "album:abbey"), [1, 2]);
    assert_eq!(set(&s, "genre:jazz"), [7]);
    assert_eq!(set(&s, "composer:bach"), [10]);
    assert_eq!(set(&s, "artist:various"), [10]);
    assert_eq!(set(&s, "albumartist:various"), [10]);
    assert_eq!(set(&s, "albumartist:gould"), Vec::<u64>::new());
    assert_eq!(set(&s, "albumartist:queen"), [9]);
    assert_eq!(set(&s, "format:MPEG"), [11]);
    assert_eq!(set(&s, "track:1"), [1, 4, 7, 8]);
    assert_eq!(set(&s, "year:1969"), [1, 2]);
    // An untitled track is found (and shown) by its file stem.
    assert_eq!(set(&s, "title:recording"), [11]);
    let hit = &search(&s, "title:recording", 10).unwrap()[0];
    assert_eq!(
        (hit.title.as_str(), hit.ext.as_str()),
        ("field recording", "mp3")
    );
}

#[test]
fn phrases_keep_word_order() {
    let (_dir, s) = store();
    assert_eq!(set(&s, "\"come together\""), [1]);
    assert_eq!(set(&s, "\"together come\""), Vec::<u64>::new());
    assert_eq!(set(&s, "title:\"here comes\""), [2]);
    assert_eq!(set(&s, "album:\"abbey road\""), [1, 2]);
}

#[test]
fn prefixes() {
    let (_dir, s) = store();
    assert_eq!(set(&s, "beat*"), [1, 2, 3]);
    assert_eq!(set(&s, "bea*"), [1, 2, 3, 6]);
    assert_eq!(set(&s, "artist:BJÖ*"), [4, 5]);
    assert_eq!(set(&s, "origin:sftp*"), [11]);
}

#[test]
fn typo_tolerance() {
    let (_dir, s) = store();
    assert_eq!(set(&s, "beatels~"), [1, 2, 3]);
    assert_eq!(set(&s, "quen~"), [9]);
    // Two edits only for words of eight letters or more.
    assert_eq!(set(&s, "rhapsodie~"), [9]);
    assert_eq!(set(&s, "kween~"), Vec::<u64>::new());
    // A transposition is one edit.
    assert_eq!(set(&s, "bohemain~"), [9]);
}

#[test]
fn year_ranges() {
    let (_dir, s) = store();
    assert_eq!(set(&s, "year:1960..1969"), [1, 2, 6]);
    assert_eq!(set(&s, "year:..1966"), [6, 7]);
    assert_eq!(set(&s, "year:1981.."), [4, 5, 10]);
}

#[test]
fn or_not_and_grouping() {
    let (_dir, s) = store();
    assert_eq!(set(&s, "queen OR jazz"), [7, 9]);
    assert_eq!(set(&s, "beatles -abbey"), [3]);
    assert_eq!(set(&s, "beatles NOT abbey"), [3]);
    assert_eq!(set(&s, "genre:rock -beatles -queen"), [8]);
    assert_eq!(set(&s, "(queen OR beatles) year:..1969"), [1, 2]);
    assert_eq!(set(&s, "queen OR beatles AND year:1970"), [3, 9]);
    assert_eq!(set(&s, "-genre:rock -genre:electronic").len(), 4);
    assert_eq!(set(&s, "NOT (rock OR electronic OR pop)"), [7, 10, 11]);
}

#[test]
fn recent() {
    let (_dir, s) = store();
    // Track n was added at 1_700_000_000 + n: the three newest are 9, 10, 11.
    assert_eq!(set(&s, "recent:3"), [9, 10, 11]);
    assert_eq!(set(&s, "recent:3 rock"), [9]);
    assert_eq!(set(&s, "recent:1000").len(), 11);
}

#[test]
fn limit_caps_the_results() {
    let (_dir, s) = store();
    assert_eq!(search(&s, "rock", 2).unwrap().len(), 2);
    assert_eq!(search(&s, "rock", 0).unwrap().len(), 0);
    assert_eq!(search(&s, "rock", u32::MAX).unwrap().len(), 5);
}

#[test]
fn ties_are_broken_by_artist_album_and_track_number() {
    let dir = tempfile::tempdir().unwrap();
    let s = IndexStore::open(dir.path()).unwrap();
    let mut docs = Vec::new();
    for (id, artist, album, n) in [
        (1, "Zed", "B", 1),
        (2, "abba", "Z", 2),
        (3, "Abba", "A", 9),
        (4, "Abba", "A", 3),
        (5, "Ärzte", "A", 1),
    ] {
        let mut d = track(id, artist, "Same");
        d.album = Some(album.to_owned());
        d.track_number = Some(n);
        docs.push(d);
    }
    // Without album or track number: after the same artist's tracks that have them.
    docs.push(track(6, "ABBA", "Same"));
    // Two batches, so several segments: the order holds across segments too.
    let second = docs.split_off(2);
    s.apply(&reset(1, docs)).unwrap();
    s.apply(&crate::testutil::delta(1, 2, second, &[])).unwrap();
    assert!(s.searcher().segment_readers().len() >= 2);
    assert_eq!(ids(&s, "title:same"), [4, 3, 2, 6, 5, 1]);
    let first_two: Vec<u64> = search(&s, "title:same", 2)
        .unwrap()
        .iter()
        .map(|h| h.track.0)
        .collect();
    assert_eq!(first_two, [4, 3]);
}

#[test]
fn relevance_comes_before_the_tie_order() {
    let (_dir, s) = store();
    // "Ace of Spades" holds "spades" in title and album; Beatles and Björk have no "spades".
    let hits = ids(&s, "spades OR beatles");
    assert_eq!(hits[0], 8);
}

#[test]
fn hits_show_artist_title_and_extension() {
    let (_dir, s) = store();
    let hits = search(&s, "army", 10).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].artist, "Björk");
    assert_eq!(hits[0].title, "Army of Me");
    assert_eq!(hits[0].ext, "flac");
}

#[test]
fn bad_queries_are_refused() {
    let (_dir, s) = store();
    for query in ["", "nope:x", "\"open", "(a", "-", "NOT"] {
        assert!(
            matches!(search(&s, query, 10), Err(IndexError::BadQuery(_))),
            "{query:?}"
        );
    }
}

#[test]
fn builtin_collections_follow_the_index() {
    let (_dir, s) = store();
    let builtins = s.builtin_collections().unwrap();
    let names: Vec<&str> = builtins.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Recently Added",
            "1950s",
            "1960s",
            "1970s",
            "1980s",
            "1990s",
            "Electronic",
            "Jazz",
            "Pop",
            "Rock"
        ]
    );
    assert!(builtins.iter().all(|c| c.builtin));
    let query = |name: &str| {
        builtins
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .query
            .clone()
    };
    assert_eq!(query("1970s"), "year:1970..1979");
    assert_eq!(query("Rock"), "genre:\"Rock\"");
    assert_eq!(query("Recently Added"), "recent:200");
    // Every built-in query runs: "Rock" finds the "rock"-tagged track too.
    assert_eq!(set(&s, &query("Rock")), [1, 2, 3, 8, 9]);
    assert_eq!(set(&s, &query("1970s")), [3, 9]);
    assert_eq!(set(&s, &query("Recently Added")).len(), 11);
    // A genre that is gone is no longer listed.
    s.apply(&crate::testutil::delta(1, 2, Vec::new(), &[7]))
        .unwrap();
    let names: Vec<String> = s
        .builtin_collections()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(
        !names.contains(&"Jazz".to_owned()) && !names.contains(&"1950s".to_owned()),
        "{names:?}"
    );
}

#[test]
fn hits_show_the_names_of_the_latest_commit() {
    let (_dir, s) = store();
    let shown = |q: &str| -> Vec<(u64, String, String)> {
        search(&s, q, 10)
            .unwrap()
            .into_iter()
            .map(|h| (h.track.0, h.artist, h.title))
            .collect()
    };
    assert_eq!(
        shown("title:army"),
        [(4, "Björk".to_owned(), "Army of Me".to_owned())]
    );
    // A retag lands in a new segment: the hit shows the new title, the old one no longer
    // matches, and a track added in the same commit shows too.
    let mut retagged = track(4, "Björk", "Army of You");
    retagged.ext = "ogg".to_owned();
    s.apply(&crate::testutil::delta(
        1,
        2,
        vec![retagged, track(20, "Sade", "Army Ants")],
        &[],
    ))
    .unwrap();
    assert_eq!(
        shown("title:\"army of you\""),
        [(4, "Björk".to_owned(), "Army of You".to_owned())]
    );
    assert_eq!(search(&s, "title:you", 10).unwrap()[0].ext, "ogg");
    assert!(shown("title:\"army of me\"").is_empty());
    assert_eq!(shown("sade")[0].2, "Army Ants");
}
