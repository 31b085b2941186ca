//! Commands fetchd has run outside its sandbox, where they can work: ssh_config's
//! `ProxyCommand` (`ssh -W %h:%p gate`, `cloudflared access ssh --hostname %h`), over whose
//! stdin and stdout an SFTP origin's connection runs, as ssh runs it (`sh -c 'exec COMMAND'`),
//! and an AWS profile's `credential_process` (`aws configure export-credentials --format
//! process`, aws-vault, 1Password), whose output is an S3 origin's temporary keys, and
//! ssh_config's `Match exec` commands, asked again when the machine's network changes
//! (`net_watch.rs`).
//!
//! Inside the sandbox such a command could neither run (no execute rights) nor work (it reads
//! its own keys, caches and sockets, and reaches hosts its own way). So before entering it,
//! fetchd starts a helper, its own binary again (`musicfs-fetchd --outside-helper`), which
//! stays outside the sandbox but runs as fetchd's user. The helper is told the commands
//! fetchd's origins name once, at start, and from then on runs only those, each asked for by
//! its number, each on a thread of its own (a credential process waiting for its user to
//! unlock a password manager holds up no proxy), its answer sent back on a socket fetchd sends
//! with the job: for a proxy command, one end of a socket pair whose other end runs the
//! command (`SCM_RIGHTS`); for a credential process, its output; for a `Match exec`, its exit
//! status. A fetchd taken over by a hostile server can so start the user's own commands and
//! nothing else. The helper leaves when fetchd does; a proxy's connection ends when fetchd
//! closes its end. The commands' errors go to fetchd's log.
//!
//! Without a helper (fetchd's tests and examples run unsandboxed), a command is run directly.

use std::io::{self, IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use musicfs_ipc::origin::{OriginConfig, OriginUrl};
use musicfs_ipc::s3_role::RoleSource;
use musicfs_ipc::s3_target::S3Target;
use musicfs_ipc::sandbox::{self, Policy};
use musicfs_ipc::sftp_target::SftpTarget;
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

/// The first argument that makes `musicfs-fetchd` the helper.
const HELPER_ARG: &str = "--outside-helper";

/// The longest error text the helper sends back.
const MAX_ERROR: usize = 1024;
/// The most a credential process may print.
const MAX_OUTPUT: usize = 64 << 10;
/// How long a credential process may take before it is stopped.
const OUTPUT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long fetchd waits for the helper's answer to a job (which stops a credential process
/// after 30 s and a `Match exec` command after 10).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(40);

/// A command to run outside the sandbox, and what comes back of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outside {
    /// A `ProxyCommand`: a connection over its stdin and stdout.
    Proxy(String),
    /// A `credential_process`: what it prints.
    Output(String),
    /// A `Match exec` command: whether it exits with status 0.
    Exec(String),
}

impl Outside {
    /// One line of the helper's order.
    fn line(&self) -> String {
        match self {
            Outside::Proxy(command) => format!("proxy {command}"),
            Outside::Output(command) => format!("output {command}"),
            Outside::Exec(command) => format!("exec {command}"),
        }
    }

    fn from_line(line: &str) -> Option<Self> {
        match line.split_once(' ')? {
            ("proxy", command) => Some(Outside::Proxy(command.to_owned())),
            ("output", command) => Some(Outside::Output(command.to_owned())),
            ("exec", command) => Some(Outside::Exec(command.to_owned())),
            _ => None,
        }
    }
}

struct Helper {
    commands: Vec<Outside>,
    /// A `SOCK_SEQPACKET` socket: a command's number out, with the socket its answer is to
    /// come back on.
    control: Mutex<OwnedFd>,
}

static HELPER: OnceLock<Helper> = OnceLock::new();

