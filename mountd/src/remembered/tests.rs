//! Tests of [`Remembered`] over an in-memory library that counts what it is asked.

use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, Mutex};

use musicfs_ipc::{FetchError, NodeKind, TrackId};

use super::*;

const ROOT: Ino = 1;
const SONG: Ino = 2;

fn attr(ino: Ino, size: u64) -> Attr {
    Attr {
        ino,
        kind: if ino == ROOT {
            NodeKind::Dir
        } else {
            NodeKind::File
        },
        size,
        mtime_secs: 0,
        mtime_nanos: 0,
        track: (ino != ROOT).then_some(TrackRef {
            id: TrackId(ino),
            version: size,
        }),
        direct_io: false,
    }
}

/// `/song.flac`, whose size (and version) a test may change along with the generation.
struct Library {
    size: Mutex<u64>,
    generation: AtomicU64,
    asked: AtomicUsize,
    fail: Mutex<bool>,
    /// While set, a lookup says it started and waits to be let go.
    pause: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl Library {
    fn new() -> Self {
        Self {
            size: Mutex::new(100),
            generation: AtomicU64::new(1),
            asked: AtomicUsize::new(0),
            fail: Mutex::new(false),
            pause: Mutex::new(None),
        }
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    /// The song changes, and with it the namespace's generation.
    fn change(&self, size: u64) {
        *self.size.lock().unwrap() = size;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn song(&self) -> Result<Attr, BackendError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if *self.fail.lock().unwrap() {
            return Err(BackendError::Unavailable("fetchd is away".into()));
        }
        Ok(attr(SONG, *self.size.lock().unwrap()))
    }
}

impl Backend for &'static Library {
    fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, BackendError> {
        if let Some((started, go)) = &*self.pause.lock().unwrap() {
            started.send(()).unwrap();
            go.recv().unwrap();
        }
        match (parent, name) {
            (ROOT, "song.flac") => self.song(),
            _ => Err(FetchError::NotFound.into()),
        }
    }
    fn getattr(&self, ino: Ino) -> Result<Attr, BackendError> {
        match ino {
            ROOT => Ok(attr(ROOT, 0)),
            SONG => self.song(),
            _ => Err(FetchError::NotFound.into()),
        }
    }
    fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, BackendError> {
        assert_eq!(ino, ROOT);
        Ok(vec![DirEntry {
            name: "song.flac".into(),
            attr: self.song()?,
        }])
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
        Err(FetchError::NotFound.into())
    }
    fn generation(&self, _shown: u64) -> Result<u64, BackendError> {
        Ok(self.generation.load(Ordering::SeqCst))
    }
}

fn remembered() -> (&'static Library, Remembered<&'static Library>) {
    let library: &'static Library = Box::leak(Box::new(Library::new()));
    let remembered = Remembered::new(library);
    show_latest(&remembered);
    (library, remembered)
}

/// What the invalidation watcher does once the kernel's caches are dropped.
fn show_latest(remembered: &Remembered<&'static Library>) {
    remembered.show(remembered.generation(0).unwrap());
}

#[test]
fn lookups_and_attributes_are_asked_for_once() {
    let (library, remembered) = remembered();
    assert_eq!(remembered.lookup(ROOT, "song.flac").unwrap().size, 100);
    assert_eq!(remembered.lookup(ROOT, "song.flac").unwrap().size, 100);
    // The lookup brought the attributes along.
    assert_eq!(remembered.getattr(SONG).unwrap().size, 100);
    assert_eq!(library.asked(), 1);
    // A generation that did not move keeps everything.
    show_latest(&remembered);
    remembered.getattr(SONG).unwrap();
    assert_eq!(library.asked(), 1);
}

#[test]
fn a_listing_answers_the_lookups_that_follow_it() {
    let (library, remembered) = remembered();
    remembered.readdir(ROOT).unwrap();
    assert_eq!(library.asked(), 1);
    remembered.lookup(ROOT, "song.flac").unwrap();
    remembered.getattr(SONG).unwrap();
    assert_eq!(library.asked(), 1);
    // Listings themselves are always asked for (the core keeps its own snapshots).
    remembered.readdir(ROOT).unwrap();
    assert_eq!(library.asked(), 2);
}

#[test]
fn a_new_generation_forgets_everything() {
    let (library, remembered) = remembered();
    remembered.lookup(ROOT, "song.flac").unwrap();
    library.change(200);
    // Until the new generation is shown, what was kept stands (as the kernel's caches do),
    // and polling it changes nothing.
    remembered.generation(0).unwrap();
    assert_eq!(remembered.getattr(SONG).unwrap().size, 100);
    show_latest(&remembered);
    assert_eq!(remembered.getattr(SONG).unwrap().size, 200);
    assert_eq!(remembered.lookup(ROOT, "song.flac").unwrap().size, 200);
    assert_eq!(
        remembered.getattr(SONG).unwrap().track.unwrap().version,
        200
    );
}

#[test]
fn failures_and_missing_names_are_not_kept() {
    let (library, remembered) = remembered();
    *library.fail.lock().unwrap() = true;
    assert!(remembered.getattr(SONG).is_err());
    *library.fail.lock().unwrap() = false;
    assert_eq!(remembered.getattr(SONG).unwrap().size, 100);
    assert!(remembered.lookup(ROOT, "nope.flac").is_err());
    assert!(remembered.lookup(ROOT, "nope.flac").is_err());
    assert_eq!(library.asked(), 2);
}

#[test]
fn an_answer_on_its_way_while_the_generation_moves_is_not_kept() {
    let (library, remembered) = remembered();
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    *library.pause.lock().unwrap() = Some((started_tx, go_rx));
    std::thread::scope(|s| {
        let asking = s.spawn(|| remembered.lookup(ROOT, "song.flac").unwrap());
        started.recv().unwrap();
        // The lookup is at fetchd, and answers from the old tree; meanwhile the tree changes
        // and the poll sees it.
        let old = library.song().unwrap();
        library.change(300);
        show_latest(&remembered);
        *library.size.lock().unwrap() = old.size;
        go.send(()).unwrap();
        assert_eq!(asking.join().unwrap().size, 100);
    });
    *library.pause.lock().unwrap() = None;
    *library.size.lock().unwrap() = 300;
    assert_eq!(remembered.lookup(ROOT, "song.flac").unwrap().size, 300);
    assert_eq!(remembered.getattr(SONG).unwrap().size, 300);
}

#[test]
fn what_an_open_reads_by_is_always_asked_for() {
    let (library, remembered) = remembered();
    assert_eq!(remembered.getattr(SONG).unwrap().size, 100);
    // Retagged at the origin; fetchd has it, the poll has not come yet.
    library.change(200);
    let now = remembered.current(SONG).unwrap();
    assert_eq!(now.size, 200);
    assert_eq!(now.track.unwrap().version, 200);
    // It is not remembered: attributes follow the tree shown, until the next one is.
    assert_eq!(remembered.getattr(SONG).unwrap().size, 100);
    show_latest(&remembered);
    assert_eq!(remembered.getattr(SONG).unwrap().size, 200);
}
