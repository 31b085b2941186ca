//! Taking a worker's listening socket: inherited from systemd or `musicfsctl` through
//! `LISTEN_FDS` (first fd is 3), or bound by the worker itself when started by hand.

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

const SD_LISTEN_FDS_START: RawFd = 3;

/// Returns the inherited listening socket if one was passed, else binds `path`.
pub fn take_or_bind(path: &Path) -> io::Result<UnixListener> {
    match inherited()? {
        Some(listener) => Ok(listener),
        None => bind(path),
    }
}

/// The socket passed by `LISTEN_FDS`, if any. The variables are cleared so that processes this
/// one starts do not think the socket is theirs.
pub fn inherited() -> io::Result<Option<UnixListener>> {
    let pid_matches = match std::env::var("LISTEN_PID") {
        Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
        Err(_) => true,
    };
    let count: i32 = match std::env::var("LISTEN_FDS") {
        Ok(n) => n.parse().unwrap_or(0),
        Err(_) => 0,
    };
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    if !pid_matches || count < 1 {
        return Ok(None);
    }
    let fd = SD_LISTEN_FDS_START;
    let stat = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
        .map_err(io::Error::from)?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::other(
            "LISTEN_FDS is set but fd 3 is not a socket",
        ));
    }
    // SAFETY: fd 3 was handed to this process as its listening socket and nothing else owns it.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(io::Error::from)?;
    Ok(Some(listener))
}

/// Binds a Unix socket at `path` (mode 0660), replacing a stale socket nobody listens on.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is already served by a running process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Converts a std listener into a tokio one (must run inside a runtime).
pub fn into_tokio(listener: UnixListener) -> io::Result<tokio::net::UnixListener> {
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}
