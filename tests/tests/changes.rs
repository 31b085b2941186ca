//! Change detection on a live mount: files added, removed, retagged and renamed in a local
//! origin show up through the mount without a remount or a restart (fetchd watches the folder
//! with inotify), and the kernel's cached listings and attributes are never stale afterwards.
//! `musicfsctl rescan` picks up a remote origin's changes at once, without waiting for its
//! scan interval.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use musicfs_tests::albums::{drop_page_cache, settle};
use musicfs_tests::faulty_fs::{Faults, FaultyFs, STALL};
use musicfs_tests::mount::Mount;
use musicfs_tests::remote::mount_with;
use musicfs_tests::sorted_names as names;
use musicfs_tests::sshd::Sshd;
use musicfs_tests::tmpfs::Tmpfs;

const ZEP: &str = "Led Zeppelin/Led Zeppelin (1969)";
const GOOD_TIMES: &str = "Led Zeppelin/Led Zeppelin (1969)/01 Good Times Bad Times.flac";
/// Inotify's quiet spell, the rescan and mountd's generation poll all fit well inside this.
const BOUND: Duration = Duration::from_secs(10);

use musicfs_tests::corpus::two_flac_library as library;

/// Titles `file` "Retagged Times" with metaflac, given `extra` options too.
fn retag(file: &Path, extra: &[&str]) {
    let status = Command::new("metaflac")
        .args(["--remove-tag=TITLE", "--set-tag=TITLE=Retagged Times"])
        .args(extra)
        .arg(file)
        .status()
        .expect("metaflac (apt-get install flac)");
    assert!(status.success());
}

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

/// Runs `musicfsctl rescan`, checks it exits with success when `succeeds` (failure if not),
/// and gives its stdout.
fn rescan(mount: &Mount, succeeds: bool) -> String {
    let out = mount.ctl(&["rescan"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.success(), succeeds, "{stdout}{stderr}");
    stdout
}

/// Opens a file with the kernel's read-ahead off, so only what is read is asked of fetchd.
fn open_without_readahead(path: &Path) -> std::fs::File {
    let file = std::fs::File::open(path).unwrap();
    let random = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_RANDOM;
    nix::fcntl::posix_fadvise(&file, 0, 0, random).unwrap();
    file
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
    retag(&lib.join("a.flac"), &["--dont-use-padding"]);
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

/// A mount of the SFTP origin `url`, polled hourly: only a rescan shows a change within a test.
fn hourly_sftp_mount(tmp: &Path, sshd: &Sshd, url: &str) -> Mount {
    let config = tmp.join("config.toml");
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
    let mnt = tmp.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let cfg = config.to_str().unwrap();
    Mount::start_at(&[], &tmp.join("state"), &mnt, &["--config", cfg])
}

#[test]
fn rescan_shows_a_remote_origins_changes_at_once_and_says_when_it_cannot_list_it() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let mut sshd = Sshd::new();
    let url = sshd.url(&lib);
    let mount = hourly_sftp_mount(tmp.path(), &sshd, &url);
    mount.status(true);
    assert!(names(&mount.mountpoint).contains(&"The Prodigy".to_owned()));

    std::fs::remove_file(lib.join("sub/b.flac")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        names(&mount.mountpoint).contains(&"The Prodigy".to_owned()),
        "the change showed before any scan"
    );
    let stdout = rescan(&mount, true);
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

/// A file retagged on a network mount (NFS) whose server stops answering while the rescan
/// reads it, after the listing: the file is not read this time, its track stays as it was
/// (it was dropped, and remembered as unreadable until it changed again), the rescan says so
/// and fails, and the next rescan reads the change.
#[test]
fn a_change_read_while_its_server_stops_answering_is_read_at_the_next_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let network = tmp.path().join("nfs");
    std::fs::create_dir(&network).unwrap();
    let faults = Faults::default();
    let _fs = FaultyFs::mount(&lib, &network, faults.clone());
    let url = network.display().to_string();
    let mount = mount_with(
        tmp.path(),
        &format!("[[origins]]\nurl = \"{url}\"\ntimeout_seconds = 1\n"),
    );
    mount.status(true);
    assert_eq!(names(&mount.path(ZEP)), ["01 Good Times Bad Times.flac"]);

    retag(&lib.join("a.flac"), &[]);
    faults.lock().unwrap().insert("a.flac".into(), STALL);
    let stdout = rescan(&mount, false);
    let want = format!(
        "{url}: stopped answering while new or changed files were read: 1 of 2 files listed \
         not read"
    );
    assert!(stdout.starts_with(&want), "{stdout}");
    assert_eq!(names(&mount.path(ZEP)), ["01 Good Times Bad Times.flac"]);

    faults.lock().unwrap().remove(Path::new("a.flac"));
    let stdout = rescan(&mount, true);
    assert!(
        stdout.contains(": 2 files listed, 1 new or changed, 0 gone, 0 unreadable"),
        "{stdout}"
    );
    within_bound("the retag after the server answered again", || {
        names(&mount.path(ZEP)) == ["01 Retagged Times.flac"]
    });
}

/// A file written twice within one tick of its mtime, in its padding (same size), a scan
/// having read it in between, as happens with two tag tools run one after the other on a
/// server whose mtimes are whole seconds (SFTP, S3, web servers, FAT disks). The file is read
/// again once the tick is over, and the second retag shows. (A local file is given a
/// whole-second mtime here; with nanoseconds the two writes differ.)
#[test]
fn a_retag_in_the_same_second_as_the_scan_before_it_shows() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let file = lib.join("a.flac");
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let set_mtime = |file: &Path| {
        let mtime = std::time::UNIX_EPOCH + Duration::from_secs(second);
        let opened = std::fs::File::options().write(true).open(file).unwrap();
        opened.set_modified(mtime).unwrap();
    };
    set_mtime(&file);
    let size = std::fs::metadata(&file).unwrap().size();
    let mount = Mount::start(&[&lib]);
    // The first scan read the file; the scanner says it will read it again (and
    // `status --wait-idle` waits for that).
    within_bound("the first scan", || {
        names(&mount.mountpoint).contains(&"Led Zeppelin".to_owned())
    });
    assert_eq!(names(&mount.path(ZEP)), ["01 Good Times Bad Times.flac"]);
    assert_eq!(mount.status(false)["scan"]["state"], "settling");

    retag(&file, &[]);
    set_mtime(&file);
    assert_eq!(
        std::fs::metadata(&file).unwrap().size(),
        size,
        "not in the padding"
    );
    let started = Instant::now();
    assert_eq!(mount.status(true)["scan"]["state"], "idle");
    eprintln!("idle again after {:?}", started.elapsed());
    assert_eq!(names(&mount.path(ZEP)), ["01 Retagged Times.flac"]);
}

