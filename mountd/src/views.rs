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
//! - Listing a result directory costs one indexd call and nothing from fetchd: hits fetchd
//!   hides (copies behind a preferred origin's file) are left out using a set fetched once per
//!   namespace generation, and the links' targets are resolved in one batch only when something
//!   looks closer than the names (a lookup, `readlink`, attributes). Until then an entry's
//!   attributes carry only its inode number and kind ([`Backend::lists_names_only`]).
//! - Virtual inode numbers live at and above [`VIRTUAL_BASE`], far above fetchd's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use musicfs_ipc::{Attr, DirEntry, FetchError, FsStats, Hit, Ino, NodeKind, TrackId};
use musicfs_ipc::{TrackRef, ROOT_INO};
use tracing::info;

use crate::backend::{Backend, BackendError};
use crate::core::lock;

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
    /// The namespace generation and the tracks the tree does not show.
    fn hidden(&self) -> Result<(u64, Vec<TrackId>), BackendError>;
}

/// A query directory's current results, best first (which is also name order: names start
/// with the zero-padded rank); the links' inode numbers run from `first`.
struct Listing {
    made: Instant,
    mtime: SystemTime,
    first: Ino,
    links: Vec<Link>,
    /// Whether every link's target has been asked for.
    resolved: bool,
}

impl Listing {
    fn find(&self, name: &str) -> Option<Ino> {
        let at = self
            .links
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()?;
        Some(self.first + at as Ino)
    }

    fn link(&self, ino: Ino) -> Option<&Link> {
        self.links
            .get(usize::try_from(ino.checked_sub(self.first)?).ok()?)
    }
}

/// One result symlink.
struct Link {
    name: String,
    track: TrackId,
    target: Target,
}

/// Where a link points, once asked.
#[derive(Clone)]
enum Target {
    Unresolved,
    At(String),
    /// The track left the tree after the search ran (the index lags the tree a little).
    Gone,
}

#[derive(Default)]
struct Tables {
    /// Query directory inode by (parent, name), and back.
    dirs: HashMap<(Ino, String), Ino>,
    dir_of: HashMap<Ino, (Ino, String)>,
    listings: HashMap<Ino, Listing>,
    /// The directory of each listing, by the inode number of its first link.
    firsts: BTreeMap<Ino, Ino>,
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
        self.drop_listing(dir);
    }

    fn drop_listing(&mut self, dir: Ino) {
        if let Some(listing) = self.listings.remove(&dir) {
            self.firsts.remove(&listing.first);
        }
    }

    /// The directory holding link `ino`, if it still exists.
    fn dir_of_link(&self, ino: Ino) -> Option<Ino> {
        let (_, dir) = self.firsts.range(..=ino).next_back()?;
        self.listings.get(dir)?.link(ino).map(|_| *dir)
    }

    fn link(&self, ino: Ino) -> Option<&Link> {
        self.listings.get(&self.dir_of_link(ino)?)?.link(ino)
    }
}

/// The hidden tracks as of one namespace generation.
struct Hidden {
    generation: u64,
    tracks: Arc<HashSet<TrackId>>,
}

