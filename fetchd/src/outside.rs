//! ssh_config's `ProxyCommand`: a command whose stdin and stdout carry an SFTP origin's
//! connection (`ssh -W %h:%p gate`, `cloudflared access ssh --hostname %h`), run as ssh runs
//! it (`sh -c 'exec COMMAND'`).
//!
//! fetchd serves inside a sandbox where such a command could not run, nor work if it did: it
//! reads its own keys and caches and reaches hosts its own way. So before entering the sandbox
//! fetchd starts a helper, its own binary again (`musicfs-fetchd --proxy-helper`), which stays
//! outside the sandbox but runs as fetchd's user. The helper is told the commands fetchd's
//! origins name once, at start, and from then on runs only those, each asked for by its
//! number: it starts the command on one end of a socket pair and hands the other end to
//! fetchd (`SCM_RIGHTS`), and the SSH session runs over it. A fetchd taken over by a hostile
//! server can so start the user's own proxy commands and nothing else. The helper leaves when
//! fetchd does, and a command's connection ends when fetchd closes its end. The commands'
//! errors go to fetchd's log.
//!
//! Without a helper (fetchd's tests and examples run unsandboxed), a command is started
//! directly.

use std::io::{self, IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

use musicfs_ipc::origin::{OriginConfig, OriginUrl};
use musicfs_ipc::sandbox::{self, Policy};
use musicfs_ipc::sftp_target::SftpTarget;
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

/// The first argument that makes `musicfs-fetchd` the helper.
pub const HELPER_ARG: &str = "--proxy-helper";

/// The longest error text the helper sends back.
const MAX_ERROR: usize = 1024;

struct Helper {
    commands: Vec<String>,
    /// A `SOCK_SEQPACKET` socket: a command's number out, its socket (or an error) back.
    control: Mutex<OwnedFd>,
}

static HELPER: OnceLock<Helper> = OnceLock::new();

/// The proxy commands the SFTP origins among `origins` name (each once).
pub fn commands(origins: &[OriginConfig]) -> Vec<String> {
    let home = std::env::home_dir();
    let mut commands = Vec::new();
    for origin in origins {
        if !matches!(origin.parsed(), Ok(OriginUrl::Sftp { .. })) {
            continue;
        }
        let target = SftpTarget::resolve_without_broken_config(origin, home.as_deref());
        if let Some(command) = target.ok().and_then(|t| t.proxy_command) {
            if !commands.contains(&command) {
                commands.push(command);
            }
        }
    }
    commands
}

/// Starts the helper for `commands` (none: no helper), as `user` when started as root. Call it
/// before entering the sandbox, while fetchd has one thread.
pub fn start_helper(commands: Vec<String>, user: Option<&str>) -> io::Result<()> {
    if commands.is_empty() {
        return Ok(());
    }
    let (ours, theirs) = socket::socketpair(
        socket::AddressFamily::Unix,
        socket::SockType::SeqPacket,
        None,
        socket::SockFlag::SOCK_CLOEXEC,
    )?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg(HELPER_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(theirs))
        .spawn()?;
    // One line for the user, one per command: ssh_config lines hold no line breaks.
    let order = std::iter::once(user.unwrap_or(""))
        .chain(commands.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    let mut stdin = child.stdin.take().expect("piped");
    io::Write::write_all(&mut stdin, order.as_bytes())?;
    drop(stdin);
    let helper = Helper {
        commands,
        control: Mutex::new(ours),
    };
    if HELPER.set(helper).is_err() {
        return Err(io::Error::other("the proxy helper was started twice"));
    }
    Ok(())
}

/// A connection to a host through `command`: what it reads from its stdin and writes to its
/// stdout.
pub fn connect(command: &str) -> io::Result<UnixStream> {
    let Some(helper) = HELPER.get() else {
        let (stream, mut child) = spawn(command)?;
        std::thread::spawn(move || child.wait());
        return Ok(stream);
    };
    let Some(number) = helper.commands.iter().position(|c| c == command) else {
        return Err(io::Error::other(
            "the ProxyCommand changed since fetchd started; restart it to use the new one",
        ));
    };
    let control = helper
        .control
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let gone = |e: nix::Error| {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("the proxy helper: {e}"),
        )
    };
    let number = (number as u32).to_le_bytes();
    socket::send(control.as_raw_fd(), &number, MsgFlags::empty()).map_err(gone)?;
    let mut text = [0u8; MAX_ERROR + 1];
    let mut space = nix::cmsg_space!(RawFd);
    let mut iov = [IoSliceMut::new(&mut text)];
    let message = socket::recvmsg::<()>(
        control.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(gone)?;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs().map_err(gone)? {
        if let ControlMessageOwned::ScmRights(rights) = cmsg {
            fds.extend(rights);
        }
    }
    let len = message.bytes;
    // SAFETY: each fd came with this message and is ours alone to own (and close).
    let mut owned = fds
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    match (len, owned.next()) {
        (1, Some(fd)) if text[0] == 0 => Ok(UnixStream::from(fd)),
        (0, _) => Err(gone(nix::Error::EPIPE)),
        _ => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            String::from_utf8_lossy(&text[1..len]).into_owned(),
        )),
    }
}

