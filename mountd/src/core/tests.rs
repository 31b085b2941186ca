//! Tests of [`FsCore`] against an in-memory [`Backend`], no FUSE involved.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use musicfs_ipc::{Attr, DirEntry, FetchError, FsStats, Ino, NodeKind, TrackId, TrackRef};

use super::*;
use crate::backend::{Backend, BackendError};
use crate::errno::ToErrno;

const ARTIST: Ino = 2;
const ALBUM: Ino = 3;
const SONG: Ino = 4;
const LINK: Ino = 5;
const OTHER: Ino = 6;
const SONG_BYTES: &[u8] = b"0123456789";

/// A small library: `/Artist/Album/{01 - Song.flac, 02 - Other.flac}` and `/link`.
struct Fake {
    attrs: Mutex<HashMap<Ino, Attr>>,
    children: Mutex<HashMap<Ino, Vec<(String, Ino)>>>,
    contents: Mutex<HashMap<TrackRef, Vec<u8>>>,
    xattrs: HashMap<Ino, Vec<(String, String)>>,
    links: HashMap<Ino, String>,
    down: AtomicBool,
    calls: AtomicUsize,
    reads: Mutex<Vec<(TrackRef, u64, u32)>>,
}

fn node(ino: Ino, kind: NodeKind, size: u64, track: Option<TrackRef>) -> Attr {
    Attr {
        ino,
        kind,
        size,
        mtime_secs: 1_700_000_000,
        mtime_nanos: 0,
        track,
        direct_io: false,
    }
}

fn track(id: u64, version: u64) -> TrackRef {
    TrackRef {
        id: TrackId(id),
        version,
    }
}

impl Fake {
    fn new() -> Self {
        let song = track(1, 1);
        let other = track(2, 1);
        let attrs = [
            node(ROOT_INO, NodeKind::Dir, 0, None),
            node(ARTIST, NodeKind::Dir, 0, None),
            node(ALBUM, NodeKind::Dir, 0, None),
            node(SONG, NodeKind::File, SONG_BYTES.len() as u64, Some(song)),
            node(LINK, NodeKind::Symlink, 26, None),
            node(OTHER, NodeKind::File, 3, Some(other)),
        ];
        let children = HashMap::from([
            (
                ROOT_INO,
                vec![("Artist".to_owned(), ARTIST), ("link".to_owned(), LINK)],
            ),
            (ARTIST, vec![("Album".to_owned(), ALBUM)]),
            (
                ALBUM,
                vec![
                    ("01 - Song.flac".to_owned(), SONG),
                    ("02 - Other.flac".to_owned(), OTHER),
                ],
            ),
        ]);
        Self {
            attrs: Mutex::new(attrs.into_iter().map(|a| (a.ino, a)).collect()),
            children: Mutex::new(children),
            contents: Mutex::new(HashMap::from([
                (song, SONG_BYTES.to_vec()),
                (other, b"abc".to_vec()),
            ])),
            xattrs: HashMap::from([(
                SONG,
                vec![
                    ("user.musicfs.artist".to_owned(), "Artist".to_owned()),
                    ("user.musicfs.title".to_owned(), "Song".to_owned()),
                ],
            )]),
            links: HashMap::from([(LINK, "Artist/Album/01 - Song.flac".to_owned())]),
            down: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            reads: Mutex::new(Vec::new()),
        }
    }

    /// Every call counts, and fails like an unreachable fetchd while `down` is set.
    fn enter(&self) -> Result<(), BackendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable("fetchd did not answer".into()));
        }
        Ok(())
    }

    fn attr(&self, ino: Ino) -> Result<Attr, BackendError> {
        Ok(self
            .attrs
            .lock()
            .unwrap()
            .get(&ino)
            .cloned()
            .ok_or(FetchError::NotFound)?)
    }

    /// The track behind `ino` gets new content at the next version, as after a tag edit.
    fn change_track(&self, ino: Ino, bytes: &[u8]) -> TrackRef {
        let mut attrs = self.attrs.lock().unwrap();
        let attr = attrs.get_mut(&ino).unwrap();
        let old = attr.track.unwrap();
        let new = track(old.id.0, old.version + 1);
        attr.track = Some(new);
        attr.size = bytes.len() as u64;
        self.contents.lock().unwrap().insert(new, bytes.to_vec());
        new
    }

    fn add_child(&self, parent: Ino, name: &str, attr: Attr) {
        let ino = attr.ino;
        self.attrs.lock().unwrap().insert(ino, attr);
        let mut children = self.children.lock().unwrap();
        children
            .get_mut(&parent)
            .unwrap()
            .push((name.to_owned(), ino));
    }

    /// The node `from` in `parent` is called `to` from now on (a rescan of a retagged track).
    fn rename_child(&self, parent: Ino, from: &str, to: &str) {
        let mut children = self.children.lock().unwrap();
        for (name, _) in children.get_mut(&parent).unwrap() {
            if name == from {
                *name = to.to_owned();
            }
        }
    }
}