pub struct Views<B, S> {
    library: B,
    search: S,
    tables: Mutex<Tables>,
    hidden: Mutex<Option<Hidden>>,
    /// The generation shown ([`Backend::show`]; 0: none yet), which the invalidation watcher
    /// moves on once the kernel has dropped what it cached of the one before.
    generation: AtomicU64,
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
            hidden: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        lock(&self.tables)
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
        let hidden = self.hidden_tracks()?;
        let shown: Vec<&Hit> = hits.iter().filter(|h| !hidden.contains(&h.track)).collect();
        let width = shown.len().to_string().len().max(3);
        let links: Vec<Link> = shown
            .into_iter()
            .enumerate()
            .map(|(rank, hit)| Link {
                name: result_name(rank + 1, width, hit),
                track: hit.track,
                target: Target::Unresolved,
            })
            .collect();
        let mut t = self.tables();
        t.drop_listing(dir);
        let first = t.next;
        t.next += links.len() as Ino;
        t.firsts.insert(first, dir);
        t.listings.insert(
            dir,
            Listing {
                made: Instant::now(),
                mtime: SystemTime::now(),
                first,
                links,
                resolved: false,
            },
        );
        Ok(())
    }

    /// The tracks to leave out of results, fetched again when the generation moved on.
    fn hidden_tracks(&self) -> Result<Arc<HashSet<TrackId>>, BackendError> {
        let seen = self.generation.load(Ordering::Acquire);
        if let Some(h) = lock(&self.hidden).as_ref() {
            if seen == 0 || h.generation == seen {
                return Ok(h.tracks.clone());
            }
        }
        let (generation, tracks) = match self.search.hidden() {
            Ok(answer) => answer,
            // fetchd not answering: the set it gave last is better than no listing.
            Err(e) => match lock(&self.hidden).as_ref() {
                Some(h) => return Ok(h.tracks.clone()),
                None => return Err(e),
            },
        };
        let tracks = Arc::new(tracks.into_iter().collect::<HashSet<_>>());
        *lock(&self.hidden) = Some(Hidden {
            generation,
            tracks: tracks.clone(),
        });
        Ok(tracks)
    }

    /// Resolves the targets of `dir`'s links in one call to fetchd, unless done already.
    fn resolve(&self, dir: Ino) -> Result<(), BackendError> {
        let (first, tracks): (Ino, Vec<TrackId>) = {
            let t = self.tables();
            let Some(listing) = t.listings.get(&dir).filter(|l| !l.resolved) else {
                return Ok(());
            };
            (
                listing.first,
                listing.links.iter().map(|l| l.track).collect(),
            )
        };
        let paths = self.search.paths(tracks)?;
        let mut t = self.tables();
        // The listing may have been remade meanwhile: then these answers are not its own.
        if let Some(listing) = t.listings.get_mut(&dir).filter(|l| l.first == first) {
            for (link, path) in listing.links.iter_mut().zip(paths) {
                link.target = path.map_or(Target::Gone, |p| Target::At(format!("../../{p}")));
            }
            listing.resolved = true;
        }
        Ok(())
    }

    /// A link's target, resolving its directory's links first if needed.
    fn target(&self, ino: Ino) -> Result<String, BackendError> {
        let dir = self.tables().dir_of_link(ino).ok_or(FetchError::NotFound)?;
        self.resolve(dir)?;
        match self.tables().link(ino).map(|l| l.target.clone()) {
            Some(Target::At(target)) => Ok(target),
            _ => Err(FetchError::NotFound.into()),
        }
    }

    fn attr(&self, ino: Ino) -> Result<Attr, BackendError> {
        if ino == SEARCH_DIR || ino == COLLECTIONS_DIR {
            return Ok(dir_attr(ino, SystemTime::now()));
        }
        if let Some(listing) = self.tables().listings.get(&ino) {
            return Ok(dir_attr(ino, listing.mtime));
        }
        Ok(link_attr(ino, self.target(ino)?.len() as u64))
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
                Ok((listing.first..)
                    .zip(&listing.links)
                    .map(|(ino, link)| {
                        let len = match &link.target {
                            Target::At(target) => target.len() as u64,
                            _ => 0,
                        };
                        DirEntry {
                            name: link.name.clone(),
                            attr: link_attr(ino, len),
                        }
                    })
                    .collect())
            }
        }
    }
}

/// The longest extension a result name keeps.
const MAX_EXT: usize = 16;

/// `NNN Artist - Title.ext`, made safe as one path component.
fn result_name(rank: usize, width: usize, hit: &Hit) -> String {
    use std::fmt::Write;
    let mut name = String::with_capacity(width + hit.artist.len() + hit.title.len() + 16);
    let _ = write!(name, "{rank:0width$} ");
    push_clean(&mut name, &hit.artist);
    name.push_str(" - ");
    push_clean(&mut name, &hit.title);
    // An extension is short; a longer one (a hostile file name) is left off.
    let ext = if hit.ext.len() <= MAX_EXT {
        hit.ext.as_str()
    } else {
        ""
    };
    // Room for the extension within NAME_MAX, cut at a character boundary.
    let max = 250 - ext.len();
    if name.len() > max {
        let mut end = max;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    if !ext.is_empty() {
        name.push('.');
        name.push_str(ext);
    }
    name
}

/// Appends `s` trimmed, with `/` shown as `∕` and control characters as spaces.
fn push_clean(name: &mut String, s: &str) {
    let s = s.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    for c in s.chars() {
        name.push(match c {
            '/' => '∕',
            c if c.is_control() => ' ',
            c => c,
        });
    }
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
        direct_io: false,
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
        direct_io: false,
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
                let link = {
                    let t = self.tables();
                    let listing = t.listings.get(&p).ok_or(FetchError::NotFound)?;
                    listing.find(name).ok_or(FetchError::NotFound)?
                };
                self.attr(link)
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

    fn current(&self, ino: Ino) -> Result<Attr, BackendError> {
        match is_virtual(ino) {
            true => self.attr(ino),
            false => self.library.current(ino),
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
        if !is_virtual(ino) {
            return self.library.readlink(ino);
        }
        if self.tables().dir_of_link(ino).is_none() {
            return Err(FetchError::NotASymlink.into());
        }
        self.target(ino)
    }

    fn lists_names_only(&self, ino: Ino) -> bool {
        is_virtual(ino) && ino != SEARCH_DIR && ino != COLLECTIONS_DIR
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

    fn generation(&self, shown: u64) -> Result<u64, BackendError> {
        self.library.generation(shown)
    }

    fn show(&self, generation: u64) {
        self.generation.store(generation, Ordering::Release);
        self.library.show(generation);
    }
}

#[cfg(test)]
mod tests;
