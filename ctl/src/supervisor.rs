//! The foreground supervisor of `musicfsctl mount`, for running without systemd. It binds each
//! worker's socket and hands it over like systemd's socket activation, starts fetchd, indexd,
//! plugind and then mountd, waits for the mount, restarts whatever dies (with crash-loop backoff;
//! a dead mountd means a stale mount, cleaned before the new mountd mounts again), keeps the
//! supervisor file current, and on SIGINT/SIGTERM/SIGHUP stops everything in order.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{bail, Context};
use musicfs_ipc::layout::{self, StateDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::signal::unix::{signal, Signal as SignalStream, SignalKind};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::mounts;
use crate::preflight::MountPlan;
use crate::progress;
use crate::record::{self, SupervisorRecord, WorkerRecord, WorkerState};
use crate::spawn::{self, WorkerSpec};

const MOUNTD: &str = "mountd";
/// How long mountd may take to make the mount appear at the start.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to exit after SIGTERM before the next shutdown step.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Restarts and the mount are checked this often (exits are noticed at once via SIGCHLD).
const TICK: Duration = Duration::from_millis(50);

/// Runs the supervisor until a stop signal; every child is stopped before this returns.
pub fn run(plan: MountPlan) -> anyhow::Result<()> {
    crate::runtime()?.block_on(async {
        let mut signals = Signals::new()?;
        let mut supervisor = Supervisor::new(plan)?;
        let result = supervisor.supervise(&mut signals).await;
        supervisor.shutdown().await;
        result
    })
}

/// The signals the supervisor handles, registered before any child starts.
struct Signals {
    stop: StopSignals,
    /// A child exited.
    child: SignalStream,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            stop: StopSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            },
            child: signal(SignalKind::child())?,
        })
    }
}

struct StopSignals {
    interrupt: SignalStream,
    terminate: SignalStream,
    hangup: SignalStream,
}

impl StopSignals {
    /// Waits for a signal that asks the supervisor to stop; returns its name.
    async fn stop_requested(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// One supervised process and what the supervisor knows about it.
struct Worker {
    spec: WorkerSpec,
    child: Option<Child>,
    started: Instant,
    restarts: u32,
    backoff: Backoff,
    /// Set while the worker is dead and waiting out its backoff.
    restart_at: Option<Instant>,
}

impl Worker {
    fn new(spec: WorkerSpec) -> Self {
        Self {
            spec,
            child: None,
            started: Instant::now(),
            restarts: 0,
            backoff: Backoff::default(),
            restart_at: None,
        }
    }

    fn name(&self) -> &'static str {
        self.spec.name
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    fn state(&self) -> WorkerState {
        match (&self.child, self.restart_at) {
            (Some(_), _) => WorkerState::Running,
            (None, Some(_)) => WorkerState::Backoff,
            (None, None) => WorkerState::Stopped,
        }
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let child = spawn::spawn(&self.spec)
            .with_context(|| format!("cannot start {}", self.spec.program.display()))?;
        self.child = Some(child);
        self.started = Instant::now();
        self.restart_at = None;
        Ok(())
    }

    /// Sends `signal` if the process is still ours (not yet reaped, so its pid is not reused).
    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid().and_then(|pid| i32::try_from(pid).ok()) {
            // It may have exited just now; then there is nothing to signal.
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Waits for the process to exit until `deadline`; true if it has.
    async fn wait_until(&mut self, deadline: Instant) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        if tokio::time::timeout_at(deadline, child.wait())
            .await
            .is_err()
        {
            return false;
        }
        self.child = None;
        true
    }
}

struct Supervisor {
    plan: MountPlan,
    /// fetchd, indexd, plugind, then mountd: the start order.
    workers: Vec<Worker>,
    mounted: bool,
    ever_mounted: bool,
    progress: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Binds the worker sockets (removing the ones it bound again if one fails).
    fn new(plan: MountPlan) -> anyhow::Result<Self> {
        let mut specs = worker_specs(&plan);
        let mut bound: Vec<PathBuf> = Vec::new();
        for spec in specs.iter_mut().filter(|spec| spec.name != MOUNTD) {
            for name in socket_names(spec.name) {
                let path = plan.state.socket(name);
                match musicfs_ipc::listen::bind(&path) {
                    Ok(socket) => spec.sockets.push((name, socket)),
                    Err(e) => {
                        for path in &bound {
                            remove_if_present(path);
                        }
                        bail!(
                            "cannot bind {} ({e}); is MusicFS already running under systemd on this state dir?",
                            path.display()
                        );
                    }
                }
                bound.push(path);
            }
        }
        // Sockets are 0660; the directory holding them is 0750: only the owner and its group
        // get near them at all.
        std::fs::set_permissions(plan.state.run_dir(), std::fs::Permissions::from_mode(0o750))
            .with_context(|| format!("restricting {}", plan.state.run_dir().display()))?;
        Ok(Self {
            plan,
            workers: specs.into_iter().map(Worker::new).collect(),
            mounted: false,
            ever_mounted: false,
            progress: None,
        })
    }

    /// Starts everything, then supervises until a stop signal (`Ok`) or a failure to mount.
    async fn supervise(&mut self, signals: &mut Signals) -> anyhow::Result<()> {
        for worker in &mut self.workers {
            worker.start()?;
            tracing::info!(
                "started {} (pid {})",
                worker.name(),
                worker.pid().unwrap_or(0)
            );
        }
        self.write_record();
        let mount_deadline = Instant::now() + MOUNT_TIMEOUT;
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                name = signals.stop.stop_requested() => {
                    progress::clear_line();
                    say(format_args!("musicfs: {name}: stopping"));
                    return Ok(());
                }
                _ = signals.child.recv() => {}
                _ = tick.tick() => {}
            }
            self.reap()?;
            self.restart_due();
            self.check_mount(mount_deadline)?;
        }
    }

