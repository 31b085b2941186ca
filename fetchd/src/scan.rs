//! The scanner: walks every origin, reads the tags of new and changed files (in parallel, only
//! their tag bytes), drops files that are gone, and writes the catalog in batches. Unchanged
//! files (same size and mtime) are not opened at all, unless due to be read again
//! ([`crate::reread`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use musicfs_ipc::ScanState;

use crate::catalog::{Batch, Catalog, CatalogError, Head};
use crate::chunks::{chunk_hash, ChunkStore};
use crate::health::{stopped_answering, unreachable};
use crate::origin::{Found, Origin, OriginFile};
use crate::origins::Origins;
use crate::reread::Rereads;
use crate::tags::{self, Parsed};
use crate::track::{Location, Problem};

const BATCH: usize = 1000;
/// Bytes at the head of a remote file the scanner reads and keeps, whatever the tags need.
const HEAD_KEPT: u64 = 32 * 1024;
/// Files read at once when some are remote (their time is the link's, not the CPU's).
const REMOTE_READERS: usize = 16;

/// Progress of the scan in flight, read by `status`.
#[derive(Debug, Default)]
pub struct ScanProgress {
    running: AtomicBool,
    done: AtomicU64,
    total: AtomicU64,
    completed: AtomicU64,
}

impl ScanProgress {
    pub fn state(&self) -> ScanState {
        if self.running.load(Ordering::Acquire) {
            ScanState::Scanning {
                done: self.done.load(Ordering::Relaxed),
                total: self.total.load(Ordering::Relaxed),
            }
        } else {
            ScanState::Idle
        }
    }

    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// Marks the scan (and whatever the caller does after it, such as rebuilding the tree) done.
    pub fn finish(&self) {
        self.running.store(false, Ordering::Release);
        self.completed.fetch_add(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanSummary {
    pub seen: u64,
    pub parsed: u64,
    pub removed: u64,
    pub problems: u64,
    /// Origins that could not be listed.
    pub unreachable: u64,
    /// Files kept listed because their origin listed none at all (see [`scan`]).
    pub kept_while_empty: u64,
    /// New or changed files not read because their origin stopped answering after listing
    /// them: they stay as the catalog knew them, and the next scan reads them.
    pub unread: u64,
}

impl ScanSummary {
    pub fn changed(&self) -> bool {
        self.parsed > 0 || self.removed > 0
    }
}

/// Runs one scan of the origins whose indices are in `which` (all when `None`). An origin that
/// cannot be listed keeps every file the catalog knew on it, and so does one that lists no file
/// at all after it had some: an empty root is far more often a disk that did not mount, or a
/// share the NAS serves empty while it starts, than a library deleted whole, and dropping the
/// files would lose their cached layouts, so they would not play offline. The origin carries a
/// warning (in `status`) while it stays empty; removing it from the config drops its files.
/// The tag bytes read from remote
/// origins are kept in `store` (see [`Head`]). Each read is noted in `rereads`, and the files
/// it says are due are read again. Leaves `progress` running: the caller calls `finish`.
pub fn scan(
    origins: &Origins,
    which: Option<&[usize]>,
    catalog: &Catalog,
    store: &ChunkStore,
    progress: &ScanProgress,
    rereads: &Rereads,
) -> Result<ScanSummary, CatalogError> {
    progress.done.store(0, Ordering::Relaxed);
    progress.total.store(0, Ordering::Relaxed);
    progress.running.store(true, Ordering::Release);
    let known = catalog.known_files()?;
    let mut summary = ScanSummary::default();
    let mut seen: HashSet<Location> = HashSet::new();
    let mut work: Vec<(usize, Found)> = Vec::new();
    // Unchanged files due to be read again, read after `work`.
    let mut again: Vec<(usize, Found)> = Vec::new();
    let mut batch = Batch::default();
    let mut skipped: HashSet<&str> = HashSet::new();
    for (index, origin) in origins.iter().enumerate() {
        if which.is_some_and(|w| !w.contains(&index)) {
            skipped.insert(origin.name());
            continue;
        }
        let (found, failed) = match origin.walk() {
            Ok(listing) => {
                origins.health(index).succeeded();
                listing
            }
            Err(e) => {
                tracing::warn!(
                    origin = origin.name(),
                    "cannot list the origin ({e}); keeping what is known of it"
                );
                origins.health(index).failed(&e);
                summary.unreachable += 1;
                skipped.insert(origin.name());
                continue;
            }
        };
        let health = origins.health(index);
        if found.is_empty() && failed.is_empty() {
            let had = known.keys().filter(|l| l.origin == origin.name()).count() as u64;
            if had > 0 {
                let why = format!(
                    "lists no files, though it had {had}; they stay listed (a disk not \
                     mounted, or a share served empty?)"
                );
                if health.warn(Some(why.clone())) {
                    tracing::warn!(origin = origin.name(), "{why}");
                }
                summary.kept_while_empty += had;
                skipped.insert(origin.name());
                continue;
            }
            // Never had any: more likely a wrong path or prefix than an empty library.
            let why = "lists no audio files (is its path or prefix right?)".to_owned();
            if health.warn(Some(why.clone())) {
                tracing::warn!(origin = origin.name(), "{why}");
            }
        } else if health.warn(None) {
            tracing::info!(origin = origin.name(), "lists audio files");
        }
        progress
            .total
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        for (path, reason) in failed {
            tracing::warn!(origin = origin.name(), path, "skipped: {reason}");
            let location = Location {
                origin: origin.name().to_owned(),
                path,
            };
            seen.insert(location.clone());
            batch
                .problems
                .push((location, unreadable(0, 0, reason, false)));
        }
        for file in found {
            let location = Location {
                origin: origin.name().to_owned(),
                path: file.path.clone(),
            };
            summary.seen += 1;
            if known.get(&location) != Some(&(file.size, file.mtime_ns)) {
                work.push((index, file));
            } else if rereads.due(&location) {
                again.push((index, file));
            } else {
                progress.done.fetch_add(1, Ordering::Relaxed);
            }
            seen.insert(location);
        }
    }
    let gone: Vec<(Location, (u64, i128))> = known
        .into_iter()
        .filter(|(l, _)| !seen.contains(l) && !skipped.contains(l.origin.as_str()))
        .collect();
    let names: Vec<&str> = origins.iter().map(|o| o.name()).collect();
    let moves = moves(&gone, &work, &names);
    let moved: HashSet<&Location> = moves.values().collect();
    batch.removed = gone
        .iter()
        .map(|(l, _)| l)
        .filter(|l| !moved.contains(l))
        .cloned()
        .collect();
    for origin in origins.iter().filter(|o| !skipped.contains(o.name())) {
        rereads.keep_listed(origin.name(), &seen);
    }
    summary.removed = batch.removed.len() as u64;
    summary.problems = batch.problems.len() as u64;
    catalog.apply(batch)?;
    let first_again = work.len();
    work.extend(again);

    let origin_list: Vec<_> = origins.iter().collect();
    let next = AtomicUsize::new(0);
    // A remote file's tags cost a few round trips and little CPU: more readers than cores
    // keep the link busy instead of waiting on it one file per core.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let remote = work
        .iter()
        .any(|(index, _)| origin_list[*index].local_root().is_none());
    let threads = match remote {
        true => cores.max(REMOTE_READERS),
        false => cores,
    };
    // Origins found to have stopped answering while their files were read: the rest of their
    // files are not tried (each would wait for its own timeout).
    let gone_away: Vec<AtomicBool> = origin_list.iter().map(|_| AtomicBool::new(false)).collect();
    let mut unread: HashMap<usize, (u64, String)> = HashMap::new();
    let (tx, rx) = mpsc::sync_channel::<Read>(256);
    std::thread::scope(|s| -> Result<(), CatalogError> {
        for _ in 0..threads {
            let tx = tx.clone();
            let (work, next, origin_list, gone_away) = (&work, &next, &origin_list, &gone_away);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((index, file)) = work.get(i) else {
                    break;
                };
                let origin = origin_list[*index];
                let began = Instant::now();
                let read = match gone_away[*index].load(Ordering::Relaxed) {
                    true => Err(None),
                    false => {
                        let opened = origins.file(origin, &file.path);
                        read_tags(opened, origin, store, file).map_err(Some)
                    }
                };
                if read.is_err() {
                    gone_away[*index].store(true, Ordering::Relaxed);
                }
                let location = Location {
                    origin: origin.name().to_owned(),
                    path: file.path.clone(),
                };
                let sent = tx.send(Read {
                    index: *index,
                    location,
                    size: file.size,
                    mtime_ns: file.mtime_ns,
                    again: i >= first_again,
                    began,
                    read,
                });
                if sent.is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut batch = Batch::default();
        for Read {
            index,
            location,
            size,
            mtime_ns,
            again,
            began,
            read,
        } in rx
        {
            progress.done.fetch_add(1, Ordering::Relaxed);
            let (parsed, head) = match read {
                Ok(read) => read,
                Err(error) => {
                    let (count, why) = unread.entry(index).or_default();
                    *count += 1;
                    if let Some(e) = error {
                        origins.health(index).failed(&e);
                        *why = e.to_string();
                    }
                    continue;
                }
            };
            match again {
                true => {
                    rereads.forget(&location);
                    if as_catalogued(catalog, &location, &parsed, head.as_ref())? {
                        continue;
                    }
                    tracing::info!(
                        path = location.path,
                        "rewritten since it was read, size and mtime kept: read again"
                    );
                }
                false => rereads.read(&location, mtime_ns, began),
            }
            summary.parsed += 1;
            if let (Some(head), false) = (head, matches!(parsed, Parsed::Unusable(_))) {
                batch.heads.push((location.clone(), head));
            }
            if let Some(from) = moves.get(&location) {
                batch.moves.push((from.clone(), location.clone()));
            }
            match parsed {
                Parsed::Ok(info) => batch.upserts.push((location, size, mtime_ns, info)),
                Parsed::TagsUnreadable(info, reason) => {
                    tracing::warn!(path = location.path, "shown, with a warning: {reason}");
                    summary.problems += 1;
                    batch
                        .problems
                        .push((location.clone(), unreadable(size, mtime_ns, reason, true)));
                    batch.upserts.push((location, size, mtime_ns, info));
                }
                Parsed::Unusable(reason) => {
                    tracing::warn!(path = location.path, "left out: {reason}");
                    summary.problems += 1;
                    batch
                        .problems
                        .push((location, unreadable(size, mtime_ns, reason, false)));
                }
            }
            if batch.upserts.len() + batch.problems.len() >= BATCH {
                catalog.apply(std::mem::take(&mut batch))?;
            }
        }
        catalog.apply(batch)
    })?;
    for (index, (count, why)) in unread {
        tracing::warn!(
            origin = origin_list[index].name(),
            "stopped answering while new or changed files were read ({why}); {count} of them \
             stay as they were until the next scan"
        );
        summary.unread += count;
    }
    Ok(summary)
}

/// One file's tags, read by a scan thread: what was read, or the error of an origin that
/// stopped answering (`None` for a file not tried since its origin had).
struct Read {
    index: usize,
    location: Location,
    size: u64,
    mtime_ns: i128,
    /// A second read of a file unchanged in size and mtime ([`crate::reread`]).
    again: bool,
    began: Instant,
    read: Result<(Parsed, Option<Head>), Option<std::io::Error>>,
}

/// Whether a second read of the file at `location` found it as the catalog has it: the same
/// tags and properties (or unusable again), and the same head bytes where both reads kept them
/// (a track cut into chunks since has none kept; a block the store could not take, on a full
/// disk, is not kept).
fn as_catalogued(
    catalog: &Catalog,
    location: &Location,
    parsed: &Parsed,
    head: Option<&Head>,
) -> Result<bool, CatalogError> {
    let info = match parsed {
        Parsed::Ok(info) | Parsed::TagsUnreadable(info, _) => Some(info),
        Parsed::Unusable(_) => return Ok(catalog.track_at(location)?.is_none()),
    };
    let record = catalog.track_at(location)?.map(|(_, record)| record);
    let same_head = match (catalog.head(location)?, head) {
        (Some(kept), Some(read)) => same_blocks(&kept, read),
        _ => true,
    };
    Ok(record.as_ref().map(|r| &r.info) == info && same_head)
}

/// Whether every block both heads kept (same offset and length) has the same bytes.
fn same_blocks(a: &Head, b: &Head) -> bool {
    a.blocks.iter().all(|(at, len, hash)| {
        b.blocks
            .iter()
            .find(|(b_at, b_len, _)| b_at == at && b_len == len)
            .is_none_or(|(_, _, b_hash)| b_hash == hash)
    })
}

/// Reads `file`'s tags from `opened`, a file of `origin`, and for a remote origin keeps the
/// blocks read. Fails only when the origin stopped answering ([`gone`]): what the tag library
/// made of the file then says nothing about the file.
fn read_tags(
    opened: std::io::Result<OriginFile>,
    origin: &dyn Origin,
    store: &ChunkStore,
    file: &Found,
) -> std::io::Result<(Parsed, Option<Head>)> {
    let ext = extension(&file.path);
    let opened = match opened {
        Ok(opened) => opened,
        Err(e) if gone(origin, &e) => return Err(e),
        Err(e) => return Ok((Parsed::Unusable(format!("cannot open: {e}")), None)),
    };
    let tags = opened.tags();
    let parsed = tags::read(|| Ok(tags.cursor()), ext.as_deref());
    // For remote files, 32 KiB of head and 16 KiB of tail: players and tag readers look there
    // (MPD reads 8 KiB at the head, which the kernel's read-ahead makes 32 KiB), and what the
    // scan read is kept for them.
    let head = (origin.local_root().is_none()).then(|| {
        let _ = tags.read_head(HEAD_KEPT);
        let _ = tags.read_tail();
        keep_head(store, file, tags.blocks())
    });
    match tags.failed() {
        Some(e) if gone(origin, &e) => Err(e),
        _ => Ok((parsed, head)),
    }
}

/// Whether `error`, met reading a file of `origin`, means the origin stopped answering: an
/// error that can mean nothing else ([`stopped_answering`]), or one that may be the file's
/// alone (a server's failure, EIO) while the origin fails its probe too (a soft NFS mount
/// whose server went away, a web server answering 503 to everything).
fn gone(origin: &dyn Origin, error: &std::io::Error) -> bool {
    stopped_answering(error) || (unreachable(error) && origin.probe().is_err())
}

/// Files gone and files new that look like one file moved (renamed, or its folder): on the
/// same origin, with the same size, mtime and extension, and no other file gone or new with
/// them. By new location, the gone one. The catalog keeps the track (its id and cached chunks)
/// if the tag blocks the scan reads of the new one are those it kept of the old one (see
/// [`Batch::moves`]), so a reorganised NAS is not fetched again.
fn moves(
    gone: &[(Location, (u64, i128))],
    work: &[(usize, Found)],
    names: &[&str],
) -> HashMap<Location, Location> {
    type Key<'a> = (&'a str, u64, i128, Option<String>);
    let mut gone_by: HashMap<Key<'_>, Vec<&Location>> = HashMap::new();
    for (location, (size, mtime_ns)) in gone {
        let key = (
            location.origin.as_str(),
            *size,
            *mtime_ns,
            extension(&location.path),
        );
        gone_by.entry(key).or_default().push(location);
    }
    let mut new_by: HashMap<Key<'_>, Vec<&Found>> = HashMap::new();
    for (index, file) in work {
        let key = (
            names[*index],
            file.size,
            file.mtime_ns,
            extension(&file.path),
        );
        if gone_by.contains_key(&key) {
            new_by.entry(key).or_default().push(file);
        }
    }
    new_by
        .into_iter()
        .filter_map(
            |(key, new)| match (gone_by[&key].as_slice(), new.as_slice()) {
                ([from], [to]) => {
                    let origin = key.0.to_owned();
                    let to = Location {
                        origin,
                        path: to.path.clone(),
                    };
                    Some((to, (*from).clone()))
                }
                _ => None,
            },
        )
        .collect()
}

/// Stores the blocks the tag reader fetched, so a later read of them needs no origin.
fn keep_head(store: &ChunkStore, file: &Found, blocks: Vec<(u64, Vec<u8>)>) -> Head {
    let mut kept = Vec::new();
    for (offset, bytes) in blocks {
        let hash = chunk_hash(&bytes);
        match store.put(hash, &bytes) {
            Ok(()) => kept.push((offset, bytes.len() as u32, hash)),
            Err(e) => tracing::debug!(path = file.path, "tag block not kept: {e}"),
        }
    }
    Head {
        size: file.size,
        mtime_ns: file.mtime_ns,
        blocks: kept,
    }
}

fn extension(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let (_, ext) = name.rsplit_once('.')?;
    Some(ext.to_ascii_lowercase())
}

fn unreadable(size: u64, mtime_ns: i128, reason: String, shown: bool) -> Problem {
    Problem {
        size,
        mtime_ns,
        reason,
        shown,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, ErrorKind};
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::origin::{Listing, RangeRead};

    /// An origin whose file fails to open with `open`, or opens and fails every read with
    /// `read`; its probe succeeds when `answers`.
    #[derive(Debug)]
    struct Failing {
        open: Option<ErrorKind>,
        read: ErrorKind,
        answers: bool,
    }

    struct FailingFile(ErrorKind);

    impl RangeRead for FailingFile {
        fn len(&self) -> u64 {
            1 << 20
        }
        fn read_at(&self, _: u64, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(self.0, "the read failed"))
        }
    }

    impl Origin for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn walk(&self) -> io::Result<Listing> {
            Ok((Vec::new(), Vec::new()))
        }
        fn stat(&self, _: &str) -> io::Result<(u64, i128)> {
            Ok((1 << 20, 0))
        }
        fn open(&self, _: &str) -> io::Result<Box<dyn RangeRead>> {
            match self.open {
                Some(kind) => Err(io::Error::new(kind, "the open failed")),
                None => Ok(Box::new(FailingFile(self.read))),
            }
        }
        fn probe(&self) -> io::Result<()> {
            match self.answers {
                true => Ok(()),
                false => Err(io::Error::new(ErrorKind::ConnectionRefused, "down")),
            }
        }
        fn local_root(&self) -> Option<&Path> {
            None
        }
    }

    /// `Err` when the file was left unread, else whether it was filed as unusable.
    fn read(origin: Failing) -> Result<bool, ErrorKind> {
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(dir.path()).unwrap();
        let file = Found {
            path: "a.flac".into(),
            size: 1 << 20,
            mtime_ns: 0,
        };
        let opened = OriginFile::open(&origin, &file.path, &Arc::default());
        match read_tags(opened, &origin, &store, &file) {
            Ok((parsed, _)) => Ok(matches!(parsed, Parsed::Unusable(_))),
            Err(e) => Err(e.kind()),
        }
    }

    #[test]
    fn heads_differ_only_in_blocks_both_kept() {
        let head = |blocks: &[(u64, u32, u128)]| Head {
            size: 1 << 20,
            mtime_ns: 0,
            blocks: blocks.to_vec(),
        };
        let kept = head(&[(0, 16384, 1), (16384, 16384, 2), (1032192, 16384, 3)]);
        assert!(same_blocks(&kept, &kept));
        // A block the store could not take the second time: the rest decides.
        assert!(same_blocks(
            &kept,
            &head(&[(0, 16384, 1), (1032192, 16384, 3)])
        ));
        assert!(same_blocks(&kept, &head(&[])));
        assert!(!same_blocks(
            &kept,
            &head(&[(0, 16384, 1), (16384, 16384, 9)])
        ));
    }

    #[test]
    fn a_file_is_left_unread_only_when_its_origin_stopped_answering() {
        use ErrorKind::*;
        let failing = |open, read, answers| Failing {
            open,
            read,
            answers,
        };
        // Errors that can only mean the origin stopped answering, whatever its probe says.
        assert_eq!(
            read(failing(Some(ConnectionReset), Other, true)),
            Err(ConnectionReset)
        );
        assert_eq!(read(failing(None, TimedOut, true)), Err(TimedOut));
        // A server's failure (an SFTP failure, a 5xx, EIO): the origin's probe decides.
        assert_eq!(read(failing(None, Other, false)), Err(Other));
        assert_eq!(read(failing(Some(Other), Other, false)), Err(Other));
        assert_eq!(read(failing(None, Other, true)), Ok(true));
        assert_eq!(read(failing(Some(Other), Other, true)), Ok(true));
        // The file refused or gone is the file's problem, even from an origin going down.
        assert_eq!(
            read(failing(Some(PermissionDenied), Other, false)),
            Ok(true)
        );
        assert_eq!(read(failing(None, NotFound, false)), Ok(true));
    }
}
