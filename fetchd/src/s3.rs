//! S3 origins: a bucket (and a key prefix in it) on AWS or any S3-compatible server.
//!
//! Requests are signed with [`rusty_s3`] (SigV4 presigned URLs; sans-IO, so no runtime of its
//! own) and sent with a blocking [`reqwest`] client that keeps connections alive. Every request
//! is bounded by the origin's timeout: connecting, waiting for the response head, and each wait
//! for more body bytes (so a large read that keeps moving is not cut off, a stalled one is).
//!
//! Presigned URLs carry a signature, and the secret key signs them: neither is ever logged,
//! `Debug`-printed or put into an error message.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use musicfs_ipc::origin::{OriginConfig, OriginUrl};
use musicfs_ipc::s3_target::S3Target;
use reqwest::blocking::Response;
use reqwest::header;
use reqwest::StatusCode;
use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, UrlStyle};
use url::Url;

use crate::origin::{check_relative, is_audio, Found, Listing, Origin, RangeRead};
use crate::s3_keys::{Keys, Source};
use crate::s3_role::RoleKeys;
use crate::s3_sso::SsoKeys;
use crate::s3_workload::WorkloadKeys;
use crate::web::{self, invalid, parse_rfc3339, Pin, Web};

/// Keys per ListObjectsV2 page (S3's maximum).
const PAGE_SIZE: usize = 1000;
/// How long a presigned URL stays valid (it is used at once; this only has to cover clock skew
/// and a slow request).
const URL_LIFETIME: Duration = Duration::from_secs(900);

pub struct S3Origin {
    shared: Arc<Shared>,
    /// Key prefix without leading or trailing `/`; empty for the whole bucket.
    prefix: String,
    page_size: usize,
}

/// What an origin and the files opened from it share.
struct Shared {
    web: Web,
    bucket: Bucket,
    keys: Keys,
}

impl fmt::Debug for S3Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Origin")
            .field("name", &self.shared.web.name)
            .finish_non_exhaustive()
    }
}

impl S3Origin {
    /// Checks the options and builds the client; no request is made (a server that is down now
    /// is reported by health, not here).
    pub fn new(config: &OriginConfig, url: &OriginUrl) -> io::Result<Self> {
        let OriginUrl::S3 { bucket, prefix } = url else {
            return Err(invalid(format!("origin {}: not an s3:// URL", config.url)));
        };
        let name = Self::name_of(url)?;
        let fail = |what: String| invalid(format!("origin {name}: {what}"));
        let home = std::env::home_dir();
        let env = |name: &str| std::env::var(name).ok();
        let target = S3Target::resolve(config, home.as_deref(), &env).map_err(fail)?;
        let endpoint: Url = target
            .endpoint
            .parse()
            .map_err(|e| fail(format!("endpoint {:?}: {e}", target.endpoint)))?;
        let style = if target.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket =
            Bucket::new(endpoint, style, bucket.clone(), target.region.clone()).map_err(|e| {
                fail(format!(
                    "bucket and endpoint do not make a URL ({e}); an endpoint that is an IP \
                     address or a bucket name with dots over https needs `path_style = true`"
                ))
            })?;
        let (timeout, ca_file) = (config.timeout(), target.ca_file.as_deref());
        let keys = match (&target.keys, &target.role, &target.credential_process) {
            (Some(keys), _, _) => Keys::given(keys),
            (None, Some(role), _) => {
                let role = RoleKeys::new(role.clone(), &target.profile, timeout, ca_file)?;
                Keys::temporary(Source::Role(Box::new(role)))
            }
            (None, None, Some(command)) => Keys::temporary(Source::Process(command.clone())),
            (None, None, None) => match (&target.sso, &target.workload) {
                (Some(sso), _) => {
                    let profile = target.profile.clone();
                    let sso = SsoKeys::new(sso.clone(), profile, timeout, ca_file)?;
                    Keys::temporary(Source::Sso(Box::new(sso)))
                }
                (None, Some(workload)) => {
                    let workload = WorkloadKeys::new(workload.clone(), timeout, ca_file)?;
                    Keys::temporary(Source::Workload(Box::new(workload)))
                }
                (None, None) => return Err(fail(target.keys_missing())),
            },
        };
        Ok(Self {
            shared: Arc::new(Shared {
                web: Web::new(name, config.timeout(), target.ca_file.as_deref())?,
                bucket,
                keys,
            }),
            prefix: prefix.clone(),
            page_size: PAGE_SIZE,
        })
    }

    /// The name an origin for `url` has: `s3://bucket/prefix`.
    pub fn name_of(url: &OriginUrl) -> io::Result<String> {
        match url {
            OriginUrl::S3 { bucket, prefix } if prefix.is_empty() => Ok(format!("s3://{bucket}")),
            OriginUrl::S3 { bucket, prefix } => Ok(format!("s3://{bucket}/{prefix}")),
            _ => Err(invalid(format!("{url:?}: not an s3:// URL"))),
        }
    }

    /// Lists with pages of `keys` keys (tests use small pages to exercise continuation).
    pub fn with_page_size(mut self, keys: usize) -> Self {
        self.page_size = keys.clamp(1, PAGE_SIZE);
        self
    }

