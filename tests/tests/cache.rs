//! The chunk cache on a real mount with a small `[cache] budget`: reading much more than the
//! budget through many open files never makes the cache hold more than it, and every byte reads
//! back as the origin has it; a pinned album stays whole while other reads churn the cache and
//! plays with its origin gone; unpin, clear and prefetch do what they say; a full disk under the
//! state dir costs caching, not reads or what is cached.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musicfs_tests::mount::Mount;
use serde_json::Value;

const KEPT: &str = "Keeper/Kept (2024)";
const CHURN: &str = "Churner/Churn (2024)";
const KEPT_TRACKS: usize = 3;
const CHURN_TRACKS: usize = 8;
/// Seconds of pink noise per track: about 1 MB of FLAC each.
const SECONDS: u32 = 10;

/// Where each track of the library shows in the mount, and its file in the library.
fn tracks() -> Vec<(String, String)> {
    let album = |artist: &str, album: &str, dir: &str, n: usize| {
        (1..=n)
            .map(|i| {
                (
                    format!("{dir}/{i:02} {album} {i:02}.flac"),
                    format!("{artist}-{i:02}.flac"),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut all = album("keeper", "Kept", KEPT, KEPT_TRACKS);
    all.extend(album("churner", "Churn", CHURN, CHURN_TRACKS));
    all
}

/// The library (made once per target dir with ffmpeg, then copied so a test may move it).
fn library(dir: &Path) -> PathBuf {
    let root = musicfs_tests::workspace().join("target/test-libraries");
    std::fs::create_dir_all(&root).unwrap();
    let made = root.join(format!("cache-{KEPT_TRACKS}+{CHURN_TRACKS}x{SECONDS}s"));
    let lock = std::fs::File::create(made.with_extension("lock")).unwrap();
    let guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    if !made.join("done").exists() {
        let _ = std::fs::remove_dir_all(&made);
        std::fs::create_dir_all(&made).unwrap();
        let albums = [
            ("Keeper", "Kept", KEPT_TRACKS),
            ("Churner", "Churn", CHURN_TRACKS),
        ];
        for (artist, album, n) in albums {
            for i in 1..=n {
                let seed = i + n * 100 + artist.len() * 1000;
                let file = made.join(format!("{}-{i:02}.flac", artist.to_lowercase()));
                let status = std::process::Command::new("ffmpeg")
                    .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
                    .arg(format!(
                        "anoisesrc=d={SECONDS}:c=pink:a=0.2:r=44100:seed={seed}"
                    ))
                    .args(["-ac", "2", "-metadata", &format!("artist={artist}")])
                    .args(["-metadata", &format!("album={album}")])
                    .args(["-metadata", "date=2024", "-metadata"])
                    .arg(format!("title={album} {i:02}"))
                    .args(["-metadata", &format!("track={i}")])
                    .arg(&file)
                    .status()
                    .expect("ffmpeg is installed (apt-get install ffmpeg)");
                assert!(status.success(), "ffmpeg failed making {}", file.display());
            }
        }
        std::fs::write(made.join("done"), b"").unwrap();
    }
    drop(guard);
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    for (_, file) in tracks() {
        std::fs::copy(made.join(&file), lib.join(&file)).unwrap();
    }
    lib
}

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

fn cache_stats(mount: &Mount) -> Value {
    let out = mount.ctl(&["cache", "stats", "--json"]);
    assert!(
        out.status.success(),
        "cache stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cache stats --json is JSON")
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

/// Opens every path first, then reads them all at once; returns each file's SHA-256.
fn read_all_at_once(mount: &Mount, paths: &[String]) -> HashMap<String, String> {
    use sha2::Digest;
    use std::io::Read;
    let files: Vec<(String, std::fs::File)> = paths
        .iter()
        .map(|p| (p.clone(), std::fs::File::open(mount.path(p)).unwrap()))
        .collect();
    let readers: Vec<_> = files
        .into_iter()
        .map(|(path, mut file)| {
            std::thread::spawn(move || {
                let mut hasher = sha2::Sha256::new();
                let mut buf = vec![0u8; 128 << 10];
                loop {
                    let n = file.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                let hex: String = hasher
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                (path, hex)
            })
        })
        .collect();
    readers.into_iter().map(|r| r.join().unwrap()).collect()
}

fn origin_hashes(lib: &Path, paths: &[String]) -> HashMap<String, String> {
    let by_mount: HashMap<String, String> = tracks().into_iter().collect();
    paths
        .iter()
        .map(|p| {
            let hash = musicfs_tests::sha256_file(&lib.join(&by_mount[p])).unwrap();
            (p.clone(), hash)
        })
        .collect()
}

/// Lets the kernel forget the pages it cached, so reads go through the mount again.
fn drop_page_cache() {
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .expect("drop the page cache (the end-to-end tests run as root)");
}

/// Waits until the background work after reads (cutting tracks into chunks, the background
/// fetch) has settled: the same usage twice, half a second apart.
fn settle(mount: &Mount) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = cache_stats(mount);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = cache_stats(mount);
        let same = now["bytes"] == last["bytes"] && now["chunks"] == last["chunks"];
        if same && now["fetch"]["active"] == false {
            return now;
        }
        assert!(Instant::now() < deadline, "the cache never settled: {now}");
        last = now;
    }
}

fn paths_under(album: &str) -> Vec<String> {
    tracks()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| p.starts_with(album))
        .collect()
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

/// The bytes of the chunk files under the state dir (`chunks/xx/<hash>`).
fn chunk_bytes_on_disk(mount: &Mount) -> u64 {
    walkdir::WalkDir::new(mount.state_dir.join("chunks"))
        .min_depth(2)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.depth() == 2)
        .filter(|e| e.path().parent().unwrap().file_name().unwrap().len() == 2)
        .map(|e| e.metadata().unwrap().len())
        .sum()
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

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Tmpfs {
        use nix::mount::{mount, MsFlags};
        std::fs::create_dir_all(at).unwrap();
        let size = format!("size={bytes}");
        mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            MsFlags::empty(),
            Some(size.as_str()),
        )
        .expect("mount a tmpfs (the end-to-end tests run as root)");
        Tmpfs(at.to_owned())
    }

    /// Fills the filesystem until `leave` bytes are free, or as near as it lets a file of its
    /// own grow (asking for all of it fails).
    fn fill(&self, leave: u64) -> PathBuf {
        let free = nix::sys::statvfs::statvfs(&self.0).unwrap();
        let free = free.blocks_available() as u64 * free.fragment_size() as u64;
        let filler = self.0.join("filler");
        let file = std::fs::File::create(&filler).unwrap();
        let mut len = free.saturating_sub(leave) as i64;
        while let Err(e) = nix::fcntl::fallocate(&file, nix::fcntl::FallocateFlags::empty(), 0, len)
        {
            assert!(e == nix::errno::Errno::ENOSPC && len > 0, "fill: {e}");
            len -= 4096;
        }
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The disk under the state dir fills up (a small tmpfs, the free-disk floor turned off, so
/// the writes themselves fail): tracks not yet cached still read as the origin has them, the
/// reason is logged, what was cached before still reads back from the cache, and once there
/// is room again new reads are cached.
#[test]
fn a_full_disk_serves_new_reads_from_the_origin_and_keeps_what_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    // Declared before the mount, so unmounted after it.
    let small = Tmpfs::mount(&tmp.path().join("small"), 64 << 20);
    let config = tmp.path().join("musicfs.toml");
    std::fs::write(&config, "[cache]\nmin_free = \"0 B\"\n").unwrap();
    let (mnt, log) = (tmp.path().join("mnt"), tmp.path().join("mount.log"));
    std::fs::create_dir_all(&mnt).unwrap();
    let config = ["--config", config.to_str().unwrap()];
    let mount = Mount::start_logged(&[&lib], &small.0.join("state"), &mnt, &config, &log);
    mount.status(true);
    let (kept, churn) = (paths_under(KEPT), paths_under(CHURN));
    let all: Vec<String> = tracks().into_iter().map(|(p, _)| p).collect();
    let expected = origin_hashes(&lib, &all);
    let only = |paths: &[String]| -> HashMap<String, String> {
        paths
            .iter()
            .map(|p| (p.clone(), expected[p].clone()))
            .collect()
    };

    assert_eq!(read_all_at_once(&mount, &kept), only(&kept));
    let cached = settle(&mount);
    assert!(cached["chunks"].as_u64().unwrap() > 0, "{cached}");

    let filler = small.fill(256 << 10);
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
    let text = std::fs::read_to_string(&log).unwrap();
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
    let filler = small.fill(1536 << 10);
    let one = [churn[0].clone()];
    for _ in 0..2 {
        drop_page_cache();
        assert_eq!(read_all_at_once(&mount, &one), only(&one));
        let stats = settle(&mount);
        assert_eq!(chunk_bytes_on_disk(&mount), stats["bytes"], "{stats}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    // Declared before the mount, so unmounted after it.
    let small = Tmpfs::mount(&tmp.path().join("small"), 64 << 20);
    small.fill(FLOOR + (8 << 20));
    let config = tmp.path().join("musicfs.toml");
    std::fs::write(&config, format!("[cache]\nmin_free = \"{FLOOR}\"\n")).unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let config = ["--config", config.to_str().unwrap()];
    let mount = Mount::start_at(&[&lib], &small.0.join("state"), &mnt, &config);
    mount.status(true);
    let all: Vec<String> = tracks().into_iter().map(|(p, _)| p).collect();
    let expected = origin_hashes(&lib, &all);

    let stop = AtomicBool::new(false);
    let lowest = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut lowest = u64::MAX;
            while !stop.load(Ordering::Relaxed) {
                let stat = nix::sys::statvfs::statvfs(&small.0).unwrap();
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
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    // Declared before the mount, so unmounted after it.
    let small = Tmpfs::mount(&tmp.path().join("small"), 64 << 20);
    let config = tmp.path().join("musicfs.toml");
    std::fs::write(&config, "[cache]\nmin_free = \"0 B\"\n").unwrap();
    let (mnt, log) = (tmp.path().join("mnt"), tmp.path().join("mount.log"));
    std::fs::create_dir_all(&mnt).unwrap();
    let config = ["--config", config.to_str().unwrap()];
    let mount = Mount::start_logged(&[&lib], &small.0.join("state"), &mnt, &config, &log);
    mount.status(true);
    let album = mount.path(KEPT);
    let listed = || std::fs::read_dir(&album).map_or(0, |d| d.count());
    let before = listed();

    let filler = small.fill(0);
    std::fs::copy(lib.join("keeper-01.flac"), lib.join("keeper-01 again.flac")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("scan failed")
    {
        assert!(
            Instant::now() < deadline,
            "no scan failed on the full disk:\n{}",
            std::fs::read_to_string(&log).unwrap()
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
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(listed(), before + 1);
}

/// A mount started on a full disk comes up and plays what it cached before.
#[test]
fn a_mount_started_on_a_full_disk_plays_what_it_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    // Declared before the mounts, so unmounted after them.
    let small = Tmpfs::mount(&tmp.path().join("small"), 64 << 20);
    let config = tmp.path().join("musicfs.toml");
    std::fs::write(&config, "[cache]\nmin_free = \"0 B\"\n").unwrap();
    let (mnt, log) = (tmp.path().join("mnt"), tmp.path().join("mount.log"));
    std::fs::create_dir_all(&mnt).unwrap();
    let config = ["--config", config.to_str().unwrap()];
    let state = small.0.join("state");
    let kept = paths_under(KEPT);
    let all: Vec<String> = tracks().into_iter().map(|(p, _)| p).collect();
    let expected = origin_hashes(&lib, &all);
    let only = |paths: &[String]| -> HashMap<String, String> {
        paths
            .iter()
            .map(|p| (p.clone(), expected[p].clone()))
            .collect()
    };
    let mount = Mount::start_logged(&[&lib], &state, &mnt, &config, &log);
    mount.status(true);
    assert_eq!(read_all_at_once(&mount, &kept), only(&kept));
    settle(&mount);
    assert!(mount.stop().success());

    small.fill(0);
    let mount = Mount::start_logged(&[&lib], &state, &mnt, &config, &log);
    mount.status(true);
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
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    // Declared before the mount, so unmounted after it.
    let small = Tmpfs::mount(&tmp.path().join("small"), 64 << 20);
    let config = tmp.path().join("musicfs.toml");
    std::fs::write(&config, "[cache]\nmin_free = \"0 B\"\n").unwrap();
    let (mnt, log) = (tmp.path().join("mnt"), tmp.path().join("mount.log"));
    std::fs::create_dir_all(&mnt).unwrap();
    let config = ["--config", config.to_str().unwrap()];
    let mount = Mount::start_logged(&[&lib], &small.0.join("state"), &mnt, &config, &log);
    mount.status(true);
    small.fill(0);

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

/// Pinning an album from an SFTP server that has stopped answering fails within about the
/// origin's timeout, naming the origin, instead of waiting on each track in turn.
#[test]
fn pinning_from_a_server_that_stops_answering_fails_soon_and_names_it() {
    use musicfs_tests::sshd::Sshd;
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    let sshd = Sshd::new();
    let config = tmp.path().join("musicfs.toml");
    let origin = format!(
        "[[origins]]\nurl = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\
         timeout_seconds = 2\n",
        sshd.url(&lib),
        sshd.identity_file().display(),
        sshd.known_hosts().display()
    );
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
