//! HTTP(S) origins: a folder a web server lists, read with ranged GETs.
//!
//! Each walk first asks the folder with `PROPFIND` (`Depth: 1`): a server that answers with a
//! WebDAV multistatus (Nextcloud, ownCloud, Apache mod_dav, `rclone serve webdav`) is listed
//! that way, sizes and dates included ([`crate::dav`]). Any other answer means a plain web
//! server, whose folders are fetched with GET: JSON where the server gives it (nginx's
//! `autoindex_format json;`: `[{"name", "type": "file"|"directory", "mtime": HTTP date,
//! "size"}]`, or Caddy's `file_server browse` asked with `Accept: application/json`:
//! `[{"name", "is_dir", "mod_time": RFC 3339, "size"}]`); else an HTML page (nginx's and
//! Apache's default autoindex, lighttpd, `rclone serve http`), read for its links
//! ([`crate::html_listing`]), after which the walk asks each audio file for its size and date
//! with a HEAD, a few at once. The next walk asks again only files whose row on the page reads
//! otherwise, or that shows no time of day, or whose last HEAD found them written less than
//! [`SETTLED`] before (pages show dates to the minute). A server that answers with anything
//! else is reported as one that gives no listing.
//!
//! Reads are ranged GETs pinned to the version the file had when opened: `If-Match` its ETag
//! (nginx, Caddy, Apache, WebDAV servers), or from a server that sends none
//! `If-Unmodified-Since` its date (rclone serve http), so a replaced file fails the read rather
//! than mixing two versions. The server must answer ranges with 206 (Python's `http.server`
//! does not, and is told so).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use musicfs_ipc::origin::{OriginConfig, OriginUrl};
use reqwest::blocking::Response;
use reqwest::header::{self, HeaderName};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use crate::health::unreachable;
use crate::origin::{
    check_relative, is_audio, Found, Listing, Origin, RangeRead, MAX_DEPTH, MAX_DIRS, TOO_DEEP,
};
use crate::web::{self, invalid, parse_http_date, parse_rfc3339, Pin, Web};
use crate::{dav, html_listing};

/// Directory listings (or HEADs of files an HTML listing gave no size for) a walk has in
/// flight at once.
const WALK_PARALLEL: usize = 8;
/// The largest directory listing read (bytes).
const MAX_LISTING: u64 = 64 << 20;
/// How long before the HEAD that saw it a file must have last been written for the walks after
/// to take the HEAD's answer while the file's row on the page reads the same. Pages show dates
/// to the minute, so a file written twice within one minute, the same size both times, shows
/// the same row for both.
const SETTLED: Duration = Duration::from_secs(120);

pub struct HttpOrigin {
    web: Arc<Web>,
    /// Ends with `/`.
    base: Url,
    /// What the last walk's HEADs said of the files an HTML page listed, by path.
    heads: Mutex<HashMap<String, KnownHead>>,
}

/// What a HEAD said of a file an HTML page listed, and what the page said of it then.
#[derive(Clone, Copy, Debug)]
struct KnownHead {
    row: Row,
    size: u64,
    mtime_ns: i128,
}

/// What an HTML page says beside a file's link (its row), as far as walks compare it: kept as
/// a hash, so that a page with much text after a link costs no memory per file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Row {
    /// XXH3-128 of the text.
    hash: u128,
    /// Whether it shows a time of day (`09:46`), as the dates of most servers' pages do:
    /// without one a row may read the same after the file changed.
    dated: bool,
}

impl Row {
    fn of(text: &str) -> Self {
        let b = text.as_bytes();
        let dated = b
            .windows(5)
            .any(|w| w[2] == b':' && [w[0], w[1], w[3], w[4]].iter().all(u8::is_ascii_digit));
        Row {
            hash: xxhash_rust::xxh3::xxh3_128(b),
            dated,
        }
    }
}

impl fmt::Debug for HttpOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOrigin")
            .field("name", &self.web.name)
            .finish_non_exhaustive()
    }
}

