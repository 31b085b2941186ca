//! Keeping the catalog in step with the origins while mounted: local folders are watched with
//! inotify (a change is picked up after a short quiet spell), remote origins are listed again
//! every `scan_interval_seconds`, and any origin at once when a read finds one of its files not
//! as the last scan saw it (a remote file rewritten in place, a folder inotify cannot watch,
//! such as an NFS mount). Each rescan covers one origin, is cheap for unchanged files
//! (same size and mtime: not opened), and swaps in a new tree only when something changed;
//! mountd sees the new generation and drops the kernel's cached entries. A scan that read
//! files racily ([`crate::reread`]) is followed by another of their origin once they settle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use inotify::{Inotify, WatchDescriptor, WatchMask};

use crate::catalog::CatalogError;
use crate::namespace::Namespace;
use crate::origin::is_audio;
use crate::scan::{self, ScanSummary};
use crate::service::State;
use crate::template::Templates;
use crate::track::Location;

/// How long a watched folder must be quiet before it is rescanned (a copy of an album is many
/// events), and the longest a busy folder waits.
const QUIET: Duration = Duration::from_millis(300);
const BUSY_MAX: Duration = Duration::from_secs(3);
/// How long after a failed rescan of a watched folder it is tried again, doubling up to the
/// longest: the change that caused it must not wait for another change (a full disk, say).
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The least time between two rescans of an origin a read found changed: a file that stays
/// unreadable (its permissions, say) is not a reason to list a large origin over and over.
const SUSPECT_GAP: Duration = Duration::from_secs(30);

/// Runs scans one at a time and rebuilds the tree after them.
pub struct Rescanner {
    state: Arc<State>,
    templates: Templates,
    running: Mutex<()>,
}

impl Rescanner {
    pub fn new(state: Arc<State>, templates: Templates) -> Arc<Self> {
        Arc::new(Self {
            state,
            templates,
            running: Mutex::new(()),
        })
    }

    /// Scans `which` origins (all: `None`) and, when anything changed or `rebuild` is set,
    /// renders the tree again and swaps it in. A failure is logged too. Origins left with
    /// racy reads are scanned again once those settle.
    pub fn rescan(
        self: &Arc<Self>,
        which: Option<&[usize]>,
        rebuild: bool,
    ) -> Result<ScanSummary, CatalogError> {
        let result = self.scan_once(which, rebuild);
        let all: Vec<usize> = (0..self.state.origins.len()).collect();
        for &index in which.unwrap_or(&all) {
            self.rescan_once_settled(index);
        }
        result
    }

    /// Rescans origin `index` when its racy reads have settled (and again while a rescan
    /// leaves some settling), unless such a rescan is scheduled already.
    fn rescan_once_settled(self: &Arc<Self>, index: usize) {
        let rereads = &self.state.rereads;
        let name = self.state.origins.origin(index).name().to_owned();
        if !rereads.schedule(&name) {
            return;
        }
        let this = self.clone();
        let origin = name.clone();
        let spawned = spawn("settle", move || loop {
            let rereads = &this.state.rereads;
            let wait = rereads.next_due(&origin).unwrap_or_default();
            std::thread::sleep(wait + Duration::from_millis(100));
            let _ = this.scan_once(Some(&[index]), false);
            if !rereads.still_settling(&origin) {
                break;
            }
        });
        if !spawned {
            rereads.unschedule(&name);
        }
    }

    fn scan_once(
        &self,
        which: Option<&[usize]>,
        rebuild: bool,
    ) -> Result<ScanSummary, CatalogError> {
        let _one_at_a_time = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = &self.state;
        let started = Instant::now();
        let result = scan::scan(
            &state.origins,
            which,
            &state.catalog,
            &state.store,
            &state.progress,
            &state.rereads,
        )
        .and_then(|summary: ScanSummary| {
            if rebuild || summary.changed() {
                let tracks = state.catalog.tracks()?;
                let mut inodes = state.catalog.inode_allocator()?;
                let origins = &state.origins;
                let (ns, nodes) = Namespace::build(
                    &tracks,
                    &self.templates,
                    &|name| origins.priority(name),
                    &|name| origins.is_remote(name),
                    &mut inodes,
                )?;
                inodes.commit(&nodes)?;
                state.set_namespace(ns);
            }
            Ok(summary)
        });
        state.progress.finish();
        match &result {
            Ok(s) => tracing::info!(
                seen = s.seen,
                read = s.parsed,
                removed = s.removed,
                problems = s.problems,
                unreachable = s.unreachable,
                kept_while_empty = s.kept_while_empty,
                unread = s.unread,
                ms = started.elapsed().as_millis() as u64,
                "scan finished"
            ),
            Err(e) => tracing::error!("scan failed: {e}"),
        }
        result
    }

