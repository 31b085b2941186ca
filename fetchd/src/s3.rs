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
use reqwest::blocking::{Client, Response};
use reqwest::header;
use reqwest::StatusCode;
use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use url::Url;

use crate::origin::{is_audio, Found, Listing, Origin, RangeRead};

/// Keys per ListObjectsV2 page (S3's maximum).
const PAGE_SIZE: usize = 1000;
/// Reads larger than this are split into parallel ranged GETs.
const PARALLEL_ABOVE: usize = 1024 * 1024;
/// How many ranged GETs one large read is split into, at most.
const PARALLEL_PIECES: usize = 4;
/// The smallest piece a large read is split into.
const PIECE_MIN: usize = 256 * 1024;
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
    name: String,
    bucket: Bucket,
    credentials: Credentials,
    client: Client,
}

impl fmt::Debug for S3Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Origin")
            .field("name", &self.shared.name)
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
        let name = match prefix.as_str() {
            "" => format!("s3://{bucket}"),
            prefix => format!("s3://{bucket}/{prefix}"),
        };
        let fail = |what: String| invalid(format!("origin {name}: {what}"));
        let region = config.region.clone().unwrap_or_else(|| "us-east-1".into());
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let endpoint: Url = endpoint
            .parse()
            .map_err(|e| fail(format!("endpoint {endpoint:?}: {e}")))?;
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, bucket.clone(), region).map_err(|e| {
            fail(format!(
                "bucket and endpoint do not make a URL ({e}); an endpoint that is an IP address \
                 or a bucket name with dots over https needs `path_style = true`"
            ))
        })?;
        let credentials = match (&config.access_key_id, &config.secret_access_key) {
            (Some(key), Some(secret)) => Credentials::new(key.clone(), secret.expose()),
            (None, None) => Credentials::from_env().ok_or_else(|| {
                fail(
                    "no credentials: set access_key_id and secret_access_key in the config, \
                     or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
                        .into(),
                )
            })?,
            _ => {
                return Err(fail(
                    "access_key_id and secret_access_key must be given together".into(),
                ))
            }
        };
        let timeout = config.timeout();
        let client = Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(concat!("musicfs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| io::Error::other(format!("origin {name}: {}", chain(&e))))?;
        Ok(Self {
            shared: Arc::new(Shared {
                name,
                bucket,
                credentials,
                client,
            }),
            prefix: prefix.clone(),
            page_size: PAGE_SIZE,
        })
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
                format!("{}: {rel:?}: {reason}", self.shared.name),
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
        let mut action = s.bucket.list_objects_v2(Some(&s.credentials));
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
    fn head(&self, rel: &str) -> io::Result<(u64, i128, Option<String>)> {
        let s = &self.shared;
        let key = self.key(rel)?;
        let url = s
            .bucket
            .head_object(Some(&s.credentials), &key)
            .sign(URL_LIFETIME);
        let what = format!("{rel:?}");
        let response = s.send(reqwest::Method::HEAD, &what, url, &[])?;
        let headers = response.headers();
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let size = text(header::CONTENT_LENGTH)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| s.bad(&what, "the answer to HEAD has no Content-Length"))?;
        let mtime = text(header::LAST_MODIFIED)
            .and_then(parse_http_date)
            .map_or(0, |secs| i128::from(secs) * 1_000_000_000);
        let etag = text(header::ETAG)
            .filter(|e| e.starts_with('"'))
            .map(str::to_owned);
        Ok((size, mtime, etag))
    }
}

