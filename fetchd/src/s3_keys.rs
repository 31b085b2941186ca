//! An S3 origin's keys: given (in the config, the environment or the profile), or temporary
//! ones: from the SSO portal for a profile's SSO role (`s3_sso.rs`), or those that a profile's
//! `credential_process` prints in the AWS tools' format
//! (`{"Version": 1, "AccessKeyId": ..., "SecretAccessKey": ..., "SessionToken": ...,
//! "Expiration": "2026-11-27T20:00:00Z"}`). The process runs outside fetchd's sandbox
//! (`outside.rs`): at the first request, again once the keys have less than a minute left,
//! and after the server said they had expired. What it prints is never logged or shown.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use rusty_s3::Credentials;

use crate::s3_role::RoleKeys;
use crate::s3_sso::SsoKeys;
use crate::s3_workload::WorkloadKeys;

/// How many seconds before they expire temporary keys are replaced.
const REFRESH_BEFORE: i64 = 60;

/// (Shared, so that signing a request takes no copy of them.)
pub enum Keys {
    Given(Arc<Credentials>),
    Temporary {
        source: Source,
        /// The keys got last, and when they expire (seconds since the epoch).
        current: Mutex<Option<(Arc<Credentials>, Option<i64>)>>,
    },
}

/// Where temporary keys come from.
pub enum Source {
    /// A profile's `credential_process`.
    Process(String),
    /// A profile's SSO role (`s3_sso.rs`).
    Sso(Box<SsoKeys>),
    /// A container's or a pod's (`s3_workload.rs`).
    Workload(Box<WorkloadKeys>),
    /// A role a profile assumes (`s3_role.rs`).
    Role(Box<RoleKeys>),
}

impl Keys {
    pub fn given(keys: &musicfs_ipc::s3_target::Keys) -> Self {
        let (id, secret) = (keys.access_key_id.clone(), keys.secret_access_key.expose());
        Keys::Given(Arc::new(match &keys.session_token {
            Some(token) => Credentials::new_with_token(id, secret, token.expose()),
            None => Credentials::new(id, secret),
        }))
    }

    pub fn temporary(source: Source) -> Self {
        Keys::Temporary {
            source,
            current: Mutex::new(None),
        }
    }

    /// The keys to sign with now (getting new ones if they are due).
    pub fn get(&self) -> io::Result<Arc<Credentials>> {
        let (source, current) = match self {
            Keys::Given(keys) => return Ok(keys.clone()),
            Keys::Temporary { source, current } => (source, current),
        };
        let mut current = current.lock().unwrap_or_else(PoisonError::into_inner);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if let Some((keys, expires)) = current.as_ref() {
            if expires.is_none_or(|at| at - now > REFRESH_BEFORE) {
                return Ok(keys.clone());
            }
        }
        let (keys, expires) = match source {
            Source::Process(command) => {
                let output = crate::outside::output(command).map_err(|e| {
                    io::Error::new(e.kind(), format!("credential_process failed: {e}"))
                })?;
                parse(&output).map_err(|why| {
                    io::Error::other(format!("credential_process {command}: {why}"))
                })?
            }
            Source::Sso(sso) => sso.fetch()?,
            Source::Workload(workload) => workload.fetch()?,
            Source::Role(role) => role.fetch()?,
        };
        let keys = Arc::new(keys);
        *current = Some((keys.clone(), expires));
        Ok(keys)
    }

    /// The server said the keys expired (a clock off, keys revoked): new ones next time.
    pub fn expired(&self) {
        if let Keys::Temporary { current, .. } = self {
            *current.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// The secret in use, to keep it out of error texts.
    pub fn secret(&self) -> Option<String> {
        match self {
            Keys::Given(keys) => Some(keys.secret().to_owned()),
            Keys::Temporary { current, .. } => {
                let current = current.lock().unwrap_or_else(PoisonError::into_inner);
                current.as_ref().map(|(keys, _)| keys.secret().to_owned())
            }
        }
    }
}

/// The keys and their expiry from a credential process's output; the error never quotes it.
fn parse(output: &[u8]) -> Result<(Credentials, Option<i64>), String> {
    let value: serde_json::Value =
        serde_json::from_slice(output).map_err(|e| format!("printed no JSON object ({e})"))?;
    if value["Version"] != 1 {
        return Err("printed no \"Version\": 1".into());
    }
    let field = |name: &str| value[name].as_str().filter(|s| !s.is_empty());
    let (Some(id), Some(secret)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
        return Err("printed no AccessKeyId and SecretAccessKey".into());
    };
    let expires = match field("Expiration") {
        None => None,
        Some(at) => Some(
            crate::web::parse_rfc3339(at)
                .ok_or_else(|| format!("Expiration {at:?} is no RFC 3339 time"))?,
        ),
    };
    let keys = match field("SessionToken") {
        Some(token) => Credentials::new_with_token(id, secret, token),
        None => Credentials::new(id, secret),
    };
    Ok((keys, expires))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aws_tools_output_is_read_and_bad_output_is_refused_without_quoting_it() {
        let out = br#"{"Version": 1, "AccessKeyId": "ASIA1", "SecretAccessKey": "s3cret",
            "SessionToken": "tok", "Expiration": "2026-11-27T20:00:00+00:00"}"#;
        let (keys, expires) = parse(out).unwrap();
        assert_eq!(
            (keys.key(), keys.secret(), keys.token()),
            ("ASIA1", "s3cret", Some("tok"))
        );
        assert_eq!(expires, crate::web::parse_rfc3339("2026-11-27T20:00:00Z"));
        let lasting = br#"{"Version":1,"AccessKeyId":"AKIA2","SecretAccessKey":"x"}"#;
        assert_eq!(parse(lasting).unwrap().1, None);
        for bad in [
            &br#"{"Version": 2, "AccessKeyId": "A", "SecretAccessKey": "s3cret"}"#[..],
            br#"{"Version": 1, "AccessKeyId": "A"}"#,
            br#"{"Version": 1, "AccessKeyId": "A", "SecretAccessKey": "s3cret", "Expiration": "soon"}"#,
            b"AccessKeyId=A s3cret",
        ] {
            let why = parse(bad).unwrap_err();
            assert!(!why.contains("s3cret"), "{why}");
        }
    }
}
