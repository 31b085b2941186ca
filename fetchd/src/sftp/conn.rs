//! One SSH session with its SFTP channel, and the host-key check against known_hosts.

use super::known_hosts::{check_files, Verdict};
use super::*;

/// One SSH session with its SFTP channel.
pub(super) struct Conn {
    pub(super) ssh: client::Handle<HostCheck>,
    /// The sessions with the jump hosts that `ssh` is tunnelled through, kept open with it.
    pub(super) jumps: Vec<client::Handle<HostCheck>>,
    pub(super) sftp: RawSftpSession,
    pub(super) request_len: u32,
    pub(super) broken: AtomicBool,
    /// Operations running on it.
    pub(super) busy: AtomicUsize,
    /// Files open on it.
    pub(super) files: AtomicUsize,
    /// The paths being read on it now, with how many reads of each (see [`Lease`]).
    pub(super) reads: Mutex<Vec<(Box<str>, usize)>>,
}

impl Conn {
    /// Waits for `f`, an SFTP request on this connection, as a server that may be slow but
    /// alive deserves. Half way through `timeout` without an answer, the connection is pinged
    /// (sshd answers that itself). At `timeout`, a server that has not answered the ping is
    /// taken for gone ([`Fail::Timeout`], as before); one that has is alive with a slow file
    /// system behind it (a NAS disk spinning up takes 5-20 s), and is waited for, a timeout
    /// at a time (pinged again at the start of each), up to [`SLOW_LIMIT`] in all
    /// ([`Fail::Slow`]).
    pub(super) async fn answer<T>(
        &self,
        timeout: Duration,
        f: impl Future<Output = T>,
    ) -> Result<T, Fail> {
        let started = Instant::now();
        tokio::pin!(f);
        // Most answers come well within half the timeout: one timer, as a plain timeout.
        if let Ok(answer) = tokio::time::timeout(timeout / 2, &mut f).await {
            return Ok(answer);
        }
        let mut deadline = started + timeout;
        loop {
            let ping = async { self.ssh.send_ping().await.is_ok() && !self.ssh.is_closed() };
            tokio::pin!(ping);
            let mut alive = None;
            loop {
                tokio::select! {
                    answer = &mut f => return Ok(answer),
                    answered = &mut ping, if alive.is_none() => alive = Some(answered),
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            if alive != Some(true) {
                return Err(Fail::Timeout);
            }
            if deadline - started >= SLOW_LIMIT {
                return Err(Fail::Slow(deadline - started));
            }
            if deadline - started == timeout {
                tracing::info!(
                    "an SFTP server answers, but not a request for {} s (a disk spinning \
                     up?); waiting up to {} s",
                    timeout.as_secs(),
                    SLOW_LIMIT.as_secs()
                );
            }
            deadline += timeout;
        }
    }

    pub(super) fn usable(&self) -> bool {
        let jump_open = self.jumps.iter().all(|jump| !jump.is_closed());
        !self.broken.load(Ordering::Acquire) && !self.ssh.is_closed() && jump_open
    }

    /// Poisons the connection if `fail` says it is broken; true if it was lost (worth a retry).
    pub(super) fn failed(&self, fail: &Fail) -> bool {
        if matches!(fail, Fail::Timeout | Fail::Slow(_) | Fail::Lost(_)) {
            self.broken.store(true, Ordering::Release);
        }
        matches!(fail, Fail::Lost(_))
    }

    /// Operations running on it other than reads of `path`: the ones a request for `path`
    /// would queue behind.
    pub(super) fn busy_apart_from(&self, path: Option<&str>) -> usize {
        let busy = self.busy.load(Ordering::Relaxed);
        let Some(path) = path else { return busy };
        let reads = lock(&self.reads);
        let mine = reads.iter().find(|(p, _)| &**p == path).map_or(0, |e| e.1);
        busy.saturating_sub(mine)
    }

    pub(super) fn load(&self) -> (usize, usize) {
        (
            self.busy.load(Ordering::Relaxed),
            self.files.load(Ordering::Relaxed),
        )
    }
}

/// A connection in use by one operation; for a read, with the path it reads (counted in the
/// connection's `reads` while the lease lasts).
pub(super) struct Lease(pub(super) Arc<Conn>, Option<Box<str>>);

impl Lease {
    pub(super) fn new(conn: Arc<Conn>, reading: Option<&str>) -> Self {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = reading {
            let mut reads = lock(&conn.reads);
            match reads.iter_mut().find(|(p, _)| &**p == path) {
                Some(entry) => entry.1 += 1,
                None => reads.push((path.into(), 1)),
            }
        }
        Self(conn, reading.map(Into::into))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(path) = &self.1 {
            let mut reads = lock(&self.0.reads);
            if let Some(at) = reads.iter().position(|(p, _)| p == path) {
                reads[at].1 -= 1;
                if reads[at].1 == 0 {
                    reads.swap_remove(at);
                }
            }
        }
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Checks the server's host key against known_hosts, and says why when it refuses.
pub(super) struct HostCheck {
    /// The host's name in known_hosts.
    pub(super) host: String,
    pub(super) port: u16,
    /// Searched as one, the user's files first.
    pub(super) known_hosts: Vec<PathBuf>,
    pub(super) refusal: Arc<Mutex<Option<String>>>,
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
        let files: Vec<String> = self
            .known_hosts
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        let files = files.join(", ");
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            let why = format!("{host} showed a certificate; only keys in {files} are trusted");
            *lock(&self.refusal) = Some(why);
            return Ok(false);
        };
        let shown = format!(
            "{} {}",
            key.algorithm(),
            key.fingerprint(Default::default())
        );
        let known = check_files(&self.known_hosts, &self.host, self.port, key);
        let at = |file: Option<&Path>, line| {
            format!(
                "known_hosts file {} line {line}",
                file.unwrap_or(Path::new("?")).display()
            )
        };
        let why = match known {
            Ok((Verdict::Trusted, _)) => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let missing = match self.known_hosts.len() {
                    1 => format!("{files} does not exist"),
                    _ => format!("none of the known_hosts files {files} exists"),
                };
                format!("cannot check the host key of {host} ({shown}): {missing}")
            }
            Err(e) => format!("cannot check the host key of {host} ({shown}): cannot read {e}"),
            Ok((Verdict::Unknown, _)) => format!(
                "host {host} ({shown}) is not in known_hosts ({files}); check its key and add \
                 it (e.g. ssh-keyscan -p {} {} >> {})",
                self.port,
                self.host,
                self.known_hosts[0].display()
            ),
            Ok((Verdict::Mismatch { line }, file)) => format!(
                "the host key of {host} ({shown}) does not match the one in {}: the server's \
                 key changed, or someone is in between",
                at(file, line)
            ),
            Ok((Verdict::Revoked { line }, file)) => format!(
                "the host key of {host} ({shown}) is marked @revoked in {}",
                at(file, line)
            ),
        };
        *lock(&self.refusal) = Some(format!("{why}; refusing to connect"));
        Ok(false)
    }
}

/// How long one address may go unanswered before the next is tried beside it.
const STAGGER: Duration = Duration::from_millis(250);

/// Connects to the first of `host`'s addresses that answers, trying the next one beside it
/// each [`STAGGER`] an attempt goes unanswered (RFC 8305's "happy eyeballs", simplified). A
/// name with a dead IPv6 address in front of a working IPv4 one (a home network whose IPv6
/// the NAS's firewall drops) costs a quarter second, not the whole timeout: tried one after
/// the other, the first address would wait for the kernel's two minutes of SYNs.
pub(super) async fn tcp(host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port)).await?.collect();
    if addrs.is_empty() {
        let why = format!("{host} has no address");
        return Err(io::Error::new(io::ErrorKind::NotFound, why));
    }
    first_of(addrs).await
}

