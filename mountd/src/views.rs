//! `/.search/<query>/` and `/.collections/<name>/`: directories of symlinks to tracks, answered
//! by indexd. [`Views`] wraps the library [`Backend`] and adds these virtual nodes, so the
//! filesystem core needs no knowledge of them.
//!
//! - Neither directory is listed in the root (walking the mount must not run queries), but both
//!   answer lookups. `/.search/` lists nothing; looking up a name in it runs that query. A query that does not
//!   parse is `ENOENT` (the reason is logged); an index still being built is `EAGAIN`.
//! - Each hit is a symlink `NNN Artist - Title.ext` (rank from 001) whose relative target is the
//!   track's place in the tree (`../../Artist/Album/01 Title.flac`), valid wherever the mount is.
//! - Results are kept for [`FRESH_FOR`]; the directory's mtime is when they were made, so the
//!   kernel drops its cached listing when they are remade.
//! - Virtual inode numbers live at and above [`VIRTUAL_BASE`], far above fetchd's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use musicfs_ipc::{Attr, DirEntry, FetchError, FsStats, Hit, Ino, NodeKind, TrackId};
use musicfs_ipc::{TrackRef, ROOT_INO};
use tracing::info;

use crate::backend::{Backend, BackendError};

pub const VIRTUAL_BASE: Ino = 1 << 62;
const SEARCH_DIR: Ino = VIRTUAL_BASE;
const COLLECTIONS_DIR: Ino = VIRTUAL_BASE + 1;
pub const SEARCH_NAME: &str = ".search";
pub const COLLECTIONS_NAME: &str = ".collections";
/// How long a result listing is reused before the query runs again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// Results per query.
pub const RESULT_LIMIT: u32 = 1000;
/// Query directories kept at once: a long-running mount that sees many different searches keeps
/// memory bounded by forgetting the oldest (a later lookup of it simply runs the query again).
pub const KEPT_QUERY_DIRS: usize = 64;

pub fn is_virtual(ino: Ino) -> bool {
    ino >= VIRTUAL_BASE
}

/// What the views need from indexd (and, for result targets, from fetchd).
pub trait Search: Send + Sync + 'static {
    fn search(&self, query: &str, limit: u32) -> Result<Vec<Hit>, BackendError>;
    /// `(name, query)` of every collection.
    fn collections(&self) -> Result<Vec<(String, String)>, BackendError>;
    /// Where each track is shown, relative to the mount's root.
    fn paths(&self, tracks: Vec<TrackId>) -> Result<Vec<Option<String>>, BackendError>;
}

/// A query directory's current results.
struct Listing {
    made: Instant,
    mtime: SystemTime,
    entries: Vec<(String, Ino, String)>,
}

#[derive(Default)]
struct Tables {
    /// Query directory inode by (parent, name), and back.
    dirs: HashMap<(Ino, String), Ino>,
    dir_of: HashMap<Ino, (Ino, String)>,
    listings: HashMap<Ino, Listing>,
    /// Result symlink inode → target.
    links: HashMap<Ino, String>,
    /// Query directories, oldest first.
    order: std::collections::VecDeque<Ino>,
    next: Ino,
}

impl Tables {
    fn new_dir(&mut self, parent: Ino, name: &str) -> Ino {
        let ino = self.next;
        self.next += 1;
        self.dirs.insert((parent, name.to_owned()), ino);
        self.dir_of.insert(ino, (parent, name.to_owned()));
        self.order.push_back(ino);
        while self.order.len() > KEPT_QUERY_DIRS {
            if let Some(oldest) = self.order.pop_front() {
                self.forget(oldest);
            }
        }
        ino
    }

    fn forget(&mut self, dir: Ino) {
        if let Some(key) = self.dir_of.remove(&dir) {
            self.dirs.remove(&key);
        }
        if let Some(listing) = self.listings.remove(&dir) {
            for (_, link, _) in listing.entries {
                self.links.remove(&link);
            }
        }
    }
}

pub struct Views<B, S> {
    library: B,
    search: S,
    tables: Mutex<Tables>,
}

impl<B: Backend, S: Search> Views<B, S> {
    pub fn new(library: B, search: S) -> Self {
        let tables = Tables {
            next: VIRTUAL_BASE + 2,
            ..Default::default()
        };
        Self {
            library,
            search,
            tables: Mutex::new(tables),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The query a virtual directory runs: a search's name, or a collection's saved query.
    fn query_of(&self, parent: Ino, name: &str) -> Result<String, BackendError> {
        match parent {
            SEARCH_DIR => Ok(name.to_owned()),
            _ => self
                .search
                .collections()?
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, q)| q)
                .ok_or(BackendError::Fetch(FetchError::NotFound)),
        }
    }

    /// The results directory `name` under `parent`, (re)running its query when stale.
    fn results_dir(&self, parent: Ino, name: &str) -> Result<Attr, BackendError> {
        let existing = self.tables().dirs.get(&(parent, name.to_owned())).copied();
        let ino = match existing {
            Some(ino) => ino,
            None => self.tables().new_dir(parent, name),
        };
        self.refresh(ino)?;
        self.attr(ino)
    }