/// A retag by an editor told to keep the file's timestamp (into the padding: same size, and
/// the mtime set back to the nanosecond): the folder's watcher saw the write, so the file is
/// read again although its size and mtime say it is unchanged.
#[test]
fn a_retag_that_keeps_the_mtime_shows() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let file = lib.join("a.flac");
    let mount = Mount::start(&[&lib]);
    mount.status(true);
    assert_eq!(names(&mount.path(ZEP)), ["01 Good Times Bad Times.flac"]);

    let before = std::fs::metadata(&file).unwrap();
    retag(&file, &[]);
    let opened = std::fs::File::options().write(true).open(&file).unwrap();
    opened.set_modified(before.modified().unwrap()).unwrap();
    drop(opened);
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (after.size(), after.mtime(), after.mtime_nsec()),
        (before.size(), before.mtime(), before.mtime_nsec())
    );
    let took = within_bound("the retag that kept the mtime", || {
        names(&mount.path(ZEP)) == ["01 Retagged Times.flac"]
    });
    eprintln!("retag that kept the mtime visible after {took:?}");
}

/// Reorganising the NAS (a file or its folder moved, as `beet move` or a file manager does)
/// keeps what is cached of it: the moved file is the same track, and it plays offline without
/// being fetched again.
#[test]
fn a_file_moved_on_the_nas_keeps_its_cache_and_plays_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let mut sshd = Sshd::new();
    let url = sshd.url(&lib);
    let mount = hourly_sftp_mount(tmp.path(), &sshd, &url);
    mount.status(true);
    let original = std::fs::read(lib.join("a.flac")).unwrap();
    assert!(std::fs::read(mount.path(GOOD_TIMES)).unwrap() == original);
    within_bound("the track is cut into chunks", || {
        let out = mount.ctl(&["cache", "stats", "--json"]).stdout;
        let stats: Value = serde_json::from_slice(&out).unwrap();
        stats["bytes"].as_u64().unwrap() >= original.len() as u64
    });
    let ino = std::fs::metadata(mount.path(GOOD_TIMES)).unwrap().ino();

    std::fs::create_dir(lib.join("Moved Here")).unwrap();
    std::fs::rename(lib.join("a.flac"), lib.join("Moved Here/a.flac")).unwrap();
    let out = mount.ctl(&["rescan"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = format!("{url}: 2 files listed, 1 new or changed, 0 gone, 0 unreadable (");
    assert!(stdout.starts_with(&want), "{stdout}");

    sshd.stop();
    drop_page_cache();
    assert_eq!(
        std::fs::metadata(mount.path(GOOD_TIMES)).unwrap().ino(),
        ino,
        "the same track"
    );
    let offline = std::fs::read(mount.path(GOOD_TIMES));
    assert!(offline.unwrap() == original, "the moved track differs");
}

/// A NAS that answers but lists no files (its share's folder replaced by an empty one, as when
/// the disk meant to be mounted there is not) keeps its tracks: they stay listed and play from
/// the cache, `rescan` and `status` say what happened, and once the files are back nothing is
/// read or fetched again.
#[test]
fn an_origin_that_lists_no_files_keeps_its_tracks_and_their_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let sshd = Sshd::new();
    let mount = hourly_sftp_mount(tmp.path(), &sshd, &sshd.url(&lib));
    mount.status(true);
    let original = std::fs::read(lib.join("a.flac")).unwrap();
    assert_eq!(std::fs::read(mount.path(GOOD_TIMES)).unwrap(), original);
    let cached = settle(&mount);
    assert!(cached["chunks"].as_u64().unwrap() > 0, "{cached}");

    // The disk is gone: an empty folder where it was mounted.
    let away = tmp.path().join("away");
    std::fs::rename(&lib, &away).unwrap();
    std::fs::create_dir(&lib).unwrap();
    let stdout = rescan(&mount, false);
    assert!(
        stdout.contains("lists no files, though it had 2; they stay listed"),
        "{stdout}"
    );
    let warning = &mount.status(false)["origins"][0]["warning"];
    assert!(
        warning
            .as_str()
            .is_some_and(|w| w.contains("lists no files")),
        "{warning}"
    );
    assert!(names(&mount.mountpoint).contains(&"The Prodigy".to_owned()));
    assert_eq!(names(&mount.path(ZEP)), ["01 Good Times Bad Times.flac"]);
    drop_page_cache();
    assert_eq!(
        std::fs::read(mount.path(GOOD_TIMES)).unwrap(),
        original,
        "the cached track does not play without its origin"
    );

    // The disk is back: the files are the ones known, and the cache still holds the track.
    std::fs::remove_dir(&lib).unwrap();
    std::fs::rename(&away, &lib).unwrap();
    let stdout = rescan(&mount, true);
    assert!(
        stdout.contains(": 2 files listed, 0 new or changed, 0 gone, 0 unreadable ("),
        "{stdout}"
    );
    assert_eq!(mount.status(false)["origins"][0]["warning"], Value::Null);
    drop_page_cache();
    assert_eq!(std::fs::read(mount.path(GOOD_TIMES)).unwrap(), original);
    let after = settle(&mount);
    assert_eq!(
        after["per_origin"], cached["per_origin"],
        "the track was fetched again: {after}"
    );
}

