//! The configuration file (TOML), read by `musicfsctl` to check it before anything starts and by
//! fetchd and mountd to run with it. Unknown keys are errors, so a typo is never silently ignored.
//!
//! ```toml
//! origins = ["/srv/music"]            # added to the origins given on the command line;
//!                                     # entries may be URLs or tables (see [`crate::origin`])
//! template = "$albumartist/$album ($year)/$disc-$track $title.$ext"
//! retry_seconds = 30                  # how long a read waits for a restarting worker
//! admin_group = "musicfs-admin"       # may use admin sockets (status, ...) besides root
//!
//! [views]                              # extra trees under /.views/<name>/
//! "By Genre" = "$genre/$albumartist/$album/$track $title.$ext"
//!
//! [users]                             # who each worker runs as when started as root
//! fetchd = "musicfs"                  # default: stays root; indexd and plugind: nobody
//!
//! [cache]                             # the chunk cache under the state dir's chunks/
//! budget = "20 GiB"                   # at most this many chunk bytes (default: no limit);
//!                                     # least recently used chunks are evicted, pinned never
//! min_free = "1 GiB"                  # free space kept on the cache's filesystem (default)
//! ```
//!
//! Sizes are strings with a unit (`"500 MiB"`, `"20 GiB"`, `"1.5G"`; `KB`/`MB`/`GB` count in
//! 1000s) or integers of bytes (see [`crate::size`]). A budget must be at least 1 MiB.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::origin::{OriginConfig, OriginEntry};
use crate::size::ByteSize;

pub const DEFAULT_TEMPLATE: &str = "$albumartist/$album ($year)/$disc-$track $title.$ext";

/// Variables a path template may use.
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "albumartist",
    "artist",
    "album",
    "title",
    "track",
    "disc",
    "year",
    "genre",
    "composer",
    "ext",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub origins: Vec<OriginEntry>,
    #[serde(default = "default_template")]
    pub template: String,
    #[serde(default = "default_retry_seconds")]
    pub retry_seconds: u64,
    #[serde(default)]
    pub users: Users,
    /// Members of this group may use admin sockets (besides root and the worker's own user).
    #[serde(default)]
    pub admin_group: Option<String>,
    /// Extra trees under `/.views/<name>/`, each rendered from its own path template.
    #[serde(default)]
    pub views: std::collections::BTreeMap<String, String>,
    /// The chunk cache's size limits.
    #[serde(default)]
    pub cache: CacheConfig,
}

/// Smallest budget accepted: a few of the largest chunks.
pub const MIN_CACHE_BUDGET: u64 = ByteSize::MIB;

/// How much the chunk cache may hold (`[cache]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// At most this many bytes of chunks; `None` (the default): no limit but `min_free`.
    #[serde(default)]
    pub budget: Option<ByteSize>,
    /// Free space kept on the filesystem holding the chunks (default 1 GiB).
    #[serde(default = "default_min_free")]
    pub min_free: ByteSize,
}

fn default_min_free() -> ByteSize {
    ByteSize(ByteSize::GIB)
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            budget: None,
            min_free: default_min_free(),
        }
    }
}

/// The user each worker switches to when started as root (see [`crate::sandbox`]). mountd has
/// no entry: it mounts and unmounts, which takes root (or the setuid `fusermount3`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// Default: fetchd stays root (origins may be readable only by root).
    pub fetchd: Option<String>,
    /// Default: `nobody`.
    pub indexd: Option<String>,
    /// Default: `nobody`.
    pub plugind: Option<String>,
}

fn default_template() -> String {
    DEFAULT_TEMPLATE.to_owned()
}
fn default_retry_seconds() -> u64 {
    30
}

impl Default for Config {
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            template: default_template(),
            retry_seconds: default_retry_seconds(),
            users: Users::default(),
            admin_group: None,
            views: Default::default(),
            cache: CacheConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads and checks a config file; `None` gives the defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut config: Config =
            toml::from_str(&text).map_err(|e| invalid(e.message().replace('\n', " ")))?;
        config.check().map_err(invalid)?;
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            config.expand_home(Path::new(&home));
        }
        Ok(config)
    }

    /// `~/` at the start of a local origin, an identity file, an agent socket, an ssh_config or
    /// a known_hosts file stands for `home`, as in a shell (a config file has no shell to expand it).
    pub fn expand_home(&mut self, home: &Path) {
        let expand = |path: &Path| match path.strip_prefix("~") {
            Ok(rest) => home.join(rest),
            Err(_) => path.to_owned(),
        };
        for OriginEntry(origin) in &mut self.origins {
            if !origin.url.contains("://") && origin.url.starts_with("~/") {
                origin.url = expand(Path::new(&origin.url))
                    .to_string_lossy()
                    .into_owned();
            }
            let files = [
                &mut origin.identity_file,
                &mut origin.certificate_file,
                &mut origin.known_hosts,
                &mut origin.identity_agent,
                &mut origin.ssh_config,
            ];
            for path in files.into_iter().flatten() {
                *path = expand(path);
            }
        }
    }

    /// Checks values that parse but make no sense.
    pub fn check(&self) -> Result<(), String> {
        check_template(&self.template)?;
        for origin in &self.origins {
            origin.0.check()?;
        }
        for (name, template) in &self.views {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(format!("view name {name:?} must be a plain directory name"));
            }
            check_template(template).map_err(|e| format!("view {name}: {e}"))?;
        }
        if self.retry_seconds == 0 {
            return Err("retry_seconds must be at least 1".into());
        }
        if let Some(budget) = self.cache.budget {
            if budget.bytes() < MIN_CACHE_BUDGET {
                return Err(format!(
                    "cache.budget {budget} is too small to hold a few chunks; give at least 1 MiB"
                ));
            }
        }
        let users = &self.users;
        for (worker, name) in [
            ("fetchd", &users.fetchd),
            ("indexd", &users.indexd),
            ("plugind", &users.plugind),
        ] {
            let Some(name) = name else { continue };
            match nix::unistd::User::from_name(name) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(format!(
                        "users.{worker}: there is no user {name:?} on this system; create it (useradd --system {name}) or remove the line"
                    ))
                }
                Err(e) => return Err(format!("users.{worker}: cannot look up {name:?}: {e}")),
            }
        }
        Ok(())
    }
}

