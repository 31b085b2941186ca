//! A generated library of 2000 tagged tracks: it mounts, every track is where its tags say, and
//! a remount on the same state dir is ready without reading a single unchanged file.

use std::path::Path;

use musicfs_tests::corpus::{read_manifest, synthetic_library};
use musicfs_tests::mount::Mount;

const TRACKS: usize = 2000;

fn count_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

#[test]
fn synthetic_library_mounts_and_remounts_without_rereading_files() {
    let library = synthetic_library(TRACKS);
    let rows = read_manifest(&library.join("MANIFEST.tsv"));
    assert_eq!(rows.len(), TRACKS);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();

    let first = Mount::start_at(&[&library], &state, &mnt, &[]);
    let status = first.status(true);
    assert_eq!(status["catalog"]["tracks"], TRACKS as u64, "{status}");
    assert_eq!(
        status["origin_reads"]["files"], TRACKS as u64,
        "first scan reads each file once"
    );
    assert_eq!(count_files(&mnt), TRACKS);
    // Spot-check placement against the generator's manifest: album artist and album directories.
    for row in rows.iter().step_by(97) {
        let artist = match row.get("album_artist") {
            "" => row.get("artist"),
            a => a,
        };
        let album_dir = mnt.join(artist.replace('/', "∕"));
        assert!(
            album_dir.is_dir(),
            "{} missing for {}",
            album_dir.display(),
            row.get("path")
        );
        let has_album = std::fs::read_dir(&album_dir)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&row.get("album").replace('/', "∕"))
            });
        assert!(
            has_album,
            "album {:?} not under {}",
            row.get("album"),
            album_dir.display()
        );
    }
    assert!(first.stop().success());

    let again = Mount::start_at(&[&library], &state, &mnt, &[]);
    // Ready at once from the catalog: the whole tree is there before any scan finished.
    assert_eq!(count_files(&mnt), TRACKS);
    let status = again.status(true);
    assert_eq!(status["catalog"]["tracks"], TRACKS as u64);
    assert_eq!(status["scan"]["completed"], 1);
    assert_eq!(
        status["origin_reads"]["files"], 0,
        "remount read unchanged files: {status}"
    );
    assert_eq!(status["origin_reads"]["bytes"], 0);
}