/// The first of `addrs` (not empty) to accept a connection, as [`tcp`] tries them.
async fn first_of(addrs: Vec<std::net::SocketAddr>) -> io::Result<tokio::net::TcpStream> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut addrs = addrs.into_iter().peekable();
    let mut attempts = FuturesUnordered::new();
    let mut last = None;
    loop {
        if let Some(addr) = addrs.next() {
            attempts.push(async move { (addr, tokio::net::TcpStream::connect(addr).await) });
        }
        if attempts.is_empty() {
            return Err(last.unwrap_or_else(|| io::Error::other("no address to connect to")));
        }
        let more = addrs.peek().is_some();
        tokio::select! {
            Some((addr, done)) = attempts.next() => match done {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(io::Error::new(e.kind(), format!("{addr}: {e}"))),
            },
            () = tokio::time::sleep(STAGGER), if more => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};

    /// A listening socket whose accept queue is full: the kernel drops further SYNs, so a
    /// connection to it hangs as to a firewalled address.
    fn black_hole() -> (TcpListener, Vec<std::net::TcpStream>, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Listening again sets the backlog: 0 lets one connection wait.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        assert_eq!(unsafe { libc::listen(fd, 0) }, 0);
        let addr = listener.local_addr().unwrap();
        let queued = (0..2)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
            })
            .collect();
        (listener, queued, addr)
    }

    #[test]
    fn a_silent_address_costs_a_stagger_not_the_timeout() {
        let (_hole, _queued, silent) = black_hole();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // The hole really is silent.
        let waited = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(silent),
            )
            .await
        });
        assert!(waited.is_err(), "the black hole answered: nothing to test");
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let good = server.local_addr().unwrap();
        // The silent address first, as a name's dead IPv6 address before its IPv4 one.
        let started = std::time::Instant::now();
        let stream = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(5), first_of(vec![silent, good])).await
            })
            .expect("gave up on the silent address too late")
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
