//! The sandbox each process enters once it holds its listening socket and has opened what it
//! needs, before it serves. In order:
//!
//! 1. started as root, it switches to its user (`[users]` in the config; indexd and plugind
//!    default to `nobody`, fetchd stays root unless configured; mountd always stays), after
//!    handing that user the directories it writes;
//! 2. `no_new_privs`, so nothing it ever runs gains privileges (not for a non-root mountd, whose
//!    unmount goes through the setuid `fusermount3`);
//! 3. Landlock, where the kernel has it: the process reaches only the paths of its policy
//!    (none for mountd, which needs `/dev/fuse` and `mount(2)`);
//! 4. for indexd and plugind, a seccomp filter that refuses `socket()` for every address family
//!    but `AF_UNIX` (and `io_uring_setup`, whose requests would bypass the filter).
//!
//! A kernel without Landlock is a warning; every other failure is an error and the process does
//! not serve. `doc/SECURITY-MODEL.md` says why each process gets what it gets.
//!
//! Tests look inside through the probe: with `MUSICFS_SANDBOX_PROBE` set, [`enter`] tries the
//! listed actions once the sandbox is up, prints one line per action and exits instead of
//! returning. It can do nothing the sandboxed process could not do anyway, so it is always
//! compiled: the binaries tested are the binaries shipped.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, PathBeneath, PathFd, RestrictionStatus, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use nix::unistd::{AccessFlags, Gid, Uid, User};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use crate::config::Config;
use crate::layout::StateDir;
use crate::origin::{OriginConfig, OriginUrl};
use crate::s3_target::S3Target;
use crate::sftp_target::SftpTarget;

/// Set to `;`-separated actions (`read=PATH`, `write=PATH`, `socket=inet|inet6|netlink|unix`)
/// to make [`enter`] try them inside the sandbox, print `ACTION: ok` or `ACTION: ERRNO` for
/// each on stdout, and exit.
pub const PROBE_ENV: &str = "MUSICFS_SANDBOX_PROBE";

/// The newest Landlock access rights this sandbox is written for; older kernels get what they
/// support. Not V9: its `ResolveUnix` right would cut the processes off from journald's socket,
/// which they send their log to.
const LANDLOCK_ABI: ABI = ABI::V8;

/// The files an SFTP origin reads: its identity files (and `FILE.pub` beside each: a key with a
/// passphrase in the old PEM format keeps its public half only there, and the agent is asked
/// to sign for it), their certificates, its known_hosts, the ssh_config files that say how to reach its host, and
/// `~/.ssh` when a default there may be used. An ssh_config that cannot be read is reported by
/// the origin; here the files are admitted as if there were none.
fn sftp_files(origin: &OriginConfig) -> Vec<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let mut files = Vec::new();
    if let Ok(target) = SftpTarget::resolve_without_broken_config(origin, home.as_deref()) {
        for host in target.hops() {
            for key in host.identity.files() {
                let mut public = key.as_os_str().to_owned();
                public.push(".pub");
                files.extend([key.clone(), public.into()]);
            }
            files.extend(host.certificates.iter().cloned());
            files.extend(host.known_hosts.iter().cloned());
        }
        files.extend(target.config_files);
    }
    files.extend(
        origin
            .ssh_config
            .iter()
            .filter(|f| f.as_os_str() != "none")
            .cloned(),
    );
    if origin.identity_file.is_none() || origin.known_hosts.is_none() {
        files.extend(home.map(|h| h.join(".ssh")));
    }
    files
}

/// What one process may do once it serves.
#[derive(Debug, Clone)]
pub struct Policy {
    service: &'static str,
    /// The user to switch to when started as root; `None` stays root.
    user: Option<String>,
    /// Set `no_new_privs`.
    no_new_privs: bool,
    /// The paths Landlock lets the process reach; `None`: no Landlock at all.
    landlock: Option<Paths>,
    /// Refuse `socket()` for every family but `AF_UNIX`.
    no_network: bool,
}

#[derive(Debug, Clone, Default)]
struct Paths {
    /// Directories the process owns: created if missing and handed to its user.
    read_write: Vec<PathBuf>,
    /// Paths it only reads; one that does not exist stays unreachable.
    read_only: Vec<PathBuf>,
}

