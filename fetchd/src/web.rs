//! Blocking HTTP for the origins that speak it (S3 and plain HTTP servers): a [`Web`] client
//! bounded by the origin's timeout, ranged reads into a buffer, the headers a HEAD answers
//! with, errors whose kind tells health what happened (and whose text never holds a URL), and
//! HTTP and RFC 3339 dates.

use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use musicfs_ipc::origin::Secret;
use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderName};
use reqwest::StatusCode;
use url::Url;

/// Reads larger than this are split into parallel ranged GETs.
const PARALLEL_ABOVE: usize = 1024 * 1024;
/// How many ranged GETs one large read is split into, at most.
const PARALLEL_PIECES: usize = 4;
/// The smallest piece a large read is split into.
const PIECE_MIN: usize = 256 * 1024;
/// The waits before asking again after a 500, 502, 503 or 504: S3 answers 503 "SlowDown" and
/// now and then 500 to requests that succeed when repeated (every request here is a GET or a
/// HEAD, which may be repeated).
const RETRY_AFTER_SERVER_ERROR: [Duration; 2] =
    [Duration::from_millis(50), Duration::from_millis(250)];

/// What a ranged GET sends so that it reads the version of the file its HEAD saw, or nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// The strong ETag (`If-Match`): nginx, Caddy, Apache, S3.
    ETag(String),
    /// From a server that sends no ETag (`rclone serve http`), the Last-Modified date
    /// (`If-Unmodified-Since`): a file replaced within the same second goes unseen.
    Date(String),
    /// Neither: reads cannot tell a replaced file.
    Nothing,
}

/// Turns an answer that is not 2xx into an error (each kind of server says more its own way).
pub type Refused<'a> = &'a dyn Fn(&str, StatusCode, Response) -> io::Error;

/// A client for one origin, named in every error it makes.
pub struct Web {
    pub name: String,
    client: Client,
    /// User name and password sent with every request (HTTP Basic authentication).
    basic_auth: Option<(String, Secret)>,
}