    /// Collects every child that exited and schedules its restart.
    fn reap(&mut self) -> anyhow::Result<()> {
        for i in 0..self.workers.len() {
            let Some(child) = self.workers[i].child.as_mut() else {
                continue;
            };
            match child.try_wait() {
                Ok(Some(status)) => self.on_exit(i, status)?,
                Ok(None) => {}
                Err(e) => tracing::warn!("cannot wait for {}: {e}", self.workers[i].name()),
            }
        }
        Ok(())
    }

    fn on_exit(&mut self, i: usize, status: ExitStatus) -> anyhow::Result<()> {
        let worker = &mut self.workers[i];
        worker.child = None;
        if worker.name() == MOUNTD && !self.ever_mounted {
            bail!("musicfs-mountd exited ({status}) before the mount was live; see its messages above");
        }
        let ran = worker.started.elapsed();
        let delay = worker.backoff.delay_after_exit(ran);
        worker.restart_at = Some(Instant::now() + delay);
        progress::clear_line();
        tracing::warn!(
            "{} exited ({status}) after {:.1} s; restarting in {:.1} s",
            worker.name(),
            ran.as_secs_f64(),
            delay.as_secs_f64()
        );
        if worker.name() == MOUNTD {
            self.mounted = false;
            self.clean_dead_mount();
        }
        self.write_record();
        Ok(())
    }

    /// Starts the workers whose backoff has passed.
    fn restart_due(&mut self) {
        let now = Instant::now();
        let mut changed = false;
        for worker in &mut self.workers {
            if worker.restart_at.is_none_or(|at| at > now) {
                continue;
            }
            worker.restarts += 1;
            changed = true;
            match worker.start() {
                Ok(()) => tracing::info!(
                    "restarted {} (pid {}, restart {})",
                    worker.name(),
                    worker.pid().unwrap_or(0),
                    worker.restarts
                ),
                Err(e) => {
                    let delay = worker.backoff.delay_after_exit(Duration::ZERO);
                    worker.restart_at = Some(now + delay);
                    tracing::error!("{e:#}; trying again in {:.1} s", delay.as_secs_f64());
                }
            }
        }
        if changed {
            self.write_record();
        }
    }

    /// Notices the mount appearing (the first time: tells the user and starts showing the scan).
    fn check_mount(&mut self, deadline: Instant) -> anyhow::Result<()> {
        if self.mounted {
            return Ok(());
        }
        let mountpoint = &self.plan.mountpoint;
        if !mounts::is_mounted(mountpoint) {
            if !self.ever_mounted && Instant::now() > deadline {
                bail!(
                    "the mount did not appear at {} within {} s; see mountd's messages above",
                    mountpoint.display(),
                    MOUNT_TIMEOUT.as_secs()
                );
            }
            return Ok(());
        }
        self.mounted = true;
        if self.ever_mounted {
            tracing::info!("remounted {}", mountpoint.display());
            return Ok(());
        }
        self.ever_mounted = true;
        let mut origins = self.plan.origins.clone();
        origins.extend(self.plan.config.origins.iter().map(|o| o.0.url.clone()));
        let _ = writeln!(
            std::io::stdout(),
            "musicfs: mounted {} at {} (state dir {}); Ctrl-C to stop",
            origins.join(", "),
            mountpoint.display(),
            self.plan.state.root().display()
        );
        let fetchd_socket = self.plan.state.socket(layout::FETCHD_ADMIN);
        self.progress = Some(tokio::spawn(progress::follow(fetchd_socket)));
        Ok(())
    }

