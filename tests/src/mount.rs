//! A running MusicFS: `musicfsctl mount` on temporary state and mount directories, stopped
//! (and unmounted) when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a mount may take to come up in tests (debug builds on a loaded 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Mount {
    child: Option<Child>,
    pub state_dir: PathBuf,
    pub mountpoint: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Mount {
    /// Mounts `origins` with a fresh state dir.
    pub fn start(origins: &[&Path]) -> Mount {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = tmp.path().join("state");
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mut m = Mount::start_at(origins, &state, &mnt, &[]);
        m._tmp = Some(tmp);
        m
    }

    /// Mounts `origins` with the given state dir and mount point (kept after drop).
    pub fn start_at(origins: &[&Path], state: &Path, mnt: &Path, extra: &[&str]) -> Mount {
        Self::spawn(origins, state, mnt, extra, &[], Stdio::inherit())
    }

    /// Like [`Mount::start_at`], with `env` set for `musicfsctl` (and so for its workers).
    pub fn start_with_env(
        origins: &[&Path],
        state: &Path,
        mnt: &Path,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Mount {
        Self::spawn(origins, state, mnt, extra, env, Stdio::inherit())
    }

    /// Like [`Mount::start_at`], with every process's log (stdout and stderr) in `log`.
    pub fn start_logged(
        origins: &[&Path],
        state: &Path,
        mnt: &Path,
        extra: &[&str],
        log: &Path,
    ) -> Mount {
        let file = std::fs::File::create(log).expect("create the log file");
        Self::spawn(origins, state, mnt, extra, &[], Stdio::from(file))
    }

    fn spawn(
        origins: &[&Path],
        state: &Path,
        mnt: &Path,
        extra: &[&str],
        env: &[(&str, &Path)],
        log: Stdio,
    ) -> Mount {
        let mut cmd = Command::new(crate::bin("musicfsctl"));
        cmd.arg("mount").arg("--state-dir").arg(state).args(extra);
        cmd.envs(env.iter().copied());
        cmd.args(origins).arg(mnt);
        cmd.stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("start musicfsctl mount");
        let mut m = Mount {
            child: Some(child),
            state_dir: state.to_owned(),
            mountpoint: mnt.to_owned(),
            _tmp: None,
        };
        m.wait_mounted();
        m
    }

    fn wait_mounted(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !is_mounted(&self.mountpoint) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("musicfsctl mount exited before the mount was live: {status}");
            }
            assert!(Instant::now() < deadline, "mount did not come up in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(crate::bin("musicfsctl"))
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(args)
            .output()
            .expect("run musicfsctl")
    }

    /// `musicfsctl status --json`, optionally after waiting for the scan to finish.
    pub fn status(&self, wait_idle: bool) -> Value {
        let mut args = vec!["status", "--json"];
        if wait_idle {
            args.push("--wait-idle");
        }
        let out = self.ctl(&args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json is not JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Stops the supervisor with SIGTERM and waits; returns its exit status and stderr is inherited.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().unwrap();
                let _ = Command::new("fusermount3")
                    .arg("-uz")
                    .arg(&self.mountpoint)
                    .status();
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
    }
}

/// Whether `path` is a mount point now (from /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        // A dead FUSE mount fails to stat (ENOTCONN); treat it as mounted.
        return std::fs::metadata(path).is_err() && path.exists();
    };
    let mut info = String::new();
    std::fs::File::open("/proc/self/mountinfo")
        .and_then(|mut f| f.read_to_string(&mut info))
        .expect("read mountinfo");
    let want = path.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}
