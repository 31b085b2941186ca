//! Files a scan may have read between two writes in the same tick of their mtime.
//!
//! Scans skip files whose size and mtime are as the catalog has them. SFTP, S3 and web servers
//! give mtimes in whole seconds (FAT disks in two), and a tag editor writing a file twice
//! within one tick, each time into the tag block's padding, leaves size and mtime as they
//! were after the first write: a scan that read the file in between would take it as
//! unchanged from then on. Such a read is "racy" (git's name for the same problem with its
//! index): a file whose mtime is whole seconds and recent when its tags are read is read once
//! more by a scan at least [`SETTLE`] later, when any write of that tick is over. The second
//! read changes the catalog only if the tags, or the head bytes the scan keeps, differ.
//!
//! Times are this machine's monotonic clock only, never compared with the origin's: "recent"
//! allows for [`RECENT`] of clock skew between the two.
//!
//! Also kept here: the origins with a scan scheduled for their files to settle (`watch.rs`),
//! while which fetchd reports its scanner as settling rather than idle.

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
pub struct Racy(Mutex<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Racy reads not yet followed by a second read: the location and when the read began.
    reads: HashMap<Location, Instant>,
    /// Origins (by name) with a scan scheduled for their racy reads.
    scheduled: HashSet<String>,
}

impl Inner {
    fn next_due(&self, origin: &str) -> Option<Duration> {
        self.reads
            .iter()
            .filter(|(location, _)| location.origin == origin)
            .filter_map(|(_, began)| SETTLE.checked_sub(began.elapsed()))
            .min()
    }
}

impl Racy {
    /// Notes a read of the file at `location`, begun at `began`, of the version with
    /// `mtime_ns`; it is racy if that mtime is whole seconds and within [`RECENT`] of now.
    pub fn note(&self, location: &Location, mtime_ns: i128, began: Instant) {
        if is_racy(mtime_ns, SystemTime::now()) {
            self.lock().reads.insert(location.clone(), began);
        }
    }

    /// Whether the file at `location` is due its second read.
    pub fn due(&self, location: &Location) -> bool {
        self.lock()
            .reads
            .get(location)
            .is_some_and(|began| began.elapsed() >= SETTLE)
    }

    /// The second read of the file at `location` is done, or the file is gone.
    pub fn settled(&self, location: &Location) {
        self.lock().reads.remove(location);
    }

    /// How long until the next file of origin `origin` comes due its second read, if one is
    /// still settling. Files already due are read at the origin's next scan, whenever that is
    /// (one whose origin did not answer is not a reason to list it again and again).
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
    fn a_racy_read_is_due_again_after_settling() {
        let racy = Racy::default();
        let at = |origin: &str| Location {
            origin: origin.into(),
            path: "a.flac".into(),
        };
        let now_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i128
            * 1_000_000_000;
        racy.note(&at("nas"), now_ns, Instant::now());
        racy.note(&at("old"), now_ns - 3600 * 1_000_000_000, Instant::now());
        assert!(!racy.due(&at("nas")));
        assert!(racy.next_due("nas").is_some_and(|d| d > SETTLE / 2));
        assert_eq!(racy.next_due("old"), None);
        racy.note(&at("nas"), now_ns, Instant::now() - SETTLE);
        assert!(racy.due(&at("nas")));
        assert_eq!(racy.next_due("nas"), None);
        racy.settled(&at("nas"));
        assert!(!racy.due(&at("nas")));
        assert_eq!(racy.next_due("nas"), None);
    }

    #[test]
    fn an_origin_stays_scheduled_while_a_file_of_it_settles() {
        let racy = Racy::default();
        let location = Location {
            origin: "nas".into(),
            path: "a.flac".into(),
        };
        let now_ns = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i128
            * 1_000_000_000;
        assert!(!racy.schedule("nas"), "nothing settling");
        racy.note(&location, now_ns, Instant::now());
        assert!(racy.schedule("nas"));
        assert!(!racy.schedule("nas"), "scheduled twice");
        assert!(racy.waiting());
        assert!(racy.still_settling("nas"));
        assert!(racy.waiting());
        racy.settled(&location);
        assert!(!racy.still_settling("nas"));
        assert!(!racy.waiting());
        racy.note(&location, now_ns, Instant::now());
        assert!(racy.schedule("nas"));
        racy.unschedule("nas");
        assert!(!racy.waiting());
    }
}
