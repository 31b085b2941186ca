//! SFTP origins (`sftp://user@host[:port]/path`) over russh + russh-sftp (pure Rust), on a
//! tokio runtime of the origin's own that each call blocks on.
//!
//! - `new` never touches the network (a server down at start is health's business); it fails
//!   on configuration errors: no user, an unreadable identity file, no way to authenticate.
//! - The host key must be in known_hosts (`[host]:port` off port 22), or the connection is
//!   refused (fail closed) with a message naming the host and the file.
//! - Up to `connections` SSH sessions with one SFTP channel each: made on first use, one more
//!   in the background while those are busy, made again when broken. A request that times out
//!   poisons its connection; one that finds its connection lost is retried once.
//! - Bounds: connecting and each request wait at most the timeout; `stat`, `open` and `probe`
//!   as a whole, `walk` per request, `read_at` per answer (a big read over a slow link may take
//!   longer; a silent server may not).
//! - Reads are positioned reads of up to 256 KiB (or the server's `limits@openssh.com`), up to
//!   4 MiB in flight: 64 KiB costs one round trip, large reads stream. No read-ahead here.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use musicfs_ipc::origin::{OriginConfig, OriginUrl, Secret};
use russh::client;
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::{rawsession::Limits, RawSftpSession};
use russh_sftp::protocol::{File, FileAttributes, FileType, OpenFlags, StatusCode};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};

use crate::origin::{is_audio, Found, Listing, Origin, RangeRead};

/// Keys tried, in order, in `~/.ssh` when no identity file is configured.
const DEFAULT_KEYS: &[&str] = &["id_ed25519", "id_ecdsa", "id_rsa"];
/// The largest read request.
const MAX_REQUEST: u32 = 256 * 1024;
/// The read request size for servers that do not say their limit (all must accept it).
const SAFE_REQUEST: u32 = 32 * 1024;
/// Bytes of read requests in flight for one `read_at`.
const IN_FLIGHT: usize = 4 << 20;
/// Directories listed at once by a walk.
const WALK_PARALLEL: usize = 16;

/// A directory on an SFTP server as an origin.
pub struct SftpOrigin {
    shared: Arc<Shared>,
    rt: Arc<Rt>,
}

impl std::fmt::Debug for SftpOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SftpOrigin({})", self.shared.name)
    }
}

/// Everything but the runtime (which tasks must not own). Holds the key and the password, so
/// it has no `Debug`.
struct Shared {
    name: String,
    host: String,
    port: u16,
    user: String,
    key: Option<(PathBuf, Arc<PrivateKey>)>,
    password: Option<Secret>,
    known_hosts: PathBuf,
    timeout: Duration,
    root: String,
    slots: Mutex<Vec<Option<Arc<Conn>>>>,
    /// One connection attempt per slot at a time.
    connecting: Vec<tokio::sync::Mutex<()>>,
    /// After a failed attempt to add a connection, no other before this.
    quiet_until: Mutex<Option<Instant>>,
    spawner: tokio::runtime::Handle,
}

