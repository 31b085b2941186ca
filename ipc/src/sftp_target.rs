//! Where, as whom and with which files an `sftp://` origin logs in: its URL first, then its
//! options in the MusicFS config, then the `Host` blocks of the user's ssh_config
//! (`ssh_config.rs`), then OpenSSH's defaults. fetchd connects with this, and its sandbox
//! admits the files named here before anything is read.

use std::path::{Path, PathBuf};

use crate::origin::{OriginConfig, OriginUrl};
use crate::ssh_config::{self, expand, Algorithms, HostSettings, Tokens};

/// The system's known_hosts files, as OpenSSH's `GlobalKnownHostsFile` has them by default.
const GLOBAL_KNOWN_HOSTS: &[&str] = &["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

/// Jump hosts on the way to one origin at most: more is taken for jump hosts that name each
/// other (ssh itself would go round until something gives out).
const MAX_JUMPS: usize = 8;

/// Keys tried, in order, in `~/.ssh` when no identity file is configured.
pub const DEFAULT_KEYS: &[&str] = &["id_ed25519", "id_ecdsa", "id_rsa"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpTarget {
    pub user: String,
    /// The host as the URL names it (the origin's name keeps it).
    pub host: String,
    pub port: u16,
    /// What is connected to: ssh_config's `HostName`, else `host`.
    pub connect_to: String,
    /// The name its key is looked up under in known_hosts: `HostKeyAlias`, else `connect_to`.
    pub key_name: String,
    /// The port known_hosts names with it (`[name]:port` unless 22): none with a
    /// `HostKeyAlias`, as in OpenSSH.
    pub key_port: u16,
    pub path: String,
    pub identity: Identity,
    /// Certificate files to offer with their keys: the origin's `certificate_file`, else
    /// ssh_config's `CertificateFile`s, then `FILE-cert.pub` beside each identity file (as
    /// ssh looks for them); those that do not exist are not offered.
    pub certificates: Vec<PathBuf>,
    /// Offer the agent's keys only where they are an identity file's (`IdentitiesOnly`).
    pub identities_only: bool,
    /// The known_hosts files, searched as one: the origin's `known_hosts` alone, else the
    /// user's (ssh_config's `UserKnownHostsFile`, or `~/.ssh/known_hosts` and
    /// `known_hosts2`) then the system's (`GlobalKnownHostsFile`, or
    /// `/etc/ssh/ssh_known_hosts` and `ssh_known_hosts2`).
    pub known_hosts: Vec<PathBuf>,
    /// The ssh-agent's socket, if one is to be asked.
    pub agent: Option<PathBuf>,
    /// The SSH algorithms ssh_config asks for (`KexAlgorithms` for an old NAS, ...).
    pub algorithms: Algorithms,
    /// ssh_config's `ProxyCommand`, its tokens expanded: a command for `sh -c` whose stdin and
    /// stdout carry the connection (`ssh -W %h:%p gate`, `cloudflared access ssh`).
    pub proxy_command: Option<String>,
    /// ssh_config's `ProxyJump`: the host the connection is made through, resolved as an
    /// origin of its own from the same ssh_config (with this origin's known_hosts and agent
    /// options), and reached through its own jump host or `ProxyCommand` if it has one. Of
    /// `ProxyJump a,b` this is `b`, and `a` its jump host, as ssh has it.
    pub jump: Option<Box<SftpTarget>>,
    /// ssh_config options that apply to the host, or to a jump host on the way, and are not
    /// followed (`Match` blocks with criteria not decided here).
    pub not_followed: Vec<String>,
    /// The ssh_config files read.
    pub config_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The origin's `identity_file`: it must be usable.
    Configured(PathBuf),
    /// ssh_config's `IdentityFile`s or the default keys: the first usable one is used.
    Candidates(Vec<PathBuf>),
}

impl Identity {
    pub fn files(&self) -> &[PathBuf] {
        match self {
            Identity::Configured(file) => std::slice::from_ref(file),
            Identity::Candidates(files) => files,
        }
    }
}

impl SftpTarget {
    /// Resolves an `sftp://` origin; `home` is the user's home folder, if there is one. An
    /// ssh_config that cannot be read or parsed is an error.
    pub fn resolve(config: &OriginConfig, home: Option<&Path>) -> Result<Self, String> {
        Self::resolve_hop(config, home, None, 0)
    }

    /// [`SftpTarget::resolve`] for the host `hops` jump hosts away from the origin; `jump`
    /// replaces the host's own `ProxyJump` and `ProxyCommand` (as `ssh -J` on a command line
    /// does: ssh reaches `b` of `ProxyJump a,b` with `ssh -J a b`).
    fn resolve_hop(
        config: &OriginConfig,
        home: Option<&Path>,
        jump: Option<&str>,
        hops: usize,
    ) -> Result<Self, String> {
        let url = config.parsed()?;
        let OriginUrl::Sftp {
            user,
            host,
            port,
            path,
        } = url
        else {
            return Err(format!("origin {}: not an sftp:// URL", config.url));
        };
        let ssh_dir = home.map(|h| h.join(".ssh"));
        let local_user = current_user();
        let ssh_file = match (&config.ssh_config, &ssh_dir) {
            (Some(file), _) if file.as_os_str() == "none" => None,
            (Some(file), _) => Some(file.clone()),
            (None, dir) => dir.as_ref().map(|d| d.join("config")),
        };
        let settings = match &ssh_file {
            Some(file) => {
                let dir = ssh_dir.clone().unwrap_or_else(|| file.with_file_name(""));
                let asked = ssh_config::Asked {
                    host: &host,
                    user: user.as_deref(),
                    local_user: local_user.as_deref().unwrap_or(""),
                };
                ssh_config::read(file, asked, &dir)
                    .map_err(|e| format!("origin {}: ssh config: {e}", config.url))?
            }
            None => HostSettings::default(),
        };
        let user = user
            .or(settings.user.clone())
            .or(local_user.clone())
            .ok_or_else(|| {
                format!(
                    "origin {}: no user in the URL or the ssh config, and no current user \
                     name ($USER)",
                    config.url
                )
            })?;
        let port = port.or(settings.port).unwrap_or(22);
        let connect_to = settings.hostname.clone().unwrap_or_else(|| host.clone());
        let home_or_root = home.unwrap_or(Path::new("/"));
        let tokens = Tokens {
            home: home_or_root,
            local_user: local_user.as_deref().unwrap_or(""),
            host: &connect_to,
            original_host: &host,
            user: &user,
            port,
        };
        let expanded = |values: &[String]| -> Vec<PathBuf> {
            values.iter().filter_map(|v| expand(v, &tokens)).collect()
        };
        let identity = match &config.identity_file {
            Some(file) => Identity::Configured(file.clone()),
            None if !settings.identity_files.is_empty() => {
                Identity::Candidates(expanded(&settings.identity_files))
            }
            None => Identity::Candidates(
                ssh_dir
                    .iter()
                    .flat_map(|d| DEFAULT_KEYS.iter().map(|k| d.join(k)))
                    .collect(),
            ),
        };
        let mut certificates = match &config.certificate_file {
            Some(file) => vec![file.clone()],
            None => expanded(&settings.certificate_files),
        };
        certificates.extend(identity.files().iter().map(|key| {
            let mut cert = key.as_os_str().to_owned();
            cert.push("-cert.pub");
            PathBuf::from(cert)
        }));
        let none = |files: &[String]| files.iter().any(|f| f.eq_ignore_ascii_case("none"));
        let known_hosts = match (&config.known_hosts, &settings.known_hosts) {
            (Some(file), _) => vec![file.clone()],
            (None, user) => {
                let mut files = match user {
                    Some(files) if none(files) => Vec::new(),
                    Some(files) => expanded(files),
                    None => ssh_dir
                        .iter()
                        .flat_map(|d| [d.join("known_hosts"), d.join("known_hosts2")])
                        .collect(),
                };
                match &settings.global_known_hosts {
                    Some(global) if none(global) => {}
                    Some(global) => files.extend(expanded(global)),
                    None => files.extend(GLOBAL_KNOWN_HOSTS.iter().map(PathBuf::from)),
                }
                files
            }
        };
        let from_env = |name: &str| std::env::var_os(name).filter(|s| !s.is_empty());
        let agent = match (&config.identity_agent, &settings.identity_agent) {
            (Some(path), _) if path.as_os_str() == "none" => None,
            (Some(path), _) => Some(path.clone()),
            (None, Some(value)) if value.eq_ignore_ascii_case("none") => None,
            (None, Some(value)) if value == "SSH_AUTH_SOCK" => {
                from_env("SSH_AUTH_SOCK").map(PathBuf::from)
            }
            (None, Some(value)) if value.starts_with('$') && !value.starts_with("${") => {
                from_env(&value[1..]).map(PathBuf::from)
            }
            (None, Some(value)) => expand(value, &tokens),
            (None, None) => from_env("SSH_AUTH_SOCK").map(PathBuf::from),
        };
        let proxy_command = match settings.proxy_command.as_deref() {
            _ if jump.is_some() => None,
            None => None,
            Some(none) if none.eq_ignore_ascii_case("none") => None,
            Some(command) => Some(
                expand(command, &tokens)
                    .ok_or_else(|| {
                        format!(
                            "origin {}: ProxyCommand {command}: it names an unset variable",
                            config.url
                        )
                    })?
                    .to_string_lossy()
                    .into_owned(),
            ),
        };
        let mut not_followed = settings.not_followed;
        let mut config_files = settings.files;
        let jump = match jump.or(settings.proxy_jump.as_deref()) {
            None => None,
            Some(none) if none.eq_ignore_ascii_case("none") => None,
            Some(spec) => {
                let mut jump = Self::resolve_jump(config, spec, home, hops)?;
                not_followed.append(&mut jump.not_followed);
                for file in jump.config_files.drain(..) {
                    if !config_files.contains(&file) {
                        config_files.push(file);
                    }
                }
                Some(Box::new(jump))
            }
        };
        Ok(Self {
            key_name: settings
                .host_key_alias
                .clone()
                .unwrap_or_else(|| connect_to.clone()),
            key_port: match settings.host_key_alias {
                Some(_) => 22,
                None => port,
            },
            user,
            host,
            port,
            connect_to,
            path,
            identity,
            certificates,
            identities_only: config.identities_only || settings.identities_only == Some(true),
            known_hosts,
            agent,
            algorithms: settings.algorithms.clone(),
            proxy_command,
            jump,
            not_followed,
            config_files,
        })
    }

    /// The jump host of `ProxyJump spec` (`[ssh://][user@]host[:port]`, comma-separated):
    /// its last host, reached through the ones before it, else through its own jump host or
    /// `ProxyCommand`.
    fn resolve_jump(
        config: &OriginConfig,
        spec: &str,
        home: Option<&Path>,
        hops: usize,
    ) -> Result<Self, String> {
        let fail = |e: String| format!("origin {}: jump host {spec}: {e}", config.url);
        if hops >= MAX_JUMPS {
            let why = format!("more than {MAX_JUMPS} jump hosts on the way (a loop?)");
            return Err(fail(why));
        }
        let (before, last) = match spec.rsplit_once(',') {
            Some((before, last)) => (Some(before.trim()), last.trim()),
            None => (None, spec.trim()),
        };
        let last = last.strip_prefix("ssh://").unwrap_or(last);
        let mut via = OriginConfig::from_url(format!("sftp://{}/", last.trim_end_matches('/')));
        via.ssh_config = config.ssh_config.clone();
        via.known_hosts = config.known_hosts.clone();
        via.identity_agent = config.identity_agent.clone();
        // Named once, by the origin's own jump host: deeper errors name their hop already.
        Self::resolve_hop(&via, home, before, hops + 1).map_err(|e| match hops {
            0 => fail(e),
            _ => e,
        })
    }

    /// This host and the jump hosts on the way to it, the nearest first: connections are made
    /// to the last one first.
    pub fn hops(&self) -> impl Iterator<Item = &SftpTarget> {
        std::iter::successors(Some(self), |t| t.jump.as_deref())
    }

    /// [`SftpTarget::resolve`], or with an ssh_config that cannot be read, what the origin
    /// would be without one (to name it and admit its files while it reports the error).
    pub fn resolve_without_broken_config(
        config: &OriginConfig,
        home: Option<&Path>,
    ) -> Result<Self, String> {
        Self::resolve(config, home).or_else(|_| {
            let mut without = config.clone();
            without.ssh_config = Some("none".into());
            Self::resolve(&without, home)
        })
    }

    /// The origin's name: `sftp://user@host:port/path`, the host as the URL names it.
    pub fn name(&self) -> String {
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        format!("sftp://{}@{host}:{}{}", self.user, self.port, self.path)
    }
}

/// `$USER`, else the name of the effective user.
pub fn current_user() -> Option<String> {
    if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return Some(user);
    }
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid());
    user.ok().flatten().map(|u| u.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, ssh_config: &str, edit: impl Fn(&mut OriginConfig)) -> SftpTarget {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        std::fs::write(home.path().join(".ssh/config"), ssh_config).unwrap();
        let mut config = OriginConfig::from_url(url);
        config.identity_agent = Some("none".into());
        edit(&mut config);
        let mut target = SftpTarget::resolve(&config, Some(home.path())).unwrap();
        // Paths under the temp home, written as under `/home/ann`.
        let strip = |p: &PathBuf| match p.strip_prefix(home.path()) {
            Ok(rest) => Path::new("/home/ann").join(rest),
            Err(_) => p.clone(),
        };
        target.identity = match target.identity {
            Identity::Candidates(files) => Identity::Candidates(files.iter().map(strip).collect()),
            configured => configured,
        };
        target.known_hosts = target.known_hosts.iter().map(strip).collect();
        target.certificates = target.certificates.iter().map(strip).collect();
        target.config_files = target.config_files.iter().map(strip).collect();
        target
    }

    #[test]
    fn the_url_comes_first_then_the_options_then_ssh_config_then_defaults() {
        let ssh = "Host nas\n HostName 192.168.1.10\n User music\n Port 2222\n \
                   IdentityFile ~/.ssh/nas_%r\n UserKnownHostsFile ~/.ssh/nas_hosts\n \
                   HostKeyAlias nas-key\n";
        let t = target("sftp://nas/srv/music", ssh, |_| {});
        assert_eq!(t.name(), "sftp://music@nas:2222/srv/music");
        assert_eq!(
            (t.connect_to.as_str(), t.key_name.as_str()),
            ("192.168.1.10", "nas-key")
        );
        assert_eq!(t.key_port, 22, "an alias names the key without a port");
        assert_eq!(
            t.identity,
            Identity::Candidates(vec!["/home/ann/.ssh/nas_music".into()])
        );
        assert_eq!(
            t.known_hosts,
            [
                "/home/ann/.ssh/nas_hosts",
                "/etc/ssh/ssh_known_hosts",
                "/etc/ssh/ssh_known_hosts2"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(t.config_files, [PathBuf::from("/home/ann/.ssh/config")]);
        assert_eq!(
            t.certificates,
            ["/home/ann/.ssh/nas_music-cert.pub"].map(PathBuf::from)
        );
        assert!(!t.identities_only);

        let t = target("sftp://ann@nas:22/srv/music", ssh, |c| {
            c.identity_file = Some("/etc/musicfs/key".into());
            c.known_hosts = Some("/etc/musicfs/known_hosts".into());
        });
        assert_eq!(t.name(), "sftp://ann@nas:22/srv/music");
        assert_eq!(t.identity, Identity::Configured("/etc/musicfs/key".into()));
        assert_eq!(
            t.certificates,
            ["/etc/musicfs/key-cert.pub"].map(PathBuf::from)
        );
        assert_eq!(t.known_hosts, [PathBuf::from("/etc/musicfs/known_hosts")]);

        let t = target("sftp://bob@other/x", ssh, |_| {});
        assert_eq!((t.connect_to.as_str(), t.port), ("other", 22));
        assert_eq!((t.key_name.as_str(), t.key_port), ("other", 22));
        assert_eq!(t.identity.files().len(), DEFAULT_KEYS.len());
        assert_eq!(
            t.known_hosts,
            [
                "/home/ann/.ssh/known_hosts",
                "/home/ann/.ssh/known_hosts2",
                "/etc/ssh/ssh_known_hosts",
                "/etc/ssh/ssh_known_hosts2"
            ]
            .map(PathBuf::from)
        );

        let t = target(
            "sftp://bob@far/x",
            "Host far\n UserKnownHostsFile none\n GlobalKnownHostsFile /etc/far %d/g\n",
            |_| {},
        );
        assert_eq!(
            t.known_hosts,
            ["/etc/far", "/home/ann/g"].map(PathBuf::from)
        );

        let t = target("sftp://bob@nas/x", ssh, |c| {
            c.ssh_config = Some("none".into())
        });
        assert_eq!((t.connect_to.as_str(), t.port), ("nas", 22));
        assert!(t.config_files.is_empty());
    }

    #[test]
    fn certificates_and_identities_only_come_from_the_options_or_ssh_config() {
        let ssh = "Host nas\n IdentityFile ~/.ssh/nas\n CertificateFile ~/.ssh/signed/%r.pub\n \
                   IdentitiesOnly yes\n";
        let t = target("sftp://music@nas/x", ssh, |_| {});
        assert_eq!(
            t.certificates,
            [
                "/home/ann/.ssh/signed/music.pub",
                "/home/ann/.ssh/nas-cert.pub"
            ]
            .map(PathBuf::from)
        );
        assert!(t.identities_only);

        let t = target("sftp://music@nas/x", ssh, |c| {
            c.certificate_file = Some("/etc/musicfs/cert.pub".into());
            c.identity_file = Some("/etc/musicfs/key".into());
        });
        assert_eq!(
            t.certificates,
            ["/etc/musicfs/cert.pub", "/etc/musicfs/key-cert.pub"].map(PathBuf::from)
        );
        let t = target("sftp://music@other/x", ssh, |c| c.identities_only = true);
        assert!(t.identities_only, "the option sets it for any host");
        let t = target("sftp://music@other/x", ssh, |_| {});
        assert!(!t.identities_only);
    }

    #[test]
    fn a_proxy_command_gets_its_tokens() {
        let ssh = "Host nas\n HostName 10.0.0.5\n Port 2222\n \
                   ProxyCommand exec ssh -W %h:%p -l %r gate # %n %%\n";
        let t = target("sftp://music@nas/x", ssh, |_| {});
        assert_eq!(
            t.proxy_command.as_deref(),
            Some("exec ssh -W 10.0.0.5:2222 -l music gate # nas %")
        );
        assert_eq!(t.jump, None);
        let t = target("sftp://music@nas/x", "ProxyCommand none\n", |_| {});
        assert_eq!(t.proxy_command, None);
    }

    #[test]
    fn a_jump_host_is_resolved_from_the_same_ssh_config() {
        let ssh = "Host nas\n HostName 10.0.0.5\n ProxyJump ann@gate:2200\n\
                   Host gate\n HostName gate.example\n IdentityFile ~/.ssh/gate_key\n \
                   ProxyJump further\n";
        let t = target("sftp://music@nas/srv", ssh, |c| {
            c.identity_file = Some("/etc/musicfs/nas_key".into());
        });
        let jump = t.jump.as_deref().expect("a jump host");
        assert_eq!(t.connect_to, "10.0.0.5");
        assert_eq!(
            (jump.user.as_str(), jump.connect_to.as_str(), jump.port),
            ("ann", "gate.example", 2200)
        );
        // The jump logs in with its own keys, not the origin's identity file.
        assert!(
            jump.identity.files()[0].ends_with(".ssh/gate_key"),
            "{:?}",
            jump.identity
        );
        // The jump host's own jump host is followed, as ssh follows it.
        let further = jump.jump.as_deref().expect("the jump host's jump host");
        assert_eq!((further.connect_to.as_str(), further.port), ("further", 22));
        assert!(further.jump.is_none());
        assert!(t.not_followed.is_empty(), "{:?}", t.not_followed);
        let hops: Vec<&str> = t.hops().map(|h| h.connect_to.as_str()).collect();
        assert_eq!(hops, ["10.0.0.5", "gate.example", "further"]);
    }

    #[test]
    fn jumps_through_several_hosts_are_made_in_the_order_given() {
        // `ProxyJump a,b` reaches b through a, whatever b's own ProxyJump or ProxyCommand say
        // (ssh runs `ssh -J a b` for it); a's own ProxyCommand is followed.
        let ssh = "Host nas\n ProxyJump ssh://ann@outer:2201,inner\n\
                   Host inner\n HostName 10.1.0.1\n User ops\n ProxyCommand nc elsewhere 22\n\
                   Host outer\n HostName outer.example\n ProxyCommand exec ssh -W %h:%p bastion\n";
        let t = target("sftp://music@nas/srv", ssh, |_| {});
        let hops: Vec<_> = t
            .hops()
            .map(|h| (h.user.as_str(), h.connect_to.as_str(), h.port))
            .collect();
        assert_eq!(
            hops,
            [
                ("music", "nas", 22),
                ("ops", "10.1.0.1", 22),
                ("ann", "outer.example", 2201)
            ]
        );
        let commands: Vec<_> = t.hops().map(|h| h.proxy_command.as_deref()).collect();
        assert_eq!(
            commands,
            [None, None, Some("exec ssh -W outer.example:2201 bastion")]
        );
    }

    #[test]
    fn jump_hosts_that_jump_through_each_other_are_an_error() {
        let ssh = "Host nas\n ProxyJump gate\nHost gate\n ProxyJump nas\n";
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("config");
        std::fs::write(&file, ssh).unwrap();
        let mut config = OriginConfig::from_url("sftp://music@nas/x");
        config.ssh_config = Some(file);
        let err = SftpTarget::resolve(&config, Some(home.path())).unwrap_err();
        assert!(
            err.starts_with("origin sftp://music@nas/x: jump host gate: ")
                && err.ends_with("more than 8 jump hosts on the way (a loop?)"),
            "{err}"
        );
    }

    #[test]
    fn the_agent_is_the_options_then_ssh_configs_then_the_environments() {
        let agent = |option: Option<&str>, ssh: &str| {
            target("sftp://a@nas/x", ssh, |c| {
                c.identity_agent = option.map(PathBuf::from);
            })
            .agent
        };
        let env = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty());
        assert_eq!(agent(None, ""), env.clone().map(PathBuf::from));
        assert_eq!(agent(Some("none"), "IdentityAgent /x"), None);
        assert_eq!(
            agent(Some("/a.sock"), "IdentityAgent /x"),
            Some("/a.sock".into())
        );
        assert_eq!(agent(None, "IdentityAgent none"), None);
        assert_eq!(agent(None, "IdentityAgent /run/%u/%h.sock"), {
            let user = current_user().unwrap();
            Some(PathBuf::from(format!("/run/{user}/nas.sock")))
        });
        assert_eq!(
            agent(None, "IdentityAgent SSH_AUTH_SOCK"),
            env.map(PathBuf::from)
        );
        assert_eq!(
            agent(None, "IdentityAgent $PATH"),
            std::env::var_os("PATH").map(PathBuf::from)
        );
    }
}