    /// After mountd died: detach the dead FUSE mount so a new mountd can mount again.
    fn clean_dead_mount(&self) {
        let mountpoint = &self.plan.mountpoint;
        if !mounts::is_mounted(mountpoint) {
            return;
        }
        match mounts::lazy_unmount(mountpoint) {
            Ok(()) => tracing::info!("cleaned the stale mount at {}", mountpoint.display()),
            Err(e) => tracing::error!("{e:#}"),
        }
    }

    /// mountd first (it unmounts), then the workers; then the sockets and the supervisor file.
    async fn shutdown(&mut self) {
        if let Some(progress) = self.progress.take() {
            progress.abort();
            progress::clear_line();
        }
        for worker in &mut self.workers {
            worker.restart_at = None;
        }
        let mountd = self.workers.last_mut().expect("mountd is always last");
        mountd.signal(Signal::SIGTERM);
        mountd.wait_until(Instant::now() + STOP_TIMEOUT).await;
        if mounts::is_mounted(&self.plan.mountpoint) {
            tracing::warn!(
                "{} is still mounted; detaching it",
                self.plan.mountpoint.display()
            );
            if let Err(e) = mounts::lazy_unmount(&self.plan.mountpoint) {
                tracing::error!("{e:#}");
            }
        }
        for worker in &self.workers {
            worker.signal(Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for worker in &mut self.workers {
            if !worker.wait_until(deadline).await {
                tracing::warn!(
                    "{} did not stop within {} s; killing it",
                    worker.name(),
                    STOP_TIMEOUT.as_secs()
                );
                worker.signal(Signal::SIGKILL);
                worker.wait_until(Instant::now() + STOP_TIMEOUT).await;
            }
        }
        remove_sockets(&self.plan.state);
        drop(std::fs::remove_file(self.plan.state.supervisor_file()));
        say(format_args!("musicfs: stopped"));
    }

    fn write_record(&self) {
        let record = SupervisorRecord {
            pid: std::process::id(),
            mountpoint: self.plan.mountpoint.display().to_string(),
            origins: self.plan.origins.clone(),
            workers: self
                .workers
                .iter()
                .map(|w| WorkerRecord {
                    name: w.name().to_owned(),
                    pid: w.pid(),
                    restarts: w.restarts,
                    state: w.state(),
                })
                .collect(),
        };
        if let Err(e) = record::write(&self.plan.state.supervisor_file(), &record) {
            tracing::warn!(
                "cannot write {}: {e}",
                self.plan.state.supervisor_file().display()
            );
        }
    }
}

/// How to start each process, in start order; sockets are bound afterwards.
fn worker_specs(plan: &MountPlan) -> Vec<WorkerSpec> {
    let state_args = || vec![OsString::from("--state-dir"), plan.state.root().into()];
    // Workers that read the config (users to run as, template, ...) get it too.
    let configured_args = || {
        let mut args = state_args();
        if let Some(config) = &plan.config_file {
            args.extend([OsString::from("--config"), config.into()]);
        }
        args
    };
    let spec = |name, program: &PathBuf, args| WorkerSpec {
        name,
        program: program.clone(),
        args,
        sockets: Vec::new(),
    };
    let mut fetchd_args = configured_args();
    fetchd_args.extend(plan.origins.iter().map(OsString::from));
    let mut mountd_args = state_args();
    if plan.config_file.is_some() {
        let retry = plan.config.retry_seconds.to_string();
        mountd_args.extend([OsString::from("--retry-seconds"), retry.into()]);
    }
    mountd_args.push(plan.mountpoint.clone().into());
    let programs = &plan.programs;
    vec![
        spec(layout::FETCHD, &programs.fetchd, fetchd_args),
        spec(layout::INDEXD, &programs.indexd, configured_args()),
        spec(layout::PLUGIND, &programs.plugind, configured_args()),
        spec(MOUNTD, &programs.mountd, mountd_args),
    ]
}

/// A message for the user on stderr; a closed stderr must not bring the supervisor down.
fn say(message: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// The sockets a worker listens on: the data path first, then its admin socket if it has one.
fn socket_names(worker: &'static str) -> Vec<&'static str> {
    match worker {
        layout::FETCHD => vec![layout::FETCHD, layout::FETCHD_ADMIN],
        other => vec![other],
    }
}

fn remove_sockets(state: &StateDir) {
    for name in layout::WORKERS.into_iter().flat_map(socket_names) {
        remove_if_present(&state.socket(name));
    }
}

fn remove_if_present(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}