impl Policy {
    /// fetchd: writes its catalog and chunk store, reads the local origins; keeps the network
    /// and, when an origin is remote, reads `/etc` (name resolution, CA certificates, which
    /// live partly in `/usr/share/ca-certificates` and `/usr/local/share/ca-certificates`), the
    /// system's library folders (glibc loads a name service module such as `libnss_mdns`, which
    /// resolves `nas.local`, or `libnss_resolve` only at the first lookup that needs it) and
    /// its SSH identity and known_hosts, the AWS tools' shared files of an S3 origin, and the
    /// `ca_file` of an HTTPS or S3 origin. An
    /// ssh-agent's socket needs no rule: Landlock up to the ABI used here does not govern
    /// connecting to a Unix socket.
    pub fn fetchd(state: &StateDir, origins: &[OriginConfig], config: &Config) -> Self {
        let mut read_only = Vec::new();
        let mut remote = false;
        for origin in origins {
            match origin.parsed() {
                Ok(OriginUrl::Local(path)) => read_only.push(path),
                Ok(OriginUrl::Sftp { .. }) => {
                    remote = true;
                    read_only.extend(sftp_files(origin));
                }
                Ok(OriginUrl::S3 { .. }) => {
                    remote = true;
                    // The AWS tools' shared files, where keys, region and endpoint may be.
                    let home = std::env::var_os("HOME").map(PathBuf::from);
                    let env = |name: &str| std::env::var(name).ok();
                    if let Ok(target) = S3Target::resolve(origin, home.as_deref(), &env) {
                        read_only.extend(target.files);
                        read_only.extend(target.ca_file);
                    }
                }
                Ok(_) => {
                    remote = true;
                    read_only.extend(origin.ca_file.clone());
                }
                Err(_) => {}
            }
        }
        if remote {
            read_only.push("/etc".into());
            read_only.push("/usr/share/ca-certificates".into());
            read_only.push("/usr/local/share/ca-certificates".into());
            for libraries in ["/usr/lib", "/lib", "/usr/lib64", "/lib64"] {
                read_only.push(libraries.into());
            }
        }
        Self {
            service: crate::layout::FETCHD,
            user: config.users.fetchd.clone(),
            no_new_privs: true,
            landlock: Some(Paths {
                read_write: vec![state.catalog(), state.chunks()],
                read_only,
            }),
            no_network: false,
        }
    }

    /// fetchd's outside helper (`fetchd/src/outside.rs`), which runs the ssh_config
    /// `ProxyCommand`s and AWS `credential_process`es fetchd's origins name: fetchd's user, and
    /// no Landlock, since those commands read their own files and reach their hosts their own
    /// way.
    pub fn outside_helper(user: Option<String>) -> Self {
        Self {
            service: "fetchd's outside helper",
            user,
            no_new_privs: true,
            landlock: None,
            no_network: false,
        }
    }

    /// indexd: writes its index and nothing else; no network.
    pub fn indexd(state: &StateDir, config: &Config) -> Self {
        Self {
            service: crate::layout::INDEXD,
            user: Some(config.users.indexd.clone().unwrap_or_else(nobody)),
            no_new_privs: true,
            landlock: Some(Paths {
                read_write: vec![state.index()],
                read_only: Vec::new(),
            }),
            no_network: true,
        }
    }

    /// plugind: reads the plugin dir and nothing else; no network.
    pub fn plugind(state: &StateDir, config: &Config) -> Self {
        Self {
            service: crate::layout::PLUGIND,
            user: Some(config.users.plugind.clone().unwrap_or_else(nobody)),
            no_new_privs: true,
            landlock: Some(Paths {
                read_write: Vec::new(),
                read_only: vec![state.plugins()],
            }),
            no_network: true,
        }
    }

    /// mountd: stays who it is and keeps its paths (`/dev/fuse`, the mount point, `mount(2)`).
    /// As root it mounts with `mount(2)` itself, so `no_new_privs` costs nothing; as an ordinary
    /// user it needs the setuid `fusermount3` to mount and to unmount, which `no_new_privs`
    /// would defeat.
    pub fn mountd() -> Self {
        Self {
            service: "mountd",
            user: None,
            no_new_privs: nix::unistd::geteuid().is_root(),
            landlock: None,
            no_network: false,
        }
    }
}

fn nobody() -> String {
    "nobody".to_owned()
}

/// A restriction that could not be put in place; the process must not serve.
#[derive(Debug, thiserror::Error)]
#[error("cannot sandbox {service}: {message}")]
pub struct SandboxError {
    service: &'static str,
    message: String,
}

