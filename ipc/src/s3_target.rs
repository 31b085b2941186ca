//! Where and with which keys an `s3://` origin is read: its options in the MusicFS config,
//! then the environment the AWS tools read, then the profile in the AWS tools' shared files
//! (`~/.aws/credentials` and `~/.aws/config`), as `aws` and rclone find them. So a bucket that
//! `aws s3 ls --profile b2` lists mounts with `profile = "b2"` and nothing else. fetchd reads
//! the bucket with this, and its sandbox admits the files named here.
//!
//! - Keys: `access_key_id` and `secret_access_key`; else `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`); else the profile's
//!   `aws_access_key_id`, `aws_secret_access_key` (and `aws_session_token`) in the
//!   credentials file, then in the config file.
//!   Else the profile's `credential_process`, a command that prints temporary keys (fetchd
//!   runs it outside its sandbox, again before they expire: `fetchd/src/outside.rs`).
//!   Else the profile's IAM Identity Center (SSO) role, `sso_account_id` and `sso_role_name`
//!   with an `sso_session` (its `[sso-session NAME]` section's `sso_start_url` and
//!   `sso_region`) or those two in the profile itself (the older form): temporary keys are
//!   asked of the SSO portal with the token `aws sso login` keeps in `~/.aws/sso/cache`
//!   (`fetchd/src/s3_sso.rs`). The portal is `AWS_ENDPOINT_URL_SSO`, else AWS's for the
//!   SSO region; the token service `AWS_ENDPOINT_URL_SSO_OIDC`, else AWS's.
//!   Else a web identity or a container's endpoint (`s3_workload.rs`). A profile with
//!   `role_arn` and `source_profile` or `credential_source` assumes that role instead
//!   (`s3_role.rs`), wherever neither the config nor the environment give keys.
//! - Region: `region`; else `AWS_REGION`, `AWS_DEFAULT_REGION`; else the profile's `region`;
//!   else `us-east-1`.
//! - Endpoint: `endpoint`; else `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`; else the profile's
//!   `endpoint_url` (its `s3 =` section's first); else AWS's own for the region.
//! - Path-style addressing: `path_style`, or the profile's `s3 = addressing_style = path`.
//! - The profile: `profile`, else `AWS_PROFILE`, else `default`; the files:
//!   `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`, else those in `~/.aws`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::origin::{OriginConfig, Secret};
use crate::s3_role::{self, AssumeRole, RoleSource};
use crate::s3_workload::{self, Workload};

#[derive(Debug, Clone)]
pub struct S3Target {
    pub endpoint: String,
    pub region: String,
    pub path_style: bool,
    /// `None`: no keys anywhere (the error names where they were looked for).
    pub keys: Option<Keys>,
    /// Where `keys` came from, for people (`musicfsctl origins`): "the config file", ...
    pub keys_from: Option<String>,
    /// The profile's `credential_process`, where no keys are given otherwise.
    pub credential_process: Option<String>,
    /// The profile's SSO role, where neither keys nor a `credential_process` are given.
    pub sso: Option<Sso>,
    /// A container's or a pod's keys, where nothing above gives any (`s3_workload.rs`).
    pub workload: Option<Workload>,
    /// The role the profile assumes (`role_arn` with `source_profile` or
    /// `credential_source`: `s3_role.rs`), where neither the config nor the environment give
    /// keys; then none of the profile's other key settings are used, as in the AWS tools.
    pub role: Option<AssumeRole>,
    /// The profile's files (whether they exist or not).
    pub files: Vec<PathBuf>,
    pub profile: String,
    /// Certificates trusted besides the system's (`ca_file`, `AWS_CA_BUNDLE`, `ca_bundle`).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// A role to get temporary keys for from an AWS IAM Identity Center (SSO) portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sso {
    pub account_id: String,
    pub role_name: String,
    pub start_url: String,
    /// The region of the portal and token service (`sso_region`).
    pub region: String,
    /// The `sso_session` named, if the profile names one (its token can be refreshed);
    /// `None` in the older form.
    pub session: Option<String>,
    /// Where `aws sso login` keeps tokens: `~/.aws/sso/cache`, the token's file named by the
    /// SHA-1 of the session's name (or of the start URL, in the older form).
    pub cache_dir: PathBuf,
    /// The portal's base URL.
    pub portal: String,
    /// The token service's base URL (for refreshing a session's token).
    pub oidc: String,
}

impl Sso {
    /// What names the token's file in the cache: the session's name, else the start URL.
    pub fn cache_key(&self) -> &str {
        self.session.as_deref().unwrap_or(&self.start_url)
    }
}

/// One profile's `key = value` lines (`section.key` for the lines of a nested section).
pub(crate) type Profile = HashMap<String, String>;

