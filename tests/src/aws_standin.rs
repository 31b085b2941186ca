//! A stand-in on 127.0.0.1 for the AWS services that hand out temporary keys, which cannot run
//! here. IAM Identity Center: the portal's `GetRoleCredentials` (`GET /federation/credentials
//! ?role_name=..&account_id=..` with the `x-amz-sso_bearer_token` header) answers one role's
//! keys to the tokens it holds valid, 401 to others; the token service's `CreateToken` (`POST
//! /token` with a refresh token) swaps the refresh token it holds for a new token. STS's
//! `AssumeRoleWithWebIdentity` (`POST /` with a form) answers the role's keys, in XML, to a
//! web identity token it holds valid. A container credentials endpoint (`GET /creds`) answers
//! them to an `Authorization` header it holds valid. All at one address, as
//! `AWS_ENDPOINT_URL_SSO`, `AWS_ENDPOINT_URL_SSO_OIDC`, `AWS_ENDPOINT_URL_STS` and
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` name them. Every request is recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the portal holds; tests change it while it runs.
#[derive(Default)]
pub struct Portal {
    pub account_id: String,
    pub role_name: String,
    /// The role STS gives keys for.
    pub role_arn: String,
    /// The keys it hands out, and for how many seconds they say they last.
    pub keys: (String, String),
    pub keys_last: i64,
    /// Tokens it takes.
    pub valid_tokens: Vec<String>,
    /// The refresh token it takes, and the token it gives for it (which it then also takes).
    /// Each refresh hands out a new refresh token (the old one with `+`), and only that one is
    /// taken next, for a token named as the last with `+`.
    pub refresh: Option<(String, String)>,
    /// How many seconds the tokens it gives last (3600 when 0).
    pub token_last: i64,
    /// Closes each connection without an answer, as a server that has gone away.
    pub gone: bool,
    /// `METHOD path token` of each request, in order (the token shown: the bearer token, the
    /// refresh token, the web identity token or the `Authorization` header).
    pub requests: Vec<String>,
}

pub struct AwsStandIn {
    port: u16,
    pub state: Arc<Mutex<Portal>>,
    stop: Arc<AtomicBool>,
}

impl AwsStandIn {
    pub fn new(portal: Portal) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SSO stand-in");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(portal));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopped) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Acquire) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Self { port, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for AwsStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Answers the requests on one connection (the client may keep it open).
fn serve(stream: TcpStream, state: &Mutex<Portal>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let (method, target) = (
            words.next().unwrap_or("").to_owned(),
            words.next().unwrap_or(""),
        );
        let target = target.to_owned();
        let (mut length, mut token) = (0, String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "x-amz-sso_bearer_token" | "authorization" => token = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() || state.lock().unwrap().gone {
            return;
        }
        let (status, answer) = answer(state, &method, &target, &token, &body);
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn answer(
    state: &Mutex<Portal>,
    method: &str,
    target: &str,
    token: &str,
    body: &[u8],
) -> (&'static str, String) {
    let mut portal = state.lock().unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let refused = (
        "401 Unauthorized",
        r#"{"message":"Session token not found or invalid"}"#.into(),
    );
    match (method, path) {
        ("GET", "/federation/credentials") => {
            portal.requests.push(format!("GET {path} {token}"));
            let asked = |name: &str| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or("")
                    .to_owned()
            };
            if !portal.valid_tokens.iter().any(|t| t == token) {
                return refused;
            }
            if asked("account_id") != portal.account_id || asked("role_name") != portal.role_name {
                return ("403 Forbidden", r#"{"message":"No access"}"#.into());
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            let expiration = now + portal.keys_last * 1000;
            let credentials = serde_json::json!({"roleCredentials": {
                "accessKeyId": portal.keys.0, "secretAccessKey": portal.keys.1,
                "sessionToken": "session", "expiration": expiration}});
            ("200 OK", credentials.to_string())
        }
        ("POST", "/token") => {
            let asked: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let refresh_token = asked["refreshToken"].as_str().unwrap_or("").to_owned();
            portal.requests.push(format!("POST {path} {refresh_token}"));
            let grant = asked["grantType"] == "refresh_token";
            match portal.refresh.clone() {
                Some((held, new)) if grant && held == refresh_token => {
                    portal.valid_tokens.push(new.clone());
                    portal.refresh = Some((format!("{held}+"), format!("{new}+")));
                    let lasts = match portal.token_last {
                        0 => 3600,
                        seconds => seconds,
                    };
                    let token = serde_json::json!({"accessToken": new, "expiresIn": lasts,
                        "refreshToken": format!("{held}+"), "tokenType": "Bearer"});
                    ("200 OK", token.to_string())
                }
                _ => ("400 Bad Request", r#"{"error":"invalid_grant"}"#.into()),
            }
        }
        ("POST", "/") => {
            let form: Vec<(String, String)> = url_decoded(body);
            let field = |name: &str| {
                let found = form.iter().find(|(k, _)| k == name);
                found.map(|(_, v)| v.clone()).unwrap_or_default()
            };
            if field("Action") == "AssumeRole" {
                return assume_role(&mut portal, &field("RoleArn"), token);
            }
            let token = field("WebIdentityToken");
            portal.requests.push(format!("POST {path} {token}"));
            if field("Action") != "AssumeRoleWithWebIdentity"
                || !portal.valid_tokens.contains(&token)
                || field("RoleArn") != portal.role_arn
            {
                return (
                    "403 Forbidden",
                    "<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized \
                     to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>"
                        .into(),
                );
            }
            let expiration = rfc3339_after(portal.keys_last);
            let xml = format!(
                "<AssumeRoleWithWebIdentityResponse \
                 xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                 <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{}</AccessKeyId>\
                 <SecretAccessKey>{}</SecretAccessKey><SessionToken>session</SessionToken>\
                 <Expiration>{expiration}</Expiration></Credentials>\
                 </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
                portal.keys.0, portal.keys.1
            );
            ("200 OK", xml)
        }
        ("GET", "/creds") => {
            portal.requests.push(format!("GET {path} {token}"));
            if !portal.valid_tokens.iter().any(|t| t == token) {
                return ("401 Unauthorized", "{}".into());
            }
            let credentials = serde_json::json!({
                "AccessKeyId": portal.keys.0, "SecretAccessKey": portal.keys.1,
                "Token": "session", "Expiration": rfc3339_after(portal.keys_last)});
            ("200 OK", credentials.to_string())
        }
        _ => ("404 Not Found", "{}".into()),
    }
}

/// STS's `AssumeRole`, signed (`authorization`): the keys are given when the signature's
/// key id is one it holds valid, for the service `sts`, over `host` and `x-amz-date` at least.
/// (The signature itself is checked against AWS's published examples where it is made.)
fn assume_role(portal: &mut Portal, role_arn: &str, authorization: &str) -> (&'static str, String) {
    let part = |name: &str| {
        authorization
            .split([' ', ','])
            .find_map(|p| p.strip_prefix(name))
            .unwrap_or("")
            .to_owned()
    };
    let credential = part("Credential=");
    let key_id = credential.split('/').next().unwrap_or("").to_owned();
    portal.requests.push(format!("POST / AssumeRole {key_id}"));
    let signed = part("SignedHeaders=");
    let well_formed = authorization.starts_with("AWS4-HMAC-SHA256 ")
        && credential.ends_with("/sts/aws4_request")
        && signed.split(';').any(|h| h == "host")
        && signed.split(';').any(|h| h == "x-amz-date")
        && part("Signature=").len() == 64;
    if !well_formed || !portal.valid_tokens.contains(&key_id) || role_arn != portal.role_arn {
        return (
            "403 Forbidden",
            "<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized to \
             perform sts:AssumeRole</Message></Error></ErrorResponse>"
                .into(),
        );
    }
    let xml = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleResult><Credentials><AccessKeyId>{}</AccessKeyId>\
         <SecretAccessKey>{}</SecretAccessKey><SessionToken>session</SessionToken>\
         <Expiration>{}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>",
        portal.keys.0,
        portal.keys.1,
        rfc3339_after(portal.keys_last)
    );
    ("200 OK", xml)
}

/// `key=value&...` as forms send it, decoded.
fn url_decoded(body: &[u8]) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let bytes = text.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// The time `seconds` from now in RFC 3339 (UTC), as AWS writes expirations.
fn rfc3339_after(seconds: i64) -> String {
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("{seconds} seconds"),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
