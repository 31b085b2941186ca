//! The status report: its stable JSON form (`musicfsctl status --json`, described in
//! doc/STATUS-JSON.md; change it only by bumping [`FORMAT_VERSION`]) and its text form.

use musicfs_ipc::size::human;
use musicfs_ipc::{BackgroundFetch, FetchStatus, ScanState};
use serde::Serialize;

pub const FORMAT_VERSION: u32 = 1;
/// The text form lists at most this many unreadable files.
const UNREADABLE_SHOWN: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub state_dir: String,
    pub mountpoint: Option<String>,
    pub supervisor_pid: Option<u32>,
    /// fetchd, indexd, plugind, mountd, in that order.
    pub workers: Vec<WorkerReport>,
    pub catalog: Option<Catalog>,
    pub scan: Option<Scan>,
    pub origin_reads: Option<OriginReads>,
    /// Each origin's health and the bytes read from it; null when fetchd did not answer.
    pub origins: Option<Vec<musicfs_ipc::OriginStatus>>,
    pub cache: Option<Cache>,
    /// For the text form (the JSON carries `cache.fetch`).
    #[serde(skip)]
    cache_fetch: Option<BackgroundFetch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportedState {
    Running,
    Backoff,
    Stopped,
    Unreachable,
}

impl ReportedState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Backoff => "backoff",
            Self::Stopped => "stopped",
            Self::Unreachable => "unreachable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    pub name: String,
    pub pid: Option<u32>,
    pub healthy: bool,
    pub restarts: u32,
    pub state: ReportedState,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Catalog {
    pub tracks: u64,
    pub directories: u64,
    pub unreadable: Vec<UnreadableFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableFile {
    pub origin: String,
    pub path: String,
    pub reason: String,
    pub shown: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanPhase {
    Idle,
    Scanning,
    Settling,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scan {
    pub state: ScanPhase,
    /// Files seen by the running scan (0 when idle).
    pub done: u64,
    /// Files found so far by the running scan (0 when idle).
    pub total: u64,
    /// Scans completed since fetchd started.
    pub completed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OriginReads {
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cache {
    pub chunks: u64,
    pub bytes: u64,
    /// The configured budget; null: no limit.
    pub budget: Option<u64>,
    /// The background fetch of pinned and prefetched tracks.
    pub fetch: CacheFetch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheFetch {
    pub active: bool,
    pub tracks_done: u64,
    pub tracks_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub failed: u64,
}

impl From<&BackgroundFetch> for CacheFetch {
    fn from(f: &BackgroundFetch) -> Self {
        Self {
            active: f.active,
            tracks_done: f.tracks_done,
            tracks_total: f.tracks_total,
            bytes_done: f.bytes_done,
            bytes_total: f.bytes_total,
            failed: f.failed,
        }
    }
}

/// One line on the background fetch: `fetching 3/12 tracks, 40.0 MiB of 120.0 MiB`.
pub fn fetch_line(f: &BackgroundFetch) -> String {
    let verb = if f.active { "fetching" } else { "fetched" };
    let mut line = format!(
        "{verb} {}/{} tracks, {} of {}",
        f.tracks_done,
        f.tracks_total,
        human(f.bytes_done),
        human(f.bytes_total)
    );
    if f.failed > 0 {
        line += &format!(", {} failed", f.failed);
        if let Some(why) = &f.last_error {
            line += &format!(" (last: {why})");
        }
    }
    line
}

impl Report {
    /// A report with fetchd's part filled from its status (`None` when fetchd did not answer).
    pub fn new(
        state_dir: String,
        mountpoint: Option<String>,
        supervisor_pid: Option<u32>,
        workers: Vec<WorkerReport>,
        fetch: Option<&FetchStatus>,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            state_dir,
            mountpoint,
            supervisor_pid,
            workers,
            catalog: fetch.map(catalog),
            scan: fetch.map(scan),
            origin_reads: fetch.map(|s| OriginReads {
                files: s.origin_files_read,
                bytes: s.origin_bytes_read,
            }),
            origins: fetch.map(|s| s.origins.clone()),
            cache: fetch.map(|s| Cache {
                chunks: s.cache_chunks,
                bytes: s.cache_bytes,
                budget: s.cache_budget,
                fetch: CacheFetch::from(&s.cache_fetch),
            }),
            cache_fetch: fetch.map(|s| s.cache_fetch.clone()),
        }
    }

    /// Everything answered: every worker is healthy and fetchd gave its status.
    pub fn all_healthy(&self) -> bool {
        self.workers.iter().all(|w| w.healthy) && self.catalog.is_some()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }

    /// A few aligned lines for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            out.push_str(&format!("{label:<13}{value}\n"));
        };
        line("state dir", self.state_dir.clone());
        let supervisor = match (&self.mountpoint, self.supervisor_pid) {
            (Some(mnt), Some(pid)) => format!("{mnt} (supervisor pid {pid})"),
            _ => "unknown (no musicfsctl supervisor running)".to_owned(),
        };
        line("mountpoint", supervisor);
        for w in &self.workers {
            let pid = w.pid.map_or("-".to_owned(), |p| p.to_string());
            let health = if w.healthy { "ok" } else { "UNHEALTHY" };
            let state = w.state.as_str();
            line(
                &w.name,
                format!(
                    "{health:<10}{state:<12}pid {pid:<8} restarts {:<4} {}",
                    w.restarts, w.detail
                ),
            );
        }
        let Some(catalog) = &self.catalog else {
            line("catalog", "unknown (fetchd did not answer)".to_owned());
            return out;
        };
        line(
            "catalog",
            format!(
                "{} tracks, {} directories, {} unreadable files",
                catalog.tracks,
                catalog.directories,
                catalog.unreadable.len()
            ),
        );
        if let Some(scan) = &self.scan {
            let value = match scan.state {
                ScanPhase::Scanning => format!("scanning {}/{} files", scan.done, scan.total),
                ScanPhase::Idle => format!("idle ({} scans completed)", scan.completed),
                ScanPhase::Settling => format!(
                    "settling: files read in the second they were written are read again in a \
                     moment ({} scans completed)",
                    scan.completed
                ),
            };
            line("scan", value);
        }
        if let Some(reads) = &self.origin_reads {
            line(
                "origin reads",
                format!("{} files, {}", reads.files, human_bytes(reads.bytes)),
            );
        }
        for origin in self.origins.iter().flatten() {
            let state = match (&origin.up, &origin.error) {
                (true, _) => match &origin.warning {
                    Some(w) => format!("up, but {w}"),
                    None => "up".to_owned(),
                },
                (false, Some(e)) => format!("DOWN for {} s: {e}", origin.since_secs),
                (false, None) => format!("DOWN for {} s", origin.since_secs),
            };
            line(
                "origin",
                format!(
                    "{}  {state}, {} read",
                    origin.name,
                    human_bytes(origin.bytes_read)
                ),
            );
        }
        if let Some(cache) = &self.cache {
            let budget = match cache.budget {
                Some(b) => format!(" of {} budget", human_bytes(b)),
                None => String::new(),
            };
            line(
                "cache",
                format!(
                    "{} chunks, {}{budget}",
                    cache.chunks,
                    human_bytes(cache.bytes)
                ),
            );
        }
        if let Some(fetch) = self
            .cache_fetch
            .as_ref()
            .filter(|f| f.active || f.failed > 0)
        {
            line("cache fetch", fetch_line(fetch));
        }
        for file in catalog.unreadable.iter().take(UNREADABLE_SHOWN) {
            let shown = if file.shown {
                " (shown, tags unread)"
            } else {
                ""
            };
            line(
                "unreadable",
                format!("{}/{}: {}{shown}", file.origin, file.path, file.reason),
            );
        }
        if catalog.unreadable.len() > UNREADABLE_SHOWN {
            let more = catalog.unreadable.len() - UNREADABLE_SHOWN;
            line(
                "",
                format!("... and {more} more (musicfsctl status --json lists all)"),
            );
        }
        out
    }
}

fn catalog(status: &FetchStatus) -> Catalog {
    Catalog {
        tracks: status.tracks,
        directories: status.directories,
        unreadable: status
            .unreadable
            .iter()
            .map(|u| UnreadableFile {
                origin: u.origin.clone(),
                path: u.path.clone(),
                reason: u.reason.clone(),
                shown: u.shown,
            })
            .collect(),
    }
}

fn scan(status: &FetchStatus) -> Scan {
    let (state, done, total) = match status.scan {
        ScanState::Scanning { done, total } => (ScanPhase::Scanning, done, total),
        ScanState::Idle => (ScanPhase::Idle, 0, 0),
        ScanState::Settling => (ScanPhase::Settling, 0, 0),
    };
    Scan {
        state,
        done,
        total,
        completed: status.scans_completed,
    }
}

fn human_bytes(bytes: u64) -> String {
    human(bytes)
}

#[cfg(test)]
mod tests {
    use musicfs_ipc::Unreadable;

    use super::*;

    fn worker(name: &str, healthy: bool) -> WorkerReport {
        WorkerReport {
            name: name.to_owned(),
            pid: healthy.then_some(10),
            healthy,
            restarts: 0,
            state: if healthy {
                ReportedState::Running
            } else {
                ReportedState::Unreachable
            },
            detail: String::new(),
        }
    }

    fn fetch_status() -> FetchStatus {
        FetchStatus {
            pid: 10,
            tracks: 5,
            directories: 2,
            origins: vec![musicfs_ipc::OriginStatus {
                name: "/srv/music".into(),
                up: true,
                since_secs: 3,
                error: None,
                warning: None,
                bytes_read: 4096,
            }],
            unreadable: vec![Unreadable {
                origin: "/srv/music".into(),
                path: "bad.mp3".into(),
                reason: "no tags".into(),
                shown: true,
            }],
            scan: ScanState::Scanning { done: 3, total: 8 },
            scans_completed: 0,
            origin_files_read: 4,
            origin_bytes_read: 4096,
            cache_chunks: 1,
            cache_bytes: 65536,
            cache_budget: Some(1 << 20),
            cache_fetch: BackgroundFetch {
                active: true,
                tracks_done: 1,
                tracks_total: 3,
                bytes_done: 100,
                bytes_total: 300,
                failed: 0,
                last_error: None,
            },
        }
    }

    #[test]
    fn json_has_the_documented_shape_and_order() {
        let names = ["fetchd", "indexd", "plugind", "mountd"];
        let workers = names.iter().map(|n| worker(n, true)).collect();
        let report = Report::new(
            "/s".into(),
            Some("/m".into()),
            Some(1),
            workers,
            Some(&fetch_status()),
        );
        let expected = concat!(
            r#"{"format_version":1,"state_dir":"/s","mountpoint":"/m","supervisor_pid":1,"#,
            r#""workers":["#,
            r#"{"name":"fetchd","pid":10,"healthy":true,"restarts":0,"state":"running","detail":""},"#,
            r#"{"name":"indexd","pid":10,"healthy":true,"restarts":0,"state":"running","detail":""},"#,
            r#"{"name":"plugind","pid":10,"healthy":true,"restarts":0,"state":"running","detail":""},"#,
            r#"{"name":"mountd","pid":10,"healthy":true,"restarts":0,"state":"running","detail":""}],"#,
            r#""catalog":{"tracks":5,"directories":2,"unreadable":[{"origin":"/srv/music","path":"bad.mp3","reason":"no tags","shown":true}]},"#,
            r#""scan":{"state":"scanning","done":3,"total":8,"completed":0},"#,
            r#""origin_reads":{"files":4,"bytes":4096},"#,
            r#""origins":[{"name":"/srv/music","up":true,"since_secs":3,"error":null,"warning":null,"bytes_read":4096}],"#,
            r#""cache":{"chunks":1,"bytes":65536,"budget":1048576,"#,
            r#""fetch":{"active":true,"tracks_done":1,"tracks_total":3,"bytes_done":100,"bytes_total":300,"failed":0}}}"#,
        );
        assert_eq!(report.to_json(), expected);
        assert!(report.all_healthy());
    }

    #[test]
    fn without_fetchd_the_catalog_parts_are_null_and_unhealthy() {
        let workers = vec![worker("fetchd", false), worker("indexd", true)];
        let report = Report::new("/s".into(), None, None, workers, None);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        for key in [
            "mountpoint",
            "supervisor_pid",
            "catalog",
            "scan",
            "origin_reads",
            "origins",
            "cache",
        ] {
            assert!(json[key].is_null(), "{key}");
        }
        assert_eq!(json["workers"][0]["state"], "unreachable");
        assert!(json["workers"][0]["pid"].is_null());
        assert!(!report.all_healthy());
        assert!(report.to_text().contains("fetchd did not answer"));
    }

    #[test]
    fn idle_scan_and_sizes_read_well() {
        let mut status = fetch_status();
        status.scan = ScanState::Idle;
        status.scans_completed = 2;
        let report = Report::new("/s".into(), None, None, vec![], Some(&status));
        let text = report.to_text();
        assert!(text.contains("idle (2 scans completed)"), "{text}");
        assert!(text.contains("4 files, 4.0 KiB"), "{text}");
        assert!(
            text.contains("1 chunks, 64.0 KiB of 1.0 MiB budget"),
            "{text}"
        );
        assert!(
            text.contains("cache fetch  fetching 1/3 tracks, 100 B of 300 B"),
            "{text}"
        );
        assert!(
            text.contains("bad.mp3: no tags (shown, tags unread)"),
            "{text}"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
