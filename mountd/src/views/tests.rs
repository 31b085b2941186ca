use std::sync::atomic::{AtomicUsize, Ordering};

use musicfs_ipc::IndexError;

use super::*;
use crate::errno::ToErrno;

/// A library with nothing but its root.
struct EmptyLibrary;

impl Backend for EmptyLibrary {
    fn lookup(&self, _: Ino, _: &str) -> Result<Attr, BackendError> {
        Err(FetchError::NotFound.into())
    }
    fn getattr(&self, ino: Ino) -> Result<Attr, BackendError> {
        Ok(dir_attr(ino, UNIX_EPOCH))
    }
    fn readdir(&self, _: Ino) -> Result<Vec<DirEntry>, BackendError> {
        Ok(Vec::new())
    }
    fn readlink(&self, _: Ino) -> Result<String, BackendError> {
        Err(FetchError::NotASymlink.into())
    }
    fn read(&self, _: TrackRef, _: u64, _: u32) -> Result<Vec<u8>, BackendError> {
        Ok(Vec::new())
    }
    fn xattrs(&self, _: Ino) -> Result<Vec<(String, String)>, BackendError> {
        Ok(Vec::new())
    }
    fn statfs(&self) -> Result<FsStats, BackendError> {
        Ok(FsStats { files: 0, bytes: 0 })
    }
    fn generation(&self, _shown: u64) -> Result<u64, BackendError> {
        Ok(1)
    }
}

/// Answers `björk` with three hits (track 2 hidden, a copy fetchd does not show), `later` with
/// NotReady, `(` with BadQuery; one saved collection `Nordic` = `björk`. Track 4 is found but
/// has left the tree.
#[derive(Default)]
struct FakeIndex {
    searches: AtomicUsize,
    /// Tracks asked for in `paths`, per call.
    paths_asked: Mutex<Vec<usize>>,
    hidden_asked: AtomicUsize,
    /// fetchd not answering `hidden`.
    fetchd_down: std::sync::atomic::AtomicBool,
}

impl Search for FakeIndex {
    fn search(&self, query: &str, _: u32) -> Result<Vec<Hit>, BackendError> {
        self.searches.fetch_add(1, Ordering::SeqCst);
        let hit = |id, artist: &str, title: &str| Hit {
            track: TrackId(id),
            artist: artist.into(),
            title: title.into(),
            ext: "flac".into(),
        };
        match query {
            q if q.starts_with("björk") => Ok(vec![
                hit(1, "Björk", "Joga"),
                hit(2, "Björk", "Gone"),
                hit(3, "AC/DC", "T"),
            ]),
            "gone" => Ok(vec![hit(4, "Old", "Song")]),
            "later" => Err(IndexError::NotReady("rebuilding".into()).into()),
            _ => Err(IndexError::BadQuery(format!("cannot parse {query:?}")).into()),
        }
    }
    fn collections(&self) -> Result<Vec<(String, String)>, BackendError> {
        Ok(vec![("Nordic".into(), "björk".into())])
    }
    fn paths(&self, tracks: Vec<TrackId>) -> Result<Vec<Option<String>>, BackendError> {
        self.paths_asked.lock().unwrap().push(tracks.len());
        Ok(tracks
            .into_iter()
            .map(|t| match t.0 {
                1 => Some("Björk/Homogenic (1997)/03 Joga.flac".into()),
                3 => Some("AC∕DC/X/01 T.flac".into()),
                _ => None,
            })
            .collect())
    }
    fn hidden(&self) -> Result<(u64, Vec<TrackId>), BackendError> {
        self.hidden_asked.fetch_add(1, Ordering::SeqCst);
        if self.fetchd_down.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable("fetchd is restarting".into()));
        }
        Ok((1, vec![TrackId(2)]))
    }
}

fn views() -> Views<EmptyLibrary, FakeIndex> {
    Views::new(EmptyLibrary, FakeIndex::default())
}

