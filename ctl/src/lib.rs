//! musicfsctl: the admin CLI of MusicFS, and a supervisor for running it without systemd.
//!
//! `musicfsctl mount` checks everything first ([`preflight`]), then plays systemd's part
//! ([`supervisor`]): it binds each worker's socket, hands it over as `LISTEN_FDS` ([`spawn`]),
//! restarts what dies ([`backoff`]), shows the scan ([`progress`]) and writes what it runs to the
//! supervisor file ([`record`]). `musicfsctl status` ([`status`], [`report`]) asks the workers
//! over their sockets; `musicfsctl cache` ([`cache`]) drives fetchd's chunk cache and
//! `musicfsctl rescan` ([`rescan`]) its scans; `musicfsctl origins` ([`origins`]) shows how
//! each origin will be reached. It holds no
//! state of its own beyond the lock and the supervisor file of a running supervisor.

pub mod backoff;
pub mod cache;
pub mod cli;
pub mod lock;
pub mod mounts;
pub mod origins;
pub mod preflight;
pub mod programs;
pub mod progress;
pub mod record;
pub mod report;
pub mod rescan;
pub mod search;
pub mod spawn;
pub mod status;
pub mod supervisor;

use std::process::ExitCode;

use musicfs_ipc::layout::StateDir;

use crate::cli::{Cli, Command};

/// Runs one command; the exit status says whether everything went (or answered) well.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let state_root = cli.state_dir.unwrap_or_else(StateDir::default_root);
    match cli.command {
        Command::Mount(args) => {
            let plan = preflight::prepare(&args, &state_root)?;
            supervisor::run(plan)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => status::run(&StateDir::new(state_root), &args),
        Command::Search(args) => search::search(&StateDir::new(state_root), &args),
        Command::Collection(command) => search::collection(&StateDir::new(state_root), &command),
        Command::Cache(command) => cache::run(&StateDir::new(state_root), &command),
        Command::Rescan(args) => rescan::run(&StateDir::new(state_root), &args),
        Command::Origins(args) => origins::run(&args),
    }
}

/// The single-threaded runtime each command's calls to the workers run on.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