/// The origin's runtime, shut down without waiting once the origin and its files are gone.
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl SftpOrigin {
    /// Checks the configuration and loads the identity; connects on first use.
    pub fn new(config: &OriginConfig, url: &OriginUrl) -> io::Result<Self> {
        let bad = |msg: String| io::Error::other(format!("origin {}: {msg}", config.url));
        let OriginUrl::Sftp {
            user,
            host,
            port,
            path,
        } = url
        else {
            return Err(bad("not an sftp:// URL".into()));
        };
        let user = user
            .clone()
            .or_else(current_user)
            .ok_or_else(|| bad("no user in the URL, and no current user name ($USER)".into()))?;
        let shown_host = match host.contains(':') {
            true => format!("[{host}]"),
            false => host.clone(),
        };
        let name = format!("sftp://{user}@{shown_host}:{port}{path}");
        let ssh_dir = std::env::home_dir().map(|home| home.join(".ssh"));
        let key = match &config.identity_file {
            Some(file) => Some((file.clone(), load_key(file).map_err(bad)?)),
            None => ssh_dir.iter().find_map(|dir| {
                DEFAULT_KEYS
                    .iter()
                    .find_map(|k| match load_key(&dir.join(k)) {
                        Ok(key) => Some((dir.join(k), key)),
                        Err(e) if dir.join(k).exists() => {
                            tracing::warn!(origin = name, "not using {e}");
                            None
                        }
                        Err(_) => None,
                    })
            }),
        };
        let password = config.password.clone().or_else(|| {
            let env = std::env::var("MUSICFS_SFTP_PASSWORD").ok();
            env.filter(|p| !p.is_empty()).map(Secret::new)
        });
        if key.is_none() && password.is_none() {
            return Err(bad(format!(
                "no identity file (set identity_file, or make ~/.ssh/{}) and no password",
                DEFAULT_KEYS.join(" or ~/.ssh/")
            )));
        }
        let known_hosts = match (&config.known_hosts, &ssh_dir) {
            (Some(file), _) => file.clone(),
            (None, Some(dir)) => dir.join("known_hosts"),
            (None, None) => return Err(bad("no known_hosts file and no home directory".into())),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sftp-origin")
            .enable_all()
            .build()?;
        let slots = config.connections.unwrap_or(4).max(1);
        let shared = Shared {
            name,
            host: host.clone(),
            port: *port,
            user,
            key,
            password,
            known_hosts,
            timeout: config.timeout(),
            root: path.clone(),
            slots: Mutex::new(vec![None; slots]),
            connecting: (0..slots).map(|_| Default::default()).collect(),
            quiet_until: Mutex::new(None),
            spawner: rt.handle().clone(),
        };
        Ok(Self {
            shared: Arc::new(shared),
            rt: Arc::new(Rt(Some(rt))),
        })
    }

    /// A budget of one timeout for the whole call.
    fn budget(&self) -> Budget {
        Budget::Until(Instant::now() + self.shared.timeout)
    }
}

impl Origin for SftpOrigin {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn walk(&self) -> io::Result<Listing> {
        block_on(&self.rt, self.shared.clone().walk())
    }

    fn stat(&self, rel: &str) -> io::Result<(u64, i128)> {
        let path = self.shared.remote(rel)?;
        let stat = self
            .shared
            .run(self.budget(), |c, b| stat(c, b, path.clone()));
        let attrs = block_on(&self.rt, stat).map_err(|f| self.shared.io(f, "stat", rel))?;
        Ok((attrs.size.unwrap_or(0), mtime_ns(&attrs)))
    }

    fn open(&self, rel: &str) -> io::Result<Box<dyn RangeRead>> {
        let path = self.shared.remote(rel)?;
        let (handle, len) = block_on(&self.rt, self.shared.open(&path, self.budget()))
            .map_err(|f| self.shared.io(f, "open", rel))?;
        Ok(Box::new(SftpFile {
            shared: self.shared.clone(),
            rel: rel.to_owned(),
            path,
            len,
            handles: Mutex::new(vec![handle]),
            rt: self.rt.clone(),
        }))
    }

    fn probe(&self) -> io::Result<()> {
        let root = &self.shared.root;
        let stat = self
            .shared
            .run(self.budget(), |c, b| stat(c, b, root.clone()));
        block_on(&self.rt, stat)
            .map(drop)
            .map_err(|f| self.shared.io(f, "probe", ""))
    }
}

/// Runs `f` on the origin's runtime from a plain thread. (From inside another runtime, which
/// callers do not do, a helper thread blocks instead of panicking.)
fn block_on<F: Future + Send>(rt: &Rt, f: F) -> F::Output
where
    F::Output: Send,
{
    let rt =
        rt.0.as_ref()
            .expect("the runtime lives as long as the origin");
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(f))
                .join()
                .expect("sftp call panicked")
        })
    } else {
        rt.block_on(f)
    }
}

/// Why a request failed.
#[derive(Debug)]
enum Fail {
    /// The server answered with an error status.
    Status(StatusCode, String),
    /// No answer in time (the connection is poisoned).
    Timeout,
    /// The connection broke.
    Lost(String),
    /// No connection could be made; the error says why.
    Connect(io::Error),
}