fn names(entries: &[DirEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

#[test]
fn the_virtual_directories_answer_lookups_but_stay_out_of_the_root_listing() {
    let v = views();
    assert!(v.readdir(ROOT_INO).unwrap().is_empty());
    assert_eq!(
        v.lookup(ROOT_INO, COLLECTIONS_NAME).unwrap().kind,
        NodeKind::Dir
    );
    let search = v.lookup(ROOT_INO, SEARCH_NAME).unwrap();
    assert_eq!(search.kind, NodeKind::Dir);
    assert!(
        v.readdir(search.ino).unwrap().is_empty(),
        "/.search lists nothing"
    );
}

#[test]
fn a_query_directory_holds_ranked_symlinks_into_the_tree() {
    let v = views();
    let search = v.lookup(ROOT_INO, SEARCH_NAME).unwrap().ino;
    let dir = v.lookup(search, "björk").unwrap();
    assert_eq!(dir.kind, NodeKind::Dir);
    let entries = v.readdir(dir.ino).unwrap();
    // The hidden copy is left out; `/` in a tag cannot make a directory.
    assert_eq!(
        names(&entries),
        ["001 Björk - Joga.flac", "002 AC∕DC - T.flac"]
    );
    assert_eq!(entries[0].attr.kind, NodeKind::Symlink);
    assert!(v.lists_names_only(dir.ino));
    assert!(
        v.search.paths_asked.lock().unwrap().is_empty(),
        "listing the names asked fetchd for targets"
    );
    assert_eq!(
        v.readlink(entries[0].attr.ino).unwrap(),
        "../../Björk/Homogenic (1997)/03 Joga.flac"
    );
    let looked_up = v.lookup(dir.ino, "002 AC∕DC - T.flac").unwrap();
    assert_eq!(
        v.readlink(looked_up.ino).unwrap(),
        "../../AC∕DC/X/01 T.flac"
    );
    assert_eq!(looked_up.size, "../../AC∕DC/X/01 T.flac".len() as u64);
    // Within FRESH_FOR the listing is reused: lookup + readdir + lookup ran one search, and
    // the targets were resolved in one batch.
    assert_eq!(v.search.searches.load(Ordering::SeqCst), 1);
    assert_eq!(*v.search.paths_asked.lock().unwrap(), [2]);
    // With the namespace generation unchanged, the hidden set was fetched once.
    v.show(v.generation(0).unwrap());
    v.lookup(search, "gone").unwrap();
    assert_eq!(v.search.hidden_asked.load(Ordering::SeqCst), 1);
}

#[test]
fn a_hit_that_left_the_tree_is_listed_but_cannot_be_followed() {
    let v = views();
    let search = v.lookup(ROOT_INO, SEARCH_NAME).unwrap().ino;
    let dir = v.lookup(search, "gone").unwrap().ino;
    let entries = v.readdir(dir).unwrap();
    assert_eq!(names(&entries), ["001 Old - Song.flac"]);
    let link = entries[0].attr.ino;
    assert_eq!(v.readlink(link).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(v.getattr(link).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(
        v.lookup(dir, "001 Old - Song.flac").unwrap_err().errno(),
        libc::ENOENT
    );
}

#[test]
fn bad_queries_are_enoent_and_an_index_being_built_is_eagain() {
    let v = views();
    let search = v.lookup(ROOT_INO, SEARCH_NAME).unwrap().ino;
    assert_eq!(v.lookup(search, "(").unwrap_err().errno(), libc::ENOENT);
    assert_eq!(v.lookup(search, "later").unwrap_err().errno(), libc::EAGAIN);
}

#[test]
fn collections_list_their_saved_queries_results() {
    let v = views();
    let collections = v.lookup(ROOT_INO, COLLECTIONS_NAME).unwrap().ino;
    let entries = v.readdir(collections).unwrap();
    assert_eq!(names(&entries), ["Nordic"]);
    assert_eq!(v.readdir(entries[0].attr.ino).unwrap().len(), 2);
    assert_eq!(
        v.lookup(collections, "Nope").unwrap_err().errno(),
        libc::ENOENT
    );
}

#[test]
fn many_different_searches_keep_memory_bounded() {
    let v = views();
    let search = v.lookup(ROOT_INO, SEARCH_NAME).unwrap().ino;
    let first = v.lookup(search, "björk").unwrap().ino;
    for i in 0..KEPT_QUERY_DIRS + 5 {
        // Every query string is a directory of its own; these all fail to parse or find nothing
        // except the first, but each still took a slot.
        let _ = v.lookup(search, &format!("q{i}"));
    }
    let t = v.tables();
    assert_eq!(t.dir_of.len(), KEPT_QUERY_DIRS);
    assert!(
        t.firsts.is_empty(),
        "the forgotten listing's links are still held"
    );
    drop(t);
    assert_eq!(v.getattr(first).unwrap_err().errno(), libc::ENOENT);
    // Looking it up again simply runs the query again.
    assert_eq!(
        v.readdir(v.lookup(search, "björk").unwrap().ino)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn long_names_are_cut_to_fit_with_their_extension() {
    let hit = Hit {
        track: TrackId(1),
        artist: "A".repeat(200),
        title: "é".repeat(100),
        ext: "flac".into(),
    };
    let name = result_name(7, 3, &hit);
    assert!(name.len() <= 255, "{}", name.len());
    assert!(name.starts_with("007 AAA") && name.ends_with(".flac"));
}

#[test]
fn names_are_trimmed_and_cleaned_of_slashes_and_control_characters() {
    let hit = |artist: &str, title: &str, ext: &str| Hit {
        track: TrackId(1),
        artist: artist.into(),
        title: title.into(),
        ext: ext.into(),
    };
    assert_eq!(
        result_name(1, 3, &hit("\u{1} AC/DC \n", "a\tb\u{7}", "mp3")),
        "001 AC∕DC - a b.mp3"
    );
    // An extension that leaves no room is dropped rather than overflowing the name.
    let name = result_name(1, 3, &hit("A", "T", &"x".repeat(254)));
    assert_eq!(name, "001 A - T");
}

#[test]
fn with_fetchd_away_the_last_hidden_set_still_filters_results() {
    let v = views();
    let search = v.lookup(ROOT_INO, SEARCH_NAME).unwrap().ino;
    v.search.fetchd_down.store(true, Ordering::SeqCst);
    // Nothing known yet: the listing cannot be filtered, so it fails.
    assert_eq!(v.lookup(search, "björk").unwrap_err().errno(), libc::EIO);
    v.search.fetchd_down.store(false, Ordering::SeqCst);
    assert_eq!(
        v.readdir(v.lookup(search, "björk").unwrap().ino)
            .unwrap()
            .len(),
        2
    );
    // The namespace moves on while fetchd is away: the set it gave last is used.
    v.generation.store(7, Ordering::SeqCst);
    v.search.fetchd_down.store(true, Ordering::SeqCst);
    let dir = v.lookup(search, "björk again").unwrap().ino;
    assert_eq!(
        names(&v.readdir(dir).unwrap()),
        ["001 Björk - Joga.flac", "002 AC∕DC - T.flac"]
    );
}
