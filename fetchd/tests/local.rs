//! The local origin on a network mount that fails (a FUSE file system that fails on purpose,
//! as a soft NFS mount does while its server is away) or stops answering (as a hard one does).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musicfs_fetchd::health::unreachable;
use musicfs_fetchd::local::LocalOrigin;
use musicfs_fetchd::origin::{Listing, Origin};
use musicfs_tests::faulty_fs::{Faults, FaultyFs, STALL};

fn three_tracks(dir: &Path) {
    for rel in ["a.flac", "Album/b.flac", "Other/c.flac"] {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"fLaC").unwrap();
    }
}

/// [`three_tracks`] in a folder, and a FUSE mirror of it that fails on purpose: the folder,
/// the mount point, the faults to set and the mounted file system.
fn three_tracks_behind_a_faulty_mount() -> (tempfile::TempDir, tempfile::TempDir, Faults, FaultyFs)
{
    let source = tempfile::tempdir().unwrap();
    three_tracks(source.path());
    let mnt = tempfile::tempdir().unwrap();
    let faults = Faults::default();
    let fs = FaultyFs::mount(source.path(), mnt.path(), faults.clone());
    (source, mnt, faults, fs)
}

/// A folder the mount refuses (EACCES) is reported and the rest listed; one it fails to list
/// with EIO fails the whole walk, which the scan takes as "keep what is known", instead of a
/// listing without it, which would read as its tracks removed.
#[test]
fn a_folder_a_network_mount_fails_to_list_fails_the_walk() {
    let (_source, mnt, faults, _fs) = three_tracks_behind_a_faulty_mount();
    let origin = LocalOrigin::new(mnt.path()).unwrap();
    let (found, failed) = origin.walk().unwrap();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(failed.is_empty(), "{failed:?}");

    let fail = |dir: &str, errno: nix::errno::Errno| {
        faults
            .lock()
            .unwrap()
            .insert(PathBuf::from(dir), errno as i32)
    };
    fail("Other", nix::errno::Errno::EACCES);
    let (found, failed) = origin.walk().unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "Other");

    // A file the mount cannot stat (EIO) fails the walk too.
    fail("a.flac", nix::errno::Errno::EIO);
    let err = origin.walk().unwrap_err();
    assert!(err.to_string().contains("a.flac"), "{err}");
    assert!(unreachable(&err), "{err}");
    faults.lock().unwrap().remove(&PathBuf::from("a.flac"));

    fail("Album", nix::errno::Errno::EIO);
    let err = origin.walk().unwrap_err();
    assert!(err.to_string().contains("Album"), "{err}");
    // Health takes it for an origin that cannot be reached, as an SFTP server gone.
    assert!(unreachable(&err), "{err}");
}

/// A network mount whose server stops answering in the middle of a walk (listing a folder
/// blocks, as on a hard NFS mount) fails the walk once no entry has come for the origin's
/// timeout, instead of holding the scan, and every other origin's rescan queued behind it, for
/// as long as the server is away. While that walk stays blocked, the next one fails at once
/// rather than leaving another thread blocked; once the server answers, the origin is walked
/// whole again.
#[test]
fn a_walk_the_network_mount_stops_answering_is_given_up() {
    let (_source, mnt, faults, _fs) = three_tracks_behind_a_faulty_mount();
    let timeout = Duration::from_secs(1);
    let origin = Arc::new(LocalOrigin::new(mnt.path()).unwrap().with_timeout(timeout));
    assert_eq!(origin.walk().unwrap().0.len(), 3);

    faults.lock().unwrap().insert(PathBuf::from("Other"), STALL);
    let started = Instant::now();
    let err = walk_within(&origin, &faults, timeout * 4).unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(unreachable(&err), "{err}");
    assert!(waited >= timeout, "given up after {waited:?}");

    let err = walk_within(&origin, &faults, timeout).unwrap_err();
    assert!(err.to_string().contains("has not returned"), "{err}");
    assert!(unreachable(&err), "{err}");

    faults.lock().unwrap().remove(&PathBuf::from("Other"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        match origin.walk() {
            Ok((found, _)) => break found,
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("has not returned"), "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("the server answers again, yet the walk fails: {e}"),
        }
    };
    assert_eq!(found.len(), 3, "{found:?}");
}

/// `origin.walk()`, or when it has not returned within `within`, the test failed (once the file
/// system answers again, so that nothing stays blocked in it).
fn walk_within(
    origin: &Arc<LocalOrigin>,
    faults: &Faults,
    within: Duration,
) -> io::Result<Listing> {
    let (done, answer) = std::sync::mpsc::channel();
    let walker = origin.clone();
    std::thread::spawn(move || done.send(walker.walk()));
    answer.recv_timeout(within).unwrap_or_else(|_| {
        faults.lock().unwrap().clear();
        panic!("the walk did not return within {within:?}")
    })
}