/// Enters the sandbox of `policy`. Call it from the main thread before any other thread starts
/// (Landlock and `no_new_privs` bind the calling thread and the threads it starts later).
pub fn enter(policy: Policy) -> Result<(), SandboxError> {
    let fail = |message: String| SandboxError {
        service: policy.service,
        message,
    };
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, Iterator::count);
    if threads != 1 {
        return Err(fail(format!(
            "{threads} threads already run; enter the sandbox before starting any"
        )));
    }
    let paths = policy.landlock.clone().unwrap_or_default();
    for dir in &paths.read_write {
        std::fs::create_dir_all(dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    }
    let user = user_to_switch_to(&policy).map_err(fail)?;
    if let Some(user) = &user {
        for dir in &paths.read_write {
            hand_over(dir, user).map_err(|e| {
                fail(format!(
                    "cannot give {} to {}: {e}",
                    dir.display(),
                    user.name
                ))
            })?;
        }
    }
    // The rules hold open paths: opened while still root, they do not depend on the user's
    // search permission on the parent directories.
    let ruleset = match &policy.landlock {
        Some(paths) => Some(landlock_ruleset(policy.service, paths).map_err(fail)?),
        None => None,
    };
    if let Some(user) = &user {
        switch_user(user).map_err(fail)?;
        warn_unreachable(&policy, &paths, user);
    }
    if policy.no_new_privs {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| fail(format!("cannot set no_new_privs: {e}")))?;
    }
    let landlock = match ruleset {
        Some(ruleset) => Some(
            ruleset
                .restrict_self()
                .map_err(|e| fail(format!("landlock: {e}")))?,
        ),
        None => None,
    };
    if policy.no_network {
        refuse_network_sockets().map_err(fail)?;
    }
    log_summary(&policy, &paths, landlock.as_ref());
    if let Some(actions) = std::env::var_os(PROBE_ENV) {
        probe(&actions.to_string_lossy());
        std::process::exit(0);
    }
    Ok(())
}

/// The user to become: only when running as root, and only if it is another user.
fn user_to_switch_to(policy: &Policy) -> Result<Option<User>, String> {
    let Some(name) = &policy.user else {
        return Ok(None);
    };
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        tracing::debug!("not started as root: stays uid {euid} (user {name} is for root)");
        return Ok(None);
    }
    let user = User::from_name(name)
        .map_err(|e| format!("cannot look up user {name}: {e}"))?
        .ok_or_else(|| format!("there is no user {name} on this system"))?;
    Ok((!user.uid.is_root()).then_some(user))
}

/// Gives `dir` and everything in it to `user`, unless `dir` is theirs already. The contents go
/// first, so a hand-over cut short is finished at the next start. Symlinks are not followed.
fn hand_over(dir: &Path, user: &User) -> std::io::Result<()> {
    if std::fs::symlink_metadata(dir)?.uid() == user.uid.as_raw() {
        return Ok(());
    }
    chown_tree(dir, user.uid, user.gid)
}

fn chown_tree(path: &Path, uid: Uid, gid: Gid) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    std::os::unix::fs::lchown(path, Some(uid.as_raw()), Some(gid.as_raw()))
}

/// The Landlock rules of `paths`, created but not yet enforced. On a kernel without Landlock
/// this is a ruleset that enforces nothing (reported when it is enforced).
fn landlock_ruleset(service: &str, paths: &Paths) -> Result<RulesetCreated, String> {
    let landlock = |e: landlock::RulesetError| format!("landlock: {e}");
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .and_then(|r| r.scope(Scope::from_all(LANDLOCK_ABI)))
        .and_then(|r| r.create())
        .map_err(landlock)?;
    let rules = (paths
        .read_write
        .iter()
        .map(|p| (p, AccessFs::from_all(LANDLOCK_ABI))))
    .chain(
        paths
            .read_only
            .iter()
            .map(|p| (p, AccessFs::from_read(LANDLOCK_ABI))),
    );
    for (path, access) in rules {
        if !path.exists() {
            tracing::info!(
                "{service}: {} does not exist, so nothing there is reachable",
                path.display()
            );
            continue;
        }
        let fd = PathFd::new(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .map_err(landlock)?;
    }
    Ok(ruleset)
}

/// Supplementary groups, group, then user: all three ids (real, effective, saved), so there is
/// no way back to root. Capabilities go with uid 0.
fn switch_user(user: &User) -> Result<(), String> {
    let name = CString::new(user.name.as_str()).map_err(|e| e.to_string())?;
    let who = &user.name;
    nix::unistd::initgroups(&name, user.gid)
        .map_err(|e| format!("cannot set the groups of {who}: {e}"))?;
    nix::unistd::setresgid(user.gid, user.gid, user.gid)
        .map_err(|e| format!("cannot switch to the group of {who}: {e}"))?;
    nix::unistd::setresuid(user.uid, user.uid, user.uid)
        .map_err(|e| format!("cannot switch to user {who}: {e}"))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(format!(
            "still able to become root after switching to {who}"
        ));
    }
    Ok(())
}

