//! Crashes of workers are invisible to players: with eight readers streaming big tracks and mpv
//! playing, fetchd is killed ten times (then indexd, then plugind) and every byte still arrives,
//! correct, with no error; the mount never goes away. A worker kept dead past the retry deadline
//! gives EIO, and reads work again once it is back.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use musicfs_tests::corpus::{noise_library, noise_track_path};
use musicfs_tests::mount::{is_mounted, Mount};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const READERS: usize = 8;

fn worker_pid(status: &Value, name: &str) -> Option<i32> {
    status["workers"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == name)?["pid"]
        .as_i64()
        .map(|p| p as i32)
}

/// Kills `name` with SIGKILL and waits until a new instance answers; returns how long it took.
fn kill_and_wait_back(mount: &Mount, name: &str) -> Duration {
    let old = worker_pid(&mount.status(false), name).expect("worker has a pid");
    kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
    let killed = Instant::now();
    loop {
        let status = mount.status(false);
        let worker = status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .unwrap();
        if worker["healthy"] == true && worker_pid(&status, name).is_some_and(|p| p != old) {
            return killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "{name} did not come back: {worker}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Small deterministic jitter so kills land at varied moments of the readers' work.
fn jitter(seed: &mut u64, from_ms: u64, to_ms: u64) -> Duration {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    Duration::from_millis(from_ms + *seed % (to_ms - from_ms))
}

/// Reads `path` whole, again and again until `stop`, comparing with `expected`; drops the
/// kernel's page cache for it after each pass so every pass goes to fetchd. Returns the passes
/// made and the longest single read() call.
fn stream(path: &Path, expected: &[u8], stop: &AtomicBool) -> std::io::Result<(usize, Duration)> {
    let mut passes = 0;
    let mut longest = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) || passes == 0 {
        let mut file = std::fs::File::open(path)?;
        let mut got = Vec::with_capacity(expected.len());
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let t = Instant::now();
            let n = file.read(&mut buf)?;
            longest = longest.max(t.elapsed());
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if got != expected {
            return Err(std::io::Error::other(format!(
                "{} differs from the original",
                path.display()
            )));
        }
        nix::fcntl::posix_fadvise(
            &file,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .map_err(std::io::Error::from)?;
        passes += 1;
    }
    Ok((passes, longest))
}

#[test]
fn killing_workers_under_load_is_invisible_to_readers() {
    let library = noise_library(READERS, 20);
    let mount = Mount::start(&[&library]);
    mount.status(true);
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 1..=READERS {
        let path = mount.path(&noise_track_path(i));
        let expected = std::fs::read(library.join(format!("noise-{i:02}.flac"))).unwrap();
        let (stop, results) = (stop.clone(), results.clone());
        threads.push(std::thread::spawn(move || {
            let result = stream(&path, &expected, &stop);
            results
                .lock()
                .unwrap()
                .push((path, result.map_err(|e| e.to_string())));
        }));
    }
    let player = {
        let path = mount.path(&noise_track_path(1));
        std::thread::spawn(move || {
            std::process::Command::new("mpv")
                .args([
                    "--no-config",
                    "--ao=null",
                    "--vo=null",
                    "--speed=2",
                    "--msg-level=all=info",
                ])
                .arg(path)
                .output()
                .expect("mpv is installed")
        })
    };

    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut back_after = Vec::new();
    for _ in 0..10 {
        std::thread::sleep(jitter(&mut seed, 1100, 1700));
        back_after.push(kill_and_wait_back(&mount, "fetchd"));
        assert!(is_mounted(&mount.mountpoint), "the mount disappeared");
    }
    for name in ["indexd", "plugind"] {
        back_after.push(kill_and_wait_back(&mount, name));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let played = player.join().unwrap();
    let log = String::from_utf8_lossy(&played.stdout).into_owned()
        + &String::from_utf8_lossy(&played.stderr);
    assert!(
        played.status.success() && log.contains("Exiting... (End of file)"),
        "mpv: {log}"
    );

    let results = results.lock().unwrap();
    let mut total_passes = 0;
    for (path, result) in results.iter() {
        match result {
            Ok((passes, longest)) => {
                total_passes += passes;
                eprintln!(
                    "{}: {passes} passes, longest read {longest:?}",
                    path.display()
                );
            }
            Err(e) => panic!("reader of {} failed: {e}", path.display()),
        }
    }
    assert!(
        total_passes >= READERS * 2,
        "readers made too little progress: {total_passes} passes"
    );
    assert!(is_mounted(&mount.mountpoint));
    eprintln!("workers were back after {back_after:?}");
    let status = mount.status(false);
    for w in status["workers"].as_array().unwrap() {
        assert_eq!(w["healthy"], true, "{w}");
    }
}

fn config_with_retry(dir: &Path, seconds: u64) -> PathBuf {
    let path = dir.join("musicfs.toml");
    std::fs::write(&path, format!("retry_seconds = {seconds}\n")).unwrap();
    path
}

#[test]
fn a_worker_dead_past_the_deadline_gives_eio_then_reads_work_again() {
    let library = noise_library(READERS, 20);
    let tmp = tempfile::tempdir().unwrap();
    let config = config_with_retry(tmp.path(), 2);
    let (state, mnt) = (tmp.path().join("state"), tmp.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let config_arg = config.to_str().unwrap();
    let mount = Mount::start_at(&[&library], &state, &mnt, &["--config", config_arg]);
    let status = mount.status(true);
    let supervisor = Pid::from_raw(status["supervisor_pid"].as_i64().unwrap() as i32);
    let fetchd = Pid::from_raw(worker_pid(&status, "fetchd").unwrap());
    let track = mount.path(&noise_track_path(3));
    let expected = std::fs::read(library.join("noise-03.flac")).unwrap();
    // Keep fetchd dead: freeze the supervisor so it cannot restart it, then kill fetchd.
    kill(supervisor, Signal::SIGSTOP).unwrap();
    kill(fetchd, Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(1200)); // past the kernel's 1 s attribute cache
    let started = Instant::now();
    let err = std::fs::read(&track).expect_err("no fetchd: the read must fail");
    let waited = started.elapsed();
    kill(supervisor, Signal::SIGCONT).unwrap();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        waited >= Duration::from_millis(1500),
        "EIO came before the deadline: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "the read hung past the deadline: {waited:?}"
    );
    // fetchd is restarted by the thawed supervisor; the same read now works.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read(&track) {
            Ok(bytes) => {
                assert_eq!(bytes, expected);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "reads did not recover: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(is_mounted(&mnt));
}
