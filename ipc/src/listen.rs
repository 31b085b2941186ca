//! Taking a worker's listening sockets: inherited from systemd or `musicfsctl` through
//! `LISTEN_FDS` (first fd is 3, names in `LISTEN_FDNAMES`), or bound by the worker itself when
//! started by hand.

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

const SD_LISTEN_FDS_START: RawFd = 3;

/// Returns the inherited listening socket if one was passed, else binds `path`.
pub fn take_or_bind(path: &Path) -> io::Result<UnixListener> {
    match inherited()?.into_iter().next() {
        Some((_, listener)) => Ok(listener),
        None => bind(path),
    }
}

/// One listener per `(name, path)`: the inherited socket of that name (`LISTEN_FDNAMES`), or,
/// when a single unnamed-or-first socket was passed, that one for the first name; every socket
/// not passed is bound at its path.
pub fn take_or_bind_named(wanted: &[(&str, &Path)]) -> io::Result<Vec<UnixListener>> {
    let mut passed = inherited()?;
    let mut out = Vec::with_capacity(wanted.len());
    for (i, (name, path)) in wanted.iter().enumerate() {
        let by_name = passed.iter().position(|(n, _)| n == name);
        let by_order = (i == 0 && passed.len() == 1).then_some(0);
        match by_name.or(by_order) {
            Some(at) => out.push(passed.remove(at).1),
            None => out.push(bind(path)?),
        }
    }
    Ok(out)
}

/// The sockets passed by `LISTEN_FDS`, with their `LISTEN_FDNAMES` names. The variables are
/// cleared so that processes this one starts do not think the sockets are theirs.
pub fn inherited() -> io::Result<Vec<(String, UnixListener)>> {
    let pid_matches = match std::env::var("LISTEN_PID") {
        Ok(pid) => pid.parse::<u32>().ok() == Some(std::process::id()),
        Err(_) => true,
    };
    let count: i32 = match std::env::var("LISTEN_FDS") {
        Ok(n) => n.parse().unwrap_or(0),
        Err(_) => 0,
    };
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    if !pid_matches || count < 1 {
        return Ok(Vec::new());
    }
    let mut names = names.split(':');
    (0..count)
        .map(|i| {
            let fd = SD_LISTEN_FDS_START + i;
            let name = names.next().unwrap_or("unknown").to_owned();
            Ok((name, take_fd(fd)?))
        })
        .collect()
}

fn take_fd(fd: RawFd) -> io::Result<UnixListener> {
    // SAFETY: the fd is only inspected here; ownership is taken below once it is a socket.
    let stat = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
        .map_err(io::Error::from)?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::other(format!(
            "LISTEN_FDS is set but fd {fd} is not a socket"
        )));
    }
    // SAFETY: the fd was handed to this process as a listening socket and nothing else owns it.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(io::Error::from)?;
    Ok(listener)
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
