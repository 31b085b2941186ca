use super::*;
use crate::track::TrackInfo;

fn loc(p: &str) -> Location {
    Location {
        origin: "/o".into(),
        path: p.into(),
    }
}

#[test]
fn reopen_keeps_tracks_ids_and_inodes() {
    let dir = tempfile::tempdir().unwrap();
    let (id, ino) = {
        let c = Catalog::open(dir.path()).unwrap();
        let info = TrackInfo {
            title: Some("T".into()),
            ..Default::default()
        };
        c.apply(Batch {
            upserts: vec![(loc("a.flac"), 10, 5, info)],
            ..Default::default()
        })
        .unwrap();
        let mut alloc = c.inode_allocator().unwrap();
        let ino = alloc.inode("Unknown Artist").unwrap();
        alloc.commit(&[]).unwrap();
        (c.tracks().unwrap()[0].0, ino)
    };
    let c = Catalog::open(dir.path()).unwrap();
    let tracks = c.tracks().unwrap();
    assert_eq!(tracks.len(), 1);
    assert_eq!(tracks[0].0, id);
    assert_eq!(tracks[0].1.info.title.as_deref(), Some("T"));
    let mut alloc = c.inode_allocator().unwrap();
    assert_eq!(alloc.inode("Unknown Artist").unwrap(), ino);
    assert_ne!(alloc.inode("Other").unwrap(), ino);
}

#[test]
fn changed_file_keeps_id_and_gets_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let c = Catalog::open(dir.path()).unwrap();
    let up = |size| Batch {
        upserts: vec![(loc("a.mp3"), size, 1, TrackInfo::default())],
        ..Default::default()
    };
    c.apply(up(1)).unwrap();
    let (id1, r1) = c.tracks().unwrap().remove(0);
    c.apply(up(2)).unwrap();
    let (id2, r2) = c.tracks().unwrap().remove(0);
    assert_eq!(id1, id2);
    assert!(r2.version > r1.version);
    c.apply(Batch {
        removed: vec![loc("a.mp3")],
        ..Default::default()
    })
    .unwrap();
    assert!(c.tracks().unwrap().is_empty());
}

#[test]
fn changes_since_gives_upserts_and_removals_after_a_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let c = Catalog::open(dir.path()).unwrap();
    let up = |paths: &[&str]| Batch {
        upserts: paths
            .iter()
            .map(|p| (loc(p), 1, 1, TrackInfo::default()))
            .collect(),
        ..Default::default()
    };
    c.apply(up(&["a.mp3", "b.mp3"])).unwrap();
    let all = c.changes_since(0).unwrap();
    assert_eq!((all.seq, all.upserts.len(), all.removed.len()), (2, 2, 0));
    assert_ne!(all.catalog_id, 0);
    let b_id = all.upserts[1].0;
    c.apply(Batch {
        removed: vec![loc("b.mp3")],
        ..up(&["c.mp3"])
    })
    .unwrap();
    let later = c.changes_since(2).unwrap();
    assert_eq!(later.seq, 4);
    assert_eq!(later.removed, [(3, b_id)]);
    assert_eq!(later.upserts.len(), 1);
    assert_eq!(later.upserts[0].1.location.path, "c.mp3");
    assert_eq!(c.position().unwrap(), (all.catalog_id, 4));
}

#[test]
fn pins_are_kept_across_reopen_and_removed_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Catalog::open(dir.path()).unwrap();
        c.add_pin("B/Album (2001)").unwrap();
        c.add_pin("A").unwrap();
        c.add_pin("A").unwrap();
    }
    let c = Catalog::open(dir.path()).unwrap();
    assert_eq!(c.pins().unwrap(), ["A", "B/Album (2001)"]);
    assert!(c.remove_pin("A").unwrap());
    assert!(!c.remove_pin("A").unwrap());
    assert_eq!(c.pins().unwrap(), ["B/Album (2001)"]);
}

