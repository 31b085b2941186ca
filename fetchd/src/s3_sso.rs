//! Temporary keys for an S3 origin whose AWS profile names an IAM Identity Center (SSO) role,
//! got as the AWS tools get them: the token `aws sso login` left in `~/.aws/sso/cache` is
//! shown to the SSO portal (`GetRoleCredentials`), which answers with keys for the role. A
//! session's token (`sso_session` profiles) that has expired is refreshed with the token
//! service (`CreateToken`, with the refresh token in the same file), in memory: the cache file
//! is never written. The file is read when fetchd starts (before its sandbox) and again
//! whenever the token in hand has expired or was refused, so a new `aws sso login` is picked up
//! without a restart. Tokens and keys never appear in errors or logs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use musicfs_ipc::origin::Secret;
use musicfs_ipc::s3_target::Sso;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use rusty_s3::Credentials;
use sha1::{Digest, Sha1};
use url::Url;

/// How many seconds before it expires a token is taken for expired.
const TOKEN_MARGIN: i64 = 30;

/// An SSO role's keys, with the token that gets them.
pub struct SsoKeys {
    sso: Sso,
    /// `profile NAME` for messages (`aws sso login --profile NAME` is what renews it).
    profile: String,
    client: Client,
    token: Mutex<Option<Token>>,
}

/// What `aws sso login` keeps: the token and, for a session, how to refresh it.
struct Token {
    access: Secret,
    /// Seconds since the epoch.
    expires_at: i64,
    refresh: Option<Refresh>,
}

struct Refresh {
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
}

impl SsoKeys {
    /// Reads the token `aws sso login` left (none yet is not an error here: the first request
    /// says what to do). `ca_file`'s certificates are trusted besides the system's, as for the
    /// bucket (`AWS_CA_BUNDLE` applies to every AWS service).
    pub fn new(
        sso: Sso,
        profile: String,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> io::Result<Self> {
        let name = format!("SSO profile {profile:?}");
        let client = crate::web::keys_client(&name, timeout, ca_file)?;
        let keys = Self {
            sso,
            profile,
            client,
            token: Mutex::new(None),
        };
        match keys.read_cache() {
            Ok(token) => *keys.token.lock().unwrap_or_else(PoisonError::into_inner) = token,
            Err(e) => tracing::warn!("{e}"),
        }
        Ok(keys)
    }

    /// The token's file: `~/.aws/sso/cache/<SHA-1 of the session name or start URL>.json`.
    pub fn cache_file(&self) -> PathBuf {
        let hash = Sha1::digest(self.sso.cache_key().as_bytes());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        self.sso.cache_dir.join(format!("{hex}.json"))
    }

    /// New keys for the role, with when they expire (seconds since the epoch).
    pub fn fetch(&self) -> io::Result<(Credentials, Option<i64>)> {
        let mut token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now();
        let expired = |t: &Token| t.expires_at - now <= TOKEN_MARGIN;
        if token.as_ref().is_none_or(expired) {
            // A newer login in the file (one that lasts longer than the token in hand), else
            // a refresh of the token in hand: a refreshed token's refresh token may be the
            // only one the token service still takes (it may hand out a new one each time).
            match self.read_cache() {
                Ok(Some(read))
                    if token
                        .as_ref()
                        .is_none_or(|t| read.expires_at > t.expires_at) =>
                {
                    *token = Some(read);
                }
                Ok(_) => {}
                Err(e) if token.is_some() => tracing::debug!("{e}"),
                Err(e) => return Err(e),
            }
            if let Some(old) = token.as_ref().filter(|t| expired(t)) {
                *token = Some(self.refreshed(old)?);
            }
        }
        let mut why = "there is no token from aws sso login";
        while let Some(current) = token.take() {
            match self.role_credentials(&current) {
                Ok(Some(keys)) => {
                    *token = Some(current);
                    return Ok(keys);
                }
                Ok(None) => {}
                Err(e) => {
                    *token = Some(current);
                    return Err(e);
                }
            }
            // Refused (signed out, or revoked): a newer login may be in the file.
            why = "the SSO portal refused its token";
            let newer = |t: &Token| t.access.expose() != current.access.expose() && !expired(t);
            *token = self.read_cache()?.filter(newer);
        }
        Err(self.login_needed(why))
    }

    /// The token in the cache file, if there is one; a file that cannot be read or parsed is
    /// an error that says so (without its contents).
    fn read_cache(&self) -> io::Result<Option<Token>> {
        let file = self.cache_file();
        let text = match std::fs::read(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                let why = format!("{}: cannot read the SSO token: {e}", file.display());
                return Err(io::Error::other(why));
            }
        };
        parse_cache(&text)
            .map(Some)
            .map_err(|why| io::Error::other(format!("{}: {why}", file.display())))
    }

