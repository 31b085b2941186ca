//! ssh_config's `Match` criteria that ask this machine, answered as ssh answers them, each once
//! per process: fetchd resolves its SFTP origins before it enters its sandbox (for the files the
//! sandbox admits and the helper's proxy commands), where commands can run, and again inside
//! it, where they cannot; the second resolution gets the first one's answers, so both agree.
//! Both tell a laptop at home from one away: when its interfaces' addresses change, fetchd asks
//! again ([`changed`]: `exec` through its outside helper) and restarts if an answer is not the
//! same, so that its origins are resolved anew (`fetchd/src/net_watch.rs`).
//!
//! - `exec "command"` holds when the command exits with status 0. It runs with `/bin/sh -c`,
//!   no input and its output discarded, for at most [`TIMEOUT`] (a command still running then
//!   is stopped and does not hold).
//! - `localnetwork 192.168.1.0/24,fd00::/8` holds when an interface that is up has an address
//!   in one of the networks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a `Match exec` command may run.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What this process was told, kept so that later resolutions agree and a moved machine can
/// be noticed ([`changed`]).
#[derive(Default)]
struct Memo {
    /// `Match exec` commands and their answers.
    exec: HashMap<String, Result<bool, String>>,
    /// `Match localnetwork` lists and their answers.
    networks: HashMap<String, Result<bool, String>>,
    /// The interfaces' addresses the lists were matched against.
    addresses: Option<Result<Vec<IpAddr>, String>>,
}

static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();

/// The user and group `Match exec` commands run as, once set ([`run_as`]).
static RUN_AS: OnceLock<(u32, u32)> = OnceLock::new();

/// Runs `Match exec` commands as `uid` and `gid` (and no other group) from now on: a process
/// started as root that will switch to another user answers as that user, as its outside
/// helper, which runs as that user, answers later. Only the first call counts.
pub fn run_as(uid: u32, gid: u32) {
    let _ = RUN_AS.set((uid, gid));
}

fn memo() -> std::sync::MutexGuard<'static, Memo> {
    MEMO.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `command` exits with status 0; an error says why it could not be told.
pub fn holds(command: &str) -> Result<bool, String> {
    if let Some(answer) = memo().exec.get(command) {
        return answer.clone();
    }
    let answer = run_exec(command);
    memo()
        .exec
        .entry(command.to_owned())
        .or_insert(answer)
        .clone()
}

/// Whether an interface that is up has an address in one of `networks` (comma-separated,
/// `address/bits`; a bare address is the one host); an error says what is wrong.
pub fn on_network(networks: &str) -> Result<bool, String> {
    let mut memo = memo();
    if let Some(answer) = memo.networks.get(networks) {
        return answer.clone();
    }
    let addresses = memo.addresses.get_or_insert_with(addresses).clone();
    let answer = addresses.and_then(|a| within_any(&a, networks));
    memo.networks.insert(networks.to_owned(), answer.clone());
    answer
}

/// The `Match exec` commands this process has run.
pub fn exec_commands() -> Vec<String> {
    let mut commands: Vec<String> = memo().exec.keys().cloned().collect();
    commands.sort();
    commands
}

/// Whether a `Match exec` or `localnetwork` was asked at all.
pub fn asked() -> bool {
    let memo = memo();
    !memo.exec.is_empty() || !memo.networks.is_empty()
}

/// What would now be answered otherwise, with the machine's interfaces at `addresses` and
/// `exec` running a command (outside a sandbox): `None` if every answer stands.
pub fn changed(
    addresses: &Result<Vec<IpAddr>, String>,
    exec: &dyn Fn(&str) -> Result<bool, String>,
) -> Option<String> {
    let (networks, commands) = {
        let memo = memo();
        (memo.networks.clone(), memo.exec.clone())
    };
    let said = |holds: bool| if holds { "holds" } else { "no longer holds" };
    for (list, before) in networks {
        let now = addresses.clone().and_then(|a| within_any(&a, &list));
        if now.clone().unwrap_or(false) != before.unwrap_or(false) {
            let holds = now.unwrap_or(false);
            return Some(format!(
                "ssh_config's Match localnetwork {list} {}",
                said(holds)
            ));
        }
    }
    for (command, before) in commands {
        let now = exec(&command).unwrap_or(false);
        if now != before.unwrap_or(false) {
            return Some(format!("ssh_config's Match exec {command} {}", said(now)));
        }
    }
    None
}

/// Runs a `Match exec` command (unremembered): whether it exits with status 0.
pub fn run_exec(command: &str) -> Result<bool, String> {
    run(command, TIMEOUT)
}