#[test]
fn a_catalog_lmdb_cannot_read_is_set_aside_and_a_new_one_started() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Catalog::open(dir.path()).unwrap();
        let mut w = c.env.write_txn().unwrap();
        c.meta.put(&mut w, "seen", &7).unwrap();
        w.commit().unwrap();
    }
    std::fs::write(dir.path().join("data.mdb"), vec![0x5a; 8192]).unwrap();
    assert!(Catalog::open(dir.path()).is_err());
    let c = Catalog::open_or_set_aside(dir.path()).unwrap();
    let r = c.env.read_txn().unwrap();
    assert_eq!(c.meta.get(&r, "seen").unwrap(), None);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let aside: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("data.mdb.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{names:?}");
    // A catalog that opens is left as it is.
    drop(r);
    drop(c);
    let c = Catalog::open_or_set_aside(dir.path()).unwrap();
    drop(c);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), names.len());
}

#[test]
fn other_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Catalog::open(dir.path()).unwrap();
        let mut w = c.env.write_txn().unwrap();
        c.meta.put(&mut w, "format", &99).unwrap();
        w.commit().unwrap();
    }
    let err = Catalog::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("format 99"), "{err}");
}

#[test]
fn a_moved_file_keeps_its_track_and_cached_chunks_when_its_kept_blocks_agree() {
    let dir = tempfile::tempdir().unwrap();
    let c = Catalog::open(dir.path()).unwrap();
    let head = |hash| Head {
        size: 100,
        mtime_ns: 7,
        blocks: vec![(0, 32, hash)],
    };
    c.apply(Batch {
        upserts: vec![
            (loc("old/a.flac"), 100, 7, TrackInfo::default()),
            (loc("old/b.flac"), 100, 7, TrackInfo::default()),
        ],
        heads: vec![(loc("old/a.flac"), head(1)), (loc("old/b.flac"), head(2))],
        ..Default::default()
    })
    .unwrap();
    let id_of = |path: &str| c.track_at(&loc(path)).unwrap().map(|(id, _)| id);
    let (a, b) = (id_of("old/a.flac").unwrap(), id_of("old/b.flac").unwrap());
    let version = c.track(a).unwrap().unwrap().version;
    let manifest = |version| Manifest {
        version,
        chunks: vec![(100, 42)],
    };
    c.put_manifest(a, &manifest(version)).unwrap();
    c.put_manifest(b, &manifest(c.track(b).unwrap().unwrap().version))
        .unwrap();

    // a moved whole; b's new file is another one (other tag blocks) with its size and mtime.
    c.apply(Batch {
        upserts: vec![
            (loc("new/a.flac"), 100, 7, TrackInfo::default()),
            (loc("new/b.flac"), 100, 7, TrackInfo::default()),
        ],
        heads: vec![(loc("new/a.flac"), head(1)), (loc("new/b.flac"), head(3))],
        moves: vec![
            (loc("old/a.flac"), loc("new/a.flac")),
            (loc("old/b.flac"), loc("new/b.flac")),
        ],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(id_of("new/a.flac"), Some(a));
    assert_eq!(id_of("old/a.flac"), None);
    let record = c.track(a).unwrap().unwrap();
    assert_eq!(record.location, loc("new/a.flac"));
    assert!(record.version > version);
    assert_eq!(c.manifest(a).unwrap(), Some(manifest(record.version)));

    assert_eq!(id_of("old/b.flac"), None);
    let new_b = id_of("new/b.flac").unwrap();
    assert_ne!(new_b, b, "another file is another track");
    assert_eq!(c.manifest(b).unwrap(), None);
    assert_eq!(c.manifest(new_b).unwrap(), None);
    let changes = c.changes_since(version).unwrap();
    let removed: Vec<TrackId> = changes.removed.iter().map(|r| r.1).collect();
    assert_eq!(removed, [b], "a moved track is no removal");
}