/// What the origins among `origins` need run outside: the proxy commands of SFTP origins, the
/// `Match exec` commands their ssh_config asked (run once already, while resolving them), and
/// the credential processes of S3 origins (each once).
pub fn commands(origins: &[OriginConfig]) -> Vec<Outside> {
    let home = std::env::home_dir();
    let env = |name: &str| std::env::var(name).ok();
    let mut commands = Vec::new();
    for origin in origins {
        let command = match origin.parsed() {
            Ok(OriginUrl::Sftp { .. }) => {
                let target = SftpTarget::resolve_without_broken_config(origin, home.as_deref());
                // Only the farthest jump host's, if any, is run: the others are reached
                // through it.
                let proxy = target.ok().and_then(|t| {
                    let command = t.hops().find_map(|hop| hop.proxy_command.clone());
                    command
                });
                proxy.map(Outside::Proxy)
            }
            Ok(OriginUrl::S3 { .. }) => {
                let target = S3Target::resolve(origin, home.as_deref(), &env);
                target.ok().and_then(|t| {
                    // A role's source may be a credential process too.
                    let role = t.role.as_ref().and_then(|role| {
                        role.sources().find_map(|source| match source {
                            RoleSource::Process(command) => Some(command.clone()),
                            _ => None,
                        })
                    });
                    t.credential_process.or(role).map(Outside::Output)
                })
            }
            _ => None,
        };
        if let Some(command) = command.filter(|c| !commands.contains(c)) {
            commands.push(command);
        }
    }
    let asked = musicfs_ipc::ssh_match_local::exec_commands();
    commands.extend(asked.into_iter().map(Outside::Exec));
    commands
}

/// Starts the helper for what `origins` need run outside (nothing: no helper), as `user` when
/// started as root. Call it before entering the sandbox, while fetchd has one thread.
pub fn start(origins: &[OriginConfig], user: Option<&str>) -> io::Result<()> {
    // ssh_config's `Match exec` commands run as the helper will run them again: as `user`.
    let root = nix::unistd::geteuid().is_root();
    if let Some(name) = user.filter(|_| root) {
        if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
            let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
            musicfs_ipc::ssh_match_local::run_as(uid, gid);
        }
    }
    start_helper(commands(origins), user)
}

fn start_helper(commands: Vec<Outside>, user: Option<&str>) -> io::Result<()> {
    if commands.is_empty() {
        return Ok(());
    }
    let (ours, theirs) = seqpacket_pair()?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg(HELPER_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(theirs))
        .spawn()?;
    // One line for the user, one per command: config lines hold no line breaks.
    let order = std::iter::once(user.unwrap_or("").to_owned())
        .chain(commands.iter().map(Outside::line))
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
        return Err(io::Error::other("the outside helper was started twice"));
    }
    Ok(())
}

/// A connection to a host through the proxy `command`: what it reads from its stdin and
/// writes to its stdout.
pub fn connect(command: &str) -> io::Result<UnixStream> {
    let job = Outside::Proxy(command.to_owned());
    let Some(helper) = HELPER.get() else {
        return spawn(command);
    };
    let (_, fd) = helper.ask(&job, 1)?;
    fd.map(UnixStream::from)
        .ok_or_else(|| io::Error::other("the outside helper sent no connection"))
}

/// What the credential process `command` prints.
pub fn output(command: &str) -> io::Result<Vec<u8>> {
    let job = Outside::Output(command.to_owned());
    match HELPER.get() {
        Some(helper) => Ok(helper.ask(&job, MAX_OUTPUT)?.0),
        None => run(command),
    }
}

/// Whether the `Match exec` command `command` exits with status 0 now.
pub fn exec(command: &str) -> io::Result<bool> {
    let job = Outside::Exec(command.to_owned());
    let answer = match HELPER.get() {
        Some(helper) => helper.ask(&job, 1)?.0,
        None => return musicfs_ipc::ssh_match_local::run_exec(command).map_err(io::Error::other),
    };
    Ok(answer == [1])
}