    /// The object key of a path relative to the prefix; paths no walk could have produced
    /// (`..`, empty components) name no object.
    fn key(&self, rel: &str) -> io::Result<String> {
        if let Err(reason) = check_relative(rel) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: {rel:?}: {reason}", self.shared.web.name),
            ));
        }
        Ok(match self.prefix.as_str() {
            "" => rel.to_owned(),
            prefix => format!("{prefix}/{rel}"),
        })
    }

    /// One ListObjectsV2 page. Keys are asked for as they are; only if the answer cannot be
    /// parsed (a key with a character XML cannot carry) is the page asked for again with
    /// `encoding-type=url`. Not by default, because some servers (s3s-based ones) say they
    /// encoded keys they did not, and decoding a raw `+` would turn it into a space.
    fn list_page(
        &self,
        max_keys: usize,
        token: Option<&str>,
    ) -> io::Result<rusty_s3::actions::ListObjectsV2Response> {
        match self.list_page_as(max_keys, token, false) {
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                self.list_page_as(max_keys, token, true)
            }
            other => other,
        }
    }

    fn list_page_as(
        &self,
        max_keys: usize,
        token: Option<&str>,
        url_encoded: bool,
    ) -> io::Result<rusty_s3::actions::ListObjectsV2Response> {
        let s = &self.shared;
        let keys = s.keys.get()?;
        let mut action = s.bucket.list_objects_v2(Some(&*keys));
        if !url_encoded {
            action.query_mut().remove("encoding-type");
        }
        if !self.prefix.is_empty() {
            action.with_prefix(format!("{}/", self.prefix));
        }
        action.with_max_keys(max_keys);
        if let Some(token) = token {
            action.with_continuation_token(token.to_owned());
        }
        let url = action.sign(URL_LIFETIME);
        let response = s.send(reqwest::Method::GET, "listing", url, &[])?;
        let text = response.text().map_err(|e| s.transport("listing", &e))?;
        ListObjectsV2::parse_response(&text)
            .map_err(|e| s.bad("listing", &format!("unreadable answer: {e}")))
    }

    /// HEAD of an object: size, mtime, and the ETag if it is a strong one.
    fn head(&self, rel: &str) -> io::Result<(u64, i128, Pin)> {
        let s = &self.shared;
        let key = self.key(rel)?;
        let keys = s.keys.get()?;
        let url = s.bucket.head_object(Some(&*keys), &key).sign(URL_LIFETIME);
        let what = format!("{rel:?}");
        let response = s.send(reqwest::Method::HEAD, &what, url, &[])?;
        s.web.head_fields(&what, &response)
    }
}

impl Origin for S3Origin {
    /// `s3://bucket/prefix`.
    fn name(&self) -> &str {
        &self.shared.web.name
    }

    /// Every audio object under the prefix, page by page. Keys that cannot be paths (empty or
    /// `.`/`..` components) are reported, not listed.
    fn walk(&self) -> io::Result<Listing> {
        let mut found = Vec::new();
        let mut failed = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = self.list_page(self.page_size, token.as_deref())?;
            for object in page.contents {
                let rel = match self.prefix.as_str() {
                    "" => Some(object.key.as_str()),
                    prefix => object
                        .key
                        .strip_prefix(prefix)
                        .and_then(|k| k.strip_prefix('/')),
                };
                let Some(rel) = rel else { continue };
                if !is_audio(Path::new(rel)) {
                    continue;
                }
                if let Err(reason) = check_relative(rel) {
                    failed.push((rel.to_owned(), reason.to_owned()));
                    continue;
                }
                let Some(size) = object.size else {
                    failed.push((rel.to_owned(), "listed without a size".to_owned()));
                    continue;
                };
                // Whole seconds: HEAD's Last-Modified has no more, and a read compares `stat`
                // with what the walk found.
                let mtime_ns = object
                    .last_modified
                    .as_deref()
                    .and_then(parse_rfc3339)
                    .map_or(0, |secs| i128::from(secs) * 1_000_000_000);
                found.push(Found {
                    path: rel.to_owned(),
                    size,
                    mtime_ns,
                });
            }
            match page.next_continuation_token {
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(self.shared.web.bad("listing", "the server repeats a page"));
                }
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok((found, failed))
    }

    /// HEAD: Content-Length and Last-Modified (whole seconds, as the walk reports them).
    fn stat(&self, rel: &str) -> io::Result<(u64, i128)> {
        let (size, mtime, _) = self.head(rel)?;
        Ok((size, mtime))
    }

    /// A HEAD for the length and ETag; reads are ranged GETs pinned to that ETag, so a
    /// replaced object fails the read instead of mixing two versions.
    fn open(&self, rel: &str) -> io::Result<Box<dyn RangeRead>> {
        let (len, _, pin) = self.head(rel)?;
        Ok(Box::new(S3File {
            shared: self.shared.clone(),
            key: self.key(rel)?,
            what: format!("{rel:?}"),
            len,
            pin,
        }))
    }

    /// A one-key listing of the prefix.
    fn probe(&self) -> io::Result<()> {
        self.list_page(1, None).map(drop)
    }
}

