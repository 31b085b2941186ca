//! One SSH session with its SFTP channel, the host-key check against known_hosts, and the
//! identity file.

use super::known_hosts::Verdict;
use super::*;

/// One SSH session with its SFTP channel.
pub(super) struct Conn {
    pub(super) ssh: client::Handle<HostCheck>,
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
    pub(super) fn usable(&self) -> bool {
        !self.broken.load(Ordering::Acquire) && !self.ssh.is_closed()
    }

    /// Poisons the connection if `fail` says it is broken; true if it was lost (worth a retry).
    pub(super) fn failed(&self, fail: &Fail) -> bool {
        if matches!(fail, Fail::Timeout | Fail::Lost(_)) {
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
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) known_hosts: PathBuf,
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
        let known = super::known_hosts::check_file(&self.known_hosts, &self.host, self.port, key);
        let why = match known {
            Ok(Verdict::Trusted) => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("cannot check the host key of {host} ({shown}): {file} does not exist")
            }
            Err(e) => {
                format!("cannot check the host key of {host} ({shown}): cannot read {file}: {e}")
            }
            Ok(Verdict::Unknown) => format!(
                "host {host} ({shown}) is not in known_hosts file {file}; check its key \
                 and add it (e.g. ssh-keyscan -p {} {} >> {file})",
                self.port, self.host
            ),
            Ok(Verdict::Mismatch { line }) => format!(
                "the host key of {host} ({shown}) does not match the one in known_hosts file \
                 {file} line {line}: the server's key changed, or someone is in between"
            ),
            Ok(Verdict::Revoked { line }) => format!(
                "the host key of {host} ({shown}) is marked @revoked in known_hosts file \
                 {file} line {line}"
            ),
        };
        *lock(&self.refusal) = Some(format!("{why}; refusing to connect"));
        Ok(false)
    }
}

pub(super) fn load_key(file: &Path) -> Result<Arc<PrivateKey>, String> {
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
pub(super) fn current_user() -> Option<String> {
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
