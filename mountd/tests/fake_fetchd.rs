//! mountd against a fake fetchd speaking the real `Fetch` service on a Unix socket: first the
//! RPC backend alone, then (when the test runs as root with `/dev/fuse`) a real mount read
//! through the kernel.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use musicfs_ipc::layout::{StateDir, FETCHD};
use musicfs_ipc::{
    Attr, DirEntry, Fetch, FetchError, FsStats, Hello, Ino, NodeKind, TrackId, TrackRef, ROOT_INO,
};
use musicfs_mountd::backend::{Backend, BackendError, RpcBackend};
use serde_bytes::ByteBuf;
use tarpc::context::Context;

const ARTIST: Ino = 2;
const ALBUM: Ino = 3;
const SONG: Ino = 4;
const LATEST: Ino = 5;
const SONG_TRACK: TrackRef = TrackRef {
    id: TrackId(7),
    version: 1,
};
/// Three and a half MiB: several 1 MiB requests, the last one short.
const SONG_LEN: usize = 3 * (1 << 20) + (1 << 19);

/// The largest read request the fake has served.
static LARGEST_READ: AtomicU32 = AtomicU32::new(0);

fn song_bytes() -> Vec<u8> {
    song_byte_range(0, SONG_LEN)
}

fn song_byte_range(start: usize, end: usize) -> Vec<u8> {
    (start..end).map(|i| (i % 251) as u8).collect()
}

fn attr(ino: Ino) -> Option<Attr> {
    let (kind, size, track) = match ino {
        ROOT_INO | ARTIST | ALBUM => (NodeKind::Dir, 0, None),
        SONG => (NodeKind::File, SONG_LEN as u64, Some(SONG_TRACK)),
        LATEST => (NodeKind::Symlink, 26, None),
        _ => return None,
    };
    Some(Attr {
        ino,
        kind,
        size,
        mtime_secs: 1_700_000_000,
        mtime_nanos: 0,
        track,
        direct_io: false,
    })
}

fn children(ino: Ino) -> Option<Vec<(&'static str, Ino)>> {
    match ino {
        ROOT_INO => Some(vec![("Artist", ARTIST), ("latest", LATEST)]),
        ARTIST => Some(vec![("Album (2020)", ALBUM)]),
        ALBUM => Some(vec![("01 - Song.flac", SONG)]),
        _ => None,
    }
}

#[derive(Clone)]
struct FakeFetchd;

impl Fetch for FakeFetchd {
    async fn hello(self, _: Context) -> Hello {
        Hello::new("fetchd")
    }

    async fn lookup(
        self,
        _: Context,
        _at: u64,
        parent: Ino,
        name: String,
    ) -> Result<Attr, FetchError> {
        let entries = children(parent).ok_or(FetchError::NotADirectory)?;
        let (_, ino) = entries
            .into_iter()
            .find(|(n, _)| *n == name)
            .ok_or(FetchError::NotFound)?;
        attr(ino).ok_or(FetchError::NotFound)
    }

    async fn getattr(self, _: Context, _at: u64, ino: Ino) -> Result<Attr, FetchError> {
        attr(ino).ok_or(FetchError::NotFound)
    }

    async fn readdir(self, _: Context, _at: u64, ino: Ino) -> Result<Vec<DirEntry>, FetchError> {
        let entries = children(ino).ok_or(FetchError::NotADirectory)?;
        Ok(entries
            .into_iter()
            .filter_map(|(name, ino)| {
                Some(DirEntry {
                    name: name.to_owned(),
                    attr: attr(ino)?,
                })
            })
            .collect())
    }

    async fn readlink(self, _: Context, _at: u64, ino: Ino) -> Result<String, FetchError> {
        match ino {
            LATEST => Ok("Artist/Album (2020)/01 - Song.flac".to_owned()),
            _ => Err(FetchError::NotASymlink),
        }
    }

    async fn read(
        self,
        _: Context,
        track: TrackRef,
        offset: u64,
        len: u32,
    ) -> Result<ByteBuf, FetchError> {
        LARGEST_READ.fetch_max(len, Ordering::Relaxed);
        if track != SONG_TRACK {
            return Err(FetchError::Stale);
        }
        let start = (offset as usize).min(SONG_LEN);
        let end = (start + len as usize).min(SONG_LEN);
        Ok(ByteBuf::from(song_byte_range(start, end)))
    }

    async fn xattrs(self, _: Context, ino: Ino) -> Result<Vec<(String, String)>, FetchError> {
        attr(ino).ok_or(FetchError::NotFound)?;
        Ok(match ino {
            SONG => vec![("user.musicfs.artist".to_owned(), "Artist".to_owned())],
            _ => Vec::new(),
        })
    }

    async fn generation(self, _: Context, _shown: u64) -> u64 {
        1
    }

    async fn paths(self, _: Context, tracks: Vec<TrackId>) -> Vec<Option<String>> {
        tracks.iter().map(|_| None).collect()
    }

    async fn hidden(self, _: Context) -> (u64, Vec<TrackId>) {
        (1, Vec::new())
    }

    async fn statfs(self, _: Context) -> Result<FsStats, FetchError> {
        Ok(FsStats {
            files: 1,
            bytes: SONG_LEN as u64,
        })
    }
}

/// Serves the fake on `state_dir`'s fetchd socket from a runtime of its own.
fn start_fake_fetchd(state_dir: &Path) -> tokio::runtime::Runtime {
    start_counting_fake_fetchd(state_dir, Arc::default())
}