impl HttpOrigin {
    /// Checks the URL and builds the client; no request is made (a server that is down now is
    /// reported by health, not here).
    pub fn new(config: &OriginConfig, url: &OriginUrl) -> io::Result<Self> {
        let OriginUrl::Http { base } = url else {
            return Err(invalid(format!(
                "origin {}: not an http(s):// URL",
                config.url
            )));
        };
        let parsed: Url = base
            .parse()
            .map_err(|e| invalid(format!("origin {base}: {e}")))?;
        if parsed.cannot_be_a_base() || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid(format!(
                "origin {base}: give the folder's URL, without ?query or #fragment"
            )));
        }
        let mut web = Web::new(base.clone(), config.timeout(), config.ca_file.as_deref())?;
        match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
                if parsed.scheme() == "http" && !local {
                    tracing::warn!(
                        origin = base,
                        "the password goes to the server unencrypted over http://; use https://"
                    );
                }
                web = web.with_basic_auth(user.clone(), password.clone());
            }
            (None, None) => {}
            _ => {
                return Err(invalid(format!(
                    "origin {base}: username and password must be given together"
                )))
            }
        }
        Ok(Self {
            web: Arc::new(web),
            base: parsed,
            heads: Mutex::default(),
        })
    }

    /// The URL of `rel` (a file, or with `dir` a directory: ending in `/`), each component
    /// percent-encoded.
    fn url(&self, rel: &str, dir: bool) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(rel.split('/').filter(|p| !p.is_empty()));
            if dir {
                path.push("");
            }
        }
        url
    }

    /// The base's entries, and how the server lists folders: WebDAV if it answers `PROPFIND`
    /// with a multistatus, else pages (JSON or HTML). A server that cannot be reached is an
    /// error; any other refusal of `PROPFIND` (405 from a plain web server) means pages.
    fn list_base(&self) -> io::Result<(Lister, Dir)> {
        match self.list_as(Lister::Dav, "", &|what, status, _| {
            self.web.bad(what, &format!("PROPFIND answered {status}"))
        }) {
            Ok(dir) => Ok((Lister::Dav, dir)),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Ok((Lister::Pages, self.list(Lister::Pages, "")?))
            }
            Err(e) => Err(e),
        }
    }

    /// One directory's entries, and the links of its listing that cannot be paths (with why).
    fn list(&self, lister: Lister, rel: &str) -> io::Result<Dir> {
        self.list_as(lister, rel, &|what, status, response| {
            refused(&self.web, what, status, response)
        })
    }

    /// [`list`](Self::list), answers other than 2xx made errors by `refused`.
    fn list_as(&self, lister: Lister, rel: &str, refused: web::Refused<'_>) -> io::Result<Dir> {
        let what = match rel {
            "" => "listing".to_owned(),
            rel => format!("listing {rel:?}"),
        };
        let (method, headers) = match lister {
            Lister::Dav => (PROPFIND.clone(), [(DEPTH, "1")]),
            Lister::Pages => (
                reqwest::Method::GET,
                [(header::ACCEPT, "application/json, text/html;q=0.9")],
            ),
        };
        let url = self.url(rel, true);
        let response = self.web.send(method, &what, url, &headers, refused)?;
        let status = response.status();
        let page_url = response.url().clone();
        let mut body = Vec::new();
        response
            .take(MAX_LISTING + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.web.transport(&what, &e))?;
        if body.len() as u64 > MAX_LISTING {
            return Err(self.web.bad(&what, "the listing is too large"));
        }
        match lister {
            Lister::Dav if status != StatusCode::MULTI_STATUS => {
                Err(self.web.bad(&what, &format!("PROPFIND answered {status}")))
            }
            Lister::Dav => dav_entries(&body, &page_url).map_err(|e| self.web.bad(&what, &e)),
            Lister::Pages => page_entries(&body, &page_url).ok_or_else(|| {
                self.web.bad(
                    &what,
                    "the server gives no directory listing (nginx: `autoindex on;`, Apache: \
                     `Options +Indexes`, Caddy: `file_server browse`, or WebDAV)",
                )
            }),
        }
    }

    fn head(&self, rel: &str) -> io::Result<(u64, i128, Pin)> {
        self.head_dated(rel).map(|(head, _)| head)
    }

    /// [`head`](Self::head), and when the server answered (its `Date`, else this machine's
    /// clock; nanoseconds since the epoch).
    fn head_dated(&self, rel: &str) -> io::Result<((u64, i128, Pin), i128)> {
        let what = format!("{rel:?}");
        let response = self.send(reqwest::Method::HEAD, &what, self.url(rel, false), &[])?;
        let date = response
            .headers()
            .get(header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
            .map(|secs| i128::from(secs) * 1_000_000_000)
            .unwrap_or_else(now_ns);
        Ok((self.web.head_fields(&what, &response)?, date))
    }

    /// The size and mtime of each of `sizeless`, files a listing gave without a size (with
    /// what an HTML page said of them): from the last walk's HEAD where the page's row reads
    /// the same, shows a time of day, and that HEAD found the file settled; else from a HEAD,
    /// up to [`WALK_PARALLEL`] at once. Keeps what this walk's HEADs said for the next walk.
    fn sizes(&self, sizeless: Vec<(String, Option<Row>)>) -> io::Result<Listing> {
        // Taken out: should this walk fail, the next asks every file again.
        let known = std::mem::take(&mut *self.heads.lock().unwrap_or_else(PoisonError::into_inner));
        let mut kept = HashMap::new();
        let (mut found, mut failed) = (Vec::new(), Vec::new());
        let mut ask = Vec::new();
        for (path, row) in sizeless {
            match (known.get(&path), row) {
                (Some(k), Some(row)) if k.row == row && row.dated => {
                    found.push(Found {
                        path: path.clone(),
                        size: k.size,
                        mtime_ns: k.mtime_ns,
                    });
                    kept.insert(path, *k);
                }
                _ => ask.push((path, row)),
            }
        }
        let heads = in_parallel(&ask, |(rel, _)| self.head_dated(rel));
        for ((path, row), head) in ask.into_iter().zip(heads) {
            match head {
                Ok(((size, mtime_ns, _), date)) => {
                    let settled = mtime_ns != 0 && mtime_ns + SETTLED.as_nanos() as i128 <= date;
                    if let Some(row) = row.filter(|_| settled) {
                        let head = KnownHead {
                            row,
                            size,
                            mtime_ns,
                        };
                        kept.insert(path.clone(), head);
                    }
                    found.push(Found {
                        path,
                        size,
                        mtime_ns,
                    });
                }
                Err(e) if unreachable(&e) => return Err(e),
                Err(e) => failed.push((path, e.to_string())),
            }
        }
        *self.heads.lock().unwrap_or_else(PoisonError::into_inner) = kept;
        Ok((found, failed))
    }

    fn send(
        &self,
        method: reqwest::Method,
        what: &str,
        url: Url,
        headers: &[(HeaderName, &str)],
    ) -> io::Result<Response> {
        self.web
            .send(method, what, url, headers, &|what, status, response| {
                refused(&self.web, what, status, response)
            })
    }
}

