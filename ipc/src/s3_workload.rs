//! Keys a container or a Kubernetes pod is handed, as the AWS tools find them when nothing
//! else gives keys: a web identity (a service account's token, exchanged at STS for a role's
//! keys: the profile's `role_arn` and `web_identity_token_file`, else `AWS_ROLE_ARN` and
//! `AWS_WEB_IDENTITY_TOKEN_FILE`), else a container's credentials endpoint (ECS, EKS Pod
//! Identity: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` on 169.254.170.2, or
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`, with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`). fetchd gets the keys (`fetchd/src/s3_workload.rs`).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::origin::Secret;

/// Where the keys of a workload come from.
#[derive(Debug, Clone)]
pub enum Workload {
    WebIdentity {
        role_arn: String,
        /// Read at every exchange: the orchestrator replaces it before it expires.
        token_file: PathBuf,
        session_name: String,
        /// STS's base URL: `AWS_ENDPOINT_URL_STS`, else AWS's for the region.
        sts: String,
    },
    Container {
        url: String,
        /// The `Authorization` header's value, or the file it is read from (at every request).
        token: Option<Secret>,
        token_file: Option<PathBuf>,
    },
}

impl Workload {
    /// Files read for it (the sandbox admits their folders: tokens are replaced by new files).
    pub fn folders(&self) -> Vec<PathBuf> {
        let file = match self {
            Workload::WebIdentity { token_file, .. } => Some(token_file),
            Workload::Container { token_file, .. } => token_file.as_ref(),
        };
        file.and_then(|f| f.parent())
            .map(PathBuf::from)
            .into_iter()
            .collect()
    }

    /// For people: where the keys come from.
    pub fn describe(&self) -> String {
        match self {
            Workload::WebIdentity {
                role_arn,
                token_file,
                sts,
                ..
            } => format!(
                "role {role_arn} for the web identity in {} (STS at {sts})",
                token_file.display()
            ),
            Workload::Container { url, .. } => format!("the container's endpoint {url}"),
        }
    }
}

/// The workload keys `profile` (its lines in the shared files) or the environment name, if
/// any; `region` is the bucket's.
pub fn resolve(
    profile: &HashMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
    region: &str,
) -> Result<Option<Workload>, String> {
    let from_profile = |key: &str| profile.get(key).filter(|v| !v.is_empty()).cloned();
    let (role, token_file) = match (
        from_profile("role_arn"),
        from_profile("web_identity_token_file"),
    ) {
        (Some(role), Some(file)) => (Some(role), Some(file)),
        _ => (env("AWS_ROLE_ARN"), env("AWS_WEB_IDENTITY_TOKEN_FILE")),
    };
    if let (Some(role_arn), Some(token_file)) = (role, token_file) {
        let session_name = from_profile("role_session_name")
            .or_else(|| env("AWS_ROLE_SESSION_NAME"))
            .unwrap_or_else(|| "musicfs".into());
        let sts = env("AWS_ENDPOINT_URL_STS").map_or_else(
            || format!("https://sts.{region}.amazonaws.com"),
            |url| url.trim_end_matches('/').to_owned(),
        );
        return Ok(Some(Workload::WebIdentity {
            role_arn,
            token_file: token_file.into(),
            session_name,
            sts,
        }));
    }
    let url = match (
        env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(relative), _) => format!("http://169.254.170.2{relative}"),
        (None, Some(full)) => {
            check_full_uri(&full)?;
            full
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(Workload::Container {
        url,
        token: env("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(Secret::new),
        token_file: env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
    }))
}

/// As the AWS SDKs: a full URI over plain HTTP only to this machine or the container
/// agents' link-local addresses; anything else over HTTPS.
fn check_full_uri(uri: &str) -> Result<(), String> {
    let Some(rest) = uri.strip_prefix("http://") else {
        return match uri.starts_with("https://") {
            true => Ok(()),
            false => Err(format!(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI {uri}: not an http(s) URL"
            )),
        };
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    let allowed = host == "localhost"
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| {
            ip.is_loopback()
                || ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"]
                    .iter()
                    .any(|a| a.parse() == Ok(ip))
        });
    match allowed {
        true => Ok(()),
        false => Err(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI {uri}: plain http only to this machine or the \
             container agent (169.254.170.2, 169.254.170.23, fd00:ec2::23); use https"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(
        profile: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Result<Option<Workload>, String> {
        let profile = profile
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(&profile, &|name| env.get(name).cloned(), "eu-west-1")
    }

    #[test]
    fn a_web_identity_comes_from_the_profile_then_the_environment() {
        let env = [
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/env"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/token"),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/x",
            ),
        ];
        let Some(Workload::WebIdentity {
            role_arn,
            token_file,
            session_name,
            sts,
        }) = resolved(&[], &env).unwrap()
        else {
            panic!("a web identity first")
        };
        assert_eq!(role_arn, "arn:aws:iam::1:role/env");
        assert_eq!(token_file, PathBuf::from("/var/run/secrets/token"));
        assert_eq!(session_name, "musicfs");
        assert_eq!(sts, "https://sts.eu-west-1.amazonaws.com");
        let profile = [
            ("role_arn", "arn:aws:iam::1:role/profile"),
            ("web_identity_token_file", "/t"),
            ("role_session_name", "music"),
        ];
        let Some(Workload::WebIdentity {
            role_arn,
            session_name,
            ..
        }) = resolved(&profile, &env).unwrap()
        else {
            panic!("the profile's web identity")
        };
        assert_eq!(
            (role_arn.as_str(), session_name.as_str()),
            ("arn:aws:iam::1:role/profile", "music")
        );
    }

    #[test]
    fn a_container_endpoint_over_http_must_be_local() {
        let Some(Workload::Container { url, .. }) =
            resolved(&[], &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/c")]).unwrap()
        else {
            panic!("a container")
        };
        assert_eq!(url, "http://169.254.170.2/v2/c");
        for ok in [
            "http://127.0.0.1:9/c",
            "http://[::1]/c",
            "http://169.254.170.23/v1/credentials",
            "https://creds.example/c",
        ] {
            assert!(
                resolved(&[], &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", ok)]).is_ok(),
                "{ok}"
            );
        }
        let err = resolved(
            &[],
            &[(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://evil.example/c",
            )],
        )
        .unwrap_err();
        assert!(err.contains("use https"), "{err}");
        assert!(resolved(&[], &[]).unwrap().is_none());
    }
}