impl Origin for S3Origin {
    /// `s3://bucket/prefix`.
    fn name(&self) -> &str {
        &self.shared.name
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
                    return Err(self.shared.bad("listing", "the server repeats a page"));
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
        let (len, _, etag) = self.head(rel)?;
        Ok(Box::new(S3File {
            shared: self.shared.clone(),
            key: self.key(rel)?,
            what: format!("{rel:?}"),
            len,
            etag,
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
    etag: Option<String>,
}

impl S3File {
    /// Fills `buf` from the bytes at `offset` (the range lies inside the object).
    fn get_range(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let s = &self.shared;
        let url = s
            .bucket
            .get_object(Some(&s.credentials), &self.key)
            .sign(URL_LIFETIME);
        let last = offset + buf.len() as u64 - 1;
        let range = format!("bytes={offset}-{last}");
        let mut headers = vec![(header::RANGE, range.as_str())];
        if let Some(etag) = &self.etag {
            headers.push((header::IF_MATCH, etag.as_str()));
        }
        let mut response = s.send(reqwest::Method::GET, &self.what, url, &headers)?;
        let whole = offset == 0 && buf.len() as u64 == self.len;
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK if whole => {}
            status => {
                return Err(s.bad(
                    &self.what,
                    &format!("a ranged GET was answered with {status}"),
                ))
            }
        }
        if response.content_length() != Some(buf.len() as u64) {
            return Err(s.bad(
                &self.what,
                &format!(
                    "asked for {} bytes at {offset}, the server sends {:?}",
                    buf.len(),
                    response.content_length()
                ),
            ));
        }
        let mut filled = 0;
        while filled < buf.len() {
            match response.read(&mut buf[filled..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!(
                            "{}: {}: the connection ended {} bytes short",
                            s.name,
                            self.what,
                            buf.len() - filled
                        ),
                    ))
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(s.transport(&self.what, &e)),
            }
        }
        // Reading on to the end of the body (no more bytes: Content-Length was checked) hands
        // the connection back to the pool; a body left unfinished closes it.
        let _ = response.read(&mut [0; 1]);
        Ok(())
    }
}

impl RangeRead for S3File {
    fn len(&self) -> u64 {
        self.len
    }

    /// One ranged GET, or for reads above 1 MiB up to four in parallel.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let n = buf
            .len()
            .min(usize::try_from(self.len - offset).unwrap_or(usize::MAX));
        let buf = &mut buf[..n];
        if n <= PARALLEL_ABOVE {
            self.get_range(offset, buf)?;
            return Ok(n);
        }
        let piece = n.div_ceil(PARALLEL_PIECES).max(PIECE_MIN);
        std::thread::scope(|scope| {
            let mut pieces = buf.chunks_mut(piece).enumerate();
            let (_, first) = pieces
                .next()
                .expect("a read of more than 1 MiB has a piece");
            let others: Vec<_> = pieces
                .map(|(i, chunk)| {
                    let at = offset + (i * piece) as u64;
                    scope.spawn(move || self.get_range(at, chunk))
                })
                .collect();
            let mut result = self.get_range(offset, first);
            for handle in others {
                let r = handle
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("a read thread panicked")));
                result = result.and(r);
            }
            result
        })?;
        Ok(n)
    }
}

impl Shared {
    /// Sends a request to a presigned URL; any answer but 2xx becomes an error of its kind.
    /// A request that failed before an answer (a pooled connection the server closed) is sent
    /// once more; a timeout or a refused connection is not.
    fn send(
        &self,
        method: reqwest::Method,
        what: &str,
        url: Url,
        headers: &[(header::HeaderName, &str)],
    ) -> io::Result<Response> {
        let build = || {
            let mut request = self.client.request(method.clone(), url.clone());
            for (name, value) in headers {
                request = request.header(name, *value);
            }
            request.send()
        };
        let response = match build() {
            Ok(r) => r,
            Err(e) if !e.is_timeout() && !e.is_connect() => {
                build().map_err(|e| self.transport(what, &e))?
            }
            Err(e) => return Err(self.transport(what, &e)),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(self.status_error(what, status, response))
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
        let secret = self.credentials.secret();
        let detail = if secret.is_empty() {
            detail
        } else {
            detail.replace(secret, "***")
        };
        let (kind, text) = match status {
            StatusCode::NOT_FOUND => (io::ErrorKind::NotFound, "no such object or bucket"),
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => (
                io::ErrorKind::PermissionDenied,
                match code.as_deref() {
                    Some("SignatureDoesNotMatch") => {
                        "access denied: the request signature does not match; \
                         the secret_access_key is likely wrong (or the region)"
                    }
                    Some("InvalidAccessKeyId") => {
                        "access denied: the server does not know this access_key_id; \
                         check access_key_id and secret_access_key"
                    }
                    _ => {
                        "access denied: check access_key_id, secret_access_key, region, \
                         and that the key may read this bucket"
                    }
                },
            ),
            StatusCode::PRECONDITION_FAILED => (
                io::ErrorKind::InvalidData,
                "the object was replaced since it was opened",
            ),
            _ => (io::ErrorKind::Other, "the server answered with an error"),
        };
        io::Error::new(
            kind,
            format!("{}: {what}: {text}: {status}{detail}", self.name),
        )
    }

    /// An error for a request that got no (complete) answer. The kind says why (timed out,
    /// refused, reset, ...), so health marks the origin down; the URL is never in the message.
    fn transport(&self, what: &str, error: &(dyn std::error::Error + 'static)) -> io::Error {
        use io::ErrorKind::*;
        let mut kind = None;
        let mut level = Some(error);
        while let Some(e) = level {
            if let Some(r) = e.downcast_ref::<reqwest::Error>() {
                if r.is_timeout() {
                    kind = Some(TimedOut);
                    break;
                }
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if io.get_ref().is_none() || matches!(io.kind(), TimedOut) {
                    kind = Some(io.kind());
                    break;
                }
            }
            level = e.source();
        }
        let kind = match kind {
            Some(
                k @ (TimedOut | ConnectionRefused | ConnectionReset | ConnectionAborted
                | NotConnected | BrokenPipe | AddrNotAvailable | HostUnreachable
                | NetworkUnreachable),
            ) => k,
            _ => Other,
        };
        io::Error::new(kind, format!("{}: {what}: {}", self.name, chain(error)))
    }

    fn bad(&self, what: &str, why: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}: {why}", self.name),
        )
    }
}

