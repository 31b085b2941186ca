//! A role assumed with other keys, as the AWS tools assume one for a profile with `role_arn`
//! and `source_profile` (another profile's keys: its own, its `credential_process`'s, its SSO
//! role's, or those of a role it assumes in turn) or `credential_source = Environment`
//! (`AWS_ACCESS_KEY_ID` ...): STS's `AssumeRole`, signed with those keys (fetchd's
//! `s3_role.rs`). `role_session_name`, `external_id` and `duration_seconds` are passed on; a
//! role that needs `mfa_serial` is refused, since it needs a code typed in at each renewal.

use std::path::{Path, PathBuf};

use crate::origin::Secret;
use crate::s3_target::{read_profile, sso, Keys, Profile, Sso};

/// Roles assumed through roles at most this deep (more is taken for profiles naming each
/// other).
const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone)]
pub struct AssumeRole {
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    pub duration_seconds: Option<u32>,
    /// STS's base URL (`AWS_ENDPOINT_URL_STS`, else AWS's for `region`), and the region its
    /// requests are signed for.
    pub sts: String,
    pub region: String,
    pub source: Box<RoleSource>,
}

/// The keys a role is assumed with.
#[derive(Debug, Clone)]
pub enum RoleSource {
    Keys(Keys),
    Process(String),
    Sso(Sso),
    Role(AssumeRole),
}

/// The AWS tools' shared files, and the environment, that profiles are read from.
pub struct Shared<'a> {
    pub credentials: Option<&'a Path>,
    pub config: Option<&'a Path>,
    pub sso_cache: Option<PathBuf>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Shared<'_> {
    /// A profile's lines from both files, the credentials file's first.
    pub fn profile(&self, name: &str) -> Result<Profile, String> {
        let mut lines = read_profile(self.credentials, name)?;
        let section = match name {
            "default" => "default".to_owned(),
            name => format!("profile {name}"),
        };
        for (key, value) in read_profile(self.config, &section)? {
            lines.entry(key).or_insert(value);
        }
        Ok(lines)
    }
}

/// The role profile `name` (whose lines are `lines`) assumes, if it names one; `region` is
/// the bucket's, used for STS where the profile names none.
pub fn resolve(
    shared: &Shared,
    name: &str,
    lines: &Profile,
    region: &str,
) -> Result<Option<AssumeRole>, String> {
    resolve_at(shared, name, lines, region, 0)
}

fn resolve_at(
    shared: &Shared,
    name: &str,
    lines: &Profile,
    region: &str,
    depth: usize,
) -> Result<Option<AssumeRole>, String> {
    let get = |key: &str| lines.get(key).filter(|v| !v.is_empty()).cloned();
    // A role with a web identity is the workload's (`s3_workload.rs`).
    let Some(role_arn) = get("role_arn").filter(|_| get("web_identity_token_file").is_none())
    else {
        return Ok(None);
    };
    let fail = |why: String| format!("profile {name:?}: role_arn {role_arn}: {why}");
    if depth >= MAX_DEPTH {
        return Err(fail(format!(
            "more than {MAX_DEPTH} roles on the way (profiles naming each other?)"
        )));
    }
    if get("mfa_serial").is_some() {
        return Err(fail(
            "it needs an MFA code (mfa_serial), typed in at each renewal; give the profile a \
             credential_process that asks for it (aws-vault exec --json, ...) instead"
                .into(),
        ));
    }
    let source = match (get("source_profile"), get("credential_source")) {
        (Some(source), _) => source_keys(shared, &source, name, region, depth).map_err(fail)?,
        (None, Some(from)) if from == "Environment" => {
            let env = |n: &str| (shared.env)(n).filter(|v| !v.is_empty());
            match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => RoleSource::Keys(Keys {
                    access_key_id: id,
                    secret_access_key: Secret::new(secret),
                    session_token: env("AWS_SESSION_TOKEN").map(Secret::new),
                }),
                _ => {
                    let why = "credential_source Environment, but AWS_ACCESS_KEY_ID and \
                               AWS_SECRET_ACCESS_KEY are not set";
                    return Err(fail(why.into()));
                }
            }
        }
        (None, Some(from)) => {
            let why = format!("credential_source {from} is not supported (Environment is)");
            return Err(fail(why));
        }
        (None, None) => return Err(fail("no source_profile or credential_source".into())),
    };
    let region = get("region").unwrap_or_else(|| region.to_owned());
    let sts = (shared.env)("AWS_ENDPOINT_URL_STS")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || format!("https://sts.{region}.amazonaws.com"),
            |url| url.trim_end_matches('/').to_owned(),
        );
    let duration_seconds = match get("duration_seconds") {
        None => None,
        Some(text) => Some(
            text.parse()
                .map_err(|_| fail(format!("duration_seconds {text}")))?,
        ),
    };
    Ok(Some(AssumeRole {
        role_arn,
        session_name: get("role_session_name").unwrap_or_else(|| "musicfs".into()),
        external_id: get("external_id"),
        duration_seconds,
        sts,
        region,
        source: Box::new(source),
    }))
}