impl Backend for Fake {
    fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, BackendError> {
        self.enter()?;
        let children = self.children.lock().unwrap();
        let Some(entries) = children.get(&parent) else {
            self.attr(parent)?;
            return Err(FetchError::NotADirectory.into());
        };
        let (_, ino) = entries
            .iter()
            .find(|(n, _)| n == name)
            .ok_or(FetchError::NotFound)?;
        self.attr(*ino)
    }

    fn getattr(&self, ino: Ino) -> Result<Attr, BackendError> {
        self.enter()?;
        self.attr(ino)
    }

    fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, BackendError> {
        self.enter()?;
        let children = self.children.lock().unwrap();
        let entries = children.get(&ino).ok_or(FetchError::NotADirectory)?;
        let names_only = self.lists_names_only(ino);
        entries
            .iter()
            .map(|(name, ino)| {
                let mut attr = self.attr(*ino)?;
                if names_only {
                    attr.size = 0;
                }
                Ok(DirEntry {
                    name: name.clone(),
                    attr,
                })
            })
            .collect()
    }

    /// The album stands in for a search result directory.
    fn lists_names_only(&self, ino: Ino) -> bool {
        ino == ALBUM
    }

    fn readlink(&self, ino: Ino) -> Result<String, BackendError> {
        self.enter()?;
        Ok(self
            .links
            .get(&ino)
            .cloned()
            .ok_or(FetchError::NotASymlink)?)
    }

