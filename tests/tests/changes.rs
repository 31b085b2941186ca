//! Change detection on a live mount: files added, removed, retagged and renamed in a local
//! origin show up through the mount without a remount or a restart (fetchd watches the folder
//! with inotify), and the kernel's cached listings and attributes are never stale afterwards.
//! `musicfsctl rescan` picks up a remote origin's changes at once, without waiting for its
//! scan interval.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use musicfs_tests::mount::Mount;
use musicfs_tests::sorted_names as names;
use musicfs_tests::sshd::Sshd;

const ZEP: &str = "Led Zeppelin/Led Zeppelin (1969)";
const GOOD_TIMES: &str = "Led Zeppelin/Led Zeppelin (1969)/01 Good Times Bad Times.flac";
/// Inotify's quiet spell, the rescan and mountd's generation poll all fit well inside this.
const BOUND: Duration = Duration::from_secs(10);

use musicfs_tests::corpus::two_flac_library as library;

/// Waits until `ready` holds, failing after [`BOUND`] with `what`.
fn within_bound(what: &str, ready: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < BOUND,
            "{what}: not seen within {BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

fn xattr(path: &Path, name: &str) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn added_removed_retagged_and_renamed_files_show_up_without_a_remount() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let mount = Mount::start(&[&lib]);
    let fetchd = mount.status(true)["workers"][0]["pid"].as_i64().unwrap();
    // Make the kernel cache every listing and attribute involved.
    let root = names(&mount.mountpoint);
    assert!(root.contains(&"Led Zeppelin".to_owned()), "{root:?}");
    assert_eq!(names(&mount.path(ZEP)), ["01 Good Times Bad Times.flac"]);
    let old_size = std::fs::metadata(mount.path(GOOD_TIMES)).unwrap().size();

    // Added: a tagged file copied in (through a temporary name, as copy tools do).
    let corpus = musicfs_tests::corpus::corpus_dir();
    std::fs::copy(corpus.join("beets/full.flac"), lib.join("sub/.part")).unwrap();
    std::fs::rename(lib.join("sub/.part"), lib.join("sub/new.flac")).unwrap();
    let added = mount.path("the artist/the album (2001)");
    let took = within_bound("added file", || {
        names(&mount.mountpoint).contains(&"the artist".to_owned())
    });
    eprintln!("added file visible after {took:?}");
    assert_eq!(names(&added), ["4-02 full.flac"]);

    // Retagged: a new title (and size) renames the entry; stat and bytes follow the origin.
    let status = Command::new("metaflac")
        .args([
            "--remove-tag=TITLE",
            "--set-tag=TITLE=Retagged Times",
            "--dont-use-padding",
        ])
        .arg(lib.join("a.flac"))
        .status()
        .expect("metaflac (apt-get install flac)");
    assert!(status.success());
    let retagged = mount.path(&format!("{ZEP}/01 Retagged Times.flac"));
    let took = within_bound("retagged file", || {
        names(&mount.path(ZEP)) == ["01 Retagged Times.flac"]
    });
    eprintln!("retag visible after {took:?}");
    assert!(!mount.path(GOOD_TIMES).exists(), "old name still there");
    let origin = std::fs::read(lib.join("a.flac")).unwrap();
    assert_ne!(
        origin.len() as u64,
        old_size,
        "the retag should change the size"
    );
    assert_eq!(
        std::fs::metadata(&retagged).unwrap().size(),
        origin.len() as u64
    );
    assert_eq!(std::fs::read(&retagged).unwrap(), origin);

    // Renamed at the origin: same place in the tree, new origin path.
    let first_in = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    };
    let file = first_in(&first_in(&mount.path("The Prodigy")));
    assert_eq!(xattr(&file, "user.musicfs.origin_path"), "sub/b.flac");
    std::fs::rename(lib.join("sub/b.flac"), lib.join("sub/renamed.flac")).unwrap();
    within_bound("renamed file", || {
        xattr(&file, "user.musicfs.origin_path") == "sub/renamed.flac"
    });
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(lib.join("sub/renamed.flac")).unwrap()
    );

    // Removed: the file and its now empty directories go.
    std::fs::remove_file(lib.join("sub/new.flac")).unwrap();
    within_bound("removed file", || !added.exists());
    assert!(!names(&mount.mountpoint).contains(&"the artist".to_owned()));

    // All of it without restarting anything.
    let now = mount.status(false)["workers"][0]["pid"].as_i64().unwrap();
    assert_eq!(now, fetchd, "fetchd was restarted");
}

#[test]
fn rescan_shows_a_remote_origins_changes_at_once_and_says_when_it_cannot_list_it() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let mut sshd = Sshd::new();
    let url = sshd.url(&lib);
    // Polled hourly: only a rescan can show the change within the test.
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[origins]]\nurl = \"{url}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\
             scan_interval_seconds = 3600\ntimeout_seconds = 2\n",
            sshd.identity_file().display(),
            sshd.known_hosts().display()
        ),
    )
    .unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let cfg = config.to_str().unwrap();
    let mount = Mount::start_at(&[], &tmp.path().join("state"), &mnt, &["--config", cfg]);
    mount.status(true);
    assert!(names(&mount.mountpoint).contains(&"The Prodigy".to_owned()));

    std::fs::remove_file(lib.join("sub/b.flac")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        names(&mount.mountpoint).contains(&"The Prodigy".to_owned()),
        "the change showed before any scan"
    );
    let out = mount.ctl(&["rescan"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!("{url}: 1 file listed, 0 new or changed, 1 gone, 0 unreadable (");
    assert!(stdout.starts_with(&want), "{stdout}");
    within_bound("removed file after the rescan", || {
        !names(&mount.mountpoint).contains(&"The Prodigy".to_owned())
    });

    let out = mount.ctl(&["rescan", "sftp://nowhere/music"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no such origin: sftp://nowhere/music") && stderr.contains(&url),
        "{stderr}"
    );

    // A server that is gone: the rescan says so, fails, and the library stays as it was.
    sshd.stop();
    let out = mount.ctl(&["rescan", &url]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("could not be listed"), "{stdout}");
    let out = mount.ctl(&["rescan", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["origin"], url.as_str(), "{json}");
    assert_eq!(json[0]["unreachable"], true, "{json}");
    assert_eq!(names(&mount.path(ZEP)), ["01 Good Times Bad Times.flac"]);
}