/// Once a listing shows a retagged track's new name, its old name is gone, at every moment
/// while the change is picked up, also when the kernel has dropped its cached entries in
/// between (as memory pressure makes it). Before, mountd listed from fetchd's new tree while
/// it still answered lookups from the old one, for up to a second.
///
/// The other way round is allowed for a moment: the kernel may list the old name from its
/// cached listing after the old name was dropped (the last step of the switch drops entries
/// before listings), as a network filesystem's cached listing can.
#[test]
fn once_a_listing_shows_a_change_the_old_name_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let mount = Mount::start(&[&lib]);
    mount.status(true);
    assert_eq!(names(&mount.path(ZEP)), ["01 Good Times Bad Times.flac"]);
    retag(&lib.join("a.flac"), &[]);
    let started = Instant::now();
    let (mut old, mut new) = (0, 0);
    while new < 20 {
        assert!(started.elapsed() < BOUND, "the retag did not show");
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        let listed = names(&mount.path(ZEP));
        let old_found = mount.path(GOOD_TIMES).exists();
        if listed == ["01 Retagged Times.flac"] {
            assert!(!old_found, "ls shows the new name, stat finds the old one");
            new += 1;
        } else {
            assert_eq!(listed, ["01 Good Times Bad Times.flac"]);
            old += 1;
        }
    }
    eprintln!("{old} rounds showed the old tree, then {new} the new one");
}