impl Helper {
    /// Has the helper run `job`: its answer (at most `most` bytes) and the fd that came with it.
    fn ask(&self, job: &Outside, most: usize) -> io::Result<(Vec<u8>, Option<OwnedFd>)> {
        let Some(number) = self.commands.iter().position(|c| c == job) else {
            return Err(io::Error::other(
                "the command is not the one fetchd started with; restart fetchd to use it",
            ));
        };
        let gone = |e: nix::Error| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("the outside helper: {e}"),
            )
        };
        // The answer comes back on a socket of this job's own, so that jobs run side by side
        // and one that takes long (a credential process waiting for its user) holds up no other.
        let (reply, theirs) = seqpacket_pair()?;
        let timeout = nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0);
        socket::setsockopt(&reply, socket::sockopt::ReceiveTimeout, &timeout)?;
        {
            let control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
            let number = (number as u32).to_le_bytes();
            let fds = [theirs.as_raw_fd()];
            let rights = [ControlMessage::ScmRights(&fds)];
            let iov = [IoSlice::new(&number)];
            socket::sendmsg::<()>(control.as_raw_fd(), &iov, &rights, MsgFlags::empty(), None)
                .map_err(gone)?;
        }
        drop(theirs);
        let mut answer = vec![0u8; 1 + most.max(MAX_ERROR)];
        let mut space = nix::cmsg_space!(RawFd);
        let mut iov = [IoSliceMut::new(&mut answer)];
        let message = socket::recvmsg::<()>(
            reply.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| match e {
            nix::Error::EAGAIN => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the outside helper gave no answer within {ANSWER_TIMEOUT:?}"),
            ),
            e => gone(e),
        })?;
        let mut fds = Vec::new();
        for cmsg in message.cmsgs().map_err(gone)? {
            if let ControlMessageOwned::ScmRights(rights) = cmsg {
                fds.extend(rights);
            }
        }
        let len = message.bytes;
        // SAFETY: each fd came with this message and is ours alone to own (and close).
        let mut fds: Vec<OwnedFd> = fds
            .into_iter()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        let fd = fds.pop();
        answer.truncate(len);
        match answer.first() {
            Some(0) => Ok((answer.split_off(1), fd)),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                String::from_utf8_lossy(&answer[1..]).into_owned(),
            )),
            None => Err(gone(nix::Error::EPIPE)),
        }
    }
}

fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let pair = socket::socketpair(
        socket::AddressFamily::Unix,
        socket::SockType::SeqPacket,
        None,
        socket::SockFlag::SOCK_CLOEXEC,
    )?;
    Ok(pair)
}

/// Starts `command` on one end of a socket pair; returns the other end. A thread waits for the
/// command to end, so that it leaves no zombie.
fn spawn(command: &str) -> io::Result<UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::from(OwnedFd::from(theirs.try_clone()?)))
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start /bin/sh: {e}")))?;
    std::thread::spawn(move || child.wait());
    Ok(ours)
}

/// Runs the credential process `command` to its end, for at most [`OUTPUT_TIMEOUT`]: what
/// it printed, or why it failed.
fn run(command: &str) -> io::Result<Vec<u8>> {
    run_for(command, OUTPUT_TIMEOUT)
}

fn run_for(command: &str, timeout: Duration) -> io::Result<Vec<u8>> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start /bin/sh: {e}")))?;
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(MAX_OUTPUT as u64 + 1).read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read_all(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read_all(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{command}: no answer within {timeout:?}, stopped"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (stdout.join(), stderr.join());
    let (stdout, stderr) = (stdout.unwrap_or_default(), stderr.unwrap_or_default());
    // (One that printed too much may have ended on the closed pipe.)
    if stdout.len() > MAX_OUTPUT {
        return Err(io::Error::other(format!(
            "{command}: printed over {MAX_OUTPUT} bytes"
        )));
    }
    if !status.success() {
        // The end of what it said on stderr (its stdout may hold keys: never shown).
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr = stderr.trim();
        let start = stderr.char_indices().rev().nth(299).map_or(0, |(at, _)| at);
        let said = &stderr[start..];
        return Err(io::Error::other(format!("{command}: {status}: {said}")));
    }
    Ok(stdout)
}

/// When fetchd was started as the helper ([`HELPER_ARG`]), the helper's life to its end.
pub fn helper_if_asked() -> Option<ExitCode> {
    let asked = std::env::args_os().nth(1).is_some_and(|a| a == HELPER_ARG);
    asked.then(helper_main)
}

/// The helper's life: reads its order, becomes fetchd's user, then runs the commands asked
/// for until fetchd goes away.
fn helper_main() -> ExitCode {
    let mut order = String::new();
    if let Err(e) = io::stdin().read_to_string(&mut order) {
        eprintln!("musicfs-fetchd outside helper: reading its order: {e}");
        return ExitCode::FAILURE;
    }
    let mut lines = order.lines();
    let user = lines.next().filter(|u| !u.is_empty()).map(str::to_owned);
    let commands: Vec<Option<Outside>> = lines.map(Outside::from_line).collect();
    if let Err(e) = sandbox::enter(Policy::outside_helper(user)) {
        eprintln!("musicfs-fetchd outside helper: {e}");
        return ExitCode::FAILURE;
    }
    let commands = std::sync::Arc::new(commands);
    let control = io::stdout().as_raw_fd();
    loop {
        let mut number = [0u8; 4];
        let mut space = nix::cmsg_space!(RawFd);
        let mut iov = [IoSliceMut::new(&mut number)];
        let Ok(message) = socket::recvmsg::<()>(
            control,
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) else {
            return ExitCode::SUCCESS;
        };
        let mut fds = Vec::new();
        if let Ok(cmsgs) = message.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(rights) = cmsg {
                    fds.extend(rights);
                }
            }
        }
        // SAFETY: each fd came with this message and is ours alone to own (and close).
        let mut fds: Vec<OwnedFd> = fds
            .into_iter()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        let (4, Some(reply)) = (message.bytes, fds.pop()) else {
            // fetchd is gone (or spoke out of turn): so is the helper.
            return ExitCode::SUCCESS;
        };
        let (commands, number) = (commands.clone(), u32::from_le_bytes(number) as usize);
        std::thread::spawn(move || {
            let job = commands.get(number).and_then(Option::as_ref);
            // An answer nobody waits for any more (fetchd gave up, or is gone) is dropped.
            let _ = answer(reply.as_raw_fd(), job);
        });
    }
}