impl From<SftpError> for Fail {
    fn from(e: SftpError) -> Self {
        match e {
            SftpError::Status(s) => match s.status_code {
                StatusCode::NoConnection | StatusCode::ConnectionLost => {
                    Fail::Lost(s.status_code.to_string())
                }
                code => Fail::Status(code, s.error_message),
            },
            SftpError::Timeout => Fail::Timeout,
            SftpError::Limited(m) => Fail::Status(StatusCode::Failure, m),
            other => Fail::Lost(other.to_string()),
        }
    }
}

/// How long requests may wait: all together, or each on its own.
#[derive(Clone, Copy)]
enum Budget {
    Until(Instant),
    Each(Duration),
}

impl Budget {
    fn deadline(self) -> Instant {
        match self {
            Budget::Until(d) => d,
            Budget::Each(t) => Instant::now() + t,
        }
    }
}

/// One request, bounded by the budget.
async fn req<T>(budget: Budget, f: impl Future<Output = Result<T, SftpError>>) -> Result<T, Fail> {
    match timeout_at(budget.deadline(), f).await {
        Ok(r) => r.map_err(Fail::from),
        Err(_) => Err(Fail::Timeout),
    }
}

async fn stat(conn: Arc<Conn>, budget: Budget, path: String) -> Result<FileAttributes, Fail> {
    Ok(req(budget, conn.sftp.stat(path)).await?.attrs)
}

/// The canonical form of a path (symlinks resolved).
async fn realpath(conn: Arc<Conn>, budget: Budget, path: String) -> Result<String, Fail> {
    let mut name = req(budget, conn.sftp.realpath(path.as_str())).await?;
    Ok(name.files.pop().map_or(path, |f| f.filename))
}

/// All entries of a directory (opendir, readdir until EOF, close).
async fn read_dir(conn: Arc<Conn>, budget: Budget, dir: String) -> Result<Vec<File>, Fail> {
    let handle = req(budget, conn.sftp.opendir(dir)).await?.handle;
    let mut files = Vec::new();
    let result = loop {
        match req(budget, conn.sftp.readdir(handle.as_str())).await {
            Ok(name) => files.extend(name.files),
            Err(Fail::Status(StatusCode::Eof, _)) => break Ok(files),
            Err(e) => break Err(e),
        }
    };
    if conn.usable() {
        let deadline = budget.deadline();
        tokio::spawn(async move { timeout_at(deadline, conn.sftp.close(handle)).await });
    }
    result
}

fn join(dir: &str, name: &str) -> String {
    match (dir.ends_with('/'), name.is_empty()) {
        (_, true) => dir.to_owned(),
        (true, false) => format!("{dir}{name}"),
        (false, false) => format!("{dir}/{name}"),
    }
}

fn mtime_ns(attrs: &FileAttributes) -> i128 {
    i128::from(attrs.mtime.unwrap_or(0)) * 1_000_000_000
}

/// What a walk makes of a directory entry.
enum Kind {
    /// A directory; a symlinked one with the canonical path of its target.
    Dir(Option<String>),
    File(u64, i128),
    Broken(String),
}

impl Shared {
    /// The server path of a relative path (which may not climb out of the root).
    fn remote(&self, rel: &str) -> io::Result<String> {
        if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
            let msg = format!("{}: bad relative path {rel:?}", self.name);
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        Ok(join(&self.root, rel))
    }

    /// The error the caller sees: its kind says whether the origin is unreachable.
    fn io(&self, fail: Fail, what: &str, path: &str) -> io::Error {
        let (at, secs) = (
            format!("{}: {what} {path}", self.name),
            self.timeout.as_secs(),
        );
        let at = at.trim_end();
        let (kind, why) = match fail {
            Fail::Status(code, message) => {
                let kind = match code {
                    StatusCode::NoSuchFile => io::ErrorKind::NotFound,
                    StatusCode::PermissionDenied => io::ErrorKind::PermissionDenied,
                    StatusCode::Eof => io::ErrorKind::UnexpectedEof,
                    StatusCode::BadMessage => io::ErrorKind::InvalidData,
                    StatusCode::OpUnsupported => io::ErrorKind::Unsupported,
                    _ => io::ErrorKind::Other,
                };
                (
                    kind,
                    Some(message)
                        .filter(|m| !m.is_empty())
                        .unwrap_or(code.to_string()),
                )
            }
            Fail::Timeout => (
                io::ErrorKind::TimedOut,
                format!("no answer within {secs} s"),
            ),
            Fail::Lost(why) => (
                io::ErrorKind::ConnectionReset,
                format!("connection lost: {why}"),
            ),
            Fail::Connect(e) => (e.kind(), e.to_string()),
        };
        io::Error::new(kind, format!("{at}: {why}"))
    }

