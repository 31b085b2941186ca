//! Origins as the user names them: a local path or a URL (`sftp://user@host[:port]/path`,
//! `s3://bucket[/prefix]`, `http(s)://host/base/`), given on the command line or as an entry of
//! the config's `origins` (a string, or a table with options). Credentials never come from the
//! URL: a URL carrying a password is refused, and secrets read from the config are [`Secret`]s,
//! which print as `***`. As in any URL, `%XX` in an SFTP user or path and an S3 prefix stands
//! for that byte (`sftp://nas/srv/My%20Music`); a `%` not followed by two hex digits is kept.
//!
//! ```toml
//! [[origins]]
//! url = "sftp://music@nas.local/srv/music"
//! priority = 1                      # lower is preferred when a track is on several origins
//! scan_interval_seconds = 300       # how often a remote origin is listed again for changes
//! identity_file = "/etc/musicfs/id_ed25519"
//! known_hosts = "/etc/musicfs/known_hosts"   # the host key must be in it (fails closed)
//!
//! [[origins]]
//! url = "s3://music-bucket/library"
//! endpoint = "https://s3.example.net"
//! region = "eu-central-1"
//! path_style = true
//! access_key_id = "AKIA..."          # or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the env
//! secret_access_key = "..."
//!
//! [[origins]]
//! url = "https://music.example.net/library/"   # JSON directory listings (nginx, Caddy)
//! ```

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

/// A secret from the config: serialisable, but never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value itself, for the one place that hands it to a server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where an origin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginUrl {
    Local(PathBuf),
    Sftp {
        user: Option<String>,
        host: String,
        /// As the URL gives it (ssh_config or 22 otherwise).
        port: Option<u16>,
        /// Absolute path on the server, or `/~` and below for the login's home folder.
        path: String,
    },
    S3 {
        bucket: String,
        /// Key prefix without leading or trailing `/` (empty: the whole bucket).
        prefix: String,
    },
    Http {
        /// Ends with `/`.
        base: String,
    },
}

impl OriginUrl {
    /// Parses a path or a URL; anything that is not `scheme://` is a local path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            if text.is_empty() {
                return Err("an origin is empty".into());
            }
            return Ok(Self::Local(PathBuf::from(text)));
        };
        let decoded = |part: &str| {
            percent_decoded(part).ok_or_else(|| {
                format!(
                    "origin {}: {part:?} is not UTF-8 once its %-escapes are decoded",
                    redact(text)
                )
            })
        };
        if scheme.eq_ignore_ascii_case("file") {
            // `file:///srv/music` or `file://localhost/srv/music`.
            return match rest.strip_prefix("localhost").unwrap_or(rest) {
                path if path.starts_with('/') => Ok(Self::Local(PathBuf::from(decoded(path)?))),
                _ => Err(format!(
                    "origin {text}: a file:// URL names a folder on this machine (file:///path)"
                )),
            };
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if userinfo.is_some_and(|u| u.contains(':') || u.to_ascii_lowercase().contains("%3a")) {
            return Err(format!(
                "origin {}: a password in the URL is refused; put credentials in the config file, the environment or an identity file",
                redact(text)
            ));
        }
        if hostport.is_empty() {
            return Err(format!("origin {text}: no host or bucket"));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "sftp" => {
                let (host, port) =
                    split_port(hostport).map_err(|e| format!("origin {text}: {e}"))?;
                let path = match path.trim_end_matches('/') {
                    "" => "/".to_owned(),
                    trimmed => decoded(trimmed)?,
                };
                Ok(Self::Sftp {
                    user: userinfo.map(decoded).transpose()?,
                    host,
                    port,
                    path,
                })
            }
            "s3" => {
                if userinfo.is_some() {
                    return Err(format!(
                        "origin {}: s3 credentials come from the config or the environment, not the URL",
                        redact(text)
                    ));
                }
                Ok(Self::S3 {
                    bucket: hostport.to_owned(),
                    prefix: decoded(path.trim_matches('/'))?,
                })
            }
            "http" | "https" => {
                if userinfo.is_some() {
                    return Err(format!(
                        "origin {}: credentials in an http URL are refused",
                        redact(text)
                    ));
                }
                let mut base = text.to_owned();
                if !base.ends_with('/') {
                    base.push('/');
                }
                Ok(Self::Http { base })
            }
            other => Err(format!(
                "origin {text}: unknown scheme {other}://; use a path, file://, sftp://, s3:// or http(s)://"
            )),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local(_))
    }
}

