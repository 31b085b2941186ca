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
    /// Written by mountd once its mount is live, removed when it stops: `PID\nMOUNTPOINT\n`. Lets
    /// `musicfsctl status` report the mount when no supervisor runs (under systemd).
    pub fn mountd_file(&self) -> PathBuf {
        self.run_dir().join("mountd.pid")
    }
    /// Written by the supervisor: its pid, the mount point and each worker's pid and restarts.
    pub fn supervisor_file(&self) -> PathBuf {
        self.run_dir().join("supervisor.json")
    }
}

/// mountd's record of itself (see [`StateDir::mountd_file`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountdRecord {
    pub pid: u32,
    pub mountpoint: PathBuf,
}

impl MountdRecord {
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let text = format!("{}\n{}\n", self.pid, self.mountpoint.display());
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }

    pub fn read(path: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(path).ok()?;
        let (pid, mountpoint) = text.split_once('\n')?;
        Some(Self {
            pid: pid.trim().parse().ok()?,
            mountpoint: mountpoint.trim_end_matches('\n').into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountd_record_round_trips_paths_with_spaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mountd.pid");
        let record = MountdRecord {
            pid: 42,
            mountpoint: "/srv/my music".into(),
        };
        record.write(&path).unwrap();
        assert_eq!(MountdRecord::read(&path), Some(record));
    }
}
