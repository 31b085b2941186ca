//! A real S3-compatible server (`s3s-fs`, installed by `test.sh`) on 127.0.0.1 for the S3
//! tests. It stores buckets as directories under a temp root and checks SigV4 signatures with
//! the access and secret key given here. Tests put objects in place as files
//! ([`S3Server::bucket_dir`], [`S3Server::put`]), stop and restart it on the same port
//! (failover), and freeze it with SIGSTOP (a server that stops answering mid-read).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::Digest as _;

pub struct S3Server {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    access_key: String,
    secret_key: String,
}

impl S3Server {
    /// Starts a server on a free port with fresh keys and an empty root.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("root")).expect("server root");
        let port = crate::free_port();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut server = Self {
            dir,
            port,
            child: None,
            access_key: "musicfs-test".to_owned(),
            secret_key: format!("test-secret-{}-{nanos:09}", std::process::id()),
        };
        server.start();
        server
    }

    /// The directory buckets are in.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The directory of bucket `name` (created if needed): a file at `<dir>/<key>` is the
    /// object `<key>`.
    pub fn bucket_dir(&self, name: &str) -> PathBuf {
        let dir = self.root().join(name);
        std::fs::create_dir_all(&dir).expect("bucket dir");
        dir
    }

    /// Writes object `key` of `bucket` with its ETag recorded as a PUT would record it
    /// (s3s-fs otherwise hashes the whole file on every GET and HEAD of a file put in place,
    /// which would make large-file timings measure the server).
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) -> PathBuf {
        let path = self.bucket_dir(bucket).join(key);
        std::fs::create_dir_all(path.parent().expect("key has a parent")).expect("key dirs");
        std::fs::write(&path, data).expect("object written");
        let digest = sha2::Sha256::digest(data);
        let etag: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let info = self.root().join(format!(
            ".bucket-{}.object-{}.internal.json",
            base64_url(bucket.as_bytes()),
            base64_url(key.as_bytes())
        ));
        std::fs::write(info, format!("{{\"e_tag\":\"{etag}\"}}")).expect("object info");
        path
    }

    /// `http://127.0.0.1:<port>` (use path-style addressing).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Starts the server (again) on its port and waits until the port accepts connections.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        let log = self.dir.path().join("server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("server log");
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", &self.access_key])
            .args(["--secret-key", &self.secret_key])
            .arg(self.root())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .expect("s3s-fs starts");
        let mut child = child;
        if let Err(why) = crate::wait_listening(&mut child, self.port) {
            self.child = Some(child);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            self.stop();
            panic!("s3s-fs did not start on port {}: {why}\n{text}", self.port);
        }
        self.child = Some(child);
    }

    /// Kills the server (connections drop; the port refuses until [`start`](Self::start)).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and connects still complete, but
    /// nothing is answered until [`resume`](Self::resume).
    pub fn stall(&self) {
        self.signal(Signal::SIGSTOP);
        let child = self.child.as_ref().expect("the server is running");
        crate::wait_stopped(child.id() as i32);
    }

    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        let child = self.child.as_ref().expect("the server is running");
        kill(Pid::from_raw(child.id() as i32), signal).expect("signal the server");
    }
}

impl Default for S3Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `s3s-fs` from `S3S_FS`, the `PATH`, or cargo's bin directory.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("S3S_FS") {
        return path.into();
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("bin"));
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("s3s-fs"))
        .find(|p| p.is_file())
        .expect(
            "s3s-fs not found; install it with \
             `cargo install s3s-fs@0.14.1 --locked --features binary` (test.sh does)",
        )
}

/// Unpadded URL-safe base64 (how s3s-fs names its per-object info files).
fn base64_url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for group in data.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=group.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
        ];
        for (input, expected) in cases {
            assert_eq!(super::base64_url(input.as_bytes()), expected);
        }
        assert_eq!(super::base64_url(&[0xfb, 0xff]), "-_8");
    }
}