/// The keys of profile `source` (named by profile `from`'s `source_profile`).
fn source_keys(
    shared: &Shared,
    source: &str,
    from: &str,
    region: &str,
    depth: usize,
) -> Result<RoleSource, String> {
    let lines = shared.profile(source)?;
    let get = |key: &str| lines.get(key).filter(|v| !v.is_empty()).cloned();
    // A profile that is its own source uses its own keys (as the AWS tools allow).
    if source != from {
        if let Some(role) = resolve_at(shared, source, &lines, region, depth + 1)? {
            return Ok(RoleSource::Role(role));
        }
    }
    if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
        return Ok(RoleSource::Keys(Keys {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: get("aws_session_token").map(Secret::new),
        }));
    }
    if let Some(command) = get("credential_process") {
        return Ok(RoleSource::Process(command));
    }
    let section = |name: &str| read_profile(shared.config, name);
    if let Some(sso) = sso(&lines, section, shared.sso_cache.clone(), shared.env)? {
        return Ok(RoleSource::Sso(sso));
    }
    Err(format!(
        "source_profile {source:?} has no keys, credential_process or SSO role"
    ))
}

impl AssumeRole {
    /// The credential processes and SSO roles its keys come from, at any depth.
    pub fn sources(&self) -> impl Iterator<Item = &RoleSource> {
        std::iter::successors(Some(&*self.source), |s| match s {
            RoleSource::Role(role) => Some(&*role.source),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolved(
        config: &str,
        profile: &str,
        env: &[(&str, &str)],
    ) -> Result<Option<AssumeRole>, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        std::fs::write(&file, config).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |name: &str| env.get(name).cloned();
        let shared = Shared {
            credentials: None,
            config: Some(&file),
            sso_cache: Some(dir.path().join("sso/cache")),
            env: &lookup,
        };
        let lines = shared.profile(profile)?;
        resolve(&shared, profile, &lines, "eu-west-1")
    }

    #[test]
    fn a_role_is_assumed_with_its_source_profiles_keys_at_any_depth() {
        let config = "[profile base]\naws_access_key_id = AKIABASE\naws_secret_access_key = s\n\
                      [profile hop]\nrole_arn = arn:aws:iam::1:role/hop\nsource_profile = base\n\
                      [profile music]\nrole_arn = arn:aws:iam::2:role/music\nsource_profile = hop\n\
                      external_id = x-1\nduration_seconds = 900\nrole_session_name = mpd\n\
                      [profile tool]\nrole_arn = arn:aws:iam::3:role/t\nsource_profile = tooled\n\
                      [profile tooled]\ncredential_process = aws-vault exec base --json\n";
        let music = resolved(config, "music", &[]).unwrap().expect("a role");
        assert_eq!(music.role_arn, "arn:aws:iam::2:role/music");
        assert_eq!(
            (
                music.external_id.as_deref(),
                music.duration_seconds,
                music.session_name.as_str()
            ),
            (Some("x-1"), Some(900), "mpd")
        );
        assert_eq!(music.sts, "https://sts.eu-west-1.amazonaws.com");
        let RoleSource::Role(hop) = &*music.source else {
            panic!("the hop's role first")
        };
        assert_eq!(hop.role_arn, "arn:aws:iam::1:role/hop");
        let RoleSource::Keys(keys) = &*hop.source else {
            panic!("the base's keys")
        };
        assert_eq!(keys.access_key_id, "AKIABASE");
        assert_eq!(music.sources().count(), 2);
        let tool = resolved(
            config,
            "tool",
            &[("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9/")],
        )
        .unwrap()
        .expect("a role");
        assert!(matches!(&*tool.source, RoleSource::Process(c) if c.starts_with("aws-vault")));
        assert_eq!(tool.sts, "http://127.0.0.1:9");
        assert!(resolved(config, "base", &[]).unwrap().is_none());
    }

    #[test]
    fn the_environment_mfa_and_loops_are_said_plainly() {
        let config = "[profile env]\nrole_arn = arn:r\ncredential_source = Environment\n\
                      [profile mfa]\nrole_arn = arn:r\nsource_profile = env\nmfa_serial = arn:m\n\
                      [profile a]\nrole_arn = arn:a\nsource_profile = b\n\
                      [profile b]\nrole_arn = arn:b\nsource_profile = a\n\
                      [profile ec2]\nrole_arn = arn:r\ncredential_source = Ec2InstanceMetadata\n";
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ];
        let role = resolved(config, "env", &env).unwrap().expect("a role");
        assert!(matches!(&*role.source, RoleSource::Keys(k) if k.access_key_id == "AKIAENV"));
        let err = resolved(config, "env", &[]).unwrap_err();
        assert!(
            err.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"),
            "{err}"
        );
        let err = resolved(config, "mfa", &env).unwrap_err();
        assert!(err.contains("MFA code"), "{err}");
        let err = resolved(config, "a", &[]).unwrap_err();
        assert!(err.contains("more than 8 roles"), "{err}");
        let err = resolved(config, "ec2", &[]).unwrap_err();
        assert!(
            err.contains("Ec2InstanceMetadata is not supported"),
            "{err}"
        );
    }
}
