//! SFTP origins (`sftp://user@host[:port]/path`) over russh + russh-sftp (pure Rust), on a
//! tokio runtime of the origin's own that each call drives (`driver.rs`).
//!
//! - `new` never touches the network (a server down at start is health's business); it fails
//!   on configuration errors: no user, an unreadable identity file, no way to authenticate.
//! - The host key must be in known_hosts (`[host]:port` off port 22), or the connection is
//!   refused (fail closed) with a message naming the host and the file.
//! - Up to `connections` SSH sessions with one SFTP channel each: made on first use, one more
//!   in the background while those are busy with work a request would queue behind (other
//!   files' reads, listings; not reads of the same file), made again when broken. A request
//!   that times out poisons its connection; one that finds its connection lost is retried on
//!   another, until one made anew has been tried: a network that dropped every connection at
//!   once (a NAS restarted, a laptop woken) costs a reconnect, not an error.
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
use musicfs_ipc::sftp_target::{Identity, SftpTarget};
use russh::client;
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::{rawsession::Limits, RawSftpSession};
use russh_sftp::protocol::{File, FileAttributes, FileType, OpenFlags, StatusCode};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};

use crate::origin::{is_audio, Found, Listing, Origin, RangeRead, MAX_DEPTH, MAX_DIRS, TOO_DEEP};
use crate::restart::{self, Admitted};

mod algorithms;
mod auth;
mod conn;
mod driver;
mod file;
mod known_hosts;
mod session;

use auth::Login;
use conn::{Conn, HostCheck, Lease};
use driver::Driver;
use file::{FileRef, SftpFile};
use session::Peer;

/// The largest read request.
const MAX_REQUEST: u32 = 256 * 1024;
/// The read request size for servers that do not say their limit (all must accept it).
const SAFE_REQUEST: u32 = 32 * 1024;
/// Reads up to this long are asked for in [`SMALL_PIECE`] requests.
const SMALL_READ: usize = 128 * 1024;
/// The request size for small reads. The pieces of one read are consecutive on one handle, so
/// the server's kernel sees a sequential reader and reads ahead from its disk: a seek followed
/// by more reads nearby (a player's, or the random reads of the benchmark) finds the next bytes
/// in the server's memory. OpenSSH's clients (sftp, sshfs) ask in 32 KiB pieces for the same
/// reason. Larger reads are already sequential and use the server's limit, which costs less
/// CPU per MB on both sides.
const SMALL_PIECE: usize = 32 * 1024;
/// Bytes of read requests in flight for one `read_at`.
const IN_FLIGHT: usize = 4 << 20;
/// How long a request to a server that answers pings is waited for (see `Conn::answer`):
/// under mountd's own deadline for a read (30 s by default), so a read that waits this long
/// still fails over to another copy in time.
const SLOW_LIMIT: Duration = Duration::from_secs(20);
/// Directories listed at once by a walk.
const WALK_PARALLEL: usize = 16;

/// A directory on an SFTP server as an origin.
pub struct SftpOrigin {
    shared: Arc<Shared>,
    rt: Arc<Driver>,
    /// The known_hosts file (read at every connection) and the key file (read at start), as
    /// the sandbox admitted them: one replaced by a new file restarts fetchd.
    admitted: Vec<(Admitted, String)>,
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
    /// The NAS, and the jump hosts its sessions go through (ssh_config's `ProxyJump`), the
    /// first connected to first.
    peer: Peer,
    jumps: Vec<Peer>,
    timeout: Duration,
    root: String,
    slots: Mutex<Vec<Option<Arc<Conn>>>>,
    /// One connection attempt per slot at a time.
    connecting: Vec<tokio::sync::Mutex<()>>,
    /// After a failed attempt to add a connection, no other before this.
    quiet_until: Mutex<Option<Instant>>,
    spawner: tokio::runtime::Handle,
}

