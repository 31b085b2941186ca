//! What the mount promises any program: read-only (EROFS for every write), sizes that match
//! the bytes read, origin mtimes, and the track's tags as `user.musicfs.*` attributes.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

use musicfs_tests::mount::Mount;

use musicfs_tests::corpus::two_flac_library as library;

fn errno_of(result: std::io::Result<impl Sized>) -> i32 {
    result
        .err()
        .and_then(|e| e.raw_os_error())
        .expect("operation must fail")
}

#[test]
fn writes_are_refused_with_erofs_and_origins_stay_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let before = musicfs_tests::sha256_file(&lib.join("a.flac")).unwrap();
    let mount = Mount::start(&[&lib]);
    mount.status(true);
    let track = mount.path("Led Zeppelin/Led Zeppelin (1969)/01 Good Times Bad Times.flac");
    assert!(track.is_file(), "{} missing", track.display());
    let erofs = libc::EROFS;
    assert_eq!(
        errno_of(std::fs::OpenOptions::new().write(true).open(&track)),
        erofs
    );
    assert_eq!(
        errno_of(std::fs::write(mount.path("new.flac"), b"x")),
        erofs
    );
    assert_eq!(errno_of(std::fs::create_dir(mount.path("dir"))), erofs);
    assert_eq!(errno_of(std::fs::remove_file(&track)), erofs);
    assert_eq!(
        errno_of(std::fs::rename(&track, mount.path("x.flac"))),
        erofs
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("a", mount.path("l"))),
        erofs
    );
    let touched = std::fs::File::open(&track)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH);
    assert_eq!(errno_of(touched), erofs);
    let setxattr = std::process::Command::new("setfattr")
        .args(["-n", "user.musicfs.title", "-v", "x"])
        .arg(&track)
        .output()
        .expect("setfattr (apt-get install attr)");
    assert!(!setxattr.status.success());
    assert!(String::from_utf8_lossy(&setxattr.stderr).contains("Read-only file system"));
    assert_eq!(
        musicfs_tests::sha256_file(&lib.join("a.flac")).unwrap(),
        before
    );
}

#[test]
fn size_mtime_and_ranged_reads_match_the_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let mount = Mount::start(&[&lib]);
    mount.status(true);
    let track = mount.path("Led Zeppelin/Led Zeppelin (1969)/01 Good Times Bad Times.flac");
    let original = std::fs::read(lib.join("a.flac")).unwrap();
    let meta = std::fs::metadata(&track).unwrap();
    let origin_meta = std::fs::metadata(lib.join("a.flac")).unwrap();
    assert_eq!(meta.len(), original.len() as u64);
    assert_eq!(meta.mtime(), origin_meta.mtime());
    assert_eq!(std::fs::read(&track).unwrap(), original);
    // Ranged reads at odd offsets, including across chunk boundaries and past the end.
    let mut file = std::fs::File::open(&track).unwrap();
    for (offset, len) in [
        (1usize, 10usize),
        (4095, 3),
        (20_000, 9_999),
        (original.len() - 5, 100),
    ] {
        file.seek(SeekFrom::Start(offset as u64)).unwrap();
        let mut buf = vec![0; len];
        let n = file.read(&mut buf).unwrap();
        let end = (offset + len).min(original.len());
        assert_eq!(&buf[..n], &original[offset..end], "range {offset}+{len}");
    }
}

#[test]
fn tags_and_origin_are_exposed_as_user_xattrs() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let mount = Mount::start(&[&lib]);
    mount.status(true);
    let track = mount.path("Led Zeppelin/Led Zeppelin (1969)/01 Good Times Bad Times.flac");
    let get = |name: &str| -> String {
        let out = std::process::Command::new("getfattr")
            .args(["--only-values", "-n", name])
            .arg(&track)
            .output()
            .expect("getfattr (apt-get install attr)");
        assert!(
            out.status.success(),
            "getfattr {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(get("user.musicfs.title"), "Good Times Bad Times");
    assert_eq!(get("user.musicfs.artist"), "Led Zeppelin");
    assert_eq!(get("user.musicfs.date"), "1969");
    assert_eq!(get("user.musicfs.has_cover"), "1");
    assert_eq!(get("user.musicfs.origin_path"), "a.flac");
    let list = std::process::Command::new("getfattr")
        .arg("-d")
        .arg(&track)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("user.musicfs.album="), "{list}");
}

/// Listings and attributes are cached by the kernel for long, so the tree must be invalidated
/// when fetchd's namespace changes: here a file added at the origin appears (and a removed one
/// goes) once fetchd has rescanned, without a remount, though the directory was listed before.
#[test]
fn a_changed_tree_reaches_the_kernel_without_a_remount() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let mount = Mount::start(&[&lib]);
    let status = mount.status(true);
    let album = mount.path("Led Zeppelin/Led Zeppelin (1969)");
    let names = musicfs_tests::sorted_names;
    assert_eq!(names(&album), ["01 Good Times Bad Times.flac"]);
    assert!(mount.path("The Prodigy").is_dir());
    let old_root = names(&mount.mountpoint);

    // Change the origin: one file moves out of the library, another comes in.
    let corpus = musicfs_tests::corpus::corpus_dir();
    std::fs::remove_file(lib.join("a.flac")).unwrap();
    std::fs::copy(
        corpus.join("audioscan/flac/picture.flac"),
        lib.join("sub/c.flac"),
    )
    .unwrap();
    std::fs::rename(lib.join("sub/c.flac"), lib.join("sub/renamed.flac")).unwrap();
    std::fs::remove_file(lib.join("sub/b.flac")).unwrap();
    // A restarted fetchd rescans at once (tests/tests/changes.rs covers changes without one).
    let fetchd = status["workers"][0]["pid"].as_i64().unwrap() as i32;
    assert_eq!(status["workers"][0]["name"], "fetchd");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fetchd),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let status = mount.status(false);
        let restarted = status["workers"][0]["pid"]
            .as_i64()
            .is_some_and(|p| p as i32 != fetchd);
        if restarted && status["scan"]["state"] == "idle" && status["scan"]["completed"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fetchd did not come back: {status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The Prodigy's track left the library; the album now holds the renamed copy only.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while names(&mount.mountpoint) == old_root || names(&album) != ["01 Good Times Bad Times.flac"]
    {
        assert!(
            std::time::Instant::now() < deadline,
            "kernel still shows the old tree: {:?}",
            names(&mount.mountpoint)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!mount.path("The Prodigy").exists());
    assert_eq!(names(&album), ["01 Good Times Bad Times.flac"]);
    let shown = album.join("01 Good Times Bad Times.flac");
    let attr = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "user.musicfs.origin_path"])
        .arg(&shown)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&attr.stdout), "sub/renamed.flac");
    assert_eq!(
        std::fs::read(&shown).unwrap(),
        std::fs::read(lib.join("sub/renamed.flac")).unwrap()
    );
}
