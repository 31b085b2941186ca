//! Files to read again although their size and mtime are as the catalog has them.
//!
//! Scans skip files whose size and mtime are unchanged, which misses two kinds of rewrite:
//!
//! - **Racy reads.** SFTP, S3 and web servers give mtimes in whole seconds (FAT disks in two),
//!   and a tag editor writing a file twice within one tick, each time into the tag block's
//!   padding, leaves size and mtime as they were after the first write: a scan that read the
//!   file in between would take it as unchanged from then on. A read is racy (git's name for
//!   the same problem with its index) when the file's mtime is whole seconds and recent; the
//!   file is read again by a scan at least [`SETTLE`] later, when any write of that tick is
//!   over.
//! - **Written with the mtime kept.** Tag editors can keep a file's mtime ("preserve
//!   timestamps", `metaflac --preserve-modtime`). A local folder's watcher sees the write, and
//!   names the file to be read again at once.
//!
//! A second read changes the catalog only if the tags, or the head bytes the scan keeps,
//! differ (`scan::as_catalogued`). Times are this machine's monotonic clock only, never
//! compared with the origin's: "recent" allows for [`RECENT`] of clock skew between the two.
//!
//! Also kept here: the origins with a scan scheduled for their racy reads to settle
//! (`watch.rs`), while which fetchd reports its scanner as settling rather than idle.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::track::Location;

/// How long after a racy read the file is read again: longer than the coarsest mtime tick.
pub const SETTLE: Duration = Duration::from_secs(3);
/// How near the present (either way, for clock skew) an mtime must be for a read to be racy:
/// a server whose clock is further off has its racy reads missed; a nearer bound would read
/// more files twice (all those written within it before their first scan).
pub const RECENT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Rereads(Mutex<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Files to read again, and from when.
    due: HashMap<Location, Instant>,
    /// Origins (by name) with a scan scheduled for their racy reads.
    scheduled: HashSet<String>,
}

impl Inner {
    fn next_due(&self, origin: &str) -> Option<Duration> {
        self.due
            .iter()
            .filter(|(location, _)| location.origin == origin)
            .filter_map(|(_, at)| at.checked_duration_since(Instant::now()))
            .min()
    }
}

impl Rereads {
    /// Notes a read of the file at `location`, begun at `began`, of the version with
    /// `mtime_ns`: read again once settled if the read is racy (that mtime is whole seconds
    /// and within [`RECENT`] of now), else not again.
    pub fn read(&self, location: &Location, mtime_ns: i128, began: Instant) {
        let mut inner = self.lock();
        match is_racy(mtime_ns, SystemTime::now()) {
            true => inner.due.insert(location.clone(), began + SETTLE),
            false => inner.due.remove(location),
        };
    }

    /// The file at `location` was written (or moved in) with its mtime kept, maybe: read it
    /// again at the next scan.
    pub fn written(&self, location: Location) {
        self.lock().due.insert(location, Instant::now());
    }

    /// Whether the file at `location` is due to be read again.
    pub fn due(&self, location: &Location) -> bool {
        self.lock()
            .due
            .get(location)
            .is_some_and(|at| *at <= Instant::now())
    }

    /// The file at `location` is gone, or was read again: nothing (more) to read again.
    pub fn forget(&self, location: &Location) {
        self.lock().due.remove(location);
    }

    /// Forgets the files of `origin` it does not list (any longer, or ever: a file written
    /// that is not audio).
    pub fn keep_listed(&self, origin: &str, listed: &HashSet<Location>) {
        self.lock()
            .due
            .retain(|location, _| location.origin != origin || listed.contains(location));
    }

    /// How long until the next file of `origin` is due to be read again, if one is still
    /// settling. Files already due are read at the origin's next scan, whenever that is (one
    /// whose origin did not answer is not a reason to list it again and again).
    pub fn next_due(&self, origin: &str) -> Option<Duration> {
        self.lock().next_due(origin)
    }

    /// Marks a scan of `origin` scheduled, if one of its files is settling and none is yet.
    pub fn schedule(&self, origin: &str) -> bool {
        let mut inner = self.lock();
        inner.next_due(origin).is_some() && inner.scheduled.insert(origin.to_owned())
    }

