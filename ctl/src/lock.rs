//! The state dir's lock: one supervisor per state dir. The holder keeps an exclusive `flock` on
//! [`StateDir::lock_file`](musicfs_ipc::layout::StateDir::lock_file) for its whole life and writes
//! its pid into the file so a second instance can say who is running.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: Flock<File>,
}

/// Takes the lock without waiting. `Ok(None)` means another process holds it.
pub fn try_acquire(path: &Path) -> io::Result<Option<StateLock>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(file) => file,
        Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
        Err((_, errno)) => return Err(errno.into()),
    };
    file.set_len(0)?;
    (&*file).write_all(format!("{}\n", std::process::id()).as_bytes())?;
    Ok(Some(StateLock { _file: file }))
}

/// The pid written by the lock's holder, if it can be read.
pub fn holder_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("musicfs.lock");
        let first = try_acquire(&path).unwrap().expect("free lock");
        assert!(try_acquire(&path).unwrap().is_none());
        assert_eq!(holder_pid(&path), Some(std::process::id()));
        drop(first);
        assert!(try_acquire(&path).unwrap().is_some());
    }
}