impl SftpOrigin {
    /// Checks the configuration (and the ssh_config's `Host` blocks for the host) and loads
    /// the identity; connects on first use.
    pub fn new(config: &OriginConfig, _url: &OriginUrl) -> io::Result<Self> {
        let bad = |msg: String| io::Error::other(format!("origin {}: {msg}", config.url));
        let home = std::env::home_dir();
        let target = SftpTarget::resolve(config, home.as_deref()).map_err(io::Error::other)?;
        let name = target.name();
        for what in &target.not_followed {
            tracing::warn!(
                origin = name,
                "ssh config: {what} is not followed; MusicFS connects to {}:{} directly",
                target.connect_to,
                target.port
            );
        }
        let peer = Peer::new(config, &target, name.clone()).map_err(bad)?;
        let mut jumps = Vec::new();
        for via in target.hops().skip(1) {
            let shown = format!("sftp://{}@{}:{}", via.user, via.host, via.port);
            let peer = Peer::new(config, via, shown.clone())
                .map_err(|e| bad(format!("jump host {shown}: {e}")))?;
            jumps.insert(0, peer);
        }
        let mut admitted = Vec::new();
        for host in std::iter::once(&peer).chain(&jumps) {
            for file in &host.known_hosts {
                let why = format!(
                    "origin {name}: the known_hosts file {} was replaced by a new one, which \
                     the sandbox does not let fetchd read",
                    file.display()
                );
                admitted.push((Admitted::new(file, restart::Kind::File), why));
            }
            if let Some(file) = host.login.key_file() {
                let why = format!(
                    "origin {name}: the identity file {} was replaced; the new key is loaded \
                     at start",
                    file.display()
                );
                admitted.push((Admitted::new(file, restart::Kind::File), why));
            }
            for file in host.login.certificate_files() {
                let why = format!(
                    "origin {name}: the certificate file {} is new (renewed), which the \
                     sandbox does not let fetchd read",
                    file.display()
                );
                admitted.push((Admitted::new(file, restart::Kind::File), why));
            }
        }
        let rt = Driver::new(&target.connect_to)?;
        let slots = config.connections.unwrap_or(4).max(1);
        let shared = Shared {
            name,
            peer,
            jumps,
            timeout: config.timeout(),
            root: server_root(&target.path),
            slots: Mutex::new(vec![None; slots]),
            connecting: (0..slots).map(|_| Default::default()).collect(),
            quiet_until: Mutex::new(None),
            spawner: rt.handle(),
        };
        Ok(Self {
            shared: Arc::new(shared),
            rt: Arc::new(rt),
            admitted,
        })
    }

    /// The name an origin for `config` has: `sftp://user@host:port/path`. With an ssh_config
    /// that cannot be read, the user and port are the URL's or the defaults.
    pub fn name_of(config: &OriginConfig) -> Result<String, String> {
        let home = std::env::home_dir();
        SftpTarget::resolve_without_broken_config(config, home.as_deref()).map(|t| t.name())
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
        self.rt.block_on(self.shared.clone().walk())
    }

    fn stat(&self, rel: &str) -> io::Result<(u64, i128)> {
        let path = self.shared.remote(rel)?;
        let stat = self
            .shared
            .run(self.budget(), |c, b| stat(c, b, path.clone()));
        let attrs = self
            .rt
            .block_on(stat)
            .map_err(|f| self.shared.io(f, "stat", rel))?;
        Ok((attrs.size.unwrap_or(0), mtime_ns(&attrs)))
    }

    fn open(&self, rel: &str) -> io::Result<Box<dyn RangeRead>> {
        let path = self.shared.remote(rel)?;
        let (handle, len) = self
            .rt
            .block_on(self.shared.open(&path, self.budget()))
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
        for (admitted, why) in &self.admitted {
            admitted.check(why);
        }
        let root = &self.shared.root;
        let stat = self
            .shared
            .run(self.budget(), |c, b| stat(c, b, root.clone()));
        self.rt
            .block_on(stat)
            .map(drop)
            .map_err(|f| self.shared.io(f, "probe", ""))
    }
}