/// `text` with each `%XX` replaced by the byte it stands for; `None` if that is not UTF-8.
pub fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| bytes[i] == b'%' && h.iter().all(u8::is_ascii_hexdigit));
        match hex {
            Some(&[high, low]) => {
                let digit = |d: u8| (d as char).to_digit(16).unwrap_or(0) as u8;
                out.push(digit(high) << 4 | digit(low));
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The URL with anything between `://` and `@` hidden (for messages about refused URLs).
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(a)) if a > s => format!("{}://***@{}", &text[..s], &text[a + 1..]),
        _ => text.to_owned(),
    }
}

fn split_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    let port = |p: &str| p.parse().map(Some).map_err(|_| format!("bad port {p:?}"));
    if let Some(rest) = hostport.strip_prefix('[') {
        // [v6]:port
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => port(p)?,
            None => None,
        };
        return Ok((host.to_owned(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, p)) => Ok((host.to_owned(), port(p)?)),
        None => Ok((hostport.to_owned(), None)),
    }
}

/// One configured origin with its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    pub url: String,
    /// When a track is on several origins, reads go to the healthy one with the lowest value.
    #[serde(default)]
    pub priority: i32,
    /// How often the origin is listed again for changes. Default: 300 for remote origins;
    /// local folders are watched with inotify (and listed again at this interval if it is set).
    #[serde(default)]
    pub scan_interval_seconds: Option<u64>,
    /// Connect and per-request timeout. Default 10.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// SFTP: private key file. Default: the user's `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// SFTP: an OpenSSH certificate of the identity's key (`ssh-keygen -s`), offered before the
    /// key itself. Default: ssh_config's `CertificateFile`s, and `FILE-cert.pub` beside each
    /// identity file, as ssh does.
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// SFTP: offer only the identity files' keys (and their certificates), not every key the
    /// ssh-agent holds, as ssh_config's `IdentitiesOnly yes` (which also sets it).
    #[serde(default)]
    pub identities_only: bool,
    /// SFTP: known_hosts file the server's key must be in. Default `~/.ssh/known_hosts`.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// SFTP: the ssh_config file whose `Host` blocks say how to reach the host (`HostName`,
    /// `User`, `Port`, `IdentityFile`, ...), or `none`. Default `~/.ssh/config`.
    #[serde(default)]
    pub ssh_config: Option<PathBuf>,
    /// SFTP: the socket of the ssh-agent whose keys are offered (as ssh_config's
    /// `IdentityAgent`), or `none`. Default: `$SSH_AUTH_SOCK`, if set.
    #[serde(default)]
    pub identity_agent: Option<PathBuf>,
    /// SFTP: password (an identity file is better). Env `MUSICFS_SFTP_PASSWORD` also works.
    /// HTTP: the password of the server's Basic authentication, with `username`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// HTTP: the user name of the server's Basic authentication, with `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// SFTP: connections kept open to the server. Default 4.
    #[serde(default)]
    pub connections: Option<usize>,
    /// S3: endpoint URL (`https://s3.eu-central-1.amazonaws.com`, `http://127.0.0.1:9000`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3: region for the signature. Default `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// S3: `endpoint/bucket/key` addressing instead of `bucket.endpoint/key`.
    #[serde(default)]
    pub path_style: bool,
    /// S3: access key id. Env `AWS_ACCESS_KEY_ID` also works.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// S3: secret key. Env `AWS_SECRET_ACCESS_KEY` also works.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// S3: the profile of the AWS tools' `~/.aws/credentials` and `~/.aws/config` whose keys,
    /// region and endpoint apply where the options above say nothing. Default `$AWS_PROFILE`,
    /// else `default`.
    #[serde(default)]
    pub profile: Option<String>,
    /// HTTPS and S3: a PEM file of certificates trusted besides the system's: the CA of a NAS
    /// or a home server, or its self-signed certificate. S3 also takes `AWS_CA_BUNDLE` and the
    /// profile's `ca_bundle`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl OriginConfig {
    /// An origin with every option at its default.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            priority: 0,
            scan_interval_seconds: None,
            timeout_seconds: None,
            identity_file: None,
            certificate_file: None,
            identities_only: false,
            known_hosts: None,
            ssh_config: None,
            identity_agent: None,
            password: None,
            username: None,
            connections: None,
            endpoint: None,
            region: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            profile: None,
            ca_file: None,
        }
    }

    pub fn parsed(&self) -> Result<OriginUrl, String> {
        OriginUrl::parse(&self.url)
    }

    /// Seconds between listings, if the origin is polled.
    pub fn poll_interval(&self) -> Option<std::time::Duration> {
        let default = (!self.parsed().is_ok_and(|u| u.is_local())).then_some(300);
        self.scan_interval_seconds
            .or(default)
            .filter(|s| *s > 0)
            .map(std::time::Duration::from_secs)
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds.unwrap_or(10).max(1))
    }

    /// Checks what can be checked without connecting.
    pub fn check(&self) -> Result<(), String> {
        let url = self.parsed()?;
        let s3_only = [
            ("endpoint", self.endpoint.is_some()),
            ("region", self.region.is_some()),
            ("path_style", self.path_style),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            ("profile", self.profile.is_some()),
        ];
        let sftp_only = [
            ("identity_file", self.identity_file.is_some()),
            ("certificate_file", self.certificate_file.is_some()),
            ("identities_only", self.identities_only),
            ("known_hosts", self.known_hosts.is_some()),
            ("identity_agent", self.identity_agent.is_some()),
            ("ssh_config", self.ssh_config.is_some()),
            ("connections", self.connections.is_some()),
        ];
        let http_only = [("username", self.username.is_some())];
        let sftp_or_http = [("password", self.password.is_some())];
        let http_or_s3 = [("ca_file", self.ca_file.is_some())];
        let misplaced = |keys: &[(&str, bool)], kind: &str| {
            keys.iter().find(|(_, set)| *set).map(|(key, _)| {
                format!(
                    "origin {}: `{key}` applies to {kind} origins only",
                    self.url
                )
            })
        };
        let err = match url {
            OriginUrl::S3 { .. } => misplaced(&sftp_only, "sftp")
                .or_else(|| misplaced(&sftp_or_http, "sftp and http"))
                .or_else(|| misplaced(&http_only, "http")),
            OriginUrl::Sftp { .. } => misplaced(&s3_only, "s3")
                .or_else(|| misplaced(&http_only, "http"))
                .or_else(|| misplaced(&http_or_s3, "http and s3")),
            OriginUrl::Http { .. } => {
                misplaced(&s3_only, "s3").or_else(|| misplaced(&sftp_only, "sftp"))
            }
            OriginUrl::Local(_) => misplaced(&s3_only, "s3")
                .or_else(|| misplaced(&sftp_only, "sftp"))
                .or_else(|| misplaced(&sftp_or_http, "sftp and http"))
                .or_else(|| misplaced(&http_only, "http"))
                .or_else(|| misplaced(&http_or_s3, "http and s3")),
        };
        if let Some(err) = err {
            return Err(err);
        }
        if self.connections == Some(0) {
            return Err(format!(
                "origin {}: connections must be at least 1",
                self.url
            ));
        }
        Ok(())
    }
}

