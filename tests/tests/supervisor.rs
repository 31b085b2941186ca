//! `musicfsctl mount` as a supervisor, through the real binary: one-line errors that leave
//! nothing behind, one instance per state dir, an ordered shutdown that finishes within seconds
//! even with readers active, and a stale mount left by `kill -9` of everything cleaned at the
//! next start.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use musicfs_tests::corpus::{noise_library, noise_track_path};
use musicfs_tests::mount::{is_mounted, Mount};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Lazily unmounts a path when dropped, so a failing test leaves no stale mount behind.
struct DetachOnDrop(std::path::PathBuf);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
        }
    }
}

/// Runs `musicfsctl mount ARGS` expecting it to refuse; returns its stderr.
fn refused(state: &Path, args: &[&str]) -> String {
    let out = Command::new(musicfs_tests::bin("musicfsctl"))
        .arg("mount")
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(!out.status.success(), "musicfsctl mount {args:?} succeeded");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    stderr
}

fn no_sockets_left(state: &Path) {
    let run = state.join("run");
    let left: Vec<_> = std::fs::read_dir(&run)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        run.display()
    );
}

#[test]
fn bad_invocations_give_one_line_errors_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let lib = tmp.path().join("lib");
    let mnt = tmp.path().join("mnt");
    let full = tmp.path().join("full");
    for dir in [&lib, &mnt, &full] {
        std::fs::create_dir(dir).unwrap();
    }
    std::fs::write(full.join("x"), b"x").unwrap();
    let bad_config = tmp.path().join("bad.toml");
    std::fs::write(&bad_config, "origns = []\n").unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let missing = s(&tmp.path().join("missing"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![missing.clone(), s(&mnt)], "does not exist"),
        (vec![s(&lib), s(&full)], "not empty"),
        (vec![s(&lib), missing], "does not exist"),
        (
            vec!["--config".into(), s(&bad_config), s(&lib), s(&mnt)],
            "origns",
        ),
        (vec![s(&mnt)], "origin"),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = refused(&state, &args);
        assert!(
            err.contains(expected),
            "{args:?}: {err:?} lacks {expected:?}"
        );
        no_sockets_left(&state);
        assert!(!is_mounted(&mnt));
    }
}

#[test]
fn a_second_instance_on_the_same_state_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = noise_library(8, 20);
    let (state, mnt, mnt2) = (
        tmp.path().join("state"),
        tmp.path().join("mnt"),
        tmp.path().join("mnt2"),
    );
    std::fs::create_dir(&mnt).unwrap();
    std::fs::create_dir(&mnt2).unwrap();
    let first = Mount::start_at(&[&lib], &state, &mnt, &[]);
    let err = refused(&state, &[lib.to_str().unwrap(), mnt2.to_str().unwrap()]);
    assert!(err.contains("already running"), "{err}");
    assert!(!is_mounted(&mnt2));
    // The first instance is untouched.
    assert_eq!(first.status(true)["catalog"]["tracks"], 8);
    assert!(first.path(&noise_track_path(1)).is_file());
}

#[test]
fn sigterm_stops_everything_in_order_within_seconds_even_with_readers() {
    let lib = noise_library(8, 20);
    let mount = Mount::start(&[&lib]);
    let status = mount.status(true);
    let pids: Vec<i32> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["pid"].as_i64().map(|p| p as i32))
        .collect();
    assert_eq!(pids.len(), 4);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (1..=4)
        .map(|i| {
            let path = mount.path(&noise_track_path(i));
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Read until the mount goes away; errors after the stop are expected.
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut f) = std::fs::File::open(&path) else {
                        break;
                    };
                    let mut buf = vec![0u8; 1 << 16];
                    while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
                    let _ = nix::fcntl::posix_fadvise(
                        &f,
                        0,
                        0,
                        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
                    );
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mnt = mount.mountpoint.clone();
    let started = Instant::now();
    let exit = mount.stop();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(exit.success(), "supervisor exit: {exit}");
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    assert!(!is_mounted(&mnt), "still mounted after shutdown");
    for pid in pids {
        assert!(
            kill(Pid::from_raw(pid), None).is_err(),
            "worker {pid} still runs"
        );
    }
}

#[test]
fn a_stale_mount_left_by_kill_9_of_everything_is_cleaned_at_the_next_start() {
    let lib = noise_library(8, 20);
    let tmp = tempfile::tempdir().unwrap();
    let (state, mnt) = (tmp.path().join("state"), tmp.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let first = Mount::start_at(&[&lib], &state, &mnt, &[]);
    let status = first.status(true);
    let supervisor = Pid::from_raw(status["supervisor_pid"].as_i64().unwrap() as i32);
    // Freeze the supervisor (so it restarts nothing and its death signals no one), kill every
    // process, then the supervisor: the mount is left with no server.
    kill(supervisor, Signal::SIGSTOP).unwrap();
    for w in status["workers"].as_array().unwrap() {
        kill(
            Pid::from_raw(w["pid"].as_i64().unwrap() as i32),
            Signal::SIGKILL,
        )
        .unwrap();
    }
    kill(supervisor, Signal::SIGKILL).unwrap();
    std::mem::forget(first); // its supervisor is dead; nothing to stop
    let _cleanup = DetachOnDrop(mnt.clone());
    std::thread::sleep(Duration::from_millis(300));
    let statfs = nix::sys::statvfs::statvfs(&mnt);
    assert_eq!(
        statfs.err(),
        Some(nix::errno::Errno::ENOTCONN),
        "the mount should be stale now"
    );
    assert!(is_mounted(&mnt));
    let mut child = Command::new(musicfs_tests::bin("musicfsctl"))
        .args(["mount", "--state-dir"])
        .arg(&state)
        .arg(&lib)
        .arg(&mnt)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mnt.join(noise_track_path(1)).is_file() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut log = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut log)
                .unwrap();
            panic!("second start exited ({status}): {log}");
        }
        assert!(Instant::now() < deadline, "the library did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("stale"),
        "no word about the stale mount: {log}"
    );
    assert!(!is_mounted(&mnt));
}
