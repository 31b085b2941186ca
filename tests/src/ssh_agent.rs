//! A real OpenSSH `ssh-agent` on a socket in a temp dir, for the tests of logging in with keys
//! that have a passphrase, and a helper that puts a passphrase on a copy of a key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SshAgent {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SshAgent {
    /// Starts an agent holding no key; waits until its socket exists.
    pub fn new() -> SshAgent {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start ssh-agent (install openssh-client)");
        let agent = SshAgent {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        agent
    }

    /// The agent's socket (what `SSH_AUTH_SOCK` names).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// `ssh-add KEY` (a key without a passphrase).
    pub fn add(&self, key: &Path) {
        let mut add = Command::new("ssh-add");
        add.arg(key).env("SSH_AUTH_SOCK", self.socket());
        crate::run_ok(&mut add, "install openssh-client");
    }

    /// Kills the agent: its socket stops answering.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Default for SshAgent {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies the private key `key` to `to` (no `.pub` beside it) with `passphrase` put on it.
pub fn with_passphrase(key: &Path, to: &Path, passphrase: &str) {
    std::fs::copy(key, to).expect("copy the key");
    let mut keygen = Command::new("ssh-keygen");
    keygen.args(["-q", "-p", "-P", "", "-N", passphrase, "-f"]);
    crate::run_ok(keygen.arg(to), "install openssh-client");
}