    /// After a scheduled scan of `origin`: whether another is needed (a file still settling);
    /// if not, the origin is no longer scheduled.
    pub fn still_settling(&self, origin: &str) -> bool {
        let mut inner = self.lock();
        let settling = inner.next_due(origin).is_some();
        if !settling {
            inner.scheduled.remove(origin);
        }
        settling
    }

    /// The scheduled scan of `origin` will not happen (its thread could not start).
    pub fn unschedule(&self, origin: &str) {
        self.lock().scheduled.remove(origin);
    }

    /// Whether a scan is scheduled for some origin's racy reads.
    pub fn waiting(&self) -> bool {
        !self.lock().scheduled.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether a read at `now` of a file with `mtime_ns` may have come between two writes that
/// leave the same mtime.
fn is_racy(mtime_ns: i128, now: SystemTime) -> bool {
    let now_ns = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since.as_nanos() as i128,
        Err(_) => return false,
    };
    mtime_ns % 1_000_000_000 == 0 && (now_ns - mtime_ns).unsigned_abs() <= RECENT.as_nanos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(origin: &str) -> Location {
        Location {
            origin: origin.into(),
            path: "a.flac".into(),
        }
    }

    fn this_second_ns() -> i128 {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
        now.unwrap().as_secs() as i128 * 1_000_000_000
    }

    #[test]
    fn only_whole_second_mtimes_near_now_are_racy() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let second = 1_000_000_000i128;
        let now_s = 1_800_000_000i128 * second;
        assert!(is_racy(now_s, now));
        assert!(is_racy(now_s - 59 * second, now));
        // A server clock ahead of this one.
        assert!(is_racy(now_s + 30 * second, now));
        assert!(!is_racy(now_s - 61 * second, now));
        // Nanosecond mtimes (ext4, XFS, Btrfs) tell two writes apart.
        assert!(!is_racy(now_s + 123_456_789, now));
    }

    #[test]
    fn a_racy_read_is_due_again_after_settling_and_a_written_file_at_once() {
        let rereads = Rereads::default();
        rereads.read(&at("nas"), this_second_ns(), Instant::now());
        rereads.read(
            &at("old"),
            this_second_ns() - 3600 * 1_000_000_000,
            Instant::now(),
        );
        assert!(!rereads.due(&at("nas")));
        assert!(rereads.next_due("nas").is_some_and(|d| d > SETTLE / 2));
        assert_eq!(rereads.next_due("old"), None);
        assert!(!rereads.due(&at("old")));
        // Read again, not racily this time: done.
        rereads.read(
            &at("nas"),
            this_second_ns() - 3600 * 1_000_000_000,
            Instant::now(),
        );
        assert_eq!(rereads.next_due("nas"), None);
        assert!(!rereads.due(&at("nas")));

        rereads.written(at("nas"));
        assert!(rereads.due(&at("nas")));
        assert_eq!(rereads.next_due("nas"), None, "due already, not settling");
        rereads.forget(&at("nas"));
        assert!(!rereads.due(&at("nas")));
        rereads.written(at("nas"));
        rereads.written(at("old"));
        rereads.keep_listed("nas", &HashSet::new());
        assert!(!rereads.due(&at("nas")));
        assert!(rereads.due(&at("old")), "another origin's file forgotten");
    }

    #[test]
    fn an_origin_stays_scheduled_while_a_file_of_it_settles() {
        let rereads = Rereads::default();
        assert!(!rereads.schedule("nas"), "nothing settling");
        rereads.read(&at("nas"), this_second_ns(), Instant::now());
        assert!(rereads.schedule("nas"));
        assert!(!rereads.schedule("nas"), "scheduled twice");
        assert!(rereads.waiting());
        assert!(rereads.still_settling("nas"));
        assert!(rereads.waiting());
        rereads.forget(&at("nas"));
        assert!(!rereads.still_settling("nas"));
        assert!(!rereads.waiting());
        rereads.read(&at("nas"), this_second_ns(), Instant::now());
        assert!(rereads.schedule("nas"));
        rereads.unschedule("nas");
        assert!(!rereads.waiting());
    }
}
