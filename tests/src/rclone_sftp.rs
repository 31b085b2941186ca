//! A second SFTP server implementation beside OpenSSH, for the SFTP origin tests: `rclone serve
//! sftp` (Go's x/crypto/ssh and pkg/sftp) on 127.0.0.1, with its own host key, one authorised
//! user key and a known_hosts naming it, all in a temp dir. Installed by `scripts/deps.sh test`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::sshd::keygen;

pub struct RcloneSftp {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl RcloneSftp {
    /// Serves `root`. With `resolve_links` (`--copy-links`) the server follows symlinks itself
    /// and shows them as the files and directories they lead to (a loop too); without, it
    /// leaves them out.
    pub fn serving(root: &Path, resolve_links: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (host, user) = (dir.path().join("host_key"), dir.path().join("user_key"));
        keygen(&host);
        keygen(&user);
        std::fs::copy(
            user.with_extension("pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        let port = crate::free_port();
        let host_pub = std::fs::read_to_string(host.with_extension("pub")).expect("host key");
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(
            dir.path().join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", key.join(" ")),
        )
        .expect("known_hosts");
        let mut command = Command::new("rclone");
        command
            .args([
                "serve",
                "sftp",
                "--config",
                "/dev/null",
                "--dir-cache-time",
                "0s",
            ])
            .arg(if resolve_links {
                "--copy-links"
            } else {
                "--skip-links"
            })
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--key")
            .arg(&host)
            .arg("--authorized-keys")
            .arg(dir.path().join("authorized_keys"))
            .arg(root);
        let child = crate::start_server("rclone serve sftp", command, port);
        Self { dir, port, child }
    }

    /// `sftp://musicfs@127.0.0.1:<port>/` (rclone takes any user name with an authorised key).
    pub fn url(&self) -> String {
        format!("sftp://musicfs@127.0.0.1:{}/", self.port)
    }

    pub fn identity_file(&self) -> PathBuf {
        self.dir.path().join("user_key")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }
}

impl Drop for RcloneSftp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
