//! What the mount promises any program: read-only (EROFS for every write), sizes that match
//! the bytes read, origin mtimes, and the track's tags as `user.musicfs.*` attributes.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use musicfs_tests::mount::Mount;

/// A small library of three real corpus files, copied so the test controls it.
fn library(dir: &Path) -> PathBuf {
    let corpus = musicfs_tests::corpus::corpus_dir();
    let lib = dir.join("lib");
    std::fs::create_dir_all(lib.join("sub")).unwrap();
    for (from, to) in [
        ("audioscan/flac/picture.flac", "a.flac"),
        ("audioscan/flac/audio-data.flac", "sub/b.flac"),
    ] {
        std::fs::copy(corpus.join(from), lib.join(to)).unwrap();
    }
    lib
}

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