    /// The token renewed with the token service, where the session allows it.
    fn refreshed(&self, token: &Token) -> io::Result<Token> {
        let Some(refresh) = &token.refresh else {
            return Err(self.login_needed("its token has expired"));
        };
        let body = serde_json::json!({
            "clientId": refresh.client_id,
            "clientSecret": refresh.client_secret.expose(),
            "grantType": "refresh_token",
            "refreshToken": refresh.refresh_token.expose(),
        });
        let response = self
            .client
            .post(format!("{}/token", self.sso.oidc))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .map_err(|e| self.network("the SSO token service", e))?;
        let status = response.status();
        if status.is_client_error() {
            return Err(self.login_needed("its token has expired and could not be refreshed"));
        }
        if !status.is_success() {
            let why = format!("the SSO token service answered {status}");
            return Err(io::Error::other(self.say(&why)));
        }
        let value = json(response)
            .map_err(|_| io::Error::other(self.say("the SSO token service's answer is no JSON")))?;
        let (Some(access), Some(lasts)) =
            (value["accessToken"].as_str(), value["expiresIn"].as_i64())
        else {
            let why = "the SSO token service answered without accessToken and expiresIn";
            return Err(io::Error::other(self.say(why)));
        };
        Ok(Token {
            access: Secret::new(access),
            expires_at: now() + lasts,
            refresh: Some(Refresh {
                client_id: refresh.client_id.clone(),
                client_secret: refresh.client_secret.clone(),
                refresh_token: value["refreshToken"]
                    .as_str()
                    .map_or_else(|| refresh.refresh_token.clone(), Secret::new),
            }),
        })
    }