    /// Rescans origin `index` until a scan succeeds and reads every change, waiting longer
    /// after each failure (each is logged by [`rescan`](Self::rescan)).
    fn rescan_until_done(self: &Arc<Self>, index: usize) {
        let mut wait = RETRY_FIRST;
        while !matches!(self.rescan(Some(&[index]), false), Ok(s) if s.unread == 0) {
            tracing::info!("scanning again in {} s", wait.as_secs());
            std::thread::sleep(wait);
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Starts the watchers: a poller per origin with an interval, an inotify watcher per local
    /// origin. Threads live as long as the process.
    pub fn start_watching(self: &Arc<Self>) {
        let origins = &self.state.origins;
        for index in 0..origins.len() {
            // Every `scan_interval_seconds` if set, and when a read finds a file changed.
            let every = origins.config(index).poll_interval();
            let this = self.clone();
            spawn("poll", move || loop {
                let origins = &this.state.origins;
                let suspected = origins.wait_suspected(index, every);
                if suspected {
                    tracing::info!(
                        origin = origins.origin(index).name(),
                        "a file read from this origin is not as last listed; listing it again"
                    );
                }
                let _ = this.rescan(Some(&[index]), false);
                if suspected {
                    std::thread::sleep(SUSPECT_GAP);
                }
            });
            if let Some(root) = origins.origin(index).local_root() {
                let (this, root) = (self.clone(), root.to_owned());
                spawn("inotify", move || {
                    let name = this.state.origins.origin(index).name().to_owned();
                    let changed = |written: Vec<PathBuf>| {
                        for file in written {
                            let rel = file.strip_prefix(&root).ok().and_then(Path::to_str);
                            if let Some(rel) = rel.filter(|rel| is_audio(Path::new(rel))) {
                                this.state.rereads.written(Location {
                                    origin: name.clone(),
                                    path: rel.to_owned(),
                                });
                            }
                        }
                        this.rescan_until_done(index)
                    };
                    if let Err(e) = watch_folder(&root, changed) {
                        tracing::warn!(
                            origin = %root.display(),
                            "cannot watch for changes ({e}); changes show after a restart or at the scan interval"
                        );
                    }
                });
            }
        }
    }
}

/// Starts a thread; false (and logged) if it could not be.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> bool {
    let spawned = std::thread::Builder::new().name(name.into()).spawn(f);
    if let Err(e) = &spawned {
        tracing::warn!("cannot start the {name} thread: {e}");
    }
    spawned.is_ok()
}

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF);

/// Watches every directory below `root` and calls `changed` once per burst of events, with
/// the files written or moved in during the burst.
fn watch_folder(root: &Path, changed: impl Fn(Vec<PathBuf>)) -> std::io::Result<()> {
    let mut inotify = Inotify::init()?;
    let mut dirs: HashMap<WatchDescriptor, PathBuf> = HashMap::new();
    add_tree(&mut inotify, root, &mut dirs);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&inotify);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // Block until the first event of a burst.
        let (mut new_dirs, mut written) = (Vec::new(), Vec::new());
        for event in inotify.read_events_blocking(&mut buffer)? {
            note(&event, &dirs, &mut new_dirs, &mut written);
        }
        // Then take events until the folder has been quiet for a while.
        let burst = Instant::now();
        while burst.elapsed() < BUSY_MAX && readable(fd, QUIET)? {
            for event in inotify.read_events(&mut buffer)? {
                note(&event, &dirs, &mut new_dirs, &mut written);
            }
        }
        for dir in new_dirs {
            add_tree(&mut inotify, &dir, &mut dirs);
        }
        changed(written);
    }
}

/// Remembers directories created or moved in, to watch them too, and files written or moved
/// in (their size and mtime may be as before: a tag editor that keeps the mtime).
fn note(
    event: &inotify::Event<&std::ffi::OsStr>,
    dirs: &HashMap<WatchDescriptor, PathBuf>,
    new_dirs: &mut Vec<PathBuf>,
    written: &mut Vec<PathBuf>,
) {
    use inotify::EventMask;
    let (Some(parent), Some(name)) = (dirs.get(&event.wd), event.name) else {
        return;
    };
    let dir = event.mask.contains(EventMask::ISDIR);
    if dir
        && event
            .mask
            .intersects(EventMask::CREATE | EventMask::MOVED_TO)
    {
        new_dirs.push(parent.join(name));
    } else if !dir
        && event
            .mask
            .intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO)
    {
        written.push(parent.join(name));
    }
}

fn add_tree(inotify: &mut Inotify, root: &Path, dirs: &mut HashMap<WatchDescriptor, PathBuf>) {
    for entry in walkdir::WalkDir::new(root).follow_links(true) {
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_dir() {
            match inotify.watches().add(entry.path(), MASK) {
                Ok(wd) => {
                    dirs.insert(wd, entry.path().to_owned());
                }
                Err(e) => tracing::warn!(
                    dir = %entry.path().display(),
                    "cannot watch ({e}); raise fs.inotify.max_user_watches"
                ),
            }
        }
    }
}

/// Waits up to `timeout` for the inotify fd to have events.
fn readable(fd: std::os::fd::RawFd, timeout: Duration) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Ok(true)
        } else {
            Err(e)
        };
    }
    Ok(n > 0)
}
