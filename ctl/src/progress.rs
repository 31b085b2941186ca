//! Scan progress while `musicfsctl mount` runs: polls fetchd's status and shows "scanning N/M"
//! (a line redrawn in place on a terminal, an occasional plain line otherwise), then a summary
//! when the scan finishes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use musicfs_ipc::client::Reconnecting;
use musicfs_ipc::{FetchAdminClient, FetchStatus, ScanState};

const POLL_EVERY: Duration = Duration::from_millis(500);
const CALL_DEADLINE: Duration = Duration::from_secs(2);
/// Without a terminal, a progress line at most this often.
const PLAIN_LINE_EVERY: Duration = Duration::from_secs(5);

/// What changed since the last status worth telling the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEvent {
    Progress { done: u64, total: u64 },
    Finished { tracks: u64, unreadable: usize },
}

/// Turns successive fetchd statuses into [`ScanEvent`]s.
#[derive(Debug, Default)]
pub struct ScanWatch {
    scanning: bool,
    completed_seen: u64,
}

impl ScanWatch {
    pub fn observe(&mut self, status: &FetchStatus) -> Option<ScanEvent> {
        if let ScanState::Scanning { done, total } = status.scan {
            self.scanning = true;
            return Some(ScanEvent::Progress { done, total });
        }
        // A scan that started and ended between two polls shows only as a higher count; a
        // restarted fetchd counts from zero again.
        let finished = self.scanning || status.scans_completed > self.completed_seen;
        self.scanning = false;
        self.completed_seen = status.scans_completed;
        finished.then_some(ScanEvent::Finished {
            tracks: status.tracks,
            unreadable: status.unreadable.len(),
        })
    }
}

/// Follows fetchd for ever (the supervisor aborts the task when it stops).
pub async fn follow(socket: PathBuf) {
    let client = Reconnecting::<FetchAdminClient>::new("fetchd", socket, CALL_DEADLINE);
    let mut watch = ScanWatch::default();
    let mut display = Display::new();
    loop {
        let status = client
            .call(|c, ctx| async move { c.status(ctx).await })
            .await;
        if let Ok(Ok(status)) = status {
            if let Some(event) = watch.observe(&status) {
                display.show(&event);
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Writes events to stderr.
struct Display {
    terminal: bool,
    last_plain_line: Option<Instant>,
}

impl Display {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            last_plain_line: None,
        }
    }

    fn show(&mut self, event: &ScanEvent) {
        let mut err = std::io::stderr().lock();
        let result = match *event {
            ScanEvent::Progress { done, total } if self.terminal => {
                write!(err, "\r\x1b[Kmusicfs: scanning {done}/{total} files")
            }
            ScanEvent::Progress { done, total } => {
                if self
                    .last_plain_line
                    .is_some_and(|at| at.elapsed() < PLAIN_LINE_EVERY)
                {
                    return;
                }
                self.last_plain_line = Some(Instant::now());
                writeln!(err, "musicfs: scanning {done}/{total} files")
            }
            ScanEvent::Finished { tracks, unreadable } => {
                self.last_plain_line = None;
                if self.terminal {
                    drop(write!(err, "\r\x1b[K"));
                }
                writeln!(
                    err,
                    "musicfs: scan finished: {tracks} tracks, {unreadable} unreadable files (details: musicfsctl status)"
                )
            }
        };
        drop(result.and_then(|()| err.flush()));
    }
}

/// Erases a half-drawn progress line before other output (on a terminal only).
pub fn clear_line() {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        drop(write!(err, "\r\x1b[K"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(scan: ScanState, completed: u64) -> FetchStatus {
        FetchStatus {
            pid: 1,
            tracks: 7,
            directories: 3,
            origins: vec![],
            unreadable: vec![],
            scan,
            scans_completed: completed,
            origin_files_read: 0,
            origin_bytes_read: 0,
            cache_chunks: 0,
            cache_bytes: 0,
            cache_budget: None,
            cache_fetch: Default::default(),
        }
    }

    #[test]
    fn reports_progress_then_one_summary() {
        let mut watch = ScanWatch::default();
        assert_eq!(watch.observe(&status(ScanState::Idle, 0)), None);
        let scanning = ScanState::Scanning { done: 2, total: 9 };
        assert_eq!(
            watch.observe(&status(scanning, 0)),
            Some(ScanEvent::Progress { done: 2, total: 9 })
        );
        let finished = Some(ScanEvent::Finished {
            tracks: 7,
            unreadable: 0,
        });
        assert_eq!(watch.observe(&status(ScanState::Idle, 1)), finished);
        assert_eq!(watch.observe(&status(ScanState::Idle, 1)), None);
    }

    #[test]
    fn notices_a_scan_that_ran_between_two_polls_and_a_restarted_fetchd() {
        let mut watch = ScanWatch::default();
        assert!(watch.observe(&status(ScanState::Idle, 1)).is_some());
        assert_eq!(watch.observe(&status(ScanState::Idle, 0)), None);
        assert!(watch.observe(&status(ScanState::Idle, 1)).is_some());
    }
}