impl Config {
    /// The origins given on the command line (with default options) followed by the config's.
    pub fn origins_with(&self, cli: &[String]) -> Vec<OriginConfig> {
        cli.iter()
            .map(OriginConfig::from_url)
            .chain(self.origins.iter().map(|o| o.0.clone()))
            .collect()
    }
}

/// A template is `/`-separated parts with `$name` or `${name}` variables from
/// [`TEMPLATE_VARIABLES`]; it must not be empty and must not start with `/`.
pub fn check_template(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("template is empty".into());
    }
    if template.starts_with('/') {
        return Err(format!(
            "template {template:?} must be relative (no leading /)"
        ));
    }
    for name in template_variables(template)? {
        if !TEMPLATE_VARIABLES.contains(&name.as_str()) {
            return Err(format!(
                "template uses unknown variable ${name}; known: {}",
                TEMPLATE_VARIABLES.join(", ")
            ));
        }
    }
    Ok(())
}

fn template_variables(template: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let name: String = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in template {template:?}"))?;
            rest = &braced[end + 1..];
            braced[..end].to_owned()
        } else {
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            let name = rest[..end].to_owned();
            rest = &rest[end..];
            name
        };
        if name.is_empty() {
            return Err(format!("lone $ in template {template:?}"));
        }
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_tilde_is_the_home_folder() {
        let mut config: Config = toml::from_str(
            r#"
            origins = ["~/Music", "/srv/~/x", "~other/Music", "sftp://nas/~/music", {
                url = "sftp://nas/srv/music",
                identity_file = "~/.ssh/id_ed25519",
                known_hosts = "/etc/musicfs/known_hosts" }]
            "#,
        )
        .unwrap();
        config.expand_home(Path::new("/home/ann"));
        let urls: Vec<&str> = config.origins.iter().map(|o| o.0.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "/home/ann/Music",
                "/srv/~/x",
                "~other/Music",
                "sftp://nas/~/music",
                "sftp://nas/srv/music"
            ]
        );
        let sftp = &config.origins[4].0;
        assert_eq!(
            sftp.identity_file.as_deref(),
            Some(Path::new("/home/ann/.ssh/id_ed25519"))
        );
        assert_eq!(
            sftp.known_hosts.as_deref(),
            Some(Path::new("/etc/musicfs/known_hosts"))
        );
    }

    #[test]
    fn default_template_is_valid() {
        check_template(DEFAULT_TEMPLATE).unwrap();
    }

    #[test]
    fn unknown_variable_is_rejected() {
        let err = check_template("$artist/$albun").unwrap_err();
        assert!(err.contains("$albun"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "origns = []\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("origns"), "{err}");
    }

    #[test]
    fn origins_are_strings_or_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[origins]]\nurl = \"/m\"\n[[origins]]\nurl = \"s3://b/p\"\nregion = \"r\"\npath_style = true\n",
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.origins[1].0.region.as_deref(), Some("r"));
        std::fs::write(&path, "origins = [\"/a\", \"sftp://u@h/m\"]\n").unwrap();
        let config = Config::load(Some(&path)).unwrap();
        let all = config.origins_with(&["/cli".into()]);
        assert_eq!(
            all.iter().map(|o| o.url.as_str()).collect::<Vec<_>>(),
            ["/cli", "/a", "sftp://u@h/m"]
        );
        std::fs::write(&path, "[[origins]]\nurl = \"s3://b\"\nregoin = \"r\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("regoin"), "{err}");
    }

    #[test]
    fn cache_sizes_are_human_strings_or_integers_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(Some(&path))
        };
        let config = load("").unwrap();
        assert_eq!(config.cache.budget, None);
        assert_eq!(config.cache.min_free, ByteSize(1 << 30));
        let config = load("[cache]\nbudget = \"20 GiB\"\nmin_free = \"500 MiB\"\n").unwrap();
        assert_eq!(config.cache.budget, Some(ByteSize(20 << 30)));
        assert_eq!(config.cache.min_free, ByteSize(500 << 20));
        let config = load("[cache]\nbudget = 8388608\n").unwrap();
        assert_eq!(config.cache.budget, Some(ByteSize(8 << 20)));
        let err = load("[cache]\nbudget = \"12 XB\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown unit"), "{err}");
        let err = load("[cache]\nbudget = \"100 KiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 1 MiB"), "{err}");
        let err = load("[cache]\nbugdet = \"1 GiB\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bugdet"), "{err}");
    }

    #[test]
    fn users_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[users]\nindexd = \"nobody\"\n").unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.users.indexd.as_deref(), Some("nobody"));
        std::fs::write(&path, "[users]\nfetchd = \"no-such-user-here\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("users.fetchd"), "{err}");
        std::fs::write(&path, "[users]\nmountd = \"nobody\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("mountd"), "{err}");
    }
}