    /// Runs `f` on a pooled connection; a lost connection is retried once on another.
    async fn run<T, F, Fut>(self: &Arc<Self>, budget: Budget, f: F) -> Result<T, Fail>
    where
        F: Fn(Arc<Conn>, Budget) -> Fut,
        Fut: Future<Output = Result<T, Fail>>,
    {
        let mut retried = false;
        loop {
            let lease = self.acquire(budget.deadline()).await;
            let lease = lease.map_err(Fail::Connect)?;
            match f(lease.0.clone(), budget).await {
                Err(fail) if lease.0.failed(&fail) && !retried => retried = true,
                done => return done,
            }
        }
    }

    /// Opens a file for reading: its handle and size.
    async fn open(self: &Arc<Self>, path: &str, budget: Budget) -> Result<(FileRef, u64), Fail> {
        self.run(budget, |conn, b| async move {
            let flags = OpenFlags::READ;
            let (opened, attrs) = tokio::join!(
                req(b, conn.sftp.open(path, flags, FileAttributes::empty())),
                req(b, conn.sftp.stat(path)),
            );
            let file = FileRef::new(conn, opened?.handle, self);
            let attrs = attrs?.attrs;
            if !attrs.file_type().is_file() {
                return Err(Fail::Status(StatusCode::NoSuchFile, "not a file".into()));
            }
            Ok((file, attrs.size.unwrap_or(0)))
        })
        .await
    }