/// A local origin on a disk that goes away and comes back (a tmpfs unmounted and mounted
/// again, with a track more): while it is away the track stays listed and plays from the
/// cache; once it is back, fetchd, whose sandbox knew only the folder it started with and
/// refused the new disk for ever before, restarts by itself (saying why) and reads it.
#[test]
fn a_disk_mounted_again_at_a_local_origin_is_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = musicfs_tests::corpus::corpus_dir();
    let (at, log) = (tmp.path().join("disk"), tmp.path().join("mount.log"));
    let (state, mnt) = (tmp.path().join("state"), tmp.path().join("mnt"));
    std::fs::create_dir_all(&mnt).unwrap();
    let disk = Tmpfs::mount(&at, 64 << 20);
    std::fs::copy(
        corpus.join("audioscan/flac/picture.flac"),
        at.join("a.flac"),
    )
    .unwrap();
    let mount = Mount::start_logged(&[&at], &state, &mnt, &[], &log);
    mount.status(true);
    let original = std::fs::read(at.join("a.flac")).unwrap();
    assert_eq!(std::fs::read(mount.path(GOOD_TIMES)).unwrap(), original);
    settle(&mount);

    disk.unmount();
    drop_page_cache();
    assert_eq!(
        std::fs::read(mount.path(GOOD_TIMES)).unwrap(),
        original,
        "the cached track does not play while the disk is away"
    );
    assert_eq!(names(&mount.path(ZEP)), ["01 Good Times Bad Times.flac"]);

    let _disk = Tmpfs::mount(&at, 64 << 20);
    std::fs::copy(
        corpus.join("audioscan/flac/picture.flac"),
        at.join("a.flac"),
    )
    .unwrap();
    let prodigy = corpus.join("audioscan/flac/audio-data.flac");
    std::fs::copy(&prodigy, at.join("b.flac")).unwrap();
    let started = Instant::now();
    while !names(&mount.mountpoint).contains(&"The Prodigy".to_owned()) {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            started.elapsed() < 2 * BOUND,
            "the track on the disk mounted again never showed:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "the disk mounted again was read after {:?}",
        started.elapsed()
    );
    let album = mount.path("The Prodigy");
    let album = album.join(&names(&album)[0]);
    let track = album.join(&names(&album)[0]);
    assert_eq!(
        std::fs::read(track).unwrap(),
        std::fs::read(&prodigy).unwrap()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("restarting fetchd: origin") && text.contains("another one"),
        "{text}"
    );
}

/// A player paused early in a track on a local disk: fetchd closes the file it kept
/// open for the next read after a few seconds, so the disk can be unmounted (`umount` said
/// "target is busy" for as long as the track was neither cached nor pushed out).
#[test]
fn a_disk_can_be_unmounted_soon_after_a_track_on_it_is_paused() {
    let tmp = tempfile::tempdir().unwrap();
    let at = tmp.path().join("disk");
    let disk = Tmpfs::mount(&at, 64 << 20);
    let noise = musicfs_tests::corpus::noise_library(1, 20).join("noise-01.flac");
    std::fs::copy(&noise, at.join("noise-01.flac")).unwrap();
    let mount = Mount::start(&[&at]);
    let status = mount.status(true);
    let fetchd = status["workers"][0]["pid"].as_i64().unwrap();
    // 64 KiB with the kernel's read-ahead off: what fetchd reads ahead by itself stays far
    // from the end of the 2 MB track, which would have it cached, and its file closed.
    let track = mount.path(&musicfs_tests::corpus::noise_track_path(1));
    let mut file = open_without_readahead(&track);
    let mut head = vec![0; 64 << 10];
    file.read_exact(&mut head).unwrap();
    drop(file);
    let open_on_disk = || {
        std::fs::read_dir(format!("/proc/{fetchd}/fd"))
            .unwrap()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .any(|target| target.starts_with(&at))
    };
    assert!(open_on_disk(), "fetchd keeps nothing open: nothing to test");
    let started = Instant::now();
    while let Err(e) = disk.try_unmount() {
        assert_eq!(e, nix::errno::Errno::EBUSY);
        assert!(
            started.elapsed() < BOUND,
            "the disk is still busy after {BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("unmounted {:?} after the pause", started.elapsed());
    assert!(!open_on_disk());
}

/// A folder the config names on a disk that is not mounted when the mount starts: the mount
/// comes up with the other origins, and once the disk is mounted its tracks show.
#[test]
fn a_configured_folder_missing_at_start_is_read_once_it_appears() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let at = tmp.path().join("usb");
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[[origins]]\nurl = \"{}\"\n", at.display()),
    )
    .unwrap();
    let (state, mnt) = (tmp.path().join("state"), tmp.path().join("mnt"));
    std::fs::create_dir_all(&mnt).unwrap();
    let cfg = config.to_str().unwrap();
    let mount = Mount::start_at(&[&lib], &state, &mnt, &["--config", cfg]);
    mount.status(true);
    assert!(names(&mount.mountpoint).contains(&"The Prodigy".to_owned()));
    assert!(!names(&mount.mountpoint).contains(&"the artist".to_owned()));

    let _disk = Tmpfs::mount(&at, 64 << 20);
    let corpus = musicfs_tests::corpus::corpus_dir();
    std::fs::copy(corpus.join("beets/full.flac"), at.join("full.flac")).unwrap();
    let took = within_bound("the folder that appeared", || {
        names(&mount.mountpoint).contains(&"the artist".to_owned())
    });
    eprintln!("the folder that appeared was read after {took:?}");
    let track = mount.path("the artist/the album (2001)/4-02 full.flac");
    assert_eq!(
        std::fs::read(track).unwrap(),
        std::fs::read(corpus.join("beets/full.flac")).unwrap()
    );
    assert!(names(&mount.mountpoint).contains(&"The Prodigy".to_owned()));
}