/// The rules hold the paths open, but the process opens them again by name: warn when the
/// user cannot reach them (a parent directory it may not search, a mode that keeps it out).
fn warn_unreachable(policy: &Policy, paths: &Paths, user: &User) {
    let rw = AccessFlags::R_OK | AccessFlags::W_OK | AccessFlags::X_OK;
    let ro = AccessFlags::R_OK | AccessFlags::X_OK;
    let wanted =
        (paths.read_write.iter().map(|p| (p, rw))).chain(paths.read_only.iter().map(|p| (p, ro)));
    for (path, mode) in wanted {
        if let Err(e) = nix::unistd::access(path.as_path(), mode) {
            if e != nix::errno::Errno::ENOENT {
                tracing::warn!(
                    "{} as {} cannot reach {} ({e}); fix the permissions of it or of its parents",
                    policy.service,
                    user.name,
                    path.display()
                );
            }
        }
    }
}

/// A seccomp filter on every thread: `socket()` with any family but `AF_UNIX` fails with
/// `EACCES`; so does `io_uring_setup`, since io_uring can open sockets without `socket()`.
fn refuse_network_sockets() -> Result<(), String> {
    let not_unix = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Ne,
        libc::AF_UNIX as u64,
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(|e| format!("seccomp: {e}"))?;
    let rules = BTreeMap::from([
        (libc::SYS_socket, vec![not_unix]),
        (libc::SYS_io_uring_setup, vec![]),
    ]);
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp: {e}"))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    let program = BpfProgram::try_from(filter).map_err(|e| format!("seccomp: {e}"))?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| {
        format!("seccomp: {e} (a filter already in place, such as a systemd unit's SystemCallFilter=, must allow seccomp)")
    })
}

fn log_summary(policy: &Policy, paths: &Paths, landlock: Option<&RestrictionStatus>) {
    let mut summary = format!(
        "{} sandboxed: uid {}",
        policy.service,
        nix::unistd::getuid()
    );
    if policy.no_new_privs {
        summary.push_str(", no_new_privs");
    }
    match landlock.map(|status| &status.ruleset) {
        None => summary.push_str(", no landlock"),
        Some(RulesetStatus::NotEnforced) => {
            tracing::warn!(
                "{} runs without Landlock: the kernel does not offer it (or a seccomp filter, such as a systemd unit's SystemCallFilter=, refuses the landlock_* calls)",
                policy.service
            );
            summary.push_str(", landlock not available");
        }
        Some(status) => {
            let how = match status {
                RulesetStatus::FullyEnforced => "fully",
                _ => "partly (older kernel)",
            };
            let _ = write!(
                summary,
                ", landlock {how} enforced: read-write {:?}, read-only {:?}",
                paths.read_write, paths.read_only
            );
        }
    }
    if policy.no_network {
        summary.push_str(", network sockets refused");
    }
    tracing::info!("{summary}");
}

/// Tries each action of `actions` (see [`PROBE_ENV`]) and prints its outcome.
fn probe(actions: &str) {
    let mut out = std::io::stdout().lock();
    for action in actions.split(';').filter(|a| !a.is_empty()) {
        let outcome = match try_action(action) {
            Ok(()) => "ok".to_owned(),
            Err(errno) => format!("{errno:?}"),
        };
        let _ = writeln!(out, "{action}: {outcome}");
    }
    let _ = out.flush();
}

fn try_action(action: &str) -> Result<(), nix::errno::Errno> {
    use nix::errno::Errno;
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
    let from_io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let (verb, target) = action.split_once('=').ok_or(Errno::EINVAL)?;
    match verb {
        "read" => std::fs::File::open(target).map(drop).map_err(from_io),
        "write" => std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(target)
            .map(drop)
            .map_err(from_io),
        "socket" => {
            let (family, protocol) = match target {
                "inet" => (AddressFamily::Inet, None),
                "inet6" => (AddressFamily::Inet6, None),
                "netlink" => (AddressFamily::Netlink, Some(SockProtocol::NetlinkRoute)),
                "unix" => (AddressFamily::Unix, None),
                _ => return Err(Errno::EINVAL),
            };
            socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, protocol).map(drop)
        }
        _ => Err(Errno::EINVAL),
    }
}
