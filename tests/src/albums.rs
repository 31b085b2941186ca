//! The two-album library the cache tests read through a mount (eleven ten-second FLACs of pink
//! noise, made once per target dir with ffmpeg), and what they do with it: read every track at
//! once, compare with the origin, ask for cache stats, wait for the cache to settle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mount::Mount;

pub const KEPT: &str = "Keeper/Kept (2024)";
pub const CHURN: &str = "Churner/Churn (2024)";
pub const KEPT_TRACKS: usize = 3;
pub const CHURN_TRACKS: usize = 8;
/// Seconds of pink noise per track: about 1 MB of FLAC each.
pub const SECONDS: u32 = 10;

/// Where each track of the library shows in the mount, and its file in the library.
pub fn tracks() -> Vec<(String, String)> {
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
pub fn library(dir: &Path) -> PathBuf {
    let root = crate::workspace().join("target/test-libraries");
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

pub fn cache_stats(mount: &Mount) -> Value {
    let out = mount.ctl(&["cache", "stats", "--json"]);
    assert!(
        out.status.success(),
        "cache stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cache stats --json is JSON")
}

/// Opens every path first, then reads them all at once; returns each file's SHA-256.
pub fn read_all_at_once(mount: &Mount, paths: &[String]) -> HashMap<String, String> {
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

pub fn origin_hashes(lib: &Path, paths: &[String]) -> HashMap<String, String> {
    let by_mount: HashMap<String, String> = tracks().into_iter().collect();
    paths
        .iter()
        .map(|p| {
            let hash = crate::sha256_file(&lib.join(&by_mount[p])).unwrap();
            (p.clone(), hash)
        })
        .collect()
}

/// Lets the kernel forget the pages it cached, so reads go through the mount again.
pub fn drop_page_cache() {
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .expect("drop the page cache (the end-to-end tests run as root)");
}

/// Waits until the background work after reads (cutting tracks into chunks, the background
/// fetch) has settled: the same usage twice, half a second apart.
pub fn settle(mount: &Mount) -> Value {
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

pub fn paths_under(album: &str) -> Vec<String> {
    tracks()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| p.starts_with(album))
        .collect()
}

/// The bytes of the chunk files under the state dir (`chunks/xx/<hash>`).
pub fn chunk_bytes_on_disk(mount: &Mount) -> u64 {
    walkdir::WalkDir::new(mount.state_dir.join("chunks"))
        .min_depth(2)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.depth() == 2)
        .filter(|e| e.path().parent().unwrap().file_name().unwrap().len() == 2)
        .map(|e| e.metadata().unwrap().len())
        .sum()
}
