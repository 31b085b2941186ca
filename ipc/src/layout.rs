//! Where things live under a state dir. Every process derives paths from here so they agree.

use std::path::{Path, PathBuf};

pub const FETCHD: &str = "fetchd";
pub const INDEXD: &str = "indexd";
pub const PLUGIND: &str = "plugind";
pub const WORKERS: [&str; 3] = [FETCHD, INDEXD, PLUGIND];
/// fetchd's admin socket (`LISTEN_FDNAMES` name and file stem).
pub const FETCHD_ADMIN: &str = "fetchd-admin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `MUSICFS_STATE_DIR`, else `/var/lib/musicfs` for root, else `$XDG_STATE_HOME/musicfs`
    /// (`~/.local/state/musicfs`).
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("MUSICFS_STATE_DIR") {
            return dir.into();
        }
        if nix::unistd::geteuid().is_root() {
            return "/var/lib/musicfs".into();
        }
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
            return PathBuf::from(dir).join("musicfs");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
        PathBuf::from(home).join(".local/state/musicfs")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn catalog(&self) -> PathBuf {
        self.root.join("catalog")
    }
    pub fn chunks(&self) -> PathBuf {
        self.root.join("chunks")
    }
    /// indexd's search index (the only path indexd may write).
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    /// Plugins plugind loads (read-only to it).
    pub fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn socket(&self, service: &str) -> PathBuf {
        self.run_dir().join(format!("{service}.sock"))
    }
    /// Held (flock) by the running supervisor: one instance per state dir.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("musicfs.lock")
    }
    /// Written by the supervisor: its pid, the mount point and each worker's pid and restarts.
    pub fn supervisor_file(&self) -> PathBuf {
        self.run_dir().join("supervisor.json")
    }
}
