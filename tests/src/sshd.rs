//! A real OpenSSH `sshd` on 127.0.0.1 for the SFTP tests: its own config, host key, client key,
//! authorized_keys and known_hosts in a temp dir (never `/etc/ssh`), on a free port, with its
//! log in `sshd.log` there. It can be stopped and started again on the same port (failover),
//! and stalled (SIGSTOP of the listener and every process serving a connection) so a client
//! sees a server that stops answering mid-request.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SSHD: &str = "/usr/sbin/sshd";
const READY_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    /// Runs in its own mount namespace with these files over `/etc/shadow` and
    /// `/etc/pam.d/sshd` ([`Sshd::with_password`]).
    password_files: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
}

impl Sshd {
    /// Generates keys and a config in a fresh temp dir and starts sshd on a free port.
    pub fn new() -> Sshd {
        Self::with_config("")
    }

    /// [`Sshd::new`] with `extra` lines of sshd_config added (`ClientAliveInterval 1\n`); they
    /// come first, so they win over the defaults here.
    pub fn with_config(extra: &str) -> Sshd {
        Self::build(extra, None)
    }

    /// An sshd that also logs the current user in with `password`, checked through PAM
    /// (`pam_unix`) against a copy of `/etc/shadow` holding that password. sshd runs in its own
    /// mount namespace with the copy bind-mounted over the real file, so the system's users
    /// and passwords are never touched. `methods` are the sshd_config lines saying what it
    /// offers: `PasswordAuthentication yes` (Debian's default), or only
    /// `KbdInteractiveAuthentication yes` (FreeBSD's and macOS's, where a password goes
    /// through keyboard-interactive).
    pub fn with_password(password: &str, methods: &str) -> Sshd {
        let extra = format!("{methods}UsePAM yes\nPermitRootLogin yes\n");
        Self::build(&extra, Some(password))
    }