/// A directory's entries, and the links of its listing that cannot be paths (with why).
type Dir = (Vec<Entry>, Vec<(String, &'static str)>);

/// How a server lists folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lister {
    /// `PROPFIND` with `Depth: 1` (WebDAV: Nextcloud, ownCloud, Apache mod_dav, rclone).
    Dav,
    /// `GET` of the folder: a JSON listing or an HTML page.
    Pages,
}

static PROPFIND: std::sync::LazyLock<reqwest::Method> = std::sync::LazyLock::new(|| {
    reqwest::Method::from_bytes(b"PROPFIND").expect("PROPFIND is a method name")
});
const DEPTH: HeaderName = HeaderName::from_static("depth");

/// The entries of a WebDAV multistatus answer for the folder at `url`.
fn dav_entries(body: &[u8], url: &Url) -> Result<Dir, String> {
    let mut dir = Dir::default();
    for member in dav::members(body)? {
        match html_listing::dav_member_of(url, &member.href) {
            None => {}
            Some(Err(why)) => dir.1.push((member.href, why)),
            Some(Ok((name, slash))) => dir.0.push(Entry {
                name,
                dir: slash || member.collection,
                size: member.size,
                mtime_ns: member.mtime.map_or(0, |s| i128::from(s) * 1_000_000_000),
                row: None,
            }),
        }
    }
    Ok(dir)
}

/// The entries of the page a GET of the folder at `url` answered: a JSON listing, or the
/// children an HTML page links to (without sizes: the walk asks them). `None` for anything
/// else.
fn page_entries(body: &[u8], url: &Url) -> Option<Dir> {
    if let Ok(entries) = serde_json::from_slice::<Vec<Value>>(body) {
        return Some((entries.iter().filter_map(entry).collect(), Vec::new()));
    }
    if !html_listing::is_html(body) {
        return None;
    }
    let page = html_listing::children(&String::from_utf8_lossy(body), url);
    let entries = page
        .children
        .into_iter()
        .map(|child| Entry {
            name: child.name,
            dir: child.dir,
            size: None,
            mtime_ns: 0,
            row: Some(Row::of(&child.said)),
        })
        .collect();
    Some((entries, page.unusable))
}

/// One entry of a directory listing.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    /// Without a trailing `/`.
    name: String,
    dir: bool,
    size: Option<u64>,
    mtime_ns: i128,
    /// What an HTML page says beside the entry's link.
    row: Option<Row>,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// A listing entry in nginx's or Caddy's shape; `None` for anything else (a symlink nginx
/// could not follow, a socket).
fn entry(v: &Value) -> Option<Entry> {
    let name = v.get("name")?.as_str()?;
    let dir = v.get("type").and_then(Value::as_str) == Some("directory")
        || v.get("is_dir").and_then(Value::as_bool) == Some(true);
    let file = v.get("type").and_then(Value::as_str) == Some("file")
        || v.get("is_dir").and_then(Value::as_bool) == Some(false);
    if !dir && !file {
        return None;
    }
    let secs = match (v.get("mtime"), v.get("mod_time")) {
        (Some(Value::String(date)), _) => parse_http_date(date),
        (_, Some(Value::String(date))) => parse_rfc3339(date),
        _ => None,
    };
    let name = if dir {
        name.trim_end_matches('/')
    } else {
        name
    };
    Some(Entry {
        name: name.to_owned(),
        dir,
        size: v.get("size").and_then(Value::as_u64),
        mtime_ns: secs.map_or(0, |s| i128::from(s) * 1_000_000_000),
        row: None,
    })
}

impl Origin for HttpOrigin {
    /// The base URL.
    fn name(&self) -> &str {
        &self.web.name
    }

    /// Every audio file below the base, one depth at a time, up to [`WALK_PARALLEL`]
    /// directories listed at once (each listing is a round trip: a library of a thousand album
    /// folders listed one after the other waits a thousand times); then the size and date of
    /// each file listed without them (HTML listings; [`sizes`](Self::sizes)). Names that cannot be paths
    /// and directories that cannot be listed (gone, refused) are reported, not listed; a base
    /// that cannot be listed is an error (the server is unreachable, or gives no listing), and
    /// so is any listing or HEAD the server fails to answer (timed out, 5xx).
    fn walk(&self) -> io::Result<Listing> {
        let mut found = Vec::new();
        let mut failed = Vec::new();
        let mut sizeless = Vec::new();
        let (lister, root) = self.list_base()?;
        let mut level: Vec<(String, io::Result<_>)> = vec![(String::new(), Ok(root))];
        let mut listed = 1;
        for depth in 0..=MAX_DEPTH {
            let mut next = Vec::new();
            for (dir, entries) in level {
                let (entries, unusable) = match entries {
                    Ok(listing) => listing,
                    // The server went away or failed: a partial listing would read as files
                    // removed, so there is none (the scan keeps what it knows).
                    Err(e) if unreachable(&e) => return Err(e),
                    // Gone since its parent was listed, refused, or no listing: reported.
                    Err(e) => {
                        failed.push((dir, e.to_string()));
                        continue;
                    }
                };
                for (link, why) in unusable {
                    let rel = match dir.as_str() {
                        "" => link,
                        dir => format!("{dir}/{link}"),
                    };
                    failed.push((rel, why.to_owned()));
                }
                for e in entries {
                    let rel = match dir.as_str() {
                        "" => e.name,
                        dir => format!("{dir}/{}", e.name),
                    };
                    if let Err(reason) = check_relative(&rel) {
                        failed.push((rel, reason.to_owned()));
                    } else if e.dir {
                        if depth + 1 > MAX_DEPTH || listed + next.len() >= MAX_DIRS {
                            failed.push((rel, TOO_DEEP.to_owned()));
                        } else {
                            next.push(rel);
                        }
                    } else if is_audio(Path::new(&rel)) {
                        match e.size {
                            Some(size) => found.push(Found {
                                path: rel,
                                size,
                                mtime_ns: e.mtime_ns,
                            }),
                            None => sizeless.push((rel, e.row)),
                        }
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            listed += next.len();
            let listings = in_parallel(&next, |dir| self.list(lister, dir));
            level = next.into_iter().zip(listings).collect();
        }
        let (sized, sizeless_failed) = self.sizes(sizeless)?;
        found.extend(sized);
        failed.extend(sizeless_failed);
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((found, failed))
    }

    /// HEAD: Content-Length and Last-Modified (whole seconds, as listings give them).
    fn stat(&self, rel: &str) -> io::Result<(u64, i128)> {
        let (size, mtime, _) = self.head(rel)?;
        Ok((size, mtime))
    }

    /// A HEAD for the length and version; reads are ranged GETs pinned to that version.
    fn open(&self, rel: &str) -> io::Result<Box<dyn RangeRead>> {
        let (len, _, pin) = self.head(rel)?;
        Ok(Box::new(HttpFile {
            web: self.web.clone(),
            url: self.url(rel, false),
            what: format!("{rel:?}"),
            len,
            pin,
        }))
    }

    /// The base's listing answers.
    fn probe(&self) -> io::Result<()> {
        self.send(
            reqwest::Method::HEAD,
            "listing",
            self.base.clone(),
            &[(header::ACCEPT, "application/json")],
        )
        .map(drop)
    }
}

/// `f` of each of `items`, up to [`WALK_PARALLEL`] at once, in order.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..WALK_PARALLEL.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let result = f(item);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()))
        .map(|r| r.expect("every item is taken by a worker"))
        .collect()
}

/// An open file.
struct HttpFile {
    web: Arc<Web>,
    url: Url,
    /// The path relative to the base, quoted, for messages.
    what: String,
    len: u64,
    pin: Pin,
}

impl RangeRead for HttpFile {
    fn len(&self) -> u64 {
        self.len
    }

    /// One ranged GET, or for reads above 1 MiB up to four in parallel.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let get = |at: u64, piece: &mut [u8]| {
            self.web.get_range(
                &self.what,
                self.url.clone(),
                &self.pin,
                (at, self.len),
                piece,
                &|what, status, response| refused(&self.web, what, status, response),
            )
        };
        web::read_split(self.len, offset, buf, &get)
    }
}

/// An error for an answer that is not 2xx.
fn refused(web: &Web, what: &str, status: StatusCode, _response: Response) -> io::Error {
    let (kind, text) = match status {
        StatusCode::NOT_FOUND => (io::ErrorKind::NotFound, "not found"),
        StatusCode::UNAUTHORIZED if web.has_credentials() => (
            io::ErrorKind::PermissionDenied,
            "the server refused the username and password",
        ),
        StatusCode::UNAUTHORIZED => (
            io::ErrorKind::PermissionDenied,
            "the server asks for credentials (set username and password in the origin's config)",
        ),
        StatusCode::FORBIDDEN => (
            io::ErrorKind::PermissionDenied,
            "access denied (the server refuses this path)",
        ),
        StatusCode::PRECONDITION_FAILED => (
            io::ErrorKind::InvalidData,
            "the file was replaced since it was opened",
        ),
        StatusCode::RANGE_NOT_SATISFIABLE => (
            io::ErrorKind::InvalidData,
            "the file is shorter than listed",
        ),
        _ => (io::ErrorKind::Other, "the server answered with an error"),
    };
    io::Error::new(kind, format!("{}: {what}: {text}: {status}", web.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nginx_and_caddy_listings_read_alike() {
        let nginx = json!({"name": "a.flac", "type": "file",
            "mtime": "Sun, 06 Nov 1994 08:49:37 GMT", "size": 12});
        let caddy = json!({"name": "a.flac", "is_dir": false,
            "mod_time": "1994-11-06T08:49:37Z", "size": 12});
        let want = Some(Entry {
            name: "a.flac".to_owned(),
            dir: false,
            size: Some(12),
            mtime_ns: 784_111_777_000_000_000,
            row: None,
        });
        assert_eq!(entry(&nginx), want);
        assert_eq!(entry(&caddy), want);
        let dir = json!({"name": "Album/", "is_dir": true, "mod_time": "1994-11-06T08:49:37Z"});
        let dir = entry(&dir).unwrap();
        assert_eq!((dir.name.as_str(), dir.dir), ("Album", true));
        // A symlink nginx could not follow, or an entry of some other shape, is skipped.
        assert_eq!(entry(&json!({"name": "x", "type": "other"})), None);
        assert_eq!(entry(&json!({"type": "file"})), None);
    }

    #[test]
    fn rows_with_a_time_of_day_are_told_apart() {
        let dated = |text| Row::of(text).dated;
        assert!(dated("a.flac 27-Nov-2026 09:46 5000"));
        assert!(dated("2026-11-27 16:27:55.886702038 &#43;0000 UTC"));
        assert!(!dated("a.flac 27-Nov-2026 5000"));
        assert!(!dated("01 – tëst?.flac"));
        assert!(!dated("a:b 1:2 12:3 1:23"));
        assert_ne!(Row::of("a 09:46 5000"), Row::of("a 09:47 5000"));
    }

    #[test]
    fn urls_are_percent_encoded_per_component() {
        let config = OriginConfig::from_url("http://127.0.0.1:1/music");
        let origin = HttpOrigin::new(&config, &config.parsed().unwrap()).unwrap();
        assert_eq!(
            origin.url("AC DC/Back in Black #1?.flac", false).as_str(),
            "http://127.0.0.1:1/music/AC%20DC/Back%20in%20Black%20%231%3F.flac"
        );
        assert_eq!(origin.url("", true).as_str(), "http://127.0.0.1:1/music/");
        assert_eq!(
            origin.url("a", true).as_str(),
            "http://127.0.0.1:1/music/a/"
        );
    }
}