/// An error and its sources, `: `-joined, without the URL reqwest puts in its own messages
/// (a presigned URL carries a signature).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut level = Some(error);
    while let Some(e) = level {
        let mut text = e.to_string();
        if e.downcast_ref::<reqwest::Error>().is_some() {
            if let Some(at) = text.find(" for url (") {
                text.truncate(at);
            }
        }
        if text.contains("X-Amz-") {
            text = "(message withheld: it contains a signed URL)".into();
        }
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        level = e.source();
    }
    parts.join(": ")
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Whether `rel` can be a relative path: `/`-separated, no empty, `.` or `..` components,
/// no NUL, no component longer than a file name may be.
fn check_relative(rel: &str) -> Result<(), &'static str> {
    if rel.is_empty() {
        return Err("the key names the prefix itself");
    }
    for part in rel.split('/') {
        match part {
            "" => {
                return Err(
                    "the key has an empty path component (a leading, trailing or doubled '/')",
                )
            }
            "." | ".." => return Err("the key has a '.' or '..' path component"),
            _ if part.contains('\0') => return Err("the key contains a NUL character"),
            _ if part.len() > 255 => return Err("the key has a component longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

/// Seconds since the epoch of a civil date (proleptic Gregorian, UTC).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn seconds(year: i64, month: u32, day: u32, h: u32, m: u32, s: u32) -> Option<i64> {
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && h < 24 && m < 60 && s <= 60;
    valid.then(|| {
        days_from_civil(year, month, day) * 86_400 + i64::from(h * 3600 + m * 60 + s.min(59))
    })
}

/// `2024-05-01T12:34:56.789Z` or with an offset `+02:00`: whole seconds since the epoch.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let secs = seconds(
        i64::from(num(0..4)?),
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )?;
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
            let value = (digit(h1)? * 10 + digit(h2)?) * 3600 + (digit(m1)? * 10 + digit(m2)?) * 60;
            if *sign == b'+' {
                value
            } else {
                -value
            }
        }
        _ => return None,
    };
    Some(secs - offset)
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`): seconds since the epoch.
fn parse_http_date(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let (_weekday, day, month, year, time, zone) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if zone != "GMT" || parts.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let mut hms = time.split(':').map(|p| p.parse::<u32>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    seconds(year.parse().ok()?, month, day.parse().ok()?, h, m, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_to_the_same_second() {
        let http = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(http, 784_111_777);
        assert_eq!(parse_rfc3339("1994-11-06T08:49:37.000Z"), Some(http));
        assert_eq!(parse_rfc3339("1994-11-06T08:49:37.999999Z"), Some(http));
        assert_eq!(parse_rfc3339("1994-11-06T10:49:37+02:00"), Some(http));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
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
