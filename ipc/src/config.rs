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
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::origin::{OriginConfig, OriginEntry};

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
        let config: Config =
            toml::from_str(&text).map_err(|e| invalid(e.message().replace('\n', " ")))?;
        config.check().map_err(invalid)?;
        Ok(config)
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
