//! Web servers other than nginx that people publish a music folder with, run on 127.0.0.1 for
//! the HTTP origin tests: `rclone serve http` (HTML listings, ranges, no ETag), `rclone serve
//! webdav` (WebDAV, as Nextcloud speaks it) and Python's `http.server` (HTML listings, no
//! ranges). Both are installed by `scripts/deps.sh test`.

use std::path::Path;
use std::process::{Child, Command};

/// A server process publishing a folder at `/`; killed when dropped.
pub struct WebServer {
    child: Child,
    port: u16,
    /// Holds `log`, where rclone logs each request (`-v`).
    dir: tempfile::TempDir,
}

impl WebServer {
    /// `rclone serve http --dir-cache-time 0s ROOT` (by default rclone reports a file's old
    /// size and date for up to five minutes after it changed).
    pub fn rclone(root: &Path) -> Self {
        Self::start("rclone", |port, log| {
            let mut c = Command::new("rclone");
            c.args(["serve", "http", "--config", "/dev/null"])
                .args(["--dir-cache-time", "0s", "-v", "--log-file"])
                .arg(log)
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"))
                .arg(root);
            c
        })
    }

    /// `rclone serve webdav --dir-cache-time 0s ROOT`, asking for `(user, password)` if given.
    pub fn rclone_webdav(root: &Path, login: Option<(&str, &str)>) -> Self {
        Self::start("rclone", |port, log| {
            let mut c = Command::new("rclone");
            c.args(["serve", "webdav", "--config", "/dev/null"])
                .args(["--dir-cache-time", "0s", "-v", "--log-file"])
                .arg(log)
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"));
            if let Some((user, password)) = login {
                c.args(["--user", user, "--pass", password]);
            }
            c.arg(root);
            c
        })
    }

    /// `python3 -m http.server --directory ROOT`.
    pub fn python(root: &Path) -> Self {
        Self::start("python3", |port, _| {
            let mut c = Command::new("python3");
            c.args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
                .arg(root)
                .arg(port.to_string());
            c
        })
    }

    /// Runs `command(port, log file)` and waits until it listens on the port.
    fn start(program: &str, command: impl FnOnce(u16, &Path) -> Command) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = crate::free_port();
        let child = crate::start_server(program, command(port, &dir.path().join("log")), port);
        Self { child, port, dir }
    }

    /// What the server logged so far (rclone: a line per request, `PROPFIND from ...`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