    fn read(&self, track: TrackRef, offset: u64, len: u32) -> Result<Vec<u8>, BackendError> {
        self.enter()?;
        self.reads.lock().unwrap().push((track, offset, len));
        let contents = self.contents.lock().unwrap();
        let bytes = contents.get(&track).ok_or(FetchError::Stale)?;
        let start = (offset as usize).min(bytes.len());
        let end = (start + len as usize).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    fn xattrs(&self, ino: Ino) -> Result<Vec<(String, String)>, BackendError> {
        self.enter()?;
        self.attr(ino)?;
        Ok(self.xattrs.get(&ino).cloned().unwrap_or_default())
    }

    fn generation(&self, _shown: u64) -> Result<u64, BackendError> {
        self.enter()?;
        Ok(1)
    }

    fn statfs(&self) -> Result<FsStats, BackendError> {
        self.enter()?;
        Ok(FsStats {
            files: 2,
            bytes: 13,
        })
    }
}

fn core() -> FsCore<Fake> {
    FsCore::new(Fake::new())
}

fn errno<T: std::fmt::Debug>(result: Result<T, FsError>) -> i32 {
    result.expect_err("operation should fail").errno()
}

fn names(page: &DirPage) -> Vec<(u64, String)> {
    page.iter().map(|(o, e)| (o, e.name.clone())).collect()
}

fn open_song(fs: &FsCore<Fake>) -> u64 {
    fs.open(SONG, libc::O_RDONLY).unwrap().fh
}

#[test]
fn lookup_finds_children_and_reports_missing_names() {
    let fs = core();
    assert_eq!(
        fs.lookup(ROOT_INO, OsStr::new("Artist")).unwrap().ino,
        ARTIST
    );
    let song = fs.lookup(ALBUM, OsStr::new("01 - Song.flac")).unwrap();
    assert_eq!((song.ino, song.kind, song.size), (SONG, NodeKind::File, 10));
    assert_eq!(
        errno(fs.lookup(ROOT_INO, OsStr::new("Nobody"))),
        libc::ENOENT
    );
    assert_eq!(errno(fs.lookup(SONG, OsStr::new("x"))), libc::ENOTDIR);
}

#[test]
fn lookup_of_a_non_utf8_name_is_enoent_without_asking_fetchd() {
    let fs = core();
    let name = OsStr::from_bytes(b"caf\xe9");
    assert_eq!(errno(fs.lookup(ROOT_INO, name)), libc::ENOENT);
    assert_eq!(fs.backend().calls.load(Ordering::SeqCst), 0);
}

#[test]
fn getattr_returns_the_backend_attributes() {
    let fs = core();
    assert_eq!(fs.getattr(SONG).unwrap(), fs.backend().attr(SONG).unwrap());
    assert_eq!(errno(fs.getattr(99)), libc::ENOENT);
}

#[test]
fn readdir_lists_dot_entries_first_and_resumes_at_any_offset() {
    let fs = core();
    fs.lookup(ARTIST, OsStr::new("Album")).unwrap();
    let fh = fs.opendir(ALBUM).unwrap();
    let all = fs.readdir(fh, 0).unwrap();
    assert_eq!(
        names(&all),
        [
            (1, ".".to_owned()),
            (2, "..".to_owned()),
            (3, "01 - Song.flac".to_owned()),
            (4, "02 - Other.flac".to_owned()),
        ]
    );
    let inos: Vec<Ino> = all.iter().map(|(_, e)| e.attr.ino).collect();
    assert_eq!(inos, [ALBUM, ARTIST, SONG, OTHER]);

    // The directory changes while open: the listing in progress does not.
    let new = node(7, NodeKind::File, 1, Some(track(3, 1)));
    fs.backend().add_child(ALBUM, "03 - New.flac", new);
    assert_eq!(
        names(&fs.readdir(fh, 3).unwrap()),
        [(4, "02 - Other.flac".to_owned())]
    );
    assert!(fs.readdir(fh, 4).unwrap().iter().next().is_none());
    assert!(fs.readdir(fh, 100).unwrap().iter().next().is_none());

    // Rewinding takes a fresh snapshot.
    assert_eq!(fs.readdir(fh, 0).unwrap().iter().count(), 5);
    fs.releasedir(fh);
    assert_eq!(errno(fs.readdir(fh, 0)), libc::EBADF);
}

#[test]
fn readdirplus_of_a_names_only_directory_starts_with_the_dots_alone() {
    let fs = core();
    fs.lookup(ARTIST, OsStr::new("Album")).unwrap();
    let fh = fs.opendir(ALBUM).unwrap();
    let first = fs.readdirplus(ALBUM, fs.readdir(fh, 0).unwrap()).unwrap();
    assert_eq!(
        names(&first),
        [(1, ".".to_owned()), (2, "..".to_owned())],
        "the kernel should read the rest with plain readdir"
    );
    // Asked with attributes past the start all the same, the entries get complete ones.
    let rest = fs.readdirplus(ALBUM, fs.readdir(fh, 2).unwrap()).unwrap();
    let got: Vec<(u64, String, u64)> = rest
        .iter()
        .map(|(o, e)| (o, e.name.clone(), e.attr.size))
        .collect();
    let size = SONG_BYTES.len() as u64;
    assert_eq!(got[0], (3, "01 - Song.flac".to_owned(), size));
    assert_eq!(got[1].0, 4);
    // Other directories are listed with attributes from the start.
    let artist = fs.opendir(ARTIST).unwrap();
    let page = fs
        .readdirplus(ARTIST, fs.readdir(artist, 0).unwrap())
        .unwrap();
    assert_eq!(page.iter().count(), 3);
}

#[test]
fn root_is_its_own_parent() {
    let fs = core();
    let fh = fs.opendir(ROOT_INO).unwrap();
    let inos: Vec<Ino> = fs
        .readdir(fh, 0)
        .unwrap()
        .iter()
        .map(|(_, e)| e.attr.ino)
        .collect();
    assert_eq!(inos, [ROOT_INO, ROOT_INO, ARTIST, LINK]);
}

#[test]
fn readdir_of_a_file_is_enotdir() {
    let fs = core();
    let fh = fs.opendir(SONG).unwrap();
    assert_eq!(errno(fs.readdir(fh, 0)), libc::ENOTDIR);
}

#[test]
fn reads_go_through_the_handle_and_stop_at_end_of_file() {
    let fs = core();
    let fh = open_song(&fs);
    assert_eq!(fs.read(fh, 0, 4).unwrap(), b"0123");
    assert_eq!(fs.read(fh, 8, 1 << 20).unwrap(), b"89");
    assert_eq!(fs.read(fh, 10, 4096).unwrap(), b"");
    assert_eq!(fs.read(fh, u64::MAX, 4096).unwrap(), b"");
    // Past the end nothing is asked, and a big read asks only for what is left.
    let reads = fs.backend().reads.lock().unwrap().clone();
    assert_eq!(
        reads.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(),
        [(0, 4), (8, 2)]
    );
}

#[test]
fn a_renamed_node_has_its_old_and_its_new_name_invalidated() {
    let fs = core();
    fs.lookup(ARTIST, OsStr::new("Album")).unwrap();
    fs.lookup(ALBUM, OsStr::new("01 - Song.flac")).unwrap();
    // A rescan renames the song (same inode), and a listing shows the new name before the
    // change is noticed: the kernel may hold both names by then.
    fs.backend()
        .rename_child(ALBUM, "01 - Song.flac", "01 - Retitled.flac");
    let fh = fs.opendir(ALBUM).unwrap();
    fs.readdir(fh, 0).unwrap();
    let taken = fs.take_known_entries();
    for name in ["01 - Song.flac", "01 - Retitled.flac", "02 - Other.flac"] {
        assert!(
            taken.contains(&(ALBUM, name.to_owned())),
            "{name}: {taken:?}"
        );
    }
    assert!(taken.contains(&(ARTIST, "Album".to_owned())), "{taken:?}");
    assert!(fs.take_known_entries().is_empty(), "handed out twice");

    // What is handed out afresh is recorded afresh, and `..` is still known.
    let page = fs.readdir(fh, 0).unwrap();
    let dotdot = page
        .iter()
        .find(|(_, e)| e.name == "..")
        .unwrap()
        .1
        .attr
        .ino;
    assert_eq!(dotdot, ARTIST);
    assert_eq!(fs.take_known_entries().len(), 2);
}

#[test]
fn an_open_file_keeps_reading_the_version_it_opened() {
    let fs = core();
    let first = fs.open(SONG, libc::O_RDONLY).unwrap();
    let old = fs.backend().attr(SONG).unwrap().track.unwrap();
    let new = fs.backend().change_track(SONG, b"new tags + audio");
    assert_eq!(fs.read(first.fh, 0, 100).unwrap(), SONG_BYTES);

    let second = fs.open(SONG, libc::O_RDONLY).unwrap();
    assert_eq!(fs.read(second.fh, 0, 100).unwrap(), b"new tags + audio");
    let tracks: Vec<TrackRef> = fs
        .backend()
        .reads
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(tracks, [old, new]);

    // The kernel may keep its pages unless the content changed since the previous open.
    assert!(first.keep_cache);
    assert!(!second.keep_cache);
    assert!(fs.open(SONG, libc::O_RDONLY).unwrap().keep_cache);
}

#[test]
fn a_released_handle_is_ebadf() {
    let fs = core();
    let fh = open_song(&fs);
    fs.release(fh);
    assert_eq!(errno(fs.read(fh, 0, 1)), libc::EBADF);
    let dir = fs.opendir(ALBUM).unwrap();
    assert_eq!(errno(fs.read(dir, 0, 1)), libc::EBADF);
}

#[test]
fn opening_for_writing_is_erofs_and_a_directory_is_eisdir() {
    let fs = core();
    for flags in [libc::O_WRONLY, libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC] {
        assert_eq!(errno(fs.open(SONG, flags)), libc::EROFS, "flags {flags:#o}");
    }
    assert_eq!(errno(fs.open(ALBUM, libc::O_RDONLY)), libc::EISDIR);
    assert_eq!(errno(fs.open(99, libc::O_RDONLY)), libc::ENOENT);
}

#[test]
fn every_modifying_operation_is_erofs() {
    let fs = core();
    let ops = [
        WriteOp::SetAttr,
        WriteOp::MkNod,
        WriteOp::MkDir,
        WriteOp::Unlink,
        WriteOp::RmDir,
        WriteOp::Symlink,
        WriteOp::Rename,
        WriteOp::Link,
        WriteOp::Write,
        WriteOp::Create,
        WriteOp::SetXattr,
        WriteOp::RemoveXattr,
        WriteOp::Fallocate,
        WriteOp::CopyFileRange,
    ];
    for op in ops {
        assert_eq!(fs.refuse(op).errno(), libc::EROFS, "{op:?}");
    }
    assert_eq!(fs.backend().calls.load(Ordering::SeqCst), 0);
}

#[test]
fn getxattr_reports_sizes_values_and_erange() {
    let fs = core();
    let name = OsStr::new("user.musicfs.artist");
    assert_eq!(fs.getxattr(SONG, name, 0).unwrap(), Xattr::Size(6));
    assert_eq!(
        fs.getxattr(SONG, name, 6).unwrap(),
        Xattr::Data(b"Artist".to_vec())
    );
    assert_eq!(
        fs.getxattr(SONG, name, 64).unwrap(),
        Xattr::Data(b"Artist".to_vec())
    );
    assert_eq!(errno(fs.getxattr(SONG, name, 5)), libc::ERANGE);
    let missing = OsStr::new("user.musicfs.genre");
    assert_eq!(errno(fs.getxattr(SONG, missing, 0)), libc::ENODATA);
    assert_eq!(
        errno(fs.getxattr(SONG, OsStr::from_bytes(b"\xff"), 0)),
        libc::ENODATA
    );
    assert_eq!(errno(fs.getxattr(99, name, 0)), libc::ENOENT);
}

#[test]
fn listxattr_returns_nul_terminated_names() {
    let fs = core();
    let expected = b"user.musicfs.artist\0user.musicfs.title\0".to_vec();
    let len = expected.len() as u32;
    assert_eq!(fs.listxattr(SONG, 0).unwrap(), Xattr::Size(len));
    assert_eq!(fs.listxattr(SONG, len).unwrap(), Xattr::Data(expected));
    assert_eq!(errno(fs.listxattr(SONG, len - 1)), libc::ERANGE);
    assert_eq!(fs.listxattr(ALBUM, 0).unwrap(), Xattr::Size(0));
}

#[test]
fn readlink_and_statfs() {
    let fs = core();
    assert_eq!(fs.readlink(LINK).unwrap(), "Artist/Album/01 - Song.flac");
    assert_eq!(errno(fs.readlink(SONG)), libc::EINVAL);
    assert_eq!(
        fs.statfs().unwrap(),
        FsStats {
            files: 2,
            bytes: 13
        }
    );
}

#[test]
fn an_unreachable_fetchd_is_eio() {
    let fs = core();
    let fh = open_song(&fs);
    fs.backend().down.store(true, Ordering::SeqCst);
    assert_eq!(errno(fs.lookup(ROOT_INO, OsStr::new("Artist"))), libc::EIO);
    assert_eq!(errno(fs.getattr(SONG)), libc::EIO);
    assert_eq!(errno(fs.read(fh, 0, 1)), libc::EIO);
    let dir = fs.opendir(ROOT_INO).unwrap();
    assert_eq!(errno(fs.readdir(dir, 0)), libc::EIO);
    assert_eq!(errno(fs.statfs()), libc::EIO);
}

#[test]
fn a_track_gone_from_fetchd_is_estale() {
    let fs = core();
    let fh = open_song(&fs);
    fs.backend().contents.lock().unwrap().clear();
    assert_eq!(errno(fs.read(fh, 0, 1)), libc::ESTALE);
}

#[test]
fn listing_without_a_handle_resumes_in_its_snapshot_and_forgets_it_at_the_end() {
    let fs = FsCore::new(Fake::new());
    let all = fs.readdir_unopened(ROOT_INO, 0).unwrap();
    let total = all.iter().count() as u64;
    assert!(total > 2, "root lists . and .. and entries");
    let rest = fs.readdir_unopened(ROOT_INO, 2).unwrap();
    assert_eq!(rest.iter().count() as u64, total - 2);
    assert!(fs
        .readdir_unopened(ROOT_INO, total)
        .unwrap()
        .iter()
        .next()
        .is_none());
    assert!(
        lock(&fs.unopened).is_empty(),
        "snapshot kept after the end was read"
    );
}

#[test]
fn a_switch_waits_for_answers_from_the_tree_but_not_for_searches() {
    let fs = std::sync::Arc::new(core());
    assert!(fs.answering(crate::views::VIRTUAL_BASE + 5).is_none());
    let answering = fs.answering(ALBUM);
    let (tx, rx) = std::sync::mpsc::channel();
    let switching = {
        let fs = fs.clone();
        std::thread::spawn(move || {
            fs.show(2);
            tx.send(()).unwrap();
        })
    };
    let waited = std::time::Duration::from_millis(100);
    assert!(rx.recv_timeout(waited).is_err(), "switched mid-answer");
    drop(answering);
    rx.recv_timeout(std::time::Duration::from_secs(5))
        .expect("the switch never came");
    switching.join().unwrap();
}