impl S3Target {
    /// Resolves an origin's options; `env` looks up environment variables, `home` is the
    /// user's home folder. A shared file that exists but cannot be read is an error.
    pub fn resolve(
        config: &OriginConfig,
        home: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let aws_dir = home.map(|h| h.join(".aws"));
        let file = |var: &str, name: &str| {
            env(var)
                .map(PathBuf::from)
                .or_else(|| aws_dir.as_ref().map(|d| d.join(name)))
        };
        let credentials_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config_file = file("AWS_CONFIG_FILE", "config");
        let profile = config
            .profile
            .clone()
            .or_else(|| env("AWS_PROFILE"))
            .unwrap_or_else(|| "default".into());
        // The credentials file names profiles plainly; the config file as `profile NAME`
        // (but `default` plainly).
        let credentials = read_profile(credentials_file.as_deref(), &profile)?;
        let config_section = match profile.as_str() {
            "default" => "default".to_owned(),
            name => format!("profile {name}"),
        };
        let shared = read_profile(config_file.as_deref(), &config_section)?;
        // Both files' lines, the credentials file's first (as `from_files` reads them).
        let mut lines = credentials.clone();
        for (key, value) in &shared {
            lines.entry(key.clone()).or_insert_with(|| value.clone());
        }
        let from_files = |key: &str| {
            credentials
                .get(key)
                .or_else(|| shared.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
        };

        let profile_files = || {
            let files = [&credentials_file, &config_file].map(|f| match f {
                Some(f) => f.display().to_string(),
                None => "-".into(),
            });
            format!("profile {profile:?} ({} or {})", files[0], files[1])
        };
        let given = config.access_key_id.is_some()
            || (env("AWS_ACCESS_KEY_ID").is_some() && env("AWS_SECRET_ACCESS_KEY").is_some());
        let shared_files = s3_role::Shared {
            credentials: credentials_file.as_deref(),
            config: config_file.as_deref(),
            sso_cache: aws_dir.as_ref().map(|d| d.join("sso/cache")),
            env: &env,
        };
        let role = match given {
            true => None,
            false => {
                let region = config
                    .region
                    .clone()
                    .or_else(|| env("AWS_REGION"))
                    .or_else(|| env("AWS_DEFAULT_REGION"))
                    .unwrap_or_else(|| "us-east-1".into());
                s3_role::resolve(&shared_files, &profile, &lines, &region)
                    .map_err(|e| format!("origin {}: {e}", config.url))?
            }
        };
        let (keys, keys_from) = match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => {
                let keys = Keys {
                    access_key_id: id.clone(),
                    secret_access_key: secret.clone(),
                    session_token: None,
                };
                (Some(keys), Some("the config file".to_owned()))
            }
            (None, None) => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => {
                    let keys = Keys {
                        access_key_id: id,
                        secret_access_key: Secret::new(secret),
                        session_token: env("AWS_SESSION_TOKEN").map(Secret::new),
                    };
                    let from = "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)";
                    (Some(keys), Some(from.to_owned()))
                }
                _ if role.is_some() => (None, None),
                _ => match (
                    from_files("aws_access_key_id"),
                    from_files("aws_secret_access_key"),
                ) {
                    (Some(id), Some(secret)) => {
                        let keys = Keys {
                            access_key_id: id,
                            secret_access_key: Secret::new(secret),
                            session_token: from_files("aws_session_token").map(Secret::new),
                        };
                        (Some(keys), Some(profile_files()))
                    }
                    _ => (None, None),
                },
            },
            _ => {
                return Err(format!(
                    "origin {}: access_key_id and secret_access_key must be given together",
                    config.url
                ))
            }
        };
        let region = config
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .or_else(|| from_files("region"))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = config
            .endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| shared.get("s3.endpoint_url").cloned())
            .or_else(|| from_files("endpoint_url"))
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let path_style = config.path_style
            || shared
                .get("s3.addressing_style")
                .is_some_and(|s| s.eq_ignore_ascii_case("path"));
        let ca_file = config
            .ca_file
            .clone()
            .or_else(|| env("AWS_CA_BUNDLE").map(PathBuf::from))
            .or_else(|| from_files("ca_bundle").map(PathBuf::from));
        let credential_process = match (&keys, &role) {
            (None, None) => from_files("credential_process"),
            _ => None,
        };
        let sso = match (&keys, &credential_process) {
            _ if role.is_some() => None,
            (None, None) => {
                let read = |section: &str| read_profile(config_file.as_deref(), section);
                let cache_dir = aws_dir.as_ref().map(|d| d.join("sso/cache"));
                sso(&shared, read, cache_dir, &env)
                    .map_err(|e| format!("origin {}: profile {profile:?}: {e}", config.url))?
            }
            _ => None,
        };
        let workload = match (&keys, &credential_process, &sso) {
            _ if role.is_some() => None,
            (None, None, None) => s3_workload::resolve(&lines, &env, &region)
                .map_err(|e| format!("origin {}: {e}", config.url))?,
            _ => None,
        };
        Ok(Self {
            endpoint,
            region,
            path_style,
            keys,
            keys_from,
            credential_process,
            files: credentials_file
                .into_iter()
                .chain(config_file)
                .chain(sso.as_ref().and_then(|s| admitted_cache(&s.cache_dir)))
                .chain(workload.iter().flat_map(Workload::folders))
                .chain(
                    role.iter()
                        .flat_map(AssumeRole::sources)
                        .filter_map(|s| match s {
                            RoleSource::Sso(sso) => admitted_cache(&sso.cache_dir),
                            _ => None,
                        }),
                )
                .collect(),
            sso,
            workload,
            role,
            profile,
            ca_file,
        })
    }

    /// Where keys were looked for, for the error when there are none.
    pub fn keys_missing(&self) -> String {
        let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        format!(
            "no credentials: set access_key_id and secret_access_key in the config, \
             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment, or \
             aws_access_key_id and aws_secret_access_key (or credential_process, an SSO role \
             or a web identity) in profile {:?} of {}; a container's or a pod's credentials \
             (AWS_CONTAINER_CREDENTIALS_*, AWS_WEB_IDENTITY_TOKEN_FILE) are not set either",
            self.profile,
            files.join(" or ")
        )
    }
}

