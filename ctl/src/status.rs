//! `musicfsctl status`: reads the supervisor file, asks each worker over its socket (a worker
//! that does not answer within a short deadline is reported unhealthy, not an error), and prints
//! the report. Works the same under systemd, where there is no supervisor file.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use musicfs_ipc::client::{CallError, Connect, Reconnecting};
use musicfs_ipc::layout::{self, MountdRecord, StateDir};
use musicfs_ipc::{FetchAdminClient, FetchStatus, IndexClient, ScanState, WorkerClient};
use tarpc::client::RpcError;
use tarpc::context::Context;
use tokio::time::Instant;

use crate::cli::StatusArgs;
use crate::mounts;
use crate::record::{self, SupervisorRecord, WorkerState};
use crate::report::{Report, ReportedState, WorkerReport};

/// How long one question to a worker may take.
const DEADLINE: Duration = Duration::from_secs(2);
const IDLE_POLL_EVERY: Duration = Duration::from_millis(50);
const MOUNTD: &str = "mountd";

pub fn run(state: &StateDir, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let idle_in_time = match args.wait_idle {
            true => wait_idle(state, args.timeout.map(Duration::from_secs)).await,
            false => true,
        };
        let report = gather(state).await;
        let text = match args.json {
            true => report.to_json() + "\n",
            false => report.to_text(),
        };
        write_stdout(&text)?;
        Ok(match report.all_healthy() && idle_in_time {
            true => ExitCode::SUCCESS,
            false => ExitCode::FAILURE,
        })
    })
}

/// Prints `text`; a reader that went away (`status | head`) is not an error.
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// Asks everyone and builds the report.
pub async fn gather(state: &StateDir) -> Report {
    let record = record::read(&state.supervisor_file()).filter(|r| record::pid_alive(r.pid));
    let own = MountdRecord::read(&state.mountd_file()).filter(|r| record::pid_alive(r.pid));
    let (fetchd, indexd, plugind) = tokio::join!(
        ask_fetchd(state),
        ask_worker(layout::INDEXD, state),
        ask_worker(layout::PLUGIND, state),
    );
    let (fetchd, fetch_status) = fetchd;
    let record = record.as_ref();
    let workers = vec![
        worker_report(layout::FETCHD, fetchd, record),
        worker_report(layout::INDEXD, indexd, record),
        worker_report(layout::PLUGIND, plugind, record),
        worker_report(MOUNTD, mountd_answer(record, own.as_ref()), record),
    ];
    let mountpoint = record
        .map(|r| r.mountpoint.clone())
        .or_else(|| own.map(|o| o.mountpoint.display().to_string()));
    Report::new(
        state.root().display().to_string(),
        mountpoint,
        record.map(|r| r.pid),
        workers,
        fetch_status.as_ref(),
    )
}

/// Polls fetchd until it has finished a scan and is idle; false if `timeout` passed first.
async fn wait_idle(state: &StateDir, timeout: Option<Duration>) -> bool {
    let give_up = timeout.map(|t| Instant::now() + t);
    let client = client::<FetchAdminClient>(layout::FETCHD_ADMIN, state);
    loop {
        if let Ok(Ok(status)) = ask(&client, |c, ctx| async move { c.status(ctx).await }).await {
            if status.scan == ScanState::Idle && status.scans_completed >= 1 {
                return true;
            }
        }
        if give_up.is_some_and(|at| Instant::now() >= at) {
            eprintln!("musicfsctl: fetchd did not finish a scan in time");
            return false;
        }
        tokio::time::sleep(IDLE_POLL_EVERY).await;
    }
}

/// What one worker said (or why it did not).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    pid: Option<u32>,
    healthy: bool,
    detail: String,
}

impl Answer {
    fn unhealthy(pid: Option<u32>, detail: impl ToString) -> Self {
        Self {
            pid,
            healthy: false,
            detail: detail.to_string(),
        }
    }
}

async fn ask_fetchd(state: &StateDir) -> (Answer, Option<FetchStatus>) {
    let client = client::<FetchAdminClient>(layout::FETCHD_ADMIN, state);
    let hello = match ask(&client, |c, ctx| async move { c.hello(ctx).await }).await {
        Ok(hello) => hello,
        Err(e) => return (Answer::unhealthy(None, e), None),
    };
    let version = format!("version {}, protocol {}", hello.version, hello.protocol);
    match ask(&client, |c, ctx| async move { c.status(ctx).await }).await {
        Ok(Ok(status)) => {
            let answer = Answer {
                pid: Some(status.pid),
                healthy: true,
                detail: version,
            };
            (answer, Some(status))
        }
        Ok(Err(e)) => (
            Answer::unhealthy(Some(hello.pid), format!("status failed: {e}")),
            None,
        ),
        Err(e) => (Answer::unhealthy(Some(hello.pid), e), None),
    }
}

