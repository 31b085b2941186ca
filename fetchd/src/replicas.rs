//! Where a track's bytes can come from: the copy the tree shows and every other origin holding
//! the same file (same path, size and tags: [`TrackRecord::copy_key`]), healthy origins first,
//! by priority. Open origin files are kept per track and origin, so a remote file is opened
//! (and checked against the catalog) once, not per read, and closed once the track is cached
//! or after [`IDLE_CLOSE`] unused: a paused player does not keep a file open on a disk someone
//! wants to unmount ("target is busy"), nor a handle on a NAS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use musicfs_ipc::{FetchError, TrackId};

use crate::catalog::Catalog;
use crate::health::unreachable;
use crate::origin::OriginFile;
use crate::origins::Origins;
use crate::track::{Location, TrackRecord};

/// A copy of a track on one origin.
#[derive(Debug, Clone)]
pub struct Copy {
    pub origin: usize,
    pub location: Location,
    pub size: u64,
    pub mtime_ns: i128,
}

/// Open files kept for reuse, per (track, origin), with when each was last used.
type Handles = HashMap<(TrackId, usize), Vec<(OriginFile, Instant)>>;

/// An open origin file unused for this long is closed.
pub const IDLE_CLOSE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Replicas {
    catalog: Catalog,
    origins: Arc<Origins>,
    handles: Arc<Mutex<Handles>>,
}

impl Replicas {
    pub fn new(catalog: Catalog, origins: Arc<Origins>) -> Self {
        let handles: Arc<Mutex<Handles>> = Arc::default();
        let weak = Arc::downgrade(&handles);
        let spawned = std::thread::Builder::new()
            .name("close-idle".into())
            .spawn(move || close_idle_until_dropped(&weak));
        if let Err(e) = spawned {
            tracing::warn!("origin files will stay open until their tracks are cached: {e}");
        }
        Self {
            catalog,
            origins,
            handles,
        }
    }

    /// Every copy of `record` on an origin that is up, best first. An error says why none is.
    pub fn copies(&self, record: &TrackRecord) -> Result<Vec<Copy>, FetchError> {
        let mut copies = Vec::new();
        let mut down = Vec::new();
        for index in 0..self.origins.len() {
            let name = self.origins.origin(index).name();
            let copy = if name == record.location.origin {
                Some(Copy {
                    origin: index,
                    location: record.location.clone(),
                    size: record.size,
                    mtime_ns: record.mtime_ns,
                })
            } else {
                let location = Location {
                    origin: name.to_owned(),
                    path: record.location.path.clone(),
                };
                match self.catalog.track_at(&location) {
                    Ok(Some((_, other))) if other.copy_key() == record.copy_key() => Some(Copy {
                        origin: index,
                        location,
                        size: other.size,
                        mtime_ns: other.mtime_ns,
                    }),
                    _ => None,
                }
            };
            let Some(copy) = copy else { continue };
            if self.origins.health(index).is_up() {
                copies.push(copy);
            } else {
                down.push(name.to_owned());
            }
        }
        copies.sort_by_key(|c| {
            (
                self.origins.config(c.origin).priority,
                c.location != record.location,
            )
        });
        if copies.is_empty() {
            let why = if down.is_empty() {
                format!("origin {} is not configured", record.location.origin)
            } else {
                format!("{} down", down.join(", "))
            };
            return Err(FetchError::OriginUnavailable(format!(
                "{}: no origin holding it answers ({why})",
                record.location.path
            )));
        }
        Ok(copies)
    }