    fn build(extra: &str, password: Option<&str>) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (scripts/deps.sh test)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path();
        keygen(&path.join("host_ed25519"));
        keygen(&path.join("client_ed25519"));
        std::fs::copy(
            path.join("client_ed25519.pub"),
            path.join("authorized_keys"),
        )
        .expect("write authorized_keys");
        let port = crate::free_port();
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .expect("the current user has a name");
        let config = format!(
            "{extra}\
             Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {dir}/host_ed25519\n\
             PidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             Subsystem sftp internal-sftp\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             MaxStartups 100\n\
             MaxSessions 100\n\
             LogLevel VERBOSE\n",
            dir = path.display()
        );
        std::fs::write(path.join("sshd_config"), config).expect("write sshd_config");
        let host_key = std::fs::read_to_string(path.join("host_ed25519.pub")).unwrap();
        let mut fields = host_key.split_whitespace();
        let (alg, key) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(
            path.join("known_hosts"),
            format!("[127.0.0.1]:{port} {alg} {key}\n"),
        )
        .expect("write known_hosts");
        let password_files = password.map(|p| password_files(path, &user, p));
        let mut sshd = Sshd {
            dir,
            port,
            user,
            password_files,
            child: None,
        };
        sshd.start();
        sshd
    }

    /// Starts sshd again (on the same port) after [`Sshd::stop`]; waits until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "sshd is already running");
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd (privilege separation)");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open sshd.log");
        let config = self.dir.path().join("sshd_config");
        let mut command = match &self.password_files {
            None => {
                let mut c = Command::new(SSHD);
                c.args(["-D", "-e", "-f"]).arg(&config);
                c
            }
            // unshare and sh exec in turn: the child's pid is sshd's.
            Some((shadow, pam)) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg(
                        "mount --bind \"$1\" /etc/shadow && mount --bind \"$2\" /etc/pam.d/sshd \
                         && exec \"$3\" -D -e -f \"$4\"",
                    )
                    .arg("sh")
                    .args([shadow.as_os_str(), pam.as_os_str()])
                    .arg(SSHD)
                    .arg(&config);
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("sshd exited at start ({status}); its log:\n{}", self.log());
            }
            if banner(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not answer on port {} in time; its log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills sshd and every process serving a connection: clients see their connections
    /// reset and new ones refused, until [`Sshd::start`].
    pub fn stop(&mut self) {
        for pid in self.processes() {
            let _ = kill(pid, Signal::SIGKILL);
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.wait();
        // Connections' processes are no longer our children; wait until they are gone so the
        // port is free and their sockets are closed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Freezes sshd (SIGSTOP to the listener and every process below it): established
    /// connections stop answering and new ones hang after the TCP handshake.
    pub fn stall(&self) {
        let pids = self.processes();
        for pid in &pids {
            let _ = kill(*pid, Signal::SIGSTOP);
        }
        for pid in pids {
            crate::wait_stopped(pid.as_raw());
        }
    }

    /// Freezes only the processes that serve SFTP requests, as a NAS whose disk is spinning
    /// up: requests get no answer, but sshd itself still answers (keepalives, pings, new
    /// logins). [`Sshd::resume`] undoes it. Returns how many it froze.
    pub fn stall_file_servers(&self) -> usize {
        let serving: Vec<Pid> = self
            .processes()
            .into_iter()
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains("sftp")
            })
            .collect();
        for pid in &serving {
            let _ = kill(*pid, Signal::SIGSTOP);
        }
        for pid in &serving {
            crate::wait_stopped(pid.as_raw());
        }
        serving.len()
    }

    /// Undoes [`Sshd::stall`].
    pub fn resume(&self) {
        for pid in self.processes() {
            let _ = kill(pid, Signal::SIGCONT);
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user tests log in as (the current user; root in CI).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// That user's home folder, where sshd starts a session.
    pub fn home(&self) -> PathBuf {
        nix::unistd::User::from_name(&self.user)
            .ok()
            .flatten()
            .map(|u| u.dir)
            .expect("the user has a home folder")
    }

    /// `sftp://user@127.0.0.1:PORT/path` (`path` absolute), every byte of the path but
    /// letters, digits, `/` and `-._~` written as a `%XX` escape, as URLs have it.
    pub fn url(&self, path: &Path) -> String {
        let mut escaped = String::new();
        for &byte in path.as_os_str().as_encoded_bytes() {
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'.' | b'_' | b'~' => {
                    escaped.push(byte as char)
                }
                _ => escaped.push_str(&format!("%{byte:02X}")),
            }
        }
        format!("sftp://{}@127.0.0.1:{}{escaped}", self.user, self.port)
    }

    /// The client's private key (authorized by the server).
    pub fn identity_file(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// A known_hosts file holding the server's key for `[127.0.0.1]:PORT`.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The temp dir holding the config, keys and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// What sshd has logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The listener and all its descendants (processes serving connections), listener first.
    fn processes(&self) -> Vec<Pid> {
        let Some(child) = &self.child else {
            return Vec::new();
        };
        let mut all = vec![child.id() as i32];
        let parents = parent_pids();
        let mut i = 0;
        while i < all.len() {
            let parent = all[i];
            all.extend(
                parents
                    .iter()
                    .filter(|(_, ppid)| *ppid == parent)
                    .map(|(pid, _)| *pid),
            );
            i += 1;
        }
        all.into_iter().map(Pid::from_raw).collect()
    }
}

impl Default for Sshd {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes an ed25519 key pair without a passphrase at `path` and `path.pub`.
pub fn keygen(path: &Path) {
    let mut keygen = Command::new("ssh-keygen");
    keygen.args(["-q", "-t", "ed25519", "-N", "", "-C", "musicfs-test", "-f"]);
    crate::run_ok(keygen.arg(path), "install openssh-client");
}

/// Signs `key`'s public half (`KEY.pub`) with the CA key `ca` for the user `principal`, valid
/// over `validity` (`ssh-keygen -V`, `-5m:+1h`): writes `KEY-cert.pub`, as `ssh-keygen -s` does.
pub fn certify(ca: &Path, key: &Path, principal: &str, validity: &str) -> PathBuf {
    let mut public = key.as_os_str().to_owned();
    public.push(".pub");
    let mut sign = Command::new("ssh-keygen");
    sign.args(["-q", "-s"]).arg(ca);
    sign.args(["-I", "musicfs-test", "-n", principal, "-V", validity]);
    crate::run_ok(sign.arg(&public), "install openssh-client");
    let mut cert = key.as_os_str().to_owned();
    cert.push("-cert.pub");
    PathBuf::from(cert)
}

/// Writes `shadow` (a copy of `/etc/shadow` where `user`'s password is `password`) and
/// `pam.sshd` (PAM checks passwords with `pam_unix` and allows the rest) into `dir`.
fn password_files(dir: &Path, user: &str, password: &str) -> (PathBuf, PathBuf) {
    let out = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(password.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run openssl passwd (install openssl)");
    assert!(out.status.success(), "openssl passwd failed");
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let system = std::fs::read_to_string("/etc/shadow").expect("read /etc/shadow (as root)");
    let shadow: String = system
        .lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split(':').collect();
            if fields.first() == Some(&user) && fields.len() > 2 {
                fields[1] = &hash;
                // No expiry or forced change: the day of the last change is today's.
                fields[2] = "";
            }
            fields.join(":") + "\n"
        })
        .collect();
    assert!(
        shadow.contains(&format!("{user}:{hash}:")),
        "no {user} in /etc/shadow"
    );
    let (shadow_path, pam_path) = (dir.join("shadow"), dir.join("pam.sshd"));
    std::fs::write(&shadow_path, shadow).expect("write shadow");
    std::fs::write(
        &pam_path,
        "auth required pam_unix.so\naccount required pam_permit.so\n\
         session required pam_permit.so\npassword required pam_deny.so\n",
    )
    .expect("write pam.sshd");
    (shadow_path, pam_path)
}

/// Whether an SSH server answers on the port with its version banner.
fn banner(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

/// (pid, ppid) of every process, from /proc.
fn parent_pids() -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...; comm may hold spaces and parentheses.
        let after = &stat[stat.rfind(')')? + 1..];
        let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
        Some((pid, ppid))
    })
    .collect()
}