impl Web {
    /// A client whose connects, response heads and each wait for more body bytes are bounded
    /// by `timeout` (a large read that keeps moving is not cut off, a stalled one is), trusting
    /// the certificates in the PEM file `ca_file` besides the system's.
    pub fn new(name: String, timeout: Duration, ca_file: Option<&Path>) -> io::Result<Self> {
        let mut builder = Client::builder();
        if let Some(file) = ca_file {
            builder = builder.tls_certs_merge(certificates(&name, file)?);
        }
        let client = builder
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(concat!("musicfs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| io::Error::other(format!("origin {name}: {}", chain(&e))))?;
        Ok(Self {
            name,
            client,
            basic_auth: None,
        })
    }

    /// Sends `user` and `password` with every request (HTTP Basic authentication; reqwest
    /// leaves them out of a redirect to another host).
    pub fn with_basic_auth(mut self, user: String, password: Secret) -> Self {
        self.basic_auth = Some((user, password));
        self
    }

    pub fn has_credentials(&self) -> bool {
        self.basic_auth.is_some()
    }

    /// Sends a request; any answer but 2xx becomes an error through `refused`. A request that
    /// failed before an answer (a pooled connection the server closed) is sent once more; a
    /// timeout or a refused connection is not. One answered with a server error (500, 502,
    /// 503, 504) is sent again after a short wait, twice at most.
    pub fn send(
        &self,
        method: reqwest::Method,
        what: &str,
        url: Url,
        headers: &[(HeaderName, &str)],
        refused: Refused<'_>,
    ) -> io::Result<Response> {
        let build = || {
            let mut request = self.client.request(method.clone(), url.clone());
            if let Some((user, password)) = &self.basic_auth {
                request = request.basic_auth(user, Some(password.expose()));
            }
            for (name, value) in headers {
                request = request.header(name, *value);
            }
            request.send()
        };
        let send = || match build() {
            Ok(r) => Ok(r),
            Err(e) if !e.is_timeout() && !e.is_connect() => {
                build().map_err(|e| self.transport(what, &e))
            }
            Err(e) => Err(self.transport(what, &e)),
        };
        let mut response = send()?;
        for wait in RETRY_AFTER_SERVER_ERROR {
            let status = response.status();
            let transient = matches!(status.as_u16(), 500 | 502 | 503 | 504);
            if !transient {
                break;
            }
            tracing::debug!("{}: {what}: {status}; asking again", self.name);
            drop(response);
            std::thread::sleep(wait);
            response = send()?;
        }
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(refused(what, status, response))
    }

    /// Size, mtime (whole seconds) and what pins reads to this version, from the answer to a
    /// HEAD.
    pub fn head_fields(&self, what: &str, response: &Response) -> io::Result<(u64, i128, Pin)> {
        let headers = response.headers();
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let size = text(header::CONTENT_LENGTH)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.bad(what, "the answer to HEAD has no Content-Length"))?;
        let mtime = text(header::LAST_MODIFIED)
            .and_then(parse_http_date)
            .map_or(0, |secs| i128::from(secs) * 1_000_000_000);
        let etag = text(header::ETAG).filter(|e| e.starts_with('"'));
        let pin = match (etag, text(header::LAST_MODIFIED)) {
            (Some(etag), _) => Pin::ETag(etag.to_owned()),
            (None, Some(date)) if mtime != 0 => Pin::Date(date.to_owned()),
            _ => Pin::Nothing,
        };
        Ok((size, mtime, pin))
    }

    /// Fills `buf` with the bytes at `offset` of a file `len` long: one ranged GET to `url`,
    /// pinned to the version `pin` names, so a replaced file fails the read (412) instead of
    /// mixing two versions.
    pub fn get_range(
        &self,
        what: &str,
        url: Url,
        pin: &Pin,
        (offset, len): (u64, u64),
        buf: &mut [u8],
        refused: Refused<'_>,
    ) -> io::Result<()> {
        let last = offset + buf.len() as u64 - 1;
        let range = format!("bytes={offset}-{last}");
        let mut headers = vec![(header::RANGE, range.as_str())];
        match pin {
            Pin::ETag(etag) => headers.push((header::IF_MATCH, etag)),
            Pin::Date(date) => headers.push((header::IF_UNMODIFIED_SINCE, date)),
            Pin::Nothing => {}
        }
        let mut response = self.send(reqwest::Method::GET, what, url, &headers, refused)?;
        let whole = offset == 0 && buf.len() as u64 == len;
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK if whole => {}
            StatusCode::OK => {
                return Err(self.bad(
                    what,
                    "the server ignores Range requests and sends whole files (Python's \
                     http.server does); publish the folder with nginx, Apache, Caddy or \
                     `rclone serve http`",
                ))
            }
            status => {
                return Err(self.bad(what, &format!("a ranged GET was answered with {status}")))
            }
        }
        if response.content_length() != Some(buf.len() as u64) {
            return Err(self.bad(
                what,
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
                            "{}: {what}: the connection ended {} bytes short",
                            self.name,
                            buf.len() - filled
                        ),
                    ))
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.transport(what, &e)),
            }
        }
        // Reading on to the end of the body (no more bytes: Content-Length was checked) hands
        // the connection back to the pool; a body left unfinished closes it.
        let _ = response.read(&mut [0; 1]);
        Ok(())
    }

    /// An error for a request that got no (complete) answer. The kind says why (timed out,
    /// refused, reset, ...), so health marks the origin down; the URL is never in the message.
    pub fn transport(&self, what: &str, error: &(dyn std::error::Error + 'static)) -> io::Error {
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
        let mut text = format!("{}: {what}: {}", self.name, chain(error));
        if text.contains("invalid peer certificate") {
            text.push_str(
                " (the server's certificate is not one the system trusts: give its CA, or the \
                 certificate itself, as the origin's ca_file)",
            );
        }
        io::Error::new(kind, text)
    }

    pub fn bad(&self, what: &str, why: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}: {why}", self.name),
        )
    }
}