/// An open object.
struct S3File {
    shared: Arc<Shared>,
    key: String,
    /// The path relative to the prefix, quoted, for messages.
    what: String,
    len: u64,
    pin: Pin,
}

impl S3File {
    /// Fills `buf` from the bytes at `offset` (the range lies inside the object).
    fn get_range(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let s = &self.shared;
        let keys = s.keys.get()?;
        let url = s
            .bucket
            .get_object(Some(&*keys), &self.key)
            .sign(URL_LIFETIME);
        s.web.get_range(
            &self.what,
            url,
            &self.pin,
            (offset, self.len),
            buf,
            &|what, status, response| s.status_error(what, status, response),
        )
    }
}

impl RangeRead for S3File {
    fn len(&self) -> u64 {
        self.len
    }

    /// One ranged GET, or for reads above 1 MiB up to four in parallel.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        web::read_split(self.len, offset, buf, &|at, piece| {
            self.get_range(at, piece)
        })
    }
}

impl Shared {
    /// Sends a request to a presigned URL; any answer but 2xx becomes an error of its kind.
    fn send(
        &self,
        method: reqwest::Method,
        what: &str,
        url: Url,
        headers: &[(header::HeaderName, &str)],
    ) -> io::Result<Response> {
        self.web
            .send(method, what, url, headers, &|what, status, response| {
                self.status_error(what, status, response)
            })
    }

    /// An error for a non-2xx answer, with S3's error code and message when it sent them.
    fn status_error(&self, what: &str, status: StatusCode, response: Response) -> io::Error {
        let mut body = String::new();
        let _ = response.take(16 * 1024).read_to_string(&mut body);
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let start = body.find(&open)? + open.len();
            let end = body[start..].find(&format!("</{tag}>"))?;
            Some(body[start..start + end].trim().to_owned())
        };
        let code = field("Code");
        let detail = match (&code, field("Message")) {
            (Some(code), Some(message)) => format!(" ({code}: {message})"),
            (Some(code), None) => format!(" ({code})"),
            _ => String::new(),
        };
        // The server never echoes the secret, but make sure of it.
        let detail = match self.keys.secret() {
            Some(secret) if !secret.is_empty() => detail.replace(&secret, "***"),
            _ => detail,
        };
        if matches!(
            code.as_deref(),
            Some("ExpiredToken" | "TokenRefreshRequired")
        ) {
            self.keys.expired();
        }
        let (kind, text) = match status {
            StatusCode::NOT_FOUND => (io::ErrorKind::NotFound, "no such object or bucket"),
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                (io::ErrorKind::PermissionDenied, refusal(code.as_deref()))
            }
            StatusCode::PRECONDITION_FAILED => (
                io::ErrorKind::InvalidData,
                "the object was replaced since it was opened",
            ),
            _ => (io::ErrorKind::Other, "the server answered with an error"),
        };
        io::Error::new(
            kind,
            format!("{}: {what}: {text}: {status}{detail}", self.web.name),
        )
    }

    fn transport(&self, what: &str, error: &(dyn std::error::Error + 'static)) -> io::Error {
        self.web.transport(what, error)
    }

    fn bad(&self, what: &str, why: &str) -> io::Error {
        self.web.bad(what, why)
    }
}

/// What a 403 (or 401) with S3's error `code` most likely means.
fn refusal(code: Option<&str>) -> &'static str {
    match code {
        Some("SignatureDoesNotMatch") => {
            "access denied: the request signature does not match; \
             the secret_access_key is likely wrong (or the region)"
        }
        Some("InvalidAccessKeyId") => {
            "access denied: the server does not know this access_key_id; \
             check access_key_id and secret_access_key"
        }
        Some("RequestTimeTooSkewed") => {
            "access denied: this machine's clock is too far from the server's \
             (signatures are valid for minutes); set the clock right, e.g. with NTP"
        }
        Some("ExpiredToken" | "TokenRefreshRequired") => {
            "access denied: the session token has expired; get new temporary credentials \
             (AWS_SESSION_TOKEN; a credential_process or SSO role is asked again at the next \
             request)"
        }
        _ => {
            "access denied: check access_key_id, secret_access_key, region, \
             and that the key may read this bucket"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_to_fix() {
        assert!(refusal(Some("RequestTimeTooSkewed")).contains("clock"));
        assert!(refusal(Some("ExpiredToken")).contains("AWS_SESSION_TOKEN"));
        assert!(refusal(Some("SignatureDoesNotMatch")).contains("secret_access_key"));
        assert!(refusal(None).contains("may read this bucket"));
    }

    #[test]
    fn keys_that_are_not_paths_are_refused() {
        assert!(check_relative("a/b/c.mp3").is_ok());
        assert!(check_relative("Artist + Band/01 Song.mp3").is_ok());
        for bad in [
            "",
            "a//b.mp3",
            "/a.mp3",
            "a/",
            "../a.mp3",
            "a/./b.mp3",
            "a/../b.mp3",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
        assert!(check_relative(&format!("{}.mp3", "x".repeat(300))).is_err());
    }
}
