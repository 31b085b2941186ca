//! HTTP(S) origins: a folder a web server publishes with JSON directory listings, read with
//! ranged GETs.
//!
//! Listings are what nginx serves with `autoindex on; autoindex_format json;`
//! (`[{"name", "type": "file"|"directory", "mtime": HTTP date, "size"}]`) or Caddy's
//! `file_server browse` when asked for JSON (`[{"name", "is_dir", "mod_time": RFC 3339,
//! "size"}]`); every directory is asked for with `Accept: application/json`. A server that
//! answers with anything else is reported as one that gives no listing. Reads are ranged GETs
//! pinned with `If-Match` to the ETag the file had when opened (when the server sends one, as
//! nginx and Caddy do), so a replaced file fails the read rather than mixing two versions. The
//! server must answer ranges with 206.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use musicfs_ipc::origin::{OriginConfig, OriginUrl};
use reqwest::blocking::Response;
use reqwest::header::{self, HeaderName};
use reqwest::StatusCode;
use serde_json::Value;
use url::Url;

use crate::origin::{check_relative, is_audio, Found, Listing, Origin, RangeRead};
use crate::web::{self, invalid, parse_http_date, parse_rfc3339, Web};

/// Directories deeper than this below the base are not walked (a symlink loop on the server).
const MAX_DEPTH: usize = 32;
/// Directories one walk lists at most.
const MAX_DIRS: usize = 200_000;
/// Directory listings a walk has in flight at once.
const WALK_PARALLEL: usize = 8;
/// The largest directory listing read (bytes).
const MAX_LISTING: u64 = 64 << 20;

pub struct HttpOrigin {
    web: Arc<Web>,
    /// Ends with `/`.
    base: Url,
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
        let mut web = Web::new(base.clone(), config.timeout())?;
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

    /// The entries of each of `dirs`, listed up to [`WALK_PARALLEL`] at once, in order.
    fn list_all(&self, dirs: Vec<String>) -> Vec<(String, io::Result<Vec<Entry>>)> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<io::Result<Vec<Entry>>>>> =
            dirs.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..WALK_PARALLEL.min(dirs.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(dir) = dirs.get(i) else { break };
                    let listed = self.list(dir);
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(listed);
                });
            }
        });
        dirs.into_iter()
            .zip(results)
            .map(|(dir, result)| {
                let result = result.into_inner().unwrap_or_else(|e| e.into_inner());
                (
                    dir,
                    result.unwrap_or_else(|| Err(io::Error::other("not listed"))),
                )
            })
            .collect()
    }

    /// One directory's entries.
    fn list(&self, rel: &str) -> io::Result<Vec<Entry>> {
        let what = match rel {
            "" => "listing".to_owned(),
            rel => format!("listing {rel:?}"),
        };
        let response = self.send(
            reqwest::Method::GET,
            &what,
            self.url(rel, true),
            &[(header::ACCEPT, "application/json")],
        )?;
        let mut body = Vec::new();
        response
            .take(MAX_LISTING + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.web.transport(&what, &e))?;
        if body.len() as u64 > MAX_LISTING {
            return Err(self.web.bad(&what, "the listing is too large"));
        }
        let entries: Vec<Value> = serde_json::from_slice(&body).map_err(|_| {
            self.web.bad(
                &what,
                "the server gives no JSON listing (nginx: `autoindex on; autoindex_format \
                 json;`, Caddy: `file_server browse`)",
            )
        })?;
        Ok(entries.iter().filter_map(entry).collect())
    }

    fn head(&self, rel: &str) -> io::Result<(u64, i128, Option<String>)> {
        let what = format!("{rel:?}");
        let response = self.send(reqwest::Method::HEAD, &what, self.url(rel, false), &[])?;
        self.web.head_fields(&what, &response)
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

/// One entry of a directory listing.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    /// Without a trailing `/`.
    name: String,
    dir: bool,
    size: Option<u64>,
    mtime_ns: i128,
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
    })
}

impl Origin for HttpOrigin {
    /// The base URL.
    fn name(&self) -> &str {
        &self.web.name
    }

    /// Every audio file below the base, one depth at a time, up to [`WALK_PARALLEL`]
    /// directories listed at once (each listing is a round trip: a library of a thousand album
    /// folders listed one after the other waits a thousand times). Names that cannot be paths
    /// and directories that cannot be listed are reported, not listed; a base that cannot be
    /// listed is an error (the server is unreachable, or gives no listing).
    fn walk(&self) -> io::Result<Listing> {
        let mut found = Vec::new();
        let mut failed = Vec::new();
        let root = self.list("")?;
        let mut level: Vec<(String, io::Result<Vec<Entry>>)> = vec![(String::new(), Ok(root))];
        let mut listed = 1;
        for depth in 0..=MAX_DEPTH {
            let mut next = Vec::new();
            for (dir, entries) in level {
                let entries = match entries {
                    Ok(entries) => entries,
                    Err(e) => {
                        failed.push((dir, e.to_string()));
                        continue;
                    }
                };
                for e in entries {
                    let rel = match dir.as_str() {
                        "" => e.name,
                        dir => format!("{dir}/{}", e.name),
                    };
                    if let Err(reason) = check_relative(&rel) {
                        failed.push((rel, reason.to_owned()));
                    } else if e.dir {
                        if depth + 1 > MAX_DEPTH || listed + next.len() >= MAX_DIRS {
                            failed.push((rel, "too deep, or too many directories".to_owned()));
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
                            None => failed.push((rel, "listed without a size".to_owned())),
                        }
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            listed += next.len();
            level = self.list_all(next);
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((found, failed))
    }

    /// HEAD: Content-Length and Last-Modified (whole seconds, as listings give them).
    fn stat(&self, rel: &str) -> io::Result<(u64, i128)> {
        let (size, mtime, _) = self.head(rel)?;
        Ok((size, mtime))
    }

    /// A HEAD for the length and ETag; reads are ranged GETs pinned to that ETag.
    fn open(&self, rel: &str) -> io::Result<Box<dyn RangeRead>> {
        let (len, _, etag) = self.head(rel)?;
        Ok(Box::new(HttpFile {
            web: self.web.clone(),
            url: self.url(rel, false),
            what: format!("{rel:?}"),
            len,
            etag,
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

/// An open file.
struct HttpFile {
    web: Arc<Web>,
    url: Url,
    /// The path relative to the base, quoted, for messages.
    what: String,
    len: u64,
    etag: Option<String>,
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
                self.etag.as_deref(),
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