/// Why a request failed.
#[derive(Debug)]
enum Fail {
    /// The server answered with an error status.
    Status(StatusCode, String),
    /// No answer in time (the connection is poisoned).
    Timeout,
    /// No answer to a request in this long, although the server answered pings meanwhile
    /// (the connection is poisoned).
    Slow(Duration),
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

/// One request on `conn`, bounded by the budget (longer for a server that answers pings: see
/// `Conn::answer`).
async fn req<T>(
    conn: &Conn,
    budget: Budget,
    f: impl Future<Output = Result<T, SftpError>>,
) -> Result<T, Fail> {
    let wait = budget.deadline().saturating_duration_since(Instant::now());
    conn.answer(wait, f).await?.map_err(Fail::from)
}

async fn stat(conn: Arc<Conn>, budget: Budget, path: String) -> Result<FileAttributes, Fail> {
    Ok(req(&conn, budget, conn.sftp.stat(path)).await?.attrs)
}

/// The canonical form of a path (symlinks resolved).
async fn realpath(conn: Arc<Conn>, budget: Budget, path: String) -> Result<String, Fail> {
    let mut name = req(&conn, budget, conn.sftp.realpath(path.as_str())).await?;
    Ok(name.files.pop().map_or(path, |f| f.filename))
}

/// All entries of a directory (opendir, readdir until EOF, close).
async fn read_dir(conn: Arc<Conn>, budget: Budget, dir: String) -> Result<Vec<File>, Fail> {
    let handle = req(&conn, budget, conn.sftp.opendir(dir)).await?.handle;
    let mut files = Vec::new();
    let result = loop {
        match req(&conn, budget, conn.sftp.readdir(handle.as_str())).await {
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

/// The path requests name for the URL's path: the same, or for `/~` and below (the login's
/// home folder, as curl and rclone write it: `sftp://nas/~/Music`) a path relative to the
/// folder the server starts a session in, which is that home.
fn server_root(path: &str) -> String {
    match path {
        "/~" => ".".to_owned(),
        path => path.strip_prefix("/~/").unwrap_or(path).to_owned(),
    }
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
    /// A file: size, mtime, and for a symlinked one the canonical path of its target.
    File(u64, i128, Option<String>),
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
            Fail::Slow(waited) => (
                io::ErrorKind::TimedOut,
                format!(
                    "the server answers, but has not answered this in {} s",
                    waited.as_secs()
                ),
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
        self.run_for(budget, None, f).await
    }

    /// [`run`](Self::run), as part of reading `reading` (see [`acquire`](Self::acquire)).
    async fn run_for<T, F, Fut>(
        self: &Arc<Self>,
        budget: Budget,
        reading: Option<&str>,
        f: F,
    ) -> Result<T, Fail>
    where
        F: Fn(Arc<Conn>, Budget) -> Fut,
        Fut: Future<Output = Result<T, Fail>>,
    {
        let mut lost = 0;
        loop {
            let lease = self.acquire(budget.deadline(), reading).await;
            let lease = lease.map_err(Fail::Connect)?;
            match f(lease.0.clone(), budget).await {
                Err(fail) if lease.0.failed(&fail) && lost < self.retries_when_lost() => lost += 1,
                done => return done,
            }
        }
    }

    /// How often a request whose connection was lost is tried again: once per pooled
    /// connection (each found lost is set aside), so the last try is on one made anew.
    fn retries_when_lost(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Opens a file for reading: its handle and size.
    async fn open(self: &Arc<Self>, path: &str, budget: Budget) -> Result<(FileRef, u64), Fail> {
        self.run_for(budget, Some(path), |conn, b| async move {
            let flags = OpenFlags::READ;
            let (opened, attrs) = tokio::join!(
                req(
                    &conn,
                    b,
                    conn.sftp.open(path, flags, FileAttributes::empty())
                ),
                req(&conn, b, conn.sftp.stat(path)),
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
            let target = match (link, attrs.file_type()) {
                (true, FileType::Dir | FileType::File) => Some(
                    self.run(budget, |c, b| realpath(c, b, path.clone()))
                        .await?,
                ),
                _ => None,
            };
            let kind = match attrs.file_type() {
                FileType::Dir => Kind::Dir(target),
                FileType::File => Kind::File(attrs.size.unwrap_or(0), mtime_ns(&attrs), target),
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
        let top = canonical.trim_end_matches('/').to_owned();
        // (relative path, server path, canonical paths of it and its ancestors: no loops)
        let mut queue = VecDeque::from([(String::new(), root, vec![canonical])]);
        let mut tasks = JoinSet::new();
        let (mut found, mut failed) = (Vec::new(), Vec::new());
        let mut queued = 1;
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
                // A link may not lead out of the origin's folder: whoever may write the
                // library could otherwise show the mount's users any file the SSH account
                // can read (as Landlock refuses such links in a local origin).
                let outside = match &kind {
                    Kind::Dir(Some(target)) | Kind::File(_, _, Some(target)) => {
                        target != &top && !target.starts_with(&format!("{top}/"))
                    }
                    _ => false,
                };
                if outside {
                    if audio || matches!(kind, Kind::Dir(_)) {
                        let why = "a link to outside the origin's folder; not followed";
                        failed.push((child, why.into()));
                    }
                    continue;
                }
                match kind {
                    Kind::Dir(target) => {
                        let canonical = target.unwrap_or_else(|| join(&chain[0], &name));
                        if chain.contains(&canonical) {
                            continue;
                        }
                        if chain.len() > MAX_DEPTH || queued >= MAX_DIRS {
                            failed.push((child, TOO_DEEP.to_owned()));
                            continue;
                        }
                        queued += 1;
                        let chain = [vec![canonical], chain.clone()].concat();
                        queue.push_back((child, join(&dir, &name), chain));
                    }
                    Kind::File(size, mtime_ns, _) if audio => found.push(Found {
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

    /// The least loaded working connection; when none works, a new one, made now. Another
    /// is added in the background, while a slot is free, when the one picked is busy with
    /// work a request would queue behind. For a read of `reading`, other reads of the same
    /// path do not count: one file's pipelined reads share a connection well, and each new
    /// connection costs the server a key exchange (34 ms of sshd's CPU here) mid-read.
    async fn acquire(
        self: &Arc<Self>,
        deadline: Instant,
        reading: Option<&str>,
    ) -> io::Result<Lease> {
        let (live, free) = {
            let slots = lock(&self.slots);
            let usable = |s: &Option<Arc<Conn>>| s.as_ref().filter(|c| c.usable()).cloned();
            let live = slots.iter().filter_map(usable).min_by_key(|c| c.load());
            (live, slots.iter().position(|s| usable(s).is_none()))
        };
        let Some(conn) = live else {
            let conn = self.connect_slot(free.unwrap_or(0), deadline).await?;
            return Ok(Lease::new(conn, reading));
        };
        if let Some(slot) = free.filter(|_| conn.busy_apart_from(reading) > 0) {
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
        Ok(Lease::new(conn, reading))
    }

    /// The connection in `slot`, made now unless it works already.
    async fn connect_slot(&self, slot: usize, deadline: Instant) -> io::Result<Arc<Conn>> {
        let timed_out = |what: &str| {
            let (host, port, secs) = (&self.peer.host, self.peer.port, self.timeout.as_secs());
            let msg = format!("{what} {host}:{port} within {secs} s");
            io::Error::new(io::ErrorKind::TimedOut, msg)
        };
        let _guard = timeout_at(deadline, self.connecting[slot].lock())
            .await
            .map_err(|_| timed_out("not connected to"))?;
        if let Some(conn) = lock(&self.slots)[slot].as_ref().filter(|c| c.usable()) {
            return Ok(conn.clone());
        }
        let conn = timeout_at(deadline, self.connect())
            .await
            .map_err(|_| timed_out("no answer from"))??;
        let conn = Arc::new(conn);
        lock(&self.slots)[slot] = Some(conn.clone());
        tracing::debug!(origin = self.name, slot, "connected");
        Ok(conn)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