    /// The role's keys from the portal; `None` when it refused the token.
    fn role_credentials(&self, token: &Token) -> io::Result<Option<(Credentials, Option<i64>)>> {
        let mut url = Url::parse(&format!("{}/federation/credentials", self.sso.portal))
            .map_err(|e| io::Error::other(self.say(&format!("the SSO portal's URL: {e}"))))?;
        url.query_pairs_mut()
            .append_pair("role_name", &self.sso.role_name)
            .append_pair("account_id", &self.sso.account_id);
        let response = self
            .client
            .get(url)
            .header("x-amz-sso_bearer_token", token.access.expose())
            .send()
            .map_err(|e| self.network("the SSO portal", e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Ok(None);
        }
        if status == StatusCode::FORBIDDEN {
            let why = format!(
                "the SSO portal refused role {} in account {} to this login",
                self.sso.role_name, self.sso.account_id
            );
            return Err(io::Error::other(self.say(&why)));
        }
        if !status.is_success() {
            let why = format!("the SSO portal answered {status}");
            return Err(io::Error::other(self.say(&why)));
        }
        let value = json(response)
            .map_err(|_| io::Error::other(self.say("the SSO portal's answer is no JSON")))?;
        let role = &value["roleCredentials"];
        let field = |name: &str| role[name].as_str().filter(|s| !s.is_empty());
        let (Some(id), Some(secret)) = (field("accessKeyId"), field("secretAccessKey")) else {
            let why = "the SSO portal answered without accessKeyId and secretAccessKey";
            return Err(io::Error::other(self.say(why)));
        };
        let keys = match field("sessionToken") {
            Some(session) => Credentials::new_with_token(id, secret, session),
            None => Credentials::new(id, secret),
        };
        let expires = role["expiration"].as_i64().map(|ms| ms / 1000);
        Ok(Some((keys, expires)))
    }

    fn say(&self, why: &str) -> String {
        format!("SSO profile {:?}: {why}", self.profile)
    }

    fn login_needed(&self, why: &str) -> io::Error {
        io::Error::other(self.say(&format!(
            "{why}: run aws sso login --profile {} (MusicFS reads the new token at its next \
             request)",
            self.profile
        )))
    }

    fn network(&self, what: &str, e: reqwest::Error) -> io::Error {
        let e = crate::web::unanswered(what, e);
        io::Error::new(e.kind(), self.say(&e.to_string()))
    }
}

/// An answer's body as JSON.
fn json(response: reqwest::blocking::Response) -> Result<serde_json::Value, ()> {
    let body = response.bytes().map_err(drop)?;
    serde_json::from_slice(&body).map_err(drop)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A cache file as the AWS tools write it (`accessToken`, `expiresAt`; for a session also
/// `clientId`, `clientSecret`, `refreshToken`). The error never quotes it.
fn parse_cache(text: &[u8]) -> Result<Token, String> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|_| "the SSO token file is no JSON".to_owned())?;
    let field = |name: &str| value[name].as_str().filter(|s| !s.is_empty());
    let (Some(access), Some(expires)) = (field("accessToken"), field("expiresAt")) else {
        return Err("the SSO token file has no accessToken and expiresAt".into());
    };
    // Older AWS tools wrote `2026-11-27T20:00:00UTC`.
    let expires_at = match expires.strip_suffix("UTC") {
        Some(time) => crate::web::parse_rfc3339(&format!("{time}Z")),
        None => crate::web::parse_rfc3339(expires),
    }
    .ok_or_else(|| format!("the SSO token file's expiresAt {expires:?} is no time"))?;
    let refresh = match (
        field("clientId"),
        field("clientSecret"),
        field("refreshToken"),
    ) {
        (Some(id), Some(secret), Some(refresh)) => Some(Refresh {
            client_id: id.to_owned(),
            client_secret: Secret::new(secret),
            refresh_token: Secret::new(refresh),
        }),
        _ => None,
    };
    Ok(Token {
        access: Secret::new(access),
        expires_at,
        refresh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sso(session: Option<&str>) -> Sso {
        Sso {
            account_id: "1".into(),
            role_name: "R".into(),
            start_url: "https://corp.awsapps.com/start".into(),
            region: "us-east-1".into(),
            session: session.map(str::to_owned),
            cache_dir: "/home/ann/.aws/sso/cache".into(),
            portal: "http://127.0.0.1:9".into(),
            oidc: "http://127.0.0.1:9".into(),
        }
    }

    #[test]
    fn the_token_file_is_named_as_the_aws_tools_name_it() {
        // SHA-1 of the session's name, else of the start URL (hashlib.sha1 in Python).
        let keys = |session| SsoKeys::new(sso(session), "p".into(), Duration::from_secs(1), None);
        assert_eq!(
            keys(Some("corp")).unwrap().cache_file(),
            Path::new("/home/ann/.aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json")
        );
        assert_eq!(
            keys(None).unwrap().cache_file(),
            Path::new("/home/ann/.aws/sso/cache/a51746d4aa793ae07b25e90c3a5db96fc7832bd7.json")
        );
    }

    /// The token service hands out a new refresh token with each token and takes only the
    /// newest: a token refreshed in memory is refreshed again with its own refresh token, not
    /// with the cache file's older one; and a portal that does not answer loses no token.
    #[test]
    fn a_refreshed_token_is_refreshed_again_with_its_own_refresh_token() {
        use musicfs_tests::aws_standin::{AwsStandIn, Portal};
        let portal = AwsStandIn::new(Portal {
            account_id: "1".into(),
            role_name: "R".into(),
            keys: ("AKIA".into(), "s3cret".into()),
            keys_last: 3600,
            refresh: Some(("refresh-1".into(), "token-2".into())),
            // Within the margin at once: each fetch refreshes.
            token_last: 1,
            ..Portal::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let mut sso = sso(Some("corp"));
        sso.cache_dir = dir.path().to_owned();
        (sso.portal, sso.oidc) = (portal.url(), portal.url());
        let keys = SsoKeys::new(sso, "p".into(), Duration::from_secs(2), None).unwrap();
        let expired = r#"{"accessToken": "token-1", "expiresAt": "2020-01-01T00:00:00Z",
            "clientId": "c", "clientSecret": "s", "refreshToken": "refresh-1"}"#;
        std::fs::write(keys.cache_file(), expired).unwrap();
        for _ in 0..3 {
            let (credentials, _) = keys.fetch().unwrap();
            assert_eq!(credentials.key(), "AKIA");
        }
        let posts: Vec<String> = portal
            .requests()
            .into_iter()
            .filter(|r| r.starts_with("POST"))
            .collect();
        assert_eq!(
            posts,
            [
                "POST /token refresh-1",
                "POST /token refresh-1+",
                "POST /token refresh-1++"
            ]
        );

        // The portal gone: an error, and the token in hand is kept for when it is back.
        portal.state.lock().unwrap().gone = true;
        let err = keys.fetch().unwrap_err().to_string();
        assert!(err.contains("did not answer"), "{err}");
        portal.state.lock().unwrap().gone = false;
        keys.fetch().unwrap();
        let last = portal
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.starts_with("POST"));
        assert_eq!(last.as_deref(), Some("POST /token refresh-1+++"));
    }

    #[test]
    fn token_files_old_and_new_are_read_and_bad_ones_refused_without_quoting_them() {
        let session = br#"{"startUrl": "https://corp.awsapps.com/start", "region": "us-east-1",
            "accessToken": "t0ken", "expiresAt": "2026-11-27T20:00:00Z", "clientId": "c",
            "clientSecret": "s3cret", "refreshToken": "r",
            "registrationExpiresAt": "2027-01-01T00:00:00Z"}"#;
        let token = parse_cache(session).unwrap();
        assert_eq!(token.access.expose(), "t0ken");
        assert_eq!(
            Some(token.expires_at),
            crate::web::parse_rfc3339("2026-11-27T20:00:00Z")
        );
        let refresh = token.refresh.expect("a session's token refreshes");
        assert_eq!(
            (refresh.client_id.as_str(), refresh.refresh_token.expose()),
            ("c", "r")
        );
        let legacy = br#"{"startUrl": "u", "region": "r", "accessToken": "t0ken",
            "expiresAt": "2026-11-27T20:00:00UTC"}"#;
        let token = parse_cache(legacy).unwrap();
        assert_eq!(
            Some(token.expires_at),
            crate::web::parse_rfc3339("2026-11-27T20:00:00Z")
        );
        assert!(token.refresh.is_none());
        for bad in [
            &br#"{"accessToken": "t0ken"}"#[..],
            br#"{"accessToken": "t0ken", "expiresAt": "tomorrow"}"#,
            b"t0ken",
        ] {
            let Err(why) = parse_cache(bad) else {
                panic!("accepted {bad:?}")
            };
            assert!(!why.contains("t0ken"), "{why}");
        }
    }
}
