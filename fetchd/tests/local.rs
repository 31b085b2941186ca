//! The local origin on a network mount that fails (a FUSE file system that fails on purpose,
//! as a soft NFS mount does while its server is away).

use std::path::PathBuf;

use musicfs_fetchd::health::unreachable;
use musicfs_fetchd::local::LocalOrigin;
use musicfs_fetchd::origin::Origin;
use musicfs_tests::faulty_fs::{Faults, FaultyFs};

/// A folder the mount refuses (EACCES) is reported and the rest listed; one it fails to list
/// with EIO fails the whole walk, which the scan takes as "keep what is known", instead of a
/// listing without it, which would read as its tracks removed.
#[test]
fn a_folder_a_network_mount_fails_to_list_fails_the_walk() {
    let source = tempfile::tempdir().unwrap();
    for rel in ["a.flac", "Album/b.flac", "Other/c.flac"] {
        let path = source.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"fLaC").unwrap();
    }
    let mnt = tempfile::tempdir().unwrap();
    let faults = Faults::default();
    let _fs = FaultyFs::mount(source.path(), mnt.path(), faults.clone());
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