/// Runs `job` and sends its answer (or why it failed) on `reply`.
fn answer(reply: RawFd, job: Option<&Outside>) -> nix::Result<usize> {
    match job {
        Some(Outside::Proxy(command)) => match spawn(command) {
            Ok(stream) => {
                let fds = [stream.as_raw_fd()];
                let rights = [ControlMessage::ScmRights(&fds)];
                let iov = [IoSlice::new(&[0])];
                socket::sendmsg::<()>(reply, &iov, &rights, MsgFlags::empty(), None)
            }
            Err(e) => refuse(reply, &e),
        },
        Some(Outside::Output(command)) => match run(command) {
            Ok(mut output) => {
                output.insert(0, 0);
                socket::send(reply, &output, MsgFlags::empty())
            }
            Err(e) => refuse(reply, &e),
        },
        Some(Outside::Exec(command)) => match musicfs_ipc::ssh_match_local::run_exec(command) {
            Ok(holds) => socket::send(reply, &[0, u8::from(holds)], MsgFlags::empty()),
            Err(e) => refuse(reply, &io::Error::other(e)),
        },
        None => refuse(reply, &io::Error::other("no such command")),
    }
}

/// Sends `error` back instead of an answer.
fn refuse(reply: RawFd, error: &io::Error) -> nix::Result<usize> {
    let mut text = format!("\x01{error}").into_bytes();
    text.truncate(MAX_ERROR + 1);
    socket::send(reply, &text, MsgFlags::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_process_gives_its_output_or_why_it_failed_in_bounded_time() {
        assert_eq!(
            run("printf '{\"Version\": 1}'").unwrap(),
            br#"{"Version": 1}"#
        );
        let err = run("printf 'sec%s' ret-output; echo 'session expired' >&2; exit 3").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("exit status: 3") && text.contains("session expired"),
            "{text}"
        );
        assert!(
            !text.contains("secret-output"),
            "stdout is never shown: {text}"
        );
        let err = run("head -c 70000 /dev/zero").unwrap_err();
        assert!(err.to_string().contains("printed over"), "{err}");
        let started = Instant::now();
        let err = run_for("sleep 30", Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn commands_name_their_kind_in_the_order() {
        for job in [
            Outside::Proxy("ssh -W %h:%p gate".into()),
            Outside::Output("aws configure export-credentials --format process".into()),
            Outside::Exec("nc -z 192.168.1.10 22".into()),
        ] {
            assert_eq!(Outside::from_line(&job.line()), Some(job));
        }
        assert_eq!(Outside::from_line("run rm -rf /"), None);
    }
}
