//! A full disk under the state dir (a small tmpfs) costs caching, not reads or what is cached:
//! new reads come from the origin, the cached album still plays from the cache, the free-disk
//! floor holds for staging files too, a change seen meanwhile shows once there is room, a mount
//! started on the full disk comes up, and pinning fails at once saying why.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use musicfs_tests::albums::*;
use musicfs_tests::mount::Mount;
use musicfs_tests::tmpfs::Tmpfs;

/// A library, a 64 MiB tmpfs to put the state dir on, and a config with `[cache] min_free`.
/// Declared before a test's mount, so the mount goes first and the tmpfs after it.
struct Disk {
    // Fields drop in this order: the tmpfs before the temp dir it is mounted in.
    small: Tmpfs,
    tmp: tempfile::TempDir,
    lib: PathBuf,
}

impl Disk {
    fn new(min_free: &str) -> Disk {
        let tmp = tempfile::tempdir().unwrap();
        let lib = library(tmp.path());
        let small = Tmpfs::mount(&tmp.path().join("small"), 64 << 20);
        let config = format!("[cache]\nmin_free = \"{min_free}\"\n");
        std::fs::write(tmp.path().join("musicfs.toml"), config).unwrap();
        std::fs::create_dir_all(tmp.path().join("mnt")).unwrap();
        Disk { small, tmp, lib }
    }

    /// Mounts the library with the state dir on the tmpfs, every process logging to `log`.
    fn mount(&self) -> Mount {
        let config = self.tmp.path().join("musicfs.toml");
        let config = ["--config", config.to_str().unwrap()];
        let (state, mnt) = (self.small.path().join("state"), self.tmp.path().join("mnt"));
        let log = self.tmp.path().join("mount.log");
        let mount = Mount::start_logged(&[&self.lib], &state, &mnt, &config, &log);
        mount.status(true);
        mount
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("mount.log")).unwrap()
    }

    /// The SHA-256 of each of `paths` (mount paths) at the origin.
    fn expected(&self, paths: &[String]) -> HashMap<String, String> {
        origin_hashes(&self.lib, paths)
    }
}

/// The disk under the state dir fills up (a small tmpfs, the free-disk floor turned off, so
/// the writes themselves fail): tracks not yet cached still read as the origin has them, the
/// reason is logged, what was cached before still reads back from the cache, and once there
/// is room again new reads are cached.
#[test]
fn a_full_disk_serves_new_reads_from_the_origin_and_keeps_what_is_cached() {
    let disk = Disk::new("0 B");
    let mount = disk.mount();
    let (kept, churn) = (paths_under(KEPT), paths_under(CHURN));
    let only = |paths: &[String]| disk.expected(paths);

    assert_eq!(read_all_at_once(&mount, &kept), only(&kept));
    let cached = settle(&mount);
    assert!(cached["chunks"].as_u64().unwrap() > 0, "{cached}");

    let filler = disk.small.fill(256 << 10);
    drop_page_cache();
    assert_eq!(read_all_at_once(&mount, &churn), only(&churn));
    let full = settle(&mount);
    // The staging files the full disk left part-filled are in the stats, as the disk has them.
    let staging: u64 = std::fs::read_dir(mount.state_dir.join("chunks/staging"))
        .unwrap()
        .map(|e| std::os::unix::fs::MetadataExt::blocks(&e.unwrap().metadata().unwrap()) * 512)
        .sum();
    assert!(full["staging_files"].as_u64().unwrap() > 0, "{full}");
    assert!(
        staging > 0 && full["staging_bytes"] == staging,
        "{staging} on disk: {full}"
    );
    let text = disk.log();
    assert!(
        text.contains("No space left on device"),
        "no reason logged:\n{text}"
    );
    for (_, file) in tracks().iter().filter(|(p, _)| churn.contains(p)) {
        let warned = text.matches(&format!("staging {file}: ")).count();
        assert_eq!(warned, 1, "{file} warned {warned} times, not once:\n{text}");
    }
    // The cached album is whole and served from the cache: nothing more from the origin.
    drop_page_cache();
    assert_eq!(read_all_at_once(&mount, &kept), only(&kept));
    let after = settle(&mount);
    assert_eq!(
        after["per_origin"][0]["bytes"], full["per_origin"][0]["bytes"],
        "the cached album was fetched again: {after}"
    );
    assert!(
        after["chunks"].as_u64() >= cached["chunks"].as_u64(),
        "{after}"
    );

    // Room for a track's staging file but not for its chunks as well: cutting it into chunks
    // fails part way. It still reads right, and the cache's books match its disk.
    std::fs::remove_file(filler).unwrap();
    let filler = disk.small.fill(1536 << 10);
    let one = [churn[0].clone()];
    for _ in 0..2 {
        drop_page_cache();
        assert_eq!(read_all_at_once(&mount, &one), only(&one));
        let stats = settle(&mount);
        assert_eq!(chunk_bytes_on_disk(&mount), stats["bytes"], "{stats}");
    }
    let text = disk.log();
    assert!(
        text.contains("chunks not cached"),
        "no reason logged:\n{text}"
    );

    // Room again: the next reads are cached.
    std::fs::remove_file(filler).unwrap();
    drop_page_cache();
    assert_eq!(read_all_at_once(&mount, &churn), only(&churn));
    let roomy = settle(&mount);
    assert!(
        roomy["chunks"].as_u64().unwrap() > after["chunks"].as_u64().unwrap(),
        "nothing was cached once there was room: {roomy}"
    );
}