    /// Reads `[offset, offset + len)` of a track from the first copy that answers, marking
    /// origins down on the way. `check` may reject the bytes (a chunk that does not match its
    /// hash), which moves on to the next copy.
    pub fn read(
        &self,
        track: TrackId,
        record: &TrackRecord,
        offset: u64,
        len: usize,
        check: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<u8>, FetchError> {
        let mut last = None;
        // A copy that ends before the catalogued size has changed.
        let whole = record.size.saturating_sub(offset).min(len as u64);
        for copy in self.copies(record)? {
            match self.read_copy(track, &copy, offset, len) {
                Ok(bytes) if bytes.len() as u64 == whole && check(&bytes) => return Ok(bytes),
                Ok(_) => {
                    self.forget(track, copy.origin);
                    last = Some(self.changed(&copy));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| changed(&record.location)))
    }

    fn read_copy(
        &self,
        track: TrackId,
        copy: &Copy,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let name = &copy.location.origin;
        let file = match self.take(track, copy.origin) {
            Some(file) => file,
            None => self.open(copy)?,
        };
        let result = file.read_range(offset, len);
        self.origins.record(name, &result);
        match result {
            Ok(bytes) => {
                self.give_back(track, copy.origin, file);
                Ok(bytes)
            }
            Err(e) if unreachable(&e) => Err(FetchError::OriginUnavailable(format!(
                "{}: {e}",
                copy.location.path
            ))),
            Err(_) => Err(self.changed(copy)),
        }
    }

    /// Whether every copy of `record` whose origin answers still has the size and mtime the
    /// scan found: bytes read from a file rewritten in place meanwhile may be half old, half
    /// new, and must not be kept as this version. Copies that cannot be asked count as
    /// unchanged (offline, what was read is all there is).
    pub fn unchanged(&self, record: &TrackRecord) -> Result<(), FetchError> {
        let Ok(copies) = self.copies(record) else {
            return Ok(());
        };
        for copy in copies {
            let stat = self.origins.origin(copy.origin).stat(&copy.location.path);
            self.origins.record(&copy.location.origin, &stat);
            match stat {
                Ok(found) if found == (copy.size, copy.mtime_ns) => {}
                Err(e) if unreachable(&e) => {}
                _ => return Err(self.changed(&copy)),
            }
        }
        Ok(())
    }

    /// Opens a copy, checking it is still the file catalogued: size and mtime for a local
    /// file; the size the open file reports for a remote one (a separate stat would cost a
    /// round trip before the first byte; S3 reads are pinned to the object's ETag, and chunk
    /// hashes catch the rest).
    fn open(&self, copy: &Copy) -> Result<OriginFile, FetchError> {
        let origin = self.origins.origin(copy.origin);
        let name = &copy.location.origin;
        let unavailable = |e: &std::io::Error| {
            FetchError::OriginUnavailable(format!("{}: {e}", copy.location.path))
        };
        if origin.local_root().is_some() {
            let stat = origin.stat(&copy.location.path);
            self.origins.record(name, &stat);
            match stat {
                Ok(found) if found == (copy.size, copy.mtime_ns) => {}
                Ok(_) => return Err(self.changed(copy)),
                Err(e) if unreachable(&e) => return Err(unavailable(&e)),
                Err(_) => return Err(self.changed(copy)),
            }
        }
        let file = self.origins.file(origin.as_ref(), &copy.location.path);
        self.origins.record(name, &file);
        let file = match file {
            Ok(file) => file,
            Err(e) if unreachable(&e) => return Err(unavailable(&e)),
            Err(_) => return Err(self.changed(copy)),
        };
        if file.len() != copy.size {
            return Err(self.changed(copy));
        }
        Ok(file)
    }

    /// The error for a copy found changed since the scan; its origin is listed again soon.
    fn changed(&self, copy: &Copy) -> FetchError {
        self.origins.suspect_changed(copy.origin);
        changed(&copy.location)
    }

    fn take(&self, track: TrackId, origin: usize) -> Option<OriginFile> {
        let file = lock(&self.handles).get_mut(&(track, origin))?.pop();
        file.map(|(file, _)| file)
    }

    fn give_back(&self, track: TrackId, origin: usize, file: OriginFile) {
        let mut handles = lock(&self.handles);
        let kept = handles.entry((track, origin)).or_default();
        if kept.len() < 4 {
            kept.push((file, Instant::now()));
        }
    }

    fn forget(&self, track: TrackId, origin: usize) {
        lock(&self.handles).remove(&(track, origin));
    }

    /// Closes every file kept open for a track (it is cached now, or gone).
    pub fn close(&self, track: TrackId) {
        lock(&self.handles).retain(|(t, _), _| *t != track);
    }
}

/// Closes the kept files unused for [`IDLE_CLOSE`], every half of it, while `handles` lives.
fn close_idle_until_dropped(handles: &Weak<Mutex<Handles>>) {
    loop {
        std::thread::sleep(IDLE_CLOSE / 2);
        let Some(handles) = handles.upgrade() else {
            return;
        };
        let idle: Vec<(OriginFile, Instant)> = {
            let mut handles = lock(&handles);
            let mut idle = Vec::new();
            for kept in handles.values_mut() {
                let (old, fresh) = std::mem::take(kept)
                    .into_iter()
                    .partition(|(_, used)| used.elapsed() >= IDLE_CLOSE);
                *kept = fresh;
                idle.extend::<Vec<_>>(old);
            }
            handles.retain(|_, kept| !kept.is_empty());
            idle
        };
        // Closed outside the lock: closing a remote file may wait for its server.
        drop(idle);
    }
}

fn changed(location: &Location) -> FetchError {
    FetchError::OriginChanged(format!("{} changed since it was scanned", location.path))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
