//! The supervisor file (`run/supervisor.json`): what the running supervisor tells
//! `musicfsctl status` about itself and its workers. Rewritten atomically on every change.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What the supervisor is doing with one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    Running,
    /// Died; waiting out the crash-loop delay before the next start.
    Backoff,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub name: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub state: WorkerState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorRecord {
    pub pid: u32,
    pub mountpoint: String,
    pub origins: Vec<String>,
    pub workers: Vec<WorkerRecord>,
}

impl SupervisorRecord {
    pub fn worker(&self, name: &str) -> Option<&WorkerRecord> {
        self.workers.iter().find(|w| w.name == name)
    }
}

/// Writes the record (temp file + rename, so a reader never sees half of it).
pub fn write(path: &Path, record: &SupervisorRecord) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, json)?;
    std::fs::rename(&temp, path)
}

/// Reads the record; `None` if there is none or it cannot be parsed.
pub fn read(path: &Path) -> Option<SupervisorRecord> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// True if a process with this pid exists (signal 0 is delivered or refused for permission).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_uses_lowercase_states() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("supervisor.json");
        let record = SupervisorRecord {
            pid: 42,
            mountpoint: "/mnt/music".into(),
            origins: vec!["/srv/music".into()],
            workers: vec![WorkerRecord {
                name: "fetchd".into(),
                pid: None,
                restarts: 3,
                state: WorkerState::Backoff,
            }],
        };
        write(&path, &record).unwrap();
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"backoff\""));
        assert_eq!(read(&path), Some(record));
        assert_eq!(read(&dir.path().join("missing.json")), None);
    }

    #[test]
    fn own_pid_is_alive() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }
}