/// Starts `command` on one end of a socket pair; returns the other end.
fn spawn(command: &str) -> io::Result<(UnixStream, std::process::Child)> {
    let (ours, theirs) = UnixStream::pair()?;
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::from(OwnedFd::from(theirs.try_clone()?)))
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start /bin/sh: {e}")))?;
    Ok((ours, child))
}

/// The helper's life: reads its order, becomes fetchd's user, then runs the commands asked
/// for until fetchd goes away.
pub fn helper_main() -> ExitCode {
    let mut order = String::new();
    if let Err(e) = io::stdin().read_to_string(&mut order) {
        eprintln!("musicfs-fetchd proxy helper: reading its order: {e}");
        return ExitCode::FAILURE;
    }
    let mut lines = order.lines();
    let user = lines.next().filter(|u| !u.is_empty()).map(str::to_owned);
    let commands: Vec<&str> = lines.collect();
    if let Err(e) = sandbox::enter(Policy::proxy_helper(user)) {
        eprintln!("musicfs-fetchd proxy helper: {e}");
        return ExitCode::FAILURE;
    }
    // The commands' processes are reaped by the kernel: nobody waits for them here.
    // SAFETY: no handler is installed; ignoring SIGCHLD only changes how children end.
    let ignored = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    if let Err(e) = ignored {
        eprintln!("musicfs-fetchd proxy helper: {e}");
    }
    let control = io::stdout().as_raw_fd();
    loop {
        let mut number = [0u8; 4];
        match socket::recv(control, &mut number, MsgFlags::empty()) {
            Ok(4) => {}
            // fetchd is gone (or spoke out of turn): so is the helper.
            _ => return ExitCode::SUCCESS,
        }
        let command = commands.get(u32::from_le_bytes(number) as usize);
        let started = match command {
            Some(command) => spawn(command).map(|(stream, _)| stream),
            None => Err(io::Error::other("no such ProxyCommand")),
        };
        let sent = match &started {
            Ok(stream) => {
                let fds = [stream.as_raw_fd()];
                let rights = [ControlMessage::ScmRights(&fds)];
                let iov = [IoSlice::new(&[0])];
                socket::sendmsg::<()>(control, &iov, &rights, MsgFlags::empty(), None)
            }
            Err(e) => {
                let mut text = format!("\x01{e}").into_bytes();
                text.truncate(MAX_ERROR + 1);
                socket::send(control, &text, MsgFlags::empty())
            }
        };
        if sent.is_err() {
            return ExitCode::SUCCESS;
        }
    }
}
