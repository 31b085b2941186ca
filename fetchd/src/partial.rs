//! A track version that is not yet in the chunk store: a sparse staging file the size of the
//! track, filled page by page with exactly the ranges readers ask for (plus read-ahead), so a
//! random read of an uncached remote file moves little more than the bytes asked. Pages being
//! fetched are claimed, so a read waits for read-ahead already on the wire instead of fetching
//! the same bytes twice. Once every page is present the file is cut into chunks (see
//! [`crate::reader`]) and the staging file goes. Staging files are kept beside the chunk
//! store's budget (at most [`crate::reader`]'s `MAX_PARTIALS` of them).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::track::TrackRecord;

/// Granularity of what is fetched and remembered: one kernel page.
pub const PAGE: u64 = 4096;
/// Longest single request to an origin (remote origins pipeline inside it); several go out at
/// once, and a reader waiting on a page waits for its run only.
pub const MAX_RUN: u64 = 1 << 20;
/// Read-ahead: the window after the first sequential read, and its cap (it doubles between).
pub const FIRST_WINDOW: u64 = 256 << 10;
pub const MAX_WINDOW: u64 = 16 << 20;
/// How far behind the expected position a read may end and still be taken for another of the
/// sequential reader's requests in flight.
pub const SIBLING_SPAN: u64 = 8 << 20;
/// How long a read waits for pages another fetch is bringing before it asks itself.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Missing,
    Fetching,
    Present,
}

#[derive(Debug)]
struct Pages {
    pages: Vec<Page>,
    present: usize,
    /// Where the next read would start if the reader is sequential.
    expect: Option<u64>,
    window: u64,
    /// End of what read-ahead has asked for so far.
    frontier: u64,
    /// When a reader last asked for bytes.
    last_read: Instant,
}

#[derive(Debug)]
pub struct Partial {
    pub record: TrackRecord,
    file: File,
    path: PathBuf,
    state: Mutex<Pages>,
    arrived: Condvar,
    /// Set once the delta seeding (or the decision not to seed) is done.
    pub seeded: std::sync::Once,
    /// The last time its bytes could not be kept (a write into it failed, or found no room)
    /// and why; `None` while that never happened.
    failed: Mutex<Option<(Instant, String)>>,
}

/// A contiguous page range a fetcher has claimed: `[start, end)` in bytes, clamped to the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: u64,
    pub end: u64,
}