/// Like [`start_fake_fetchd`], counting the connections it accepts in `connections`.
fn start_counting_fake_fetchd(
    state_dir: &Path,
    connections: Arc<AtomicUsize>,
) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let socket = StateDir::new(state_dir).socket(FETCHD);
    let listener = musicfs_ipc::listen::bind(&socket).unwrap();
    runtime.spawn(async move {
        let listener = musicfs_ipc::listen::into_tokio(listener).unwrap();
        let admit = move |_: &tokio::net::UnixStream| {
            connections.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        musicfs_ipc::serve_unix!(listener, FakeFetchd.serve(), admit = admit).await;
    });
    runtime
}

#[test]
fn rpc_backend_answers_from_fetchd() {
    let state = tempfile::tempdir().unwrap();
    let _fetchd = start_fake_fetchd(state.path());
    let socket = StateDir::new(state.path()).socket(FETCHD);
    let client = musicfs_ipc::client::Reconnecting::new(FETCHD, socket, Duration::from_secs(5));
    let backend = RpcBackend::new(client);

    assert_eq!(
        backend.hello(Duration::from_secs(5)).unwrap().service,
        "fetchd"
    );
    assert_eq!(backend.lookup(ARTIST, "Album (2020)").unwrap().ino, ALBUM);
    assert_eq!(
        backend.lookup(ROOT_INO, "nobody"),
        Err(BackendError::Fetch(FetchError::NotFound))
    );
    assert_eq!(backend.readdir(ALBUM).unwrap()[0].name, "01 - Song.flac");
    let bytes = backend.read(SONG_TRACK, 1 << 20, 1 << 20).unwrap();
    assert_eq!(bytes, song_bytes()[1 << 20..2 << 20]);
    assert_eq!(backend.xattrs(SONG).unwrap().len(), 1);
    assert_eq!(backend.statfs().unwrap().files, 1);
}

#[test]
fn calls_share_pooled_connections_one_per_caller_at_a_time() {
    let state = tempfile::tempdir().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let _fetchd = start_counting_fake_fetchd(state.path(), connections.clone());
    let socket = StateDir::new(state.path()).socket(FETCHD);
    let client = musicfs_ipc::client::Reconnecting::new(FETCHD, socket, Duration::from_secs(5));
    let backend = RpcBackend::new(client);

    for _ in 0..20 {
        assert_eq!(backend.getattr(SONG).unwrap().ino, SONG);
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "calls one after another use one connection"
    );

    // Four threads calling at once: a call holds its connection only while it runs, so there
    // are never more connections than callers.
    let (start, song) = (Barrier::new(4), song_bytes());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                start.wait();
                for i in 0..50u64 {
                    let bytes = backend.read(SONG_TRACK, i * 4096, 4096).unwrap();
                    assert_eq!(bytes, song[(i * 4096) as usize..][..4096]);
                }
            });
        }
    });
    let made = connections.load(Ordering::SeqCst);
    assert!((1..=4).contains(&made), "{made} connections for 4 callers");
}

#[test]
fn the_kernel_reads_the_library_through_a_real_mount() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "this test mounts for real: it needs /dev/fuse (and root or fusermount3)"
    );
    let state = tempfile::tempdir().unwrap();
    let _fetchd = start_fake_fetchd(state.path());
    let mnt = tempfile::tempdir().unwrap();
    let opts = musicfs_mountd::Options {
        state_dir: state.path().to_owned(),
        mountpoint: mnt.path().to_owned(),
        retry_for: Duration::from_secs(5),
    };
    let mountd = std::thread::spawn(move || musicfs_mountd::run(opts));
    let root = mnt.path();
    let song = root.join("Artist/Album (2020)/01 - Song.flac");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !song.exists() {
        assert!(std::time::Instant::now() < deadline, "mount did not appear");
        assert!(!mountd.is_finished(), "mountd stopped: {:?}", mountd.join());
        std::thread::sleep(Duration::from_millis(20));
    }

    let outcome = std::panic::catch_unwind(|| check_mount(root, &song));
    nix::mount::umount(root).unwrap();
    mountd.join().unwrap().unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn check_mount(root: &Path, song: &Path) {
    use std::os::unix::fs::PermissionsExt;

    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Artist", "latest"]);

    let meta = std::fs::metadata(song).unwrap();
    assert_eq!(meta.len(), SONG_LEN as u64);
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    assert_eq!(meta.ino(), SONG);
    assert_eq!(meta.mtime(), 1_700_000_000);
    assert_eq!(std::fs::read(song).unwrap(), song_bytes());
    // Where mountd could raise the mount's readahead, sequential reads arrive in 1 MiB requests.
    let dev = std::fs::metadata(root).unwrap().dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    if std::fs::read_to_string(knob).is_ok_and(|kb| kb.trim() == "1024") {
        assert_eq!(LARGEST_READ.load(Ordering::Relaxed), 1 << 20);
    }
    assert_eq!(std::fs::read(root.join("latest")).unwrap().len(), SONG_LEN);

    let path = CString::new(song.as_os_str().as_bytes()).unwrap();
    let name = c"user.musicfs.artist";
    let mut value = [0u8; 64];
    // SAFETY: both strings are NUL-terminated and `value` is writable for its length.
    let len = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(&value[..len as usize], b"Artist");

    let refused = std::fs::write(song, b"x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS));
    let refused = std::fs::create_dir(root.join("new")).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS));
    let missing = std::fs::metadata(root.join("nobody")).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
}