/// The free-disk floor holds while tracks are staged, not only for chunks: with 8 MiB above
/// `min_free`, reading the whole library (about 11 MB, every track at once, twice) never takes
/// the disk's free space more than 1 MiB under the floor (the catalog and the index are not
/// held to it), and every byte reads right.
#[test]
fn the_free_disk_floor_holds_while_tracks_are_staged() {
    const FLOOR: u64 = 16 << 20;
    let disk = Disk::new(&FLOOR.to_string());
    disk.small.fill(FLOOR + (8 << 20));
    let mount = disk.mount();
    let all: Vec<String> = tracks().into_iter().map(|(p, _)| p).collect();
    let expected = disk.expected(&all);

    let stop = AtomicBool::new(false);
    let lowest = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut lowest = u64::MAX;
            while !stop.load(Ordering::Relaxed) {
                let stat = nix::sys::statvfs::statvfs(disk.small.path()).unwrap();
                lowest = lowest.min(stat.blocks_available() as u64 * stat.fragment_size() as u64);
                std::thread::sleep(Duration::from_millis(1));
            }
            lowest
        });
        for _ in 0..2 {
            drop_page_cache();
            assert_eq!(read_all_at_once(&mount, &all), expected);
            settle(&mount);
        }
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap()
    });
    assert!(
        lowest + (1 << 20) >= FLOOR,
        "free space fell to {lowest} bytes, under the {FLOOR}-byte floor"
    );
}

/// A track added to a local origin while the disk under the state dir is full: the rescan the
/// change causes cannot record it, and is tried again until it can. Once there is room, the
/// track shows in the mount without another change at the origin or a remount.
#[test]
fn a_change_seen_while_the_disk_is_full_shows_once_there_is_room() {
    let disk = Disk::new("0 B");
    let mount = disk.mount();
    let album = mount.path(KEPT);
    let listed = || std::fs::read_dir(&album).map_or(0, |d| d.count());
    let before = listed();

    let filler = disk.small.fill(0);
    let lib = &disk.lib;
    std::fs::copy(lib.join("keeper-01.flac"), lib.join("keeper-01 again.flac")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !disk.log().contains("scan failed") {
        assert!(
            Instant::now() < deadline,
            "no scan failed on the full disk:\n{}",
            disk.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(listed(), before);

    std::fs::remove_file(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while listed() == before {
        assert!(
            Instant::now() < deadline,
            "the new track never showed:\n{}",
            disk.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(listed(), before + 1);
}

/// A mount started on a full disk comes up and plays what it cached before.
#[test]
fn a_mount_started_on_a_full_disk_plays_what_it_cached() {
    let disk = Disk::new("0 B");
    let kept = paths_under(KEPT);
    let only = |paths: &[String]| disk.expected(paths);
    let mount = disk.mount();
    assert_eq!(read_all_at_once(&mount, &kept), only(&kept));
    settle(&mount);
    assert!(mount.stop().success());

    disk.small.fill(0);
    let mount = disk.mount();
    drop_page_cache();
    assert_eq!(read_all_at_once(&mount, &kept), only(&kept));
    // From the cache: no read waited for the origin.
    let stats = cache_stats(&mount);
    assert_eq!(stats["misses"], 0, "{stats}");
    assert!(stats["hits"].as_u64().unwrap() > 0, "{stats}");
}

/// Pinning an album while the disk is full fails soon, saying why, instead of waiting for
/// chunks that cannot be written.
#[test]
fn pinning_on_a_full_disk_fails_soon_and_says_why() {
    let disk = Disk::new("0 B");
    let mount = disk.mount();
    disk.small.fill(0);

    let started = Instant::now();
    let out = mount.ctl(&["cache", "pin", CHURN]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "pinned on a full disk: {stderr}");
    assert!(took < Duration::from_secs(30), "took {took:?}: {stderr}");
    let stats = cache_stats(&mount);
    let why = stats["fetch"]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("No space left on device"), "{stats}\n{stderr}");
}
