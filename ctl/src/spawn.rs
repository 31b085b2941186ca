//! Starting one worker process the way systemd socket activation does: its listening sockets
//! from fd 3 on, with `LISTEN_FDS=<n>` and `LISTEN_FDNAMES=<name>:<name>...`. Children get their own process group (a
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

/// How to start one worker. The supervisor keeps `sockets` open for its whole life, so a
/// restarted worker gets the same sockets and requests queue while it is down.
#[derive(Debug)]
pub struct WorkerSpec {
    pub name: &'static str,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Named listening sockets, passed in this order.
    pub sockets: Vec<(&'static str, UnixListener)>,
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
    if !spec.sockets.is_empty() {
        let fds: Vec<RawFd> = spec.sockets.iter().map(|(_, s)| s.as_raw_fd()).collect();
        let names: Vec<&str> = spec.sockets.iter().map(|(name, _)| *name).collect();
        command
            .env("LISTEN_FDS", fds.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"));
        // SAFETY: the closure only makes async-signal-safe system calls (dup, dup2, fcntl).
        unsafe { command.pre_exec(move || pass_as_listen_fds(&fds)) };
    }
    // SAFETY: prctl is async-signal-safe.
    unsafe { command.pre_exec(terminate_with_parent) };
    command.spawn()
}

/// In the child, between fork and exec: puts `fds` at fd 3, 4, ... and lets them survive the
/// exec. Each is first moved above the target range, so no dup2 overwrites a source still needed.
fn pass_as_listen_fds(fds: &[RawFd]) -> io::Result<()> {
    let above = LISTEN_FD + fds.len() as RawFd;
    for (i, &fd) in fds.iter().enumerate() {
        // SAFETY: plain fd syscalls on descriptors this (forked) process owns.
        unsafe {
            let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, above + i as RawFd);
            let target = LISTEN_FD + i as RawFd;
            if high < 0 || libc::dup2(high, target) < 0 {
                return Err(io::Error::last_os_error());
            }
            // dup2 leaves the new descriptor without FD_CLOEXEC: it survives the exec.
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
            sockets: vec![("indexd", socket)],
        };
        let status = spawn(&spec).unwrap().wait().await.unwrap();
        assert!(status.success());
    }

    fn inode(socket: &UnixListener) -> u64 {
        nix::sys::stat::fstat(socket).unwrap().st_ino
    }

    #[tokio::test]
    async fn several_sockets_arrive_in_order_with_their_names_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let data = UnixListener::bind(dir.path().join("d.sock")).unwrap();
        let admin = UnixListener::bind(dir.path().join("a.sock")).unwrap();
        let script = format!(
            "[ \"$(readlink /proc/self/fd/3)\" = 'socket:[{0}]' ] && \
             [ \"$(readlink /proc/self/fd/4)\" = 'socket:[{1}]' ] && \
             [ \"$LISTEN_FDS\" = 2 ] && [ \"$LISTEN_FDNAMES\" = fetchd:fetchd-admin ] && \
             [ $(ls -l /proc/self/fd/ | grep -c 'socket:\\[{0}\\]') = 1 ] && \
             [ $(ls -l /proc/self/fd/ | grep -c 'socket:\\[{1}\\]') = 1 ]",
            inode(&data),
            inode(&admin)
        );
        let spec = WorkerSpec {
            name: "fetchd",
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            sockets: vec![("fetchd", data), ("fetchd-admin", admin)],
        };
        let status = spawn(&spec).unwrap().wait().await.unwrap();
        assert!(status.success());
    }
}