/// The SSO role of a profile (`shared`, its lines in the config file), if it names one;
/// `section` reads another section of the config file.
pub(crate) fn sso(
    shared: &Profile,
    section: impl Fn(&str) -> Result<Profile, String>,
    cache_dir: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Sso>, String> {
    let get = |profile: &Profile, key: &str| profile.get(key).filter(|v| !v.is_empty()).cloned();
    let (account_id, role_name) = (get(shared, "sso_account_id"), get(shared, "sso_role_name"));
    let session = get(shared, "sso_session");
    if account_id.is_none() && role_name.is_none() && session.is_none() {
        return Ok(None);
    }
    let (Some(account_id), Some(role_name)) = (account_id, role_name) else {
        return Err("an SSO profile needs both sso_account_id and sso_role_name".into());
    };
    let (start_url, region) = match &session {
        Some(name) => {
            let lines = section(&format!("sso-session {name}"))?;
            (get(&lines, "sso_start_url"), get(&lines, "sso_region"))
        }
        None => (get(shared, "sso_start_url"), get(shared, "sso_region")),
    };
    let (Some(start_url), Some(region)) = (start_url, region) else {
        return Err(match &session {
            Some(name) => format!(
                "sso_session {name}: no [sso-session {name}] section with sso_start_url and \
                 sso_region in the config file"
            ),
            None => "an SSO profile needs sso_start_url and sso_region (or sso_session)".into(),
        });
    };
    let Some(cache_dir) = cache_dir else {
        return Err(
            "an SSO profile needs a home folder, where aws sso login keeps its token".into(),
        );
    };
    let base = |var: &str, host: &str| {
        env(var).map_or_else(
            || format!("https://{host}.{region}.amazonaws.com"),
            |url| url.trim_end_matches('/').to_owned(),
        )
    };
    Ok(Some(Sso {
        portal: base("AWS_ENDPOINT_URL_SSO", "portal.sso"),
        oidc: base("AWS_ENDPOINT_URL_SSO_OIDC", "oidc"),
        account_id,
        role_name,
        start_url,
        region,
        session,
        cache_dir,
    }))
}

/// What the sandbox admits for the token cache: the folder, or where `aws sso login` will
/// make it if it is not there yet (`~/.aws/sso`, else `~/.aws`).
fn admitted_cache(cache_dir: &Path) -> Option<PathBuf> {
    cache_dir
        .ancestors()
        .take(3)
        .find(|dir| dir.is_dir())
        .map(Path::to_path_buf)
}

/// The `key = value` lines of `[section]` in an INI file as the AWS tools write them; a file
/// that does not exist has none.
pub(crate) fn read_profile(file: Option<&Path>, section: &str) -> Result<Profile, String> {
    let Some(file) = file else {
        return Ok(Profile::new());
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Profile::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    Ok(parse_section(&text, section))
}

fn parse_section(text: &str, section: &str) -> Profile {
    let mut profile = Profile::new();
    let mut inside = false;
    // The key of a `key =` line with nothing after it, whose indented lines follow.
    let mut nested: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            nested = None;
            continue;
        }
        if !inside {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim().to_ascii_lowercase(), value.trim().to_owned());
        let indented = line.starts_with([' ', '\t']);
        match (&nested, indented) {
            (Some(parent), true) => {
                profile.entry(format!("{parent}.{key}")).or_insert(value);
            }
            _ if value.is_empty() => nested = Some(key),
            _ => {
                nested = None;
                profile.entry(key).or_insert(value);
            }
        }
    }
    profile
}

#[cfg(test)]
#[path = "s3_target_tests.rs"]
mod tests;