    /// The entries of a directory, symlinks followed.
    async fn list(self: &Arc<Self>, dir: &str) -> Result<Vec<(String, Kind)>, Fail> {
        let budget = Budget::Each(self.timeout);
        let files = self
            .run(budget, |c, b| read_dir(c, b, dir.to_owned()))
            .await?;
        let mut entries = Vec::new();
        for file in files {
            if file.filename == "." || file.filename == ".." {
                continue;
            }
            let path = join(dir, &file.filename);
            let mut attrs = file.attrs;
            let link = attrs.file_type().is_symlink();
            if link {
                match self.run(budget, |c, b| stat(c, b, path.clone())).await {
                    Ok(target) => attrs = target,
                    Err(Fail::Status(_, why)) => {
                        entries.push((file.filename, Kind::Broken(why)));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let kind = match attrs.file_type() {
                FileType::Dir if link => Kind::Dir(Some(
                    self.run(budget, |c, b| realpath(c, b, path.clone()))
                        .await?,
                )),
                FileType::Dir => Kind::Dir(None),
                FileType::File => Kind::File(attrs.size.unwrap_or(0), mtime_ns(&attrs)),
                _ => continue,
            };
            entries.push((file.filename, kind));
        }
        Ok(entries)
    }

    /// Lists the tree below the root, several directories at a time.
    async fn walk(self: Arc<Self>) -> io::Result<Listing> {
        let root = self.root.clone();
        let budget = Budget::Until(Instant::now() + self.timeout);
        let canonical = self.run(budget, |c, b| realpath(c, b, root.clone())).await;
        let canonical = canonical.map_err(|f| self.io(f, "walk", ""))?;
        // (relative path, server path, canonical paths of it and its ancestors: no loops)
        let mut queue = VecDeque::from([(String::new(), root, vec![canonical])]);
        let mut tasks = JoinSet::new();
        let (mut found, mut failed) = (Vec::new(), Vec::new());
        loop {
            while tasks.len() < WALK_PARALLEL {
                let Some((rel, dir, chain)) = queue.pop_front() else {
                    break;
                };
                let shared = self.clone();
                tasks.spawn(async move {
                    let listed = shared.list(&dir).await;
                    (rel, dir, chain, listed)
                });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let (rel, dir, chain, listed) = done.map_err(io::Error::other)?;
            let entries = match listed {
                Ok(entries) => entries,
                Err(Fail::Status(_, why)) if !rel.is_empty() => {
                    failed.push((rel, format!("cannot list: {why}")));
                    continue;
                }
                // The root cannot be listed, or the server went away: a partial listing
                // would read as files removed, so there is none.
                Err(fail) => return Err(self.io(fail, "walk", &rel)),
            };
            for (name, kind) in entries {
                let child = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let audio = is_audio(Path::new(&child));
                if name.contains(char::REPLACEMENT_CHARACTER) {
                    if audio || matches!(kind, Kind::Dir(_)) {
                        let why = "file name is not valid UTF-8; rename it to be listed";
                        failed.push((child, why.into()));
                    }
                    continue;
                }
                match kind {
                    Kind::Dir(target) => {
                        let canonical = target.unwrap_or_else(|| join(&chain[0], &name));
                        if !chain.contains(&canonical) {
                            let chain = [vec![canonical], chain.clone()].concat();
                            queue.push_back((child, join(&dir, &name), chain));
                        }
                    }
                    Kind::File(size, mtime_ns) if audio => found.push(Found {
                        path: child,
                        size,
                        mtime_ns,
                    }),
                    Kind::Broken(why) if audio => failed.push((child, format!("dangling: {why}"))),
                    _ => {}
                }
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((found, failed))
    }

    /// The least loaded working connection (and another added in the background when it is
    /// busy and a slot is free); when none works, a new one, made now.
    async fn acquire(self: &Arc<Self>, deadline: Instant) -> io::Result<Lease> {
        let (live, free) = {
            let slots = lock(&self.slots);
            let usable = |s: &Option<Arc<Conn>>| s.as_ref().filter(|c| c.usable()).cloned();
            let live = slots.iter().filter_map(usable).min_by_key(|c| c.load());
            (live, slots.iter().position(|s| usable(s).is_none()))
        };
        let Some(conn) = live else {
            return self.connect_slot(free.unwrap_or(0), deadline).await;
        };
        if let Some(slot) = free.filter(|_| conn.busy.load(Ordering::Relaxed) > 0) {
            let quiet = lock(&self.quiet_until).is_some_and(|t| Instant::now() < t);
            if !quiet && self.connecting[slot].try_lock().is_ok() {
                let shared = self.clone();
                tokio::spawn(async move {
                    let deadline = Instant::now() + shared.timeout;
                    if let Err(e) = shared.connect_slot(slot, deadline).await {
                        tracing::debug!(origin = shared.name, "no extra connection: {e}");
                        let later = Instant::now() + Duration::from_secs(10);
                        *lock(&shared.quiet_until) = Some(later);
                    }
                });
            }
        }
        Ok(Lease::new(conn))
    }

    async fn connect_slot(&self, slot: usize, deadline: Instant) -> io::Result<Lease> {
        let timed_out = |what: &str| {
            let (host, port, secs) = (&self.host, self.port, self.timeout.as_secs());
            let msg = format!("{what} {host}:{port} within {secs} s");
            io::Error::new(io::ErrorKind::TimedOut, msg)
        };
        let _guard = timeout_at(deadline, self.connecting[slot].lock())
            .await
            .map_err(|_| timed_out("not connected to"))?;
        if let Some(conn) = lock(&self.slots)[slot].as_ref().filter(|c| c.usable()) {
            return Ok(Lease::new(conn.clone()));
        }
        let conn = timeout_at(deadline, self.connect())
            .await
            .map_err(|_| timed_out("no answer from"))??;
        let conn = Arc::new(conn);
        lock(&self.slots)[slot] = Some(conn.clone());
        tracing::debug!(origin = self.name, slot, "connected");
        Ok(Lease::new(conn))
    }

    /// Connects, checks the host key, authenticates and starts SFTP.
    async fn connect(&self) -> io::Result<Conn> {
        let (host, port) = (self.host.as_str(), self.port);
        let ssh_error = |e: russh::Error| {
            let kind = match &e {
                russh::Error::IO(e) => e.kind(),
                russh::Error::ConnectionTimeout | russh::Error::KeepaliveTimeout => {
                    io::ErrorKind::TimedOut
                }
                russh::Error::Disconnect | russh::Error::HUP => io::ErrorKind::ConnectionReset,
                _ => io::ErrorKind::Other,
            };
            io::Error::new(kind, format!("ssh to {host}:{port}: {e}"))
        };
        let refusal = Arc::new(Mutex::new(None));
        let check = HostCheck {
            host: host.to_owned(),
            port,
            known_hosts: self.known_hosts.clone(),
            refusal: refusal.clone(),
        };
        let config = client::Config {
            preferred: self.preferred(),
            nodelay: true,
            window_size: 16 << 20,
            maximum_packet_size: 65535,
            // Notices a dead peer on an idle connection before a request has to.
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        let mut ssh = match client::connect(Arc::new(config), (host, port), check).await {
            Ok(ssh) => ssh,
            Err(e) => return Err(lock(&refusal).take().map_or(ssh_error(e), io::Error::other)),
        };
        self.authenticate(&mut ssh).await?;
        let channel = ssh.channel_open_session().await.map_err(ssh_error)?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(ssh_error)?;
        let config = russh_sftp::client::Config {
            max_packet_len: MAX_REQUEST + 64 * 1024,
            // Our deadlines come first; this only cleans up after them.
            request_timeout_secs: self.timeout.as_secs().saturating_mul(4).max(30),
            ..Default::default()
        };
        let mut sftp = RawSftpSession::new_with_config(channel.into_stream(), config);
        let sftp_error = |e: SftpError| io::Error::other(format!("starting sftp: {e}"));
        let version = sftp.init().await.map_err(sftp_error)?;
        let mut request_len = SAFE_REQUEST;
        if version
            .extensions
            .get("limits@openssh.com")
            .is_some_and(|v| v == "1")
        {
            let limits = Limits::from(sftp.limits().await.map_err(sftp_error)?);
            let max = u64::from(MAX_REQUEST);
            request_len = limits.read_len.map_or(max, |r| r.clamp(1, max)) as u32;
            sftp.set_limits(limits);
        }
        Ok(Conn {
            ssh,
            sftp,
            request_len,
            broken: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            files: AtomicUsize::new(0),
        })
    }

    /// AES-GCM first (hardware AES; optimised even in debug builds), and the host key types
    /// known_hosts holds for this host first, so the key the server shows can be checked.
    fn preferred(&self) -> russh::Preferred {
        let mut preferred = russh::Preferred::default();
        let mut ciphers = preferred.cipher.to_vec();
        ciphers.sort_by_key(|c| *c != russh::cipher::AES_256_GCM);
        preferred.cipher = ciphers.into();
        let known: Vec<Algorithm> = russh::keys::known_hosts::known_host_keys_path(
            &self.host,
            self.port,
            &self.known_hosts,
        )
        .map(|keys| keys.into_iter().map(|(_, k)| k.algorithm()).collect())
        .unwrap_or_default();
        let family = |a: &Algorithm| {
            if a.clone().is_rsa() {
                "rsa".into()
            } else {
                a.to_string()
            }
        };
        let mut keys = preferred.key.to_vec();
        keys.sort_by_key(|a| !known.iter().any(|k| family(k) == family(a)));
        preferred.key = keys.into();
        preferred
    }

    async fn authenticate(&self, ssh: &mut client::Handle<HostCheck>) -> io::Result<()> {
        let failed = |e: russh::Error| io::Error::other(format!("authenticating: {e}"));
        let mut tried = Vec::new();
        if let Some((file, key)) = &self.key {
            let hash = match key.algorithm().is_rsa() {
                true => ssh
                    .best_supported_rsa_hash()
                    .await
                    .map_err(failed)?
                    .flatten(),
                false => None,
            };
            let key = PrivateKeyWithHashAlg::new(key.clone(), hash);
            if ssh
                .authenticate_publickey(&self.user, key)
                .await
                .map_err(failed)?
                .success()
            {
                return Ok(());
            }
            tried.push(format!("the key {}", file.display()));
        }
        if let Some(password) = &self.password {
            let result = ssh
                .authenticate_password(&self.user, password.expose())
                .await;
            if result.map_err(failed)?.success() {
                return Ok(());
            }
            tried.push("the password".to_owned());
        }
        let (tried, user) = (tried.join(" and "), &self.user);
        Err(io::Error::other(format!(
            "the server refused {tried} for user {user}"
        )))
    }
}

/// An open origin file, read through handles on one or more connections.
struct SftpFile {
    shared: Arc<Shared>,
    rel: String,
    path: String,
    len: u64,
    /// Its handles, at most one per connection.
    handles: Mutex<Vec<FileRef>>,
    // Dropped last: handles are closed on the runtime.
    rt: Arc<Rt>,
}

impl RangeRead for SftpFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        block_on(&self.rt, self.read(offset, buf)).map_err(|f| {
            self.shared
                .io(f, "read", &format!("{} at {offset}", self.rel))
        })
    }
}

impl SftpFile {
    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Fail> {
        let timeout = self.shared.timeout;
        let mut retried = false;
        loop {
            let deadline = Instant::now() + timeout;
            let pick = self.shared.acquire(deadline).await;
            let (lease, handle) = self.choose(pick.map_err(Fail::Connect)?);
            let result = match handle {
                Some(handle) => read_pipelined(&lease.0, &handle, offset, buf, timeout).await,
                None => match self.open_on(&lease.0, deadline).await {
                    Ok(handle) => read_pipelined(&lease.0, &handle, offset, buf, timeout).await,
                    Err(fail) => Err(fail),
                },
            };
            match result {
                Err(fail) if lease.0.failed(&fail) && !retried => retried = true,
                done => return done,
            }
        }
    }

    /// Where to read: through a handle this file has on a connection no busier than the
    /// pool's pick, else on the pick (`None`: open a handle there first). So readers of files
    /// opened together spread over the connections made since.
    fn choose(&self, pick: Lease) -> (Lease, Option<Arc<str>>) {
        let mut handles = lock(&self.handles);
        handles.retain(|h| h.conn.usable());
        let busy = |c: &Arc<Conn>| c.busy.load(Ordering::Relaxed);
        let mine = handles
            .iter()
            .min_by_key(|h| (busy(&h.conn), !Arc::ptr_eq(&h.conn, &pick.0)));
        match mine {
            Some(h) if Arc::ptr_eq(&h.conn, &pick.0) => (pick, Some(h.handle.clone())),
            // The pick's count includes its lease.
            Some(h) if busy(&h.conn) < busy(&pick.0) => {
                (Lease::new(h.conn.clone()), Some(h.handle.clone()))
            }
            _ => (pick, None),
        }
    }

    async fn open_on(&self, conn: &Arc<Conn>, deadline: Instant) -> Result<Arc<str>, Fail> {
        let open = conn
            .sftp
            .open(self.path.as_str(), OpenFlags::READ, FileAttributes::empty());
        let handle = req(Budget::Until(deadline), open).await?.handle;
        let file = FileRef::new(conn.clone(), handle, &self.shared);
        let handle = file.handle.clone();
        lock(&self.handles).push(file);
        Ok(handle)
    }
}

/// Reads `buf.len()` bytes at `offset` (fewer only at the end of the file) with up to
/// [`IN_FLIGHT`] bytes of requests outstanding. Each answer must come within `timeout`.
async fn read_pipelined(
    conn: &Arc<Conn>,
    handle: &Arc<str>,
    offset: u64,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<usize, Fail> {
    let step = conn.request_len as usize;
    // Pieces to ask for: (position in buf, length). A short answer asks for the rest.
    let mut todo: VecDeque<(usize, usize)> = (0..buf.len())
        .step_by(step)
        .map(|at| (at, step.min(buf.len() - at)))
        .collect();
    let mut eof = buf.len();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.len() < (IN_FLIGHT / step).max(1) {
            let Some((at, len)) = todo.pop_front() else {
                break;
            };
            if at < eof {
                let (conn, handle) = (conn.clone(), handle.clone());
                tasks.spawn(async move {
                    (
                        at,
                        len,
                        conn.sftp
                            .read(&*handle, offset + at as u64, len as u32)
                            .await,
                    )
                });
            }
        }
        let next = match tokio::time::timeout(timeout, tasks.join_next()).await {
            Err(_) => return Err(Fail::Timeout),
            Ok(None) => return Ok(eof),
            Ok(Some(next)) => next.map_err(|e| Fail::Lost(e.to_string()))?,
        };
        match next {
            (at, len, Ok(data)) => {
                let n = data.data.len().min(len);
                buf[at..at + n].copy_from_slice(&data.data[..n]);
                if n == 0 {
                    eof = eof.min(at);
                } else if n < len {
                    todo.push_front((at + n, len - n));
                }
            }
            (at, _, Err(SftpError::Status(s))) if s.status_code == StatusCode::Eof => {
                eof = eof.min(at);
            }
            (_, _, Err(e)) => return Err(e.into()),
        }
    }
}

/// A remote file handle, closed (without waiting) when dropped.
struct FileRef {
    conn: Arc<Conn>,
    handle: Arc<str>,
    spawner: tokio::runtime::Handle,
    timeout: Duration,
}

impl FileRef {
    fn new(conn: Arc<Conn>, handle: String, shared: &Shared) -> Self {
        conn.files.fetch_add(1, Ordering::Relaxed);
        let (spawner, timeout) = (shared.spawner.clone(), shared.timeout);
        let handle = handle.into();
        Self {
            conn,
            handle,
            spawner,
            timeout,
        }
    }
}

impl Drop for FileRef {
    fn drop(&mut self) {
        self.conn.files.fetch_sub(1, Ordering::Relaxed);
        if self.conn.usable() {
            let (conn, handle) = (self.conn.clone(), self.handle.to_string());
            let t = self.timeout;
            self.spawner
                .spawn(async move { timeout(t, conn.sftp.close(handle)).await });
        }
    }
}

/// One SSH session with its SFTP channel.
struct Conn {
    ssh: client::Handle<HostCheck>,
    sftp: RawSftpSession,
    request_len: u32,
    broken: AtomicBool,
    /// Operations running on it.
    busy: AtomicUsize,
    /// Files open on it.
    files: AtomicUsize,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.broken.load(Ordering::Acquire) && !self.ssh.is_closed()
    }

    /// Poisons the connection if `fail` says it is broken; true if it was lost (worth a retry).
    fn failed(&self, fail: &Fail) -> bool {
        if matches!(fail, Fail::Timeout | Fail::Lost(_)) {
            self.broken.store(true, Ordering::Release);
        }
        matches!(fail, Fail::Lost(_))
    }

    fn load(&self) -> (usize, usize) {
        (
            self.busy.load(Ordering::Relaxed),
            self.files.load(Ordering::Relaxed),
        )
    }
}

/// A connection in use by one operation.
struct Lease(Arc<Conn>);

impl Lease {
    fn new(conn: Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Checks the server's host key against known_hosts, and says why when it refuses.
struct HostCheck {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let host = match self.port {
            22 => self.host.clone(),
            port => format!("[{}]:{port}", self.host),
        };
        let file = self.known_hosts.display();
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            let why = format!("{host} showed a certificate; only keys in {file} are trusted");
            *lock(&self.refusal) = Some(why);
            return Ok(false);
        };
        let shown = format!(
            "{} {}",
            key.algorithm(),
            key.fingerprint(Default::default())
        );
        let known =
            russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts);
        let why = match known {
            Ok(true) => return Ok(true),
            Ok(false) if !self.known_hosts.exists() => {
                format!("cannot check the host key of {host} ({shown}): {file} does not exist")
            }
            Ok(false) => format!(
                "host {host} ({shown}) is not in known_hosts file {file}; check its key and \
                 add it (e.g. ssh-keyscan -p {} {} >> {file})",
                self.port, self.host
            ),
            Err(russh::keys::Error::KeyChanged { line }) => format!(
                "the host key of {host} ({shown}) does not match the one in known_hosts file \
                 {file} line {line}: the server's key changed, or someone is in between"
            ),
            Err(e) => format!("cannot check the host key of {host} in {file}: {e}"),
        };
        *lock(&self.refusal) = Some(format!("{why}; refusing to connect"));
        Ok(false)
    }
}

fn load_key(file: &Path) -> Result<Arc<PrivateKey>, String> {
    match russh::keys::load_secret_key(file, None) {
        Ok(key) => Ok(Arc::new(key)),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(format!(
            "identity file {} has a passphrase; use a key without one",
            file.display()
        )),
        Err(e) => Err(format!("identity file {}: {e}", file.display())),
    }
}

/// `$USER`, else the name of the effective user.
fn current_user() -> Option<String> {
    if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return Some(user);
    }
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, and `buf` outlives the use of `pwd`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: pw_name is a NUL-terminated string in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