    fn refresh(&self, dir: Ino) -> Result<(), BackendError> {
        let Some((parent, name)) = self.tables().dir_of.get(&dir).cloned() else {
            return Err(FetchError::NotFound.into());
        };
        let fresh = self
            .tables()
            .listings
            .get(&dir)
            .is_some_and(|l| l.made.elapsed() < FRESH_FOR);
        if fresh {
            return Ok(());
        }
        let query = self.query_of(parent, &name)?;
        let hits = self.search.search(&query, RESULT_LIMIT).inspect_err(|e| {
            info!("query {query:?}: {e}");
        })?;
        let paths = self.search.paths(hits.iter().map(|h| h.track).collect())?;
        let width = hits.len().to_string().len().max(3);
        let mut t = self.tables();
        let mut entries = Vec::with_capacity(hits.len());
        let shown = hits.iter().zip(paths).filter_map(|(h, p)| Some((h, p?)));
        for (rank, (hit, path)) in shown.enumerate() {
            let link = t.next;
            t.next += 1;
            let name = result_name(rank + 1, width, hit);
            t.links.insert(link, format!("../../{path}"));
            entries.push((name, link, path));
        }
        if let Some(old) = t.listings.remove(&dir) {
            for (_, link, _) in old.entries {
                t.links.remove(&link);
            }
        }
        t.listings.insert(
            dir,
            Listing {
                made: Instant::now(),
                mtime: SystemTime::now(),
                entries,
            },
        );
        Ok(())
    }

    fn attr(&self, ino: Ino) -> Result<Attr, BackendError> {
        let t = self.tables();
        if ino == SEARCH_DIR || ino == COLLECTIONS_DIR {
            return Ok(dir_attr(ino, SystemTime::now()));
        }
        if let Some(listing) = t.listings.get(&ino) {
            return Ok(dir_attr(ino, listing.mtime));
        }
        if let Some(target) = t.links.get(&ino) {
            return Ok(link_attr(ino, target.len() as u64));
        }
        Err(FetchError::NotFound.into())
    }

    fn entries(&self, dir: Ino) -> Result<Vec<DirEntry>, BackendError> {
        match dir {
            SEARCH_DIR => Ok(Vec::new()),
            COLLECTIONS_DIR => {
                let names = self.search.collections()?;
                names
                    .into_iter()
                    .map(|(name, _)| {
                        let attr = self.results_dir(COLLECTIONS_DIR, &name)?;
                        Ok(DirEntry { name, attr })
                    })
                    .collect()
            }
            _ => {
                self.refresh(dir)?;
                let t = self.tables();
                let listing = t.listings.get(&dir).ok_or(FetchError::NotFound)?;
                Ok(listing
                    .entries
                    .iter()
                    .map(|(name, link, _)| DirEntry {
                        name: name.clone(),
                        attr: link_attr(*link, t.links[link].len() as u64),
                    })
                    .collect())
            }
        }
    }
}

/// `NNN Artist - Title.ext`, made safe as one path component.
fn result_name(rank: usize, width: usize, hit: &Hit) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                '/' => '∕',
                c if c.is_control() => ' ',
                c => c,
            })
            .collect::<String>()
            .trim()
            .to_owned()
    };
    let mut name = format!(
        "{rank:0width$} {} - {}",
        clean(&hit.artist),
        clean(&hit.title)
    );
    // Room for the extension within NAME_MAX, cut at a character boundary.
    let max = 250 - hit.ext.len();
    if name.len() > max {
        let mut end = max;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    if !hit.ext.is_empty() {
        name.push('.');
        name.push_str(&hit.ext);
    }
    name
}

fn dir_attr(ino: Ino, mtime: SystemTime) -> Attr {
    let t = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
    Attr {
        ino,
        kind: NodeKind::Dir,
        size: 0,
        mtime_secs: t.as_secs() as i64,
        mtime_nanos: t.subsec_nanos(),
        track: None,
    }
}

fn link_attr(ino: Ino, len: u64) -> Attr {
    Attr {
        ino,
        kind: NodeKind::Symlink,
        size: len,
        mtime_secs: 0,
        mtime_nanos: 0,
        track: None,
    }
}

impl<B: Backend, S: Search> Backend for Views<B, S> {
    fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, BackendError> {
        match (parent, name) {
            (ROOT_INO, SEARCH_NAME) => self.attr(SEARCH_DIR),
            (ROOT_INO, COLLECTIONS_NAME) => self.attr(COLLECTIONS_DIR),
            (SEARCH_DIR | COLLECTIONS_DIR, _) => self.results_dir(parent, name),
            (p, _) if is_virtual(p) => {
                self.refresh(p)?;
                let t = self.tables();
                let listing = t.listings.get(&p).ok_or(FetchError::NotFound)?;
                let (_, link, _) = listing
                    .entries
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .ok_or(FetchError::NotFound)?;
                Ok(link_attr(*link, t.links[link].len() as u64))
            }
            _ => self.library.lookup(parent, name),
        }
    }

    fn getattr(&self, ino: Ino) -> Result<Attr, BackendError> {
        match is_virtual(ino) {
            true => self.attr(ino),
            false => self.library.getattr(ino),
        }
    }

    fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, BackendError> {
        if is_virtual(ino) {
            return self.entries(ino);
        }
        // The root lists the library only: `find`, backup tools and scanners walking the mount
        // must not run every collection's query. The virtual directories answer lookups.
        self.library.readdir(ino)
    }

    fn readlink(&self, ino: Ino) -> Result<String, BackendError> {
        match is_virtual(ino) {
            true => self
                .tables()
                .links
                .get(&ino)
                .cloned()
                .ok_or(BackendError::Fetch(FetchError::NotASymlink)),
            false => self.library.readlink(ino),
        }
    }

    fn read(&self, track: TrackRef, offset: u64, len: u32) -> Result<Vec<u8>, BackendError> {
        self.library.read(track, offset, len)
    }

    fn xattrs(&self, ino: Ino) -> Result<Vec<(String, String)>, BackendError> {
        match is_virtual(ino) {
            true => Ok(Vec::new()),
            false => self.library.xattrs(ino),
        }
    }

    fn statfs(&self) -> Result<FsStats, BackendError> {
        self.library.statfs()
    }

    fn generation(&self) -> Result<u64, BackendError> {
        self.library.generation()
    }
}

#[cfg(test)]
mod tests;