/// An origin that lists no audio files from the start (a wrong path or prefix, more often
/// than not) says so in `status`, until it lists some.
#[test]
fn an_origin_without_audio_files_says_so_until_it_has_some() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("empty");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("notes.txt"), b"not music").unwrap();
    let mount = Mount::start(&[&lib]);
    let warning = |mount: &Mount| mount.status(false)["origins"][0]["warning"].clone();
    mount.status(true);
    assert!(
        warning(&mount)
            .as_str()
            .is_some_and(|w| w.contains("lists no audio files")),
        "{}",
        warning(&mount)
    );
    let corpus = musicfs_tests::corpus::corpus_dir();
    std::fs::copy(corpus.join("beets/full.flac"), lib.join("full.flac")).unwrap();
    within_bound("the warning cleared", || warning(&mount) == Value::Null);
    // The warning clears as the walk lists the file; the track shows once the scan has read it.
    within_bound("the track shows", || {
        names(&mount.mountpoint).contains(&"the artist".to_owned())
    });
}

/// A track on a NAS rewritten in place (same size, other bytes) while a player reads it: what
/// the player got is half old, half new, as through any network filesystem, but that mix is
/// not cached as the version the scan listed. The read that found the file changed has the
/// origin listed again at once (its poll is hourly), so the track then reads as it is now, and
/// that is what the cache keeps.
#[test]
fn a_remote_file_rewritten_while_read_is_listed_again_and_never_cached_mixed() {
    use std::os::unix::fs::FileExt;
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let noise = musicfs_tests::corpus::noise_library(1, 20).join("noise-01.flac");
    let on_nas = lib.join("noise-01.flac");
    std::fs::copy(&noise, &on_nas).unwrap();
    let old = std::fs::read(&on_nas).unwrap();
    let sshd = Sshd::new();
    let mount = hourly_sftp_mount(tmp.path(), &sshd, &sshd.url(&lib));
    mount.status(true);
    let track = mount.path(&musicfs_tests::corpus::noise_track_path(1));

    // The player reads the head (the kernel's read-ahead off, so the rest is read later)...
    let mut file = open_without_readahead(&track);
    let mut seen = vec![0; 64 << 10];
    file.read_exact(&mut seen).unwrap();
    // ...the file is rewritten in place behind the tags, with a later mtime...
    let mut new = old.clone();
    new[16 << 10..].iter_mut().for_each(|b| *b = !*b);
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&on_nas)
        .unwrap();
    writer.write_all_at(&new[16 << 10..], 16 << 10).unwrap();
    writer
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(writer);
    // ...and the player reads on to the end.
    file.read_to_end(&mut seen).unwrap();
    drop(file);
    assert!(
        seen != old && seen != new,
        "the read was not half old, half new: nothing to test"
    );

    // (A staging file is cut into chunks once nobody has read it for a moment.)
    settle(&mount);
    let took = within_bound("the rewritten track read as it is now", || {
        drop_page_cache();
        std::fs::read(&track).is_ok_and(|bytes| bytes == new)
    });
    eprintln!("the rewritten track read as it is now after {took:?}");
    let cached = settle(&mount);
    drop_page_cache();
    assert_eq!(std::fs::read(&track).unwrap(), new);
    assert_eq!(
        settle(&mount)["per_origin"],
        cached["per_origin"],
        "the track as it is now was not cached"
    );
}
