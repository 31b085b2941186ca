//! ssh_config's `Match exec "command"`: the block applies when the command exits with status 0,
//! as in ssh, where it tells a laptop at home (`exec "nc -z 192.168.1.10 22"`) from one away.
//!
//! The command runs with `/bin/sh -c`, no input and its output discarded, for at most
//! [`TIMEOUT`] (a command still running then is stopped and does not hold). It runs once per
//! process: fetchd resolves its SFTP origins before it enters its sandbox (for the files the
//! sandbox admits and the helper's proxy commands), where commands can run, and again inside it,
//! where they cannot; the second resolution gets the first one's answers, so both agree. A
//! fetchd started again (`systemctl restart musicfs-fetchd`; under `musicfsctl mount`, after it
//! ends for any reason) asks again.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a `Match exec` command may run.
pub const TIMEOUT: Duration = Duration::from_secs(10);

static ANSWERS: OnceLock<Mutex<HashMap<String, Result<bool, String>>>> = OnceLock::new();

/// Whether `command` exits with status 0; an error says why it could not be told.
pub fn holds(command: &str) -> Result<bool, String> {
    let answers = ANSWERS.get_or_init(Mutex::default);
    let known = answers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(command)
        .cloned();
    if let Some(answer) = known {
        return answer;
    }
    let answer = run(command, TIMEOUT);
    answers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(command.to_owned())
        .or_insert(answer)
        .clone()
}

fn run(command: &str, timeout: Duration) -> Result<bool, String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.success()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {timeout:?}, stopped"));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_holds_when_it_exits_with_status_zero_and_is_asked_once() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let command = format!("echo run >> {0}; test -e {0}", count.display());
        assert_eq!(holds(&command), Ok(true));
        assert_eq!(holds(&command), Ok(true));
        let runs = std::fs::read_to_string(&count).unwrap();
        assert_eq!(runs.lines().count(), 1, "asked once: {runs:?}");
        assert_eq!(holds("exit 3"), Ok(false));
        assert_eq!(holds("no-such-command-here 2>/dev/null"), Ok(false));
    }

    #[test]
    fn a_command_that_hangs_is_stopped_and_does_not_hold() {
        let started = Instant::now();
        let answer = run("sleep 30", Duration::from_millis(300));
        assert!(answer.unwrap_err().contains("stopped"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