/// The certificates of a PEM file (a CA, a bundle, or a server's self-signed certificate).
fn certificates(name: &str, file: &Path) -> io::Result<Vec<reqwest::Certificate>> {
    let fail = |why: String| invalid(format!("origin {name}: ca_file {}: {why}", file.display()));
    let pem = std::fs::read(file).map_err(|e| fail(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(chain(&e)))?;
    if certs.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// A positioned read of `buf.len()` bytes at `offset` of a file `len` long (fewer only at its
/// end), through `get` (one ranged GET filling the slice it is given); reads above 1 MiB go
/// out as up to four GETs in parallel.
pub fn read_split(
    len: u64,
    offset: u64,
    buf: &mut [u8],
    get: &(dyn Fn(u64, &mut [u8]) -> io::Result<()> + Sync),
) -> io::Result<usize> {
    if offset >= len || buf.is_empty() {
        return Ok(0);
    }
    let n = buf
        .len()
        .min(usize::try_from(len - offset).unwrap_or(usize::MAX));
    let buf = &mut buf[..n];
    if n <= PARALLEL_ABOVE {
        get(offset, buf)?;
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
                scope.spawn(move || get(at, chunk))
            })
            .collect();
        let mut result = get(offset, first);
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

/// An error for a bad option of an origin.
pub fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// A client for the services that hand out temporary keys (the SSO portal, STS, a container's
/// endpoint), `name`d in errors: bounded by `timeout`, trusting the certificates in `ca_file`
/// besides the system's, as the bucket's own client does.
pub fn keys_client(name: &str, timeout: Duration, ca_file: Option<&Path>) -> io::Result<Client> {
    let mut builder = Client::builder();
    if let Some(file) = ca_file {
        builder = builder.tls_certs_merge(certificates(name, file)?);
    }
    builder
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("musicfs/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| io::Error::other(format!("{name}: {}", chain(&e))))
}

/// A request to `what` that got no answer: an error of a kind health reads as "not
/// answering", without the URL.
pub fn unanswered(what: &str, e: reqwest::Error) -> io::Error {
    let kind = match e.is_timeout() {
        true => io::ErrorKind::TimedOut,
        false => io::ErrorKind::ConnectionRefused,
    };
    let e = e.without_url();
    io::Error::new(kind, format!("{what} did not answer: {}", chain(&e)))
}

/// An error and its sources, `: `-joined, without the URL reqwest puts in its own messages
/// (a presigned URL carries a signature).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
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
pub fn parse_rfc3339(text: &str) -> Option<i64> {
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
pub fn parse_http_date(text: &str) -> Option<i64> {
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
    use std::sync::atomic::Ordering;

    /// A server on 127.0.0.1 that answers its first `failing` requests with `status`, then
    /// with 200 and "hello"; one request per connection. Returns its URL and the count of
    /// requests it answered.
    fn flaky_server(
        failing: usize,
        status: &'static str,
    ) -> (Url, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/a.flac", listener.local_addr().unwrap()));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let answered = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let n = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = if n < failing {
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                        .to_owned()
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (url.unwrap(), count)
    }

    fn get(web: &Web, url: Url) -> io::Result<Response> {
        let refused: Refused<'_> = &|what, status, _| io::Error::other(format!("{what}: {status}"));
        web.send(reqwest::Method::GET, "GET", url, &[], refused)
    }

    #[test]
    fn a_server_error_is_asked_again_twice_and_no_more() {
        let web = Web::new("test".into(), Duration::from_secs(5), None).unwrap();
        let (url, count) = flaky_server(2, "503 Service Unavailable");
        let mut response = get(&web, url).expect("the third answer is 200");
        let mut body = String::new();
        response.read_to_string(&mut body).unwrap();
        assert_eq!((body.as_str(), count.load(Ordering::SeqCst)), ("hello", 3));

        let (url, count) = flaky_server(3, "500 Internal Server Error");
        let err = get(&web, url).unwrap_err();
        assert!(err.to_string().contains("500"), "{err}");
        assert_eq!(count.load(Ordering::SeqCst), 3);

        // Other refusals are final.
        let (url, count) = flaky_server(1, "404 Not Found");
        assert!(get(&web, url).is_err());
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

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
}
