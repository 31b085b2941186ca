//! Making an SSH session with a host, directly or through jump hosts (ssh_config's
//! `ProxyJump`): TCP, a `ProxyCommand`, or a `direct-tcpip` channel of the session with the
//! jump host before it; the host-key check against known_hosts, and the login.

use musicfs_ipc::sftp_target::SftpTarget;

use super::*;

/// One host an origin's sessions are made with: the NAS, or a jump host in front of it.
pub(super) struct Peer {
    /// `sftp://user@host:port` as the URL or ProxyJump names it (for messages).
    pub(super) name: String,
    /// What is connected to (ssh_config's `HostName`, else the URL's host).
    pub(super) host: String,
    pub(super) port: u16,
    /// The name of the host's key in known_hosts (`HostKeyAlias`, else `host`), and the port
    /// it names with it.
    pub(super) key_name: String,
    pub(super) key_port: u16,
    pub(super) known_hosts: Vec<PathBuf>,
    pub(super) login: Login,
    /// ssh_config's `ProxyCommand`: connections are made through it, not over TCP.
    proxy_command: Option<String>,
    /// The algorithms offered (ssh_config's `KexAlgorithms`, `Ciphers`, ... applied).
    preferred: russh::Preferred,
    /// Whether the host key types known_hosts holds go first (see `algorithms.rs`).
    reorder_host_keys: bool,
}

impl Peer {
    pub(super) fn new(
        config: &OriginConfig,
        target: &SftpTarget,
        name: String,
    ) -> Result<Self, String> {
        if target.known_hosts.is_empty() {
            return Err("no known_hosts file and no home directory".into());
        }
        let preferred = super::algorithms::preferred(&target.algorithms)?;
        Ok(Self {
            preferred,
            reorder_host_keys: super::algorithms::host_keys_reorderable(&target.algorithms),
            login: Login::new(config, target, &name)?,
            name,
            host: target.connect_to.clone(),
            port: target.port,
            key_name: target.key_name.clone(),
            key_port: target.key_port,
            known_hosts: target.known_hosts.clone(),
            proxy_command: target.proxy_command.clone(),
        })
    }

    /// An SSH session with this host over `stream` (TCP from here when `None`): host key
    /// checked, logged in.
    pub(super) async fn session(
        &self,
        stream: Option<russh::ChannelStream<client::Msg>>,
    ) -> io::Result<client::Handle<HostCheck>> {
        let (host, port) = (self.host.as_str(), self.port);
        let refusal = Arc::new(Mutex::new(None));
        let check = HostCheck {
            host: self.key_name.clone(),
            port: self.key_port,
            known_hosts: self.known_hosts.clone(),
            refusal: refusal.clone(),
        };
        let config = Arc::new(client::Config {
            preferred: self.preferred(),
            window_size: 16 << 20,
            maximum_packet_size: 65535,
            // Notices a dead peer on an idle connection before a request has to.
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let proxied = self.proxy_command.as_deref().filter(|_| stream.is_none());
        let connected = match (stream, proxied) {
            (Some(stream), _) => client::connect_stream(config, stream, check).await,
            (None, Some(command)) => {
                // A command that cannot be started leaves the host out of reach, whatever
                // the reason (a file error here is not the origin's file's).
                let through = |e: io::Error| {
                    let why = format!("ssh to {host}:{port} through ProxyCommand {command}: {e}");
                    io::Error::new(io::ErrorKind::ConnectionRefused, why)
                };
                let stream = crate::outside::connect(command).map_err(through)?;
                stream.set_nonblocking(true)?;
                let stream = tokio::net::UnixStream::from_std(stream)?;
                client::connect_stream(config, stream, check).await
            }
            (None, None) => {
                let socket = conn::tcp(host, port)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("ssh to {host}:{port}: {e}")))?;
                socket.set_nodelay(true)?;
                client::connect_stream(config, socket, check).await
            }
        };
        let mut ssh = match connected {
            Ok(ssh) => ssh,
            Err(e) => {
                let refused = lock(&refusal).take();
                let e = refused.map_or(self.ssh_error(e), io::Error::other);
                return Err(match proxied {
                    // A command that ended before the session began (it could not reach the
                    // host, or is not installed) is a host out of reach, as a refused TCP
                    // connection is.
                    Some(command) => io::Error::new(
                        match e.kind() {
                            io::ErrorKind::UnexpectedEof => io::ErrorKind::ConnectionAborted,
                            kind => kind,
                        },
                        format!("{e} (through ProxyCommand {command})"),
                    ),
                    None => e,
                });
            }
        };
        self.login.authenticate(&mut ssh).await?;
        Ok(ssh)
    }

    /// An error of the SSH session with this host, of a kind health reads.
    pub(super) fn ssh_error(&self, e: russh::Error) -> io::Error {
        let kind = match &e {
            russh::Error::IO(e) => e.kind(),
            russh::Error::ConnectionTimeout | russh::Error::KeepaliveTimeout => {
                io::ErrorKind::TimedOut
            }
            russh::Error::Disconnect | russh::Error::HUP => io::ErrorKind::ConnectionReset,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, format!("ssh to {}:{}: {e}", self.host, self.port))
    }

    /// The algorithms to offer (`algorithms.rs`), with the host key types known_hosts holds
    /// for this host first, so the key the server shows can be checked.
    fn preferred(&self) -> russh::Preferred {
        let mut preferred = self.preferred.clone();
        if !self.reorder_host_keys {
            return preferred;
        }
        let known: Vec<Algorithm> = self
            .known_hosts
            .iter()
            .filter_map(|file| {
                russh::keys::known_hosts::known_host_keys_path(&self.key_name, self.key_port, file)
                    .ok()
            })
            .flatten()
            .map(|(_, k)| k.algorithm())
            .collect();
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
}

impl Shared {
    /// Connects (through the jump hosts, if there are any), checks the host key, logs in and
    /// starts SFTP.
    pub(super) async fn connect(&self) -> io::Result<Conn> {
        // Each session is made through a `direct-tcpip` channel of the one before it.
        let mut sessions: Vec<client::Handle<HostCheck>> = Vec::new();
        for (i, hop) in self.jumps.iter().chain([&self.peer]).enumerate() {
            let stream = match sessions.last() {
                None => None,
                Some(via) => {
                    let (host, port) = (hop.host.as_str(), u32::from(hop.port));
                    let tunnel = via.channel_open_direct_tcpip(host, port, "127.0.0.1", 0);
                    let from = &self.jumps[i - 1];
                    let tunnel = tunnel.await.map_err(|e| {
                        let e = from.ssh_error(e);
                        let why = format!("jump host {} to {host}:{port}: {e}", from.name);
                        io::Error::new(e.kind(), why)
                    })?;
                    Some(tunnel.into_stream())
                }
            };
            let session = hop.session(stream).await;
            let session = match i < self.jumps.len() {
                true => session.map_err(|e| {
                    io::Error::new(e.kind(), format!("jump host {}: {e}", hop.name))
                })?,
                false => session?,
            };
            sessions.push(session);
        }
        let ssh = sessions.pop().expect("the NAS's session");
        let ssh_error = |e| self.peer.ssh_error(e);
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
            jumps: sessions,
            sftp,
            request_len,
            broken: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            files: AtomicUsize::new(0),
            reads: Mutex::new(Vec::new()),
        })
    }
}
