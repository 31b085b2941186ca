//! Scans of a real folder whose files have whole-second mtimes, as SFTP, S3 and web servers
//! give them: a racy read is read again once settled, and the second read changes the catalog
//! only when the file changed.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use musicfs_fetchd::catalog::Catalog;
use musicfs_fetchd::chunks::ChunkStore;
use musicfs_fetchd::origins::Origins;
use musicfs_fetchd::reread::{Rereads, SETTLE};
use musicfs_fetchd::scan::{self, ScanProgress, ScanSummary};
use musicfs_fetchd::track::Location;
use musicfs_ipc::origin::OriginConfig;

fn set_mtime(file: &Path, second: u64) {
    let opened = std::fs::File::options().write(true).open(file).unwrap();
    opened
        .set_modified(UNIX_EPOCH + Duration::from_secs(second))
        .unwrap();
}

#[test]
fn a_second_read_of_a_racy_file_changes_the_catalog_only_if_the_file_changed() {
    let dir = tempfile::tempdir().unwrap();
    let lib = musicfs_tests::corpus::two_flac_library(dir.path());
    let file = lib.join("a.flac");
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    set_mtime(&file, second);
    let config = OriginConfig::from_url(lib.to_str().unwrap());
    let origins = Origins::open(&[config], Arc::default()).unwrap();
    let catalog = Catalog::open(&dir.path().join("catalog")).unwrap();
    let store = ChunkStore::open(&dir.path().join("chunks")).unwrap();
    let rereads = Rereads::default();
    let scan = || -> ScanSummary {
        let progress = ScanProgress::default();
        scan::scan(&origins, None, &catalog, &store, &progress, &rereads).unwrap()
    };
    let location = Location {
        origin: origins.origin(0).name().to_owned(),
        path: "a.flac".into(),
    };
    let record = || catalog.track_at(&location).unwrap().unwrap().1;
    let mtime_ns = i128::from(second) * 1_000_000_000;
    let settled_read = || rereads.read(&location, mtime_ns, Instant::now() - SETTLE);

    // The first scan's read of a.flac is racy (b.flac's mtime has nanoseconds: it is not).
    assert_eq!(scan().parsed, 2);
    let first = record();
    assert!(!rereads.due(&location), "due before it settled");
    let settling = rereads.next_due(&location.origin).unwrap();
    assert!(settling > SETTLE / 2, "{settling:?}");
    rereads.forget(&location);
    assert_eq!(
        rereads.next_due(&location.origin),
        None,
        "b.flac read as racy"
    );

    // Read again once settled, found as it was: nothing changes.
    settled_read();
    assert_eq!(scan().parsed, 0);
    assert!(!rereads.due(&location), "not read again");
    assert_eq!(record(), first);

    // Rewritten in the same second into its padding (same size and mtime): the second read
    // finds the new tags, and the file gets a new version.
    settled_read();
    let status = Command::new("metaflac")
        .args(["--remove-tag=TITLE", "--set-tag=TITLE=Second Write"])
        .arg(&file)
        .status()
        .expect("metaflac (apt-get install flac)");
    assert!(status.success());
    set_mtime(&file, second);
    assert_eq!(scan().parsed, 1);
    let second_read = record();
    assert_eq!(
        (second_read.size, second_read.mtime_ns),
        (first.size, mtime_ns)
    );
    assert_eq!(second_read.info.title.as_deref(), Some("Second Write"));
    assert!(second_read.version > first.version);
    // Once read again, it is not read a third time.
    assert_eq!(scan().parsed, 0);
    assert!(!rereads.due(&location));
}