impl Partial {
    /// Creates the staging file for `record` at `path` (any old one there is replaced).
    pub fn create(path: &Path, record: TrackRecord) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(record.size)?;
        let pages = record.size.div_ceil(PAGE) as usize;
        Ok(Self {
            record,
            file,
            path: path.to_owned(),
            state: Mutex::new(Pages {
                pages: vec![Page::Missing; pages],
                present: 0,
                expect: None,
                window: 0,
                frontier: 0,
                last_read: Instant::now(),
            }),
            arrived: Condvar::new(),
            seeded: std::sync::Once::new(),
            failed: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Pages> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn complete(&self) -> bool {
        let s = self.lock();
        s.present == s.pages.len()
    }

    /// Pages of `[offset, end)`: first and one past the last.
    fn page_span(&self, offset: u64, end: u64) -> (usize, usize) {
        let end = end.min(self.record.size);
        ((offset / PAGE) as usize, end.div_ceil(PAGE) as usize)
    }

    /// Claims the missing pages of `[offset, end)` as runs for the caller to fetch; returns
    /// them and whether pages fetched by others are pending in the range.
    pub fn claim(&self, offset: u64, end: u64) -> (Vec<Run>, bool) {
        let (first, last) = self.page_span(offset, end);
        let mut s = self.lock();
        let mut runs: Vec<Run> = Vec::new();
        let mut pending = false;
        for page in first..last.min(s.pages.len()) {
            match s.pages[page] {
                Page::Present => {}
                Page::Fetching => pending = true,
                Page::Missing => {
                    s.pages[page] = Page::Fetching;
                    let start = page as u64 * PAGE;
                    let stop = (start + PAGE).min(self.record.size);
                    match runs.last_mut() {
                        Some(run) if run.end == start && run.end - run.start < MAX_RUN => {
                            run.end = stop
                        }
                        _ => runs.push(Run { start, end: stop }),
                    }
                }
            }
        }
        (runs, pending)
    }

    /// Claims the pages of `[offset, end)` as one run if none is present or being fetched
    /// and they fit in one run; else claims nothing.
    pub fn claim_all(&self, offset: u64, end: u64) -> Option<Run> {
        let (first, last) = self.page_span(offset, end);
        let mut s = self.lock();
        let last = last.min(s.pages.len());
        let pages = s.pages.get_mut(first..last)?;
        if pages.is_empty()
            || pages.len() as u64 * PAGE > MAX_RUN
            || pages.iter().any(|p| *p != Page::Missing)
        {
            return None;
        }
        pages.fill(Page::Fetching);
        Some(Run {
            start: first as u64 * PAGE,
            end: (last as u64 * PAGE).min(self.record.size),
        })
    }

    /// Stores the bytes of a claimed run (`bytes` may be short only at the end of the file).
    pub fn fill(&self, run: Run, bytes: &[u8]) -> io::Result<()> {
        let written = self.file.write_all_at(bytes, run.start);
        let mut s = self.lock();
        let (first, last) = self.page_span(run.start, run.end);
        let complete_to = run.start + bytes.len() as u64;
        for page in first..last {
            let page_end = ((page as u64 + 1) * PAGE).min(self.record.size);
            if written.is_ok() && page_end <= complete_to {
                if s.pages[page] != Page::Present {
                    s.present += 1;
                }
                s.pages[page] = Page::Present;
            } else if s.pages[page] == Page::Fetching {
                s.pages[page] = Page::Missing;
            }
        }
        drop(s);
        self.arrived.notify_all();
        written?;
        if complete_to < run.end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the origin file is shorter than catalogued",
            ));
        }
        Ok(())
    }

    /// Notes that bytes read for it could not be kept, and why; true the first time (with the
    /// disk full every read fails to keep its bytes, and one warning is enough).
    pub fn note_failure(&self, why: String) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.replace((Instant::now(), why)).is_none()
    }

    /// Why bytes read for it could not be kept, if that happened at `since` or later.
    pub fn failed_since(&self, since: Instant) -> Option<String> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, why)| why.clone())
    }

    /// Gives back a claim whose fetch failed.
    pub fn release(&self, run: Run) {
        let (first, last) = self.page_span(run.start, run.end);
        let mut s = self.lock();
        for page in first..last {
            if s.pages[page] == Page::Fetching {
                s.pages[page] = Page::Missing;
            }
        }
        drop(s);
        self.arrived.notify_all();
    }

    /// Marks pages entirely inside `[offset, offset + bytes.len())` present after writing
    /// `bytes` there (delta seeding from the previous version's chunks).
    pub fn seed(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)?;
        let end = offset + bytes.len() as u64;
        let first = offset.div_ceil(PAGE) as usize;
        let mut s = self.lock();
        let mut page = first;
        while page < s.pages.len() {
            let page_end = ((page as u64 + 1) * PAGE).min(self.record.size);
            if page_end > end {
                break;
            }
            if s.pages[page] == Page::Missing {
                s.pages[page] = Page::Present;
                s.present += 1;
            }
            page += 1;
        }
        Ok(())
    }

    /// Waits until every page of `[offset, end)` is present or nobody is fetching the missing
    /// ones any more; returns whether all are present.
    pub fn wait(&self, offset: u64, end: u64) -> bool {
        let (first, last) = self.page_span(offset, end);
        let mut s = self.lock();
        loop {
            let range = &s.pages[first..last.min(s.pages.len())];
            if range.iter().all(|p| *p == Page::Present) {
                return true;
            }
            if !range.contains(&Page::Fetching) {
                return false;
            }
            let (next, timeout) = self
                .arrived
                .wait_timeout(s, WAIT_FOR_OTHERS)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if timeout.timed_out() {
                return false;
            }
            s = next;
        }
    }

    /// Bytes `[offset, end)` from the staging file (all pages must be present).
    pub fn read(&self, offset: u64, end: u64) -> io::Result<Vec<u8>> {
        let end = end.min(self.record.size);
        let mut buf = vec![0; end.saturating_sub(offset) as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Notes a read of `[offset, end)` and returns the range to read ahead, if the reader is
    /// sequential (this read continues the last one: one read alone may be a tag reader
    /// looking at the head, which must cost no more than it asks). The window starts at
    /// [`FIRST_WINDOW`] and doubles up to [`MAX_WINDOW`] while the reader stays sequential;
    /// once the reader is within half a window of what has been asked for, the next stretch
    /// is asked for, so bytes are always on their way before the reader needs them.
    ///
    /// The kernel keeps several requests of one sequential reader in flight, and they may be
    /// noted out of order. A read that ends at or shortly before where the reader is expected
    /// (within [`SIBLING_SPAN`]) is one of those, and changes nothing; once the reader is
    /// sequential, a read starting shortly after where it is expected continues it.
    pub fn read_ahead(&self, offset: u64, end: u64) -> Option<(u64, u64)> {
        let mut s = self.lock();
        s.last_read = Instant::now();
        let sibling = s
            .expect
            .is_some_and(|at| end <= at && at - offset <= SIBLING_SPAN);
        if sibling {
            return None;
        }
        let sequential = s.expect.is_some_and(|at| {
            offset == at || (s.window > 0 && offset > at && offset - at <= SIBLING_SPAN)
        });
        s.expect = Some(end);
        if !sequential {
            s.window = 0;
            s.frontier = 0;
            return None;
        }
        s.window = if s.window == 0 {
            FIRST_WINDOW
        } else {
            (s.window * 2).min(MAX_WINDOW)
        };
        let from = s.frontier.max(end);
        let to = (end + s.window).min(self.record.size);
        if from >= self.record.size || from - end > s.window / 2 || to <= from {
            return None;
        }
        s.frontier = to;
        Some((from, to))
    }

    /// How long since a reader last asked for bytes.
    pub fn idle_for(&self) -> Duration {
        self.lock().last_read.elapsed()
    }

    /// The whole staging file, for cutting into chunks.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::{Location, TrackInfo};

    fn partial(size: u64) -> (tempfile::TempDir, Partial) {
        let dir = tempfile::tempdir().unwrap();
        let record = TrackRecord {
            location: Location {
                origin: "o".into(),
                path: "p".into(),
            },
            size,
            mtime_ns: 0,
            version: 1,
            info: TrackInfo::default(),
            added_secs: 0,
        };
        let p = Partial::create(&dir.path().join("s"), record).unwrap();
        (dir, p)
    }

    #[test]
    fn claims_cover_only_missing_pages_and_nobody_fetches_a_page_twice() {
        let (_d, p) = partial(10 * PAGE + 100);
        let (runs, pending) = p.claim(100, 3 * PAGE);
        assert_eq!(
            runs,
            [Run {
                start: 0,
                end: 3 * PAGE
            }]
        );
        assert!(!pending);
        // Overlapping claim: the first three pages are someone else's.
        let (runs, pending) = p.claim(2 * PAGE, 5 * PAGE);
        assert_eq!(
            runs,
            [Run {
                start: 3 * PAGE,
                end: 5 * PAGE
            }]
        );
        assert!(pending);
        p.fill(
            Run {
                start: 0,
                end: 3 * PAGE,
            },
            &vec![7; 3 * PAGE as usize],
        )
        .unwrap();
        p.release(Run {
            start: 3 * PAGE,
            end: 5 * PAGE,
        });
        assert!(p.wait(0, 3 * PAGE));
        assert!(!p.wait(0, 4 * PAGE));
        // The tail page is short.
        let (runs, _) = p.claim(10 * PAGE, 11 * PAGE);
        assert_eq!(
            runs,
            [Run {
                start: 10 * PAGE,
                end: 10 * PAGE + 100
            }]
        );
        p.fill(runs[0], &[9; 100]).unwrap();
        assert_eq!(p.read(10 * PAGE + 90, 20 * PAGE).unwrap(), [9; 10]);
        assert!(!p.complete());
    }

    #[test]
    fn a_whole_claim_takes_only_ranges_nobody_has_and_fits_one_run() {
        let (_d, p) = partial(2 * MAX_RUN + 100);
        let run = p.claim_all(PAGE + 10, 3 * PAGE).unwrap();
        assert_eq!(
            run,
            Run {
                start: PAGE,
                end: 3 * PAGE
            }
        );
        // Its pages are being fetched: no second claim on any of them, whole or in part.
        assert_eq!(p.claim_all(2 * PAGE, 4 * PAGE), None);
        assert_eq!(p.claim(2 * PAGE, 4 * PAGE).0.len(), 1);
        p.fill(run, &vec![5; 2 * PAGE as usize]).unwrap();
        assert_eq!(
            p.claim_all(0, 2 * PAGE),
            None,
            "a present page is not claimed again"
        );
        assert_eq!(
            p.claim_all(8 * PAGE, 8 * PAGE + MAX_RUN + 1),
            None,
            "longer than a run"
        );
        // The short last page.
        let tail = p.claim_all(2 * MAX_RUN, 2 * MAX_RUN + 100).unwrap();
        assert_eq!(tail.end, 2 * MAX_RUN + 100);
        assert_eq!(
            p.claim_all(3 * MAX_RUN, 3 * MAX_RUN + 10),
            None,
            "past the end"
        );
    }

    #[test]
    fn read_ahead_starts_small_doubles_and_stays_ahead_of_a_sequential_reader() {
        let size = 100 << 20;
        let (_d, p) = partial(size);
        // A first read alone (a tag reader) reads nothing ahead.
        assert_eq!(p.read_ahead(0, 128 << 10), None);
        assert_eq!(
            p.read_ahead(128 << 10, 256 << 10),
            Some((256 << 10, 512 << 10))
        );
        // 1 MiB reads to the end: each asked stretch starts where the last one (or the read
        // itself) ended, never exceeds the window, and keeps ahead of the reader.
        let mut frontier = 512 << 10;
        let mut end = 256 << 10;
        while end < size {
            let next = (end + (1 << 20)).min(size);
            if let Some((from, to)) = p.read_ahead(end, next) {
                assert_eq!(from, frontier.max(next), "a gap or an overlap at {end}");
                assert!(to - from <= MAX_WINDOW);
                frontier = to;
            }
            end = next;
            assert!(frontier >= end.min(size), "the reader caught up at {end}");
            if end > 32 << 20 && end < size - MAX_WINDOW {
                assert!(
                    frontier - end >= MAX_WINDOW / 2,
                    "only {} ahead",
                    frontier - end
                );
            }
        }
        assert_eq!(frontier, size);
        // Requests of the reader noted out of order change nothing.
        assert_eq!(p.read_ahead(size - (2 << 20), size - (1 << 20)), None);
        assert_eq!(p.read_ahead(size - (1 << 20), size), None);
        assert_eq!(frontier, size);
        // A seek starts over from the first window.
        assert_eq!(p.read_ahead(50 << 20, (50 << 20) + 4096), None);
        assert_eq!(
            p.read_ahead((50 << 20) + 4096, (50 << 20) + 8192),
            Some(((50 << 20) + 8192, (50 << 20) + 4096 + 4096 + FIRST_WINDOW))
        );
    }

    #[test]
    fn requests_in_flight_noted_out_of_order_keep_a_reader_sequential() {
        let (_d, p) = partial(100 << 20);
        let mib = 1 << 20;
        // The kernel's second request is noted before its first.
        assert_eq!(p.read_ahead(mib, 2 * mib), None);
        assert_eq!(p.read_ahead(0, mib), None);
        let (_, mut frontier) = p.read_ahead(2 * mib, 3 * mib).expect("sequential");
        // From then on, pairs noted later-first keep it going and the window growing.
        for pair in 0..6u64 {
            let first = 3 * mib + pair * 2 * mib;
            if let Some((from, to)) = p.read_ahead(first + mib, first + 2 * mib) {
                assert_eq!(from, frontier.max(first + 2 * mib));
                frontier = to;
            }
            assert_eq!(p.read_ahead(first, first + mib), None);
        }
        assert!(frontier >= 15 * mib + MAX_WINDOW / 4, "only to {frontier}");
        // A reader jumping about is not sequential.
        assert_eq!(p.read_ahead(60 * mib, 61 * mib), None);
        assert_eq!(p.read_ahead(40 * mib, 41 * mib), None);
    }

    #[test]
    fn every_read_restarts_the_idle_clock() {
        let (_d, p) = partial(4 << 20);
        std::thread::sleep(Duration::from_millis(200));
        assert!(p.idle_for() >= Duration::from_millis(200));
        p.read_ahead(0, 4096);
        assert!(p.idle_for() < Duration::from_millis(200));
    }

    #[test]
    fn seeding_marks_only_whole_pages() {
        let (_d, p) = partial(4 * PAGE);
        p.seed(100, &vec![1; (2 * PAGE) as usize]).unwrap();
        // [100, 8292): only page 1 ([4096, 8192)) is whole.
        let (runs, _) = p.claim(0, 4 * PAGE);
        assert_eq!(
            runs,
            [
                Run {
                    start: 0,
                    end: PAGE
                },
                Run {
                    start: 2 * PAGE,
                    end: 4 * PAGE
                }
            ]
        );
    }
}