/// An entry of `origins`: a bare path or URL, or a table with options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OriginEntry(pub OriginConfig);

impl<'de> Deserialize<'de> for OriginEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OriginEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path or URL, or a table with `url` and options")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OriginEntry, E> {
                Ok(OriginEntry(OriginConfig::from_url(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<OriginEntry, A::Error> {
                OriginConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(OriginEntry)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_their_parts() {
        assert_eq!(
            OriginUrl::parse("/srv/music").unwrap(),
            OriginUrl::Local("/srv/music".into())
        );
        assert_eq!(
            OriginUrl::parse("sftp://ann@nas:2222/srv/music/").unwrap(),
            OriginUrl::Sftp {
                user: Some("ann".into()),
                host: "nas".into(),
                port: Some(2222),
                path: "/srv/music".into()
            }
        );
        assert_eq!(
            OriginUrl::parse("sftp://[::1]/").unwrap(),
            OriginUrl::Sftp {
                user: None,
                host: "::1".into(),
                port: None,
                path: "/".into()
            }
        );
        assert_eq!(
            OriginUrl::parse("s3://bucket/a/b/").unwrap(),
            OriginUrl::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        // %-escapes stand for their bytes, as in any URL; a stray `%` is kept.
        assert_eq!(
            OriginUrl::parse("sftp://ann%40home@nas/srv/My%20Music/100%").unwrap(),
            OriginUrl::Sftp {
                user: Some("ann@home".into()),
                host: "nas".into(),
                port: None,
                path: "/srv/My Music/100%".into()
            }
        );
        assert_eq!(
            OriginUrl::parse("s3://bucket/M%C3%BAsica/a%2Bb%zz").unwrap(),
            OriginUrl::S3 {
                bucket: "bucket".into(),
                prefix: "Música/a+b%zz".into()
            }
        );
        assert!(OriginUrl::parse("sftp://nas/srv/%FF").is_err());
        assert_eq!(
            OriginUrl::parse("file:///srv/My%20Music").unwrap(),
            OriginUrl::Local("/srv/My Music".into())
        );
        assert_eq!(
            OriginUrl::parse("file://localhost/srv/music").unwrap(),
            OriginUrl::Local("/srv/music".into())
        );
        assert!(OriginUrl::parse("file://nas/srv/music").is_err());
        assert_eq!(
            OriginUrl::parse("https://h/m").unwrap(),
            OriginUrl::Http {
                base: "https://h/m/".into()
            }
        );
    }

    #[test]
    fn passwords_in_urls_are_refused_without_being_echoed() {
        let err = OriginUrl::parse("sftp://ann:hunter2@nas/music").unwrap_err();
        assert!(err.contains("password"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = OriginUrl::parse("sftp://ann%3Ahunter2@nas/music").unwrap_err();
        assert!(
            err.contains("password") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(OriginUrl::parse("ftp://nas/music").is_err());
        assert!(OriginUrl::parse("sftp://nas:99999/").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let mut c = OriginConfig::from_url("s3://b");
        c.secret_access_key = Some(Secret::new("topsecret"));
        c.password = Some(Secret::new("hunter2"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("topsecret") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn options_must_fit_the_kind_of_origin() {
        let mut c = OriginConfig::from_url("sftp://nas/m");
        c.region = Some("x".into());
        assert!(c.check().unwrap_err().contains("region"));
        let mut c = OriginConfig::from_url("s3://b");
        c.known_hosts = Some("/k".into());
        assert!(c.check().unwrap_err().contains("known_hosts"));
        assert!(OriginConfig::from_url("s3://b").check().is_ok());
        let mut c = OriginConfig::from_url("sftp://nas/m");
        c.ca_file = Some("/ca.pem".into());
        assert!(c.check().unwrap_err().contains("ca_file"));
        c.url = "https://nas/m/".into();
        assert!(c.check().is_ok());
    }

    #[test]
    fn remote_origins_are_polled_and_local_ones_watched() {
        let remote = OriginConfig::from_url("sftp://nas/m");
        assert_eq!(
            remote.poll_interval(),
            Some(std::time::Duration::from_secs(300))
        );
        let mut local = OriginConfig::from_url("/m");
        assert_eq!(local.poll_interval(), None);
        local.scan_interval_seconds = Some(60);
        assert_eq!(
            local.poll_interval(),
            Some(std::time::Duration::from_secs(60))
        );
    }
}
