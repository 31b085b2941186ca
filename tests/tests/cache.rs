//! The chunk cache on a real mount with a small `[cache] budget`: reading much more than the
//! budget through many open files never makes the cache hold more than it, and every byte reads
//! back as the origin has it; a pinned album stays whole while other reads churn the cache and
//! plays with its origin gone; unpin, clear and prefetch do what they say; pinning from a
//! server that stopped answering fails soon. (A full disk: `full_disk.rs`.)

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musicfs_tests::albums::*;
use musicfs_tests::mount::Mount;
use musicfs_tests::remote::sftp_origin_with_key;
use serde_json::Value;

/// Mounts `lib` with a config holding `[cache] budget`.
fn mount(tmp: &Path, lib: &Path, budget_mib: u64) -> Mount {
    let config = tmp.join("musicfs.toml");
    std::fs::write(
        &config,
        format!("[cache]\nbudget = \"{budget_mib} MiB\"\nmin_free = \"64 MiB\"\n"),
    )
    .unwrap();
    let mnt = tmp.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let config = config.to_str().unwrap();
    let mount = Mount::start_at(&[lib], &tmp.join("state"), &mnt, &["--config", config]);
    mount.status(true);
    mount
}

fn ctl_ok(mount: &Mount, args: &[&str]) -> String {
    let out = mount.ctl(args);
    assert!(
        out.status.success(),
        "musicfsctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Samples `cache stats` until stopped, checking the cache never holds more than its budget.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Sampler {
    fn start(mount: &Mount, budget: u64) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (state, flag) = (mount.state_dir.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut samples = 0;
            while !flag.load(Ordering::Relaxed) {
                let out = std::process::Command::new(musicfs_tests::bin("musicfsctl"))
                    .arg("--state-dir")
                    .arg(&state)
                    .args(["cache", "stats", "--json"])
                    .output()
                    .unwrap();
                if let Ok(stats) = serde_json::from_slice::<Value>(&out.stdout) {
                    let bytes = stats["bytes"].as_u64().unwrap();
                    assert!(
                        bytes <= budget,
                        "the cache holds {bytes} > {budget}: {stats}"
                    );
                    samples += 1;
                }
            }
            samples
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the budget was exceeded")
    }
}

#[test]
fn reading_far_more_than_the_budget_keeps_the_cache_under_it_and_every_byte_right() {
    const BUDGET: u64 = 4 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let mount = mount(tmp.path(), &lib, BUDGET >> 20);
    let all: Vec<String> = tracks().into_iter().map(|(p, _)| p).collect();
    let library_bytes: u64 = all
        .iter()
        .map(|p| std::fs::metadata(mount.path(p)).unwrap().len())
        .sum();
    assert!(library_bytes > 2 * BUDGET, "{library_bytes}");
    let expected = origin_hashes(&lib, &all);

    let sampler = Sampler::start(&mount, BUDGET);
    assert_eq!(read_all_at_once(&mount, &all), expected);
    settle(&mount);
    // Again, through fetchd (not the page cache): evicted chunks come back from the origin.
    drop_page_cache();
    assert_eq!(read_all_at_once(&mount, &all), expected);
    let stats = settle(&mount);
    assert!(sampler.stop() >= 5, "too few samples to mean anything");

    assert_eq!(stats["budget"], BUDGET);
    assert_eq!(stats["min_free"], 64 << 20);
    // Full, not empty: eviction made room instead of refusing to cache.
    let bytes = stats["bytes"].as_u64().unwrap();
    assert!(bytes <= BUDGET && bytes > BUDGET / 2, "{stats}");
    assert!(stats["misses"].as_u64().unwrap() > 0, "{stats}");
    let origin = lib.canonicalize().unwrap().display().to_string();
    let fetched = &stats["per_origin"][0];
    assert_eq!(fetched["origin"], origin.as_str(), "{stats}");
    assert!(
        fetched["bytes"].as_u64().unwrap() >= library_bytes,
        "{stats}"
    );
    // What the cache says it holds is what is on disk.
    assert_eq!(chunk_bytes_on_disk(&mount), stats["bytes"], "{stats}");
}

#[test]
fn a_pinned_album_survives_churn_and_plays_offline_then_unpin_clear_and_prefetch_work() {
    const BUDGET: u64 = 6 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let mount = mount(tmp.path(), &lib, BUDGET >> 20);
    let kept = paths_under(KEPT);
    let churn = paths_under(CHURN);
    let kept_bytes: u64 = kept
        .iter()
        .map(|p| std::fs::metadata(mount.path(p)).unwrap().len())
        .sum();
    let churn_bytes: u64 = churn
        .iter()
        .map(|p| std::fs::metadata(mount.path(p)).unwrap().len())
        .sum();
    assert!(
        kept_bytes < BUDGET * 2 / 3 && churn_bytes > BUDGET,
        "{kept_bytes} {churn_bytes}"
    );

    // A path that names nothing is refused, naming it.
    let out = mount.ctl(&["cache", "pin", "Nobody/Nothing"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Nobody/Nothing: no such path"), "{err}");

    // Pin by absolute path inside the mount point; it waits until the album is fetched.
    let absolute = mount.path(KEPT).display().to_string();
    let said = ctl_ok(&mount, &["cache", "pin", &absolute]);
    assert!(
        said.contains(&format!("pinned {KEPT}: {KEPT_TRACKS} tracks")),
        "{said}"
    );
    let stats = cache_stats(&mount);
    assert_eq!(stats["pins"], serde_json::json!([KEPT]), "{stats}");
    assert_eq!(stats["fetch"]["active"], false, "{stats}");
    assert_eq!(stats["fetch"]["tracks_done"], KEPT_TRACKS, "{stats}");
    assert_eq!(stats["fetch"]["failed"], 0, "{stats}");
    assert_eq!(stats["pinned_bytes"], kept_bytes, "{stats}");
    let status = mount.status(false);
    assert_eq!(status["cache"]["budget"], BUDGET, "{status}");
    assert_eq!(
        status["cache"]["fetch"]["tracks_total"], KEPT_TRACKS,
        "{status}"
    );

    // Other reads, more than the budget, churn everything else.
    let sampler = Sampler::start(&mount, BUDGET);
    let expected = origin_hashes(&lib, &churn);
    assert_eq!(read_all_at_once(&mount, &churn), expected);
    settle(&mount);
    sampler.stop();
    let stats = settle(&mount);
    assert_eq!(
        stats["pinned_bytes"], kept_bytes,
        "pinned chunks were evicted: {stats}"
    );

    // The pinned album reads from the cache alone: nothing more from the origin, even gone.
    let expected = origin_hashes(&lib, &kept);
    let origin_bytes = |stats: &Value| stats["per_origin"][0]["bytes"].as_u64().unwrap();
    let before = origin_bytes(&stats);
    drop_page_cache();
    assert_eq!(read_all_at_once(&mount, &kept), expected);
    assert_eq!(
        origin_bytes(&settle(&mount)),
        before,
        "pinned tracks came from the origin"
    );
    let away = tmp.path().join("lib-away");
    std::fs::rename(&lib, &away).unwrap();
    drop_page_cache();
    let offline = read_all_at_once(&mount, &kept);
    std::fs::rename(&away, &lib).unwrap();
    assert_eq!(
        offline, expected,
        "pinned tracks did not play with the origin gone"
    );

    // Unpinned, the album's chunks are ordinary again; clear then empties the cache.
    let said = ctl_ok(&mount, &["cache", "unpin", KEPT]);
    assert!(said.contains(&format!("unpinned {KEPT}")), "{said}");
    let out = mount.ctl(&["cache", "unpin", KEPT]);
    assert!(
        !out.status.success(),
        "unpinning twice should say it was not pinned"
    );
    let stats = cache_stats(&mount);
    assert_eq!(stats["pins"], serde_json::json!([]), "{stats}");
    assert_eq!(stats["pinned_bytes"], 0, "{stats}");
    let said = ctl_ok(&mount, &["cache", "clear"]);
    assert!(said.contains("removed"), "{said}");
    let stats = cache_stats(&mount);
    assert_eq!(
        (stats["bytes"].as_u64(), stats["chunks"].as_u64()),
        (Some(0), Some(0)),
        "{stats}"
    );

    // Prefetch brings one track's bytes back without a single read through the mount.
    let one = &churn[0];
    let size = std::fs::metadata(mount.path(one)).unwrap().len();
    ctl_ok(&mount, &["cache", "prefetch", one]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = cache_stats(&mount);
        // (At least: reading a track's head also warms the next track's.)
        if stats["bytes"].as_u64() >= Some(size) && stats["fetch"]["active"] == false {
            assert_eq!(stats["fetch"]["failed"], 0, "{stats}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prefetch did not fill the cache: {stats}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And that track now plays with the origin gone.
    std::fs::rename(&lib, &away).unwrap();
    drop_page_cache();
    let offline = read_all_at_once(&mount, std::slice::from_ref(one));
    std::fs::rename(&away, &lib).unwrap();
    assert_eq!(offline, origin_hashes(&lib, std::slice::from_ref(one)));
}

/// Pinning an album from an SFTP server that has stopped answering fails within about the
/// origin's timeout, naming the origin, instead of waiting on each track in turn.
#[test]
fn pinning_from_a_server_that_stops_answering_fails_soon_and_names_it() {
    use musicfs_tests::sshd::Sshd;
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let sshd = Sshd::new();
    let config = tmp.path().join("musicfs.toml");
    let origin = sftp_origin_with_key(&sshd, &lib, &sshd.identity_file());
    std::fs::write(&config, origin).unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let config = ["--config", config.to_str().unwrap()];
    let mount = Mount::start_at(&[], &tmp.path().join("state"), &mnt, &config);
    mount.status(true);

    sshd.stall();
    let stalled = Instant::now();
    let out = mount.ctl(&["cache", "pin", CHURN]);
    let took = stalled.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the pin succeeded: {stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    let stats = cache_stats(&mount);
    let why = stats["fetch"]["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains(&sshd.url(&lib)) && why.contains("down"),
        "{stats}"
    );
    sshd.resume();
}
