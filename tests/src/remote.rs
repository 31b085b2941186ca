//! What the end-to-end tests of remote origins share: config snippets for an origin on the
//! test sshd or S3 server, a mount from a config text, and reading its status.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::corpus::corpus_dir;
use crate::mount::Mount;
use crate::s3server::S3Server;
use crate::sshd::Sshd;

/// The bucket the tests' S3 origins read.
pub const BUCKET: &str = "music";

/// A config entry for an SFTP origin on `sshd` serving `dir`, logging in with `key`, listed
/// again at the default interval, with a 2 s timeout.
pub fn sftp_origin_with_key(sshd: &Sshd, dir: &Path, key: &Path) -> String {
    format!(
        "[[origins]]\nurl = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\
         timeout_seconds = 2\n",
        sshd.url(dir),
        key.display(),
        sshd.known_hosts().display()
    )
}

/// An `[[origins]]` table for `dir` on the test sshd, its key and known_hosts, listed every
/// second, with a 2 s timeout.
pub fn sftp_origin(sshd: &Sshd, dir: &Path, priority: i32) -> String {
    format!(
        "[[origins]]\nurl = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\
         priority = {priority}\nscan_interval_seconds = 1\ntimeout_seconds = 2\n",
        sshd.url(dir),
        sshd.identity_file().display(),
        sshd.known_hosts().display()
    )
}

/// An `[[origins]]` table for `prefix` in [`BUCKET`] on the test S3 server, with its keys,
/// listed every second, with a 2 s timeout.
pub fn s3_origin(s3: &S3Server, prefix: &str, priority: i32) -> String {
    format!(
        "[[origins]]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"{}\"\npath_style = true\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\
         priority = {priority}\nscan_interval_seconds = 1\ntimeout_seconds = 2\n",
        s3.endpoint(),
        s3.access_key(),
        s3.secret_key()
    )
}

/// Mounts with the given config text and no command-line origins.
pub fn mount_with(tmp: &Path, config: &str) -> Mount {
    mount_with_env(tmp, config, &[])
}

/// [`mount_with`], with `env` set for `musicfsctl` and its workers.
pub fn mount_with_env(tmp: &Path, config: &str, env: &[(&str, &Path)]) -> Mount {
    let path = tmp.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mnt = tmp.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let cfg = path.to_str().unwrap();
    Mount::start_with_env(&[], &tmp.join("state"), &mnt, &["--config", cfg], env)
}

/// The entry of `status` (as `musicfsctl status --json` gives it) of the origin whose name
/// starts with `prefix`.
pub fn origin<'a>(status: &'a Value, prefix: &str) -> &'a Value {
    status["origins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} origin in {status}"))
}

/// Waits (up to 10 s) until the origin whose name starts with `prefix` is down; returns the
/// error status gives for it, and the whole status.
pub fn wait_down(mount: &Mount, prefix: &str) -> (String, Value) {
    wait_for("the origin is down", Duration::from_secs(10), || {
        origin(&mount.status(false), prefix)["up"] == false
    });
    let status = mount.status(false);
    let error = origin(&status, prefix)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (error, status)
}

/// Waits until `ready`, checking every 100 ms; fails the test after `within`. Returns how long
/// it took.
pub fn wait_for(what: &str, within: Duration, ready: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// Reads `len` bytes at `offset` of a file with the kernel's read-ahead off.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: a valid open fd.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    assert_eq!(rc, 0);
    let mut buf = vec![0; len];
    let n = file.read_at(&mut buf, offset).unwrap();
    buf.truncate(n);
    buf
}

/// `bytes` parsed as JSON.
pub fn json_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The core-format tagged corpus files (flac, mp3, ogg, opus, m4a), copied to `dir`.
pub fn corpus_copy(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let corpus = corpus_dir();
    let rows = crate::corpus::read_manifest(&corpus.join("MANIFEST.tsv"));
    let mut out = BTreeMap::new();
    for row in rows {
        let format = row.get("format");
        if row.get("category") != "tagged"
            || !["flac", "mp3", "ogg", "opus", "m4a"].contains(&format)
        {
            continue;
        }
        let rel = row.get("path").to_owned();
        let bytes = std::fs::read(corpus.join(&rel)).unwrap();
        let to = dir.join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, &bytes).unwrap();
        out.insert(rel, bytes);
    }
    out
}

/// Puts the first `n` tracks of a noise library into the bucket under `lib/`.
pub fn put_tracks(s3: &S3Server, library: &Path, n: usize) {
    for i in 1..=n {
        let name = format!("noise-{i:02}.flac");
        let track = std::fs::read(library.join(&name)).unwrap();
        s3.put(BUCKET, &format!("lib/{name}"), &track);
    }
}

/// How many lines `path` holds (none if it is not there): how often a test's script ran.
pub fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}
