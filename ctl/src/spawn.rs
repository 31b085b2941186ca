//! Starting one worker process the way systemd socket activation does: its listening socket as
//! fd 3 with `LISTEN_FDS=1` and `LISTEN_FDNAMES=<name>`. Children get their own process group (a
//! Ctrl-C in the terminal reaches only the supervisor, which then stops them in order) and
//! `SIGTERM` if the supervisor dies without stopping them.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// The fd a socket-activated process finds its first socket on.
const LISTEN_FD: RawFd = 3;

/// How to start one worker. The supervisor keeps `socket` open for its whole life, so a restarted
/// worker gets the same socket and requests queue while it is down.
#[derive(Debug)]
pub struct WorkerSpec {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub socket: Option<UnixListener>,
}

/// Starts the worker; stdout and stderr are inherited (its log goes where ours goes).
pub fn spawn(spec: &WorkerSpec) -> io::Result<Child> {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .process_group(0)
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES");
    if let Some(socket) = &spec.socket {
        let fd = socket.as_raw_fd();
        command
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", spec.name);
        // SAFETY: the closure only makes async-signal-safe system calls (dup2, fcntl).
        unsafe { command.pre_exec(move || pass_as_listen_fd(fd)) };
    }
    // SAFETY: prctl is async-signal-safe.
    unsafe { command.pre_exec(terminate_with_parent) };
    command.spawn()
}

/// In the child, between fork and exec: puts `fd` at fd 3 and lets it survive the exec.
fn pass_as_listen_fd(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fd syscalls on descriptors this (forked) process owns.
    unsafe {
        if fd != LISTEN_FD && libc::dup2(fd, LISTEN_FD) < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = libc::fcntl(LISTEN_FD, libc::F_GETFD);
        if flags < 0 || libc::fcntl(LISTEN_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In the child: ask the kernel for SIGTERM when the supervisor dies (even by SIGKILL), so
/// mountd unmounts and the workers stop instead of running on as orphans.
fn terminate_with_parent() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn child_finds_the_socket_on_fd_3_with_listen_variables() {
        let dir = tempfile::tempdir().unwrap();
        let socket = UnixListener::bind(dir.path().join("w.sock")).unwrap();
        let script =
            "[ -S /proc/self/fd/3 ] && [ \"$LISTEN_FDS\" = 1 ] && [ \"$LISTEN_FDNAMES\" = indexd ]";
        let spec = WorkerSpec {
            name: "indexd",
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            socket: Some(socket),
        };
        let status = spawn(&spec).unwrap().wait().await.unwrap();
        assert!(status.success());
    }
}