async fn ask_worker(name: &'static str, state: &StateDir) -> Answer {
    // indexd serves the Index service, plugind the plain Worker one; both answer `health`.
    let health = match name {
        layout::INDEXD => {
            let client = client::<IndexClient>(name, state);
            ask(&client, |c, ctx| async move { c.health(ctx).await }).await
        }
        _ => {
            let client = client::<WorkerClient>(name, state);
            ask(&client, |c, ctx| async move { c.health(ctx).await }).await
        }
    };
    match health {
        Ok(Ok(health)) => Answer {
            pid: Some(health.pid),
            healthy: health.ok,
            detail: health.detail,
        },
        Ok(Err(e)) => Answer::unhealthy(None, e),
        Err(e) => Answer::unhealthy(None, e),
    }
}

/// mountd has no socket: it is healthy when it runs (by the supervisor's record, or by its own
/// record under systemd) and the mount answers.
fn mountd_answer(record: Option<&SupervisorRecord>, own: Option<&MountdRecord>) -> Answer {
    let (pid, mountpoint) = match (record, own) {
        (Some(record), _) => (
            record.worker(MOUNTD).and_then(|w| w.pid),
            PathBuf::from(&record.mountpoint),
        ),
        (None, Some(own)) => (Some(own.pid), own.mountpoint.clone()),
        (None, None) => return Answer::unhealthy(None, "no mountd running on this state dir"),
    };
    let shown = mountpoint.display();
    match (
        pid.is_some_and(record::pid_alive),
        mounts::is_live(&mountpoint),
    ) {
        (true, true) => Answer {
            pid,
            healthy: true,
            detail: format!("mounted at {shown}"),
        },
        (true, false) => Answer::unhealthy(pid, format!("{shown} is not mounted")),
        (false, _) => Answer::unhealthy(None, "not running"),
    }
}

/// The report line of one worker: its answer, with restarts and state from the supervisor.
fn worker_report(name: &str, answer: Answer, record: Option<&SupervisorRecord>) -> WorkerReport {
    let recorded = record.and_then(|r| r.worker(name));
    let state = match (
        answer.healthy || answer.pid.is_some(),
        recorded.map(|w| w.state),
    ) {
        (true, _) => ReportedState::Running,
        (false, Some(WorkerState::Backoff)) => ReportedState::Backoff,
        (false, Some(WorkerState::Stopped)) => ReportedState::Stopped,
        (false, _) => ReportedState::Unreachable,
    };
    WorkerReport {
        name: name.to_owned(),
        pid: answer.pid.or_else(|| recorded.and_then(|w| w.pid)),
        healthy: answer.healthy,
        restarts: recorded.map_or(0, |w| w.restarts),
        state,
        detail: answer.detail,
    }
}

fn client<C: Connect>(name: &'static str, state: &StateDir) -> Reconnecting<C> {
    Reconnecting::new(name, state.socket(name), DEADLINE)
}

async fn ask<C, T, F, Fut>(client: &Reconnecting<C>, f: F) -> Result<T, CallError>
where
    C: Connect,
    F: Fn(C, Context) -> Fut,
    Fut: Future<Output = Result<T, RpcError>>,
{
    client.call_within(DEADLINE, f).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::WorkerRecord;

    fn record(state: WorkerState) -> SupervisorRecord {
        SupervisorRecord {
            pid: 1,
            mountpoint: "/m".into(),
            origins: vec![],
            workers: vec![WorkerRecord {
                name: "indexd".into(),
                pid: Some(77),
                restarts: 4,
                state,
            }],
        }
    }

    #[test]
    fn a_silent_worker_in_backoff_is_reported_as_backoff() {
        let silent = Answer::unhealthy(None, "did not answer");
        let report = worker_report(
            "indexd",
            silent.clone(),
            Some(&record(WorkerState::Backoff)),
        );
        assert_eq!((report.state, report.restarts), (ReportedState::Backoff, 4));
        let report = worker_report("indexd", silent, None);
        assert_eq!(
            (report.state, report.restarts),
            (ReportedState::Unreachable, 0)
        );
    }

    #[test]
    fn an_answering_worker_is_running_with_its_own_pid() {
        let answer = Answer {
            pid: Some(88),
            healthy: true,
            detail: "ok".into(),
        };
        let report = worker_report("indexd", answer, Some(&record(WorkerState::Backoff)));
        assert_eq!(
            (report.state, report.pid),
            (ReportedState::Running, Some(88))
        );
    }

    #[test]
    fn mountd_without_any_record_is_not_running() {
        assert!(!mountd_answer(None, None).healthy);
    }

    #[test]
    fn mountd_with_its_own_record_but_no_mount_is_unhealthy_and_keeps_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let own = MountdRecord {
            pid: std::process::id(),
            mountpoint: dir.path().to_owned(),
        };
        let answer = mountd_answer(None, Some(&own));
        assert!(!answer.healthy);
        assert_eq!(answer.pid, Some(std::process::id()));
        assert!(
            answer.detail.contains("is not mounted"),
            "{}",
            answer.detail
        );
    }

    #[tokio::test]
    async fn missing_sockets_are_unhealthy_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let report = gather(&StateDir::new(dir.path())).await;
        assert_eq!(report.workers.len(), 4);
        assert!(report.workers.iter().all(|w| !w.healthy));
        assert!(report.catalog.is_none());
    }
}