fn run(command: &str, timeout: Duration) -> Result<bool, String> {
    let mut shell = Command::new("/bin/sh");
    shell.arg("-c").arg(command);
    if let Some((uid, gid)) = RUN_AS.get() {
        // (Started by root with a uid set, the child also leaves root's groups.)
        shell.uid(*uid).gid(*gid);
    }
    let mut child = shell
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

fn within_any(addresses: &[IpAddr], networks: &str) -> Result<bool, String> {
    let networks = networks
        .split(',')
        .map(network)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(addresses
        .iter()
        .any(|a| networks.iter().any(|(net, bits)| within(*a, *net, *bits))))
}

fn network(text: &str) -> Result<(IpAddr, u32), String> {
    let bad = || format!("{text} is not a network (address/bits)");
    let (address, bits) = match text.split_once('/') {
        Some((address, bits)) => (address, Some(bits)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().map_err(|_| bad())?;
    let most = if address.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(bits) => bits.parse().ok().filter(|b| *b <= most).ok_or_else(bad)?,
        None => most,
    };
    Ok((address, bits))
}

fn within(address: IpAddr, network: IpAddr, bits: u32) -> bool {
    let (a, n, width) = match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u32::from(a).into(), u32::from(n).into(), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    let shift = width - bits;
    shift >= 128 || (a >> shift) == (n >> shift)
}

/// The addresses of the interfaces that are up, sorted.
pub fn addresses() -> Result<Vec<IpAddr>, String> {
    use nix::net::if_::InterfaceFlags;
    let all = nix::ifaddrs::getifaddrs().map_err(|e| format!("cannot list interfaces: {e}"))?;
    Ok(all
        .filter(|i| i.flags.contains(InterfaceFlags::IFF_UP))
        .filter_map(|i| i.address)
        .filter_map(|a| {
            let v4 = a.as_sockaddr_in().map(|a| IpAddr::V4(a.ip()));
            v4.or_else(|| a.as_sockaddr_in6().map(|a| IpAddr::V6(a.ip())))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect())
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
    fn commands_run_as_the_user_fetchd_becomes() {
        // (The tests run as root, as MusicFS's mounts need.)
        assert_eq!(holds("test \"$(id -u)\" = 0"), Ok(true), "root before");
        run_as(65534, 65534);
        let command = "test \"$(id -u):$(id -g):$(id -G)\" = 65534:65534:65534";
        assert_eq!(holds(command), Ok(true));
    }

    #[test]
    fn a_command_that_hangs_is_stopped_and_does_not_hold() {
        let started = Instant::now();
        let answer = run("sleep 30", Duration::from_millis(300));
        assert!(answer.unwrap_err().contains("stopped"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_changed_answer_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let command = format!("test -e {}", dir.path().join("flag").display());
        assert_eq!(holds(&command), Ok(false));
        assert_eq!(on_network("127.0.0.0/8"), Ok(true));
        assert!(asked());
        assert_eq!(exec_commands(), std::slice::from_ref(&command));
        let here = addresses();
        assert_eq!(changed(&here, &run_exec), None, "nothing moved");
        let elsewhere = Ok(vec!["192.168.7.7".parse().unwrap()]);
        let why = changed(&elsewhere, &run_exec).unwrap();
        assert!(
            why.contains("localnetwork 127.0.0.0/8 no longer holds"),
            "{why}"
        );
        std::fs::write(dir.path().join("flag"), "").unwrap();
        let why = changed(&here, &run_exec).unwrap();
        assert!(why.contains(&format!("exec {command} holds")), "{why}");
        assert_eq!(holds(&command), Ok(false), "this process keeps its answer");
    }

    #[test]
    fn a_network_holds_when_an_interface_that_is_up_is_in_it() {
        // Loopback is up wherever tests run; multicast addresses are never an interface's.
        assert_eq!(on_network("224.0.0.0/4,ff00::/8"), Ok(false));
        assert_eq!(on_network("224.0.0.0/4,127.0.0.0/8"), Ok(true));
        assert_eq!(on_network("127.0.0.1"), Ok(true));
        assert_eq!(on_network("0.0.0.0/0"), Ok(true));
        assert!(on_network("127.0.0.0/33")
            .unwrap_err()
            .contains("127.0.0.0/33"));
        assert!(on_network("home").is_err());
        let inside =
            |a: &str, net: &str, bits| within(a.parse().unwrap(), net.parse().unwrap(), bits);
        assert!(inside("10.1.2.3", "10.0.0.0", 8));
        assert!(!inside("11.1.2.3", "10.0.0.0", 8));
        assert!(inside("fd00::1", "fd00::", 8));
        assert!(!inside("fd00::1", "10.0.0.0", 0));
    }
}
