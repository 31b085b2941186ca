//! musicfs-mountd: the FUSE session of MusicFS. It owns the mount, the open-handle table and small
//! caches; it never reads an origin, writes the cache or parses audio. Everything it shows comes
//! from fetchd over the `Fetch` service.
//!
//! Layers, one file each:
//! - [`backend`]: the [`Backend`](backend::Backend) trait and its fetchd RPC implementation;
//! - [`core`]: the filesystem ([`FsCore`](core::FsCore)), tested without FUSE;
//! - [`errno`]: the only place errors become errno values;
//! - [`fuse`]: the thin fuser adapter;
//! - [`notify`]: sd_notify messages for systemd (`READY=1`, `STOPPING=1`, watchdog);
//! - this file: [`run`], which waits for fetchd, mounts, and unmounts on SIGTERM/SIGINT.

pub mod backend;
pub mod core;
pub mod errno;
pub mod fuse;
pub mod invalidate;
pub mod notify;
pub mod remembered;
pub mod search;
pub mod views;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fuser::{MountOption, SessionACL};
use musicfs_ipc::client::Reconnecting;
use musicfs_ipc::layout::{MountdRecord, StateDir, FETCHD, INDEXD};
use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::backend::RpcBackend;
use crate::core::FsCore;
use crate::fuse::{FuseAdapter, MAX_IO};
use crate::remembered::Remembered;
use crate::search::{RpcSearch, SEARCH_DEADLINE};
use crate::views::Views;

/// Threads of mountd's runtime: signals and the watchdog. Calls to fetchd and indexd are driven
/// by the threads making them (`musicfs_ipc::blocking`).
const RUNTIME_THREADS: usize = 1;
/// Threads taking requests from the kernel; each blocks while fetchd answers.
const FUSE_THREADS: usize = 4;
/// The mount's readahead: four requests of [`MAX_IO`] bytes.
const READAHEAD: u32 = 4 * MAX_IO;

#[derive(Debug, Clone)]
pub struct Options {
    /// The state dir whose `run/fetchd.sock` serves the library.
    pub state_dir: PathBuf,
    pub mountpoint: PathBuf,
    /// How long to wait for fetchd at start-up, and how long each call retries before `EIO`.
    pub retry_for: Duration,
}

/// Serves the library at `opts.mountpoint` until SIGTERM/SIGINT or until it is unmounted.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .thread_name("mountd-rt")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let socket = StateDir::new(&opts.state_dir).socket(FETCHD);
    let fetchd = Reconnecting::new(FETCHD, &socket, opts.retry_for);
    let backend = RpcBackend::new(fetchd);
    let hello = backend
        .hello(opts.retry_for)
        .with_context(|| format!("waiting for fetchd at {}", socket.display()))?;
    info!(pid = hello.pid, version = %hello.version, "fetchd answers at {}", socket.display());

    let shutdown = Shutdown::install(&runtime)?;
    let (ended, session_ended) = oneshot::channel();
    let index_socket = StateDir::new(&opts.state_dir).socket(INDEXD);
    let search = RpcSearch::new(
        Reconnecting::new(INDEXD, &index_socket, SEARCH_DEADLINE),
        Reconnecting::new(FETCHD, &socket, opts.retry_for),
    );
    let core = Arc::new(FsCore::new(Views::new(Remembered::new(backend), search)));
    let fs = FuseAdapter::new(core.clone(), ended);
    let mountpoint = opts.mountpoint.display();
    let session = fuser::spawn_mount(fs, &opts.mountpoint, &mount_config())
        .with_context(|| format!("mounting {mountpoint}"))?;
    // This stat travels through the kernel to our own session: once it answers, the mount is live.
    let root = std::fs::metadata(&opts.mountpoint)
        .with_context(|| format!("{mountpoint} does not answer after mounting"))?;
    info!("mounted at {mountpoint}");
    invalidate::spawn(core, session.notifier());
    let record_file = StateDir::new(&opts.state_dir).mountd_file();
    let record = MountdRecord {
        pid: std::process::id(),
        mountpoint: opts.mountpoint.clone(),
    };
    if let Err(e) = record.write(&record_file) {
        debug!("cannot write {}: {e}", record_file.display());
    }
    raise_readahead(&root);
    notify::ready(&format!("mounted at {mountpoint}"));
    notify::start_watchdog(runtime.handle());

    let ended_by = runtime.block_on(shutdown.wait(session_ended));
    notify::stopping();
    let _ = std::fs::remove_file(&record_file);
    match ended_by {
        Some(signal) => {
            info!("{signal}: unmounting {mountpoint}");
            session
                .umount_and_join()
                .with_context(|| format!("unmounting {mountpoint} (is it busy?)"))?;
        }
        None => {
            info!("{mountpoint} was unmounted");
            session.join().context("FUSE session")?;
        }
    }
    info!("stopped");
    Ok(())
}

/// Read-only, no atime updates, permissions checked by the kernel from our modes. Other users
/// may enter only when running as root (a system mount); an ordinary user's mount stays private.
fn mount_config() -> fuser::Config {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName("musicfs".into()),
        MountOption::Subtype("musicfs".into()),
        MountOption::RO,
        MountOption::NoAtime,
        MountOption::DefaultPermissions,
    ];
    config.acl = if nix::unistd::geteuid().is_root() {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(FUSE_THREADS);
    config.clone_fd = true;
    config
}

/// FUSE offers the kernel's default readahead (128 KiB) and lets the filesystem only lower it,
/// so a player's sequential reads would reach fetchd as 128 KiB requests. Raising the mount's
/// readahead to [`READAHEAD`] makes them [`MAX_IO`] (1 MiB) long, four in flight at once, so
/// fetchd reads the next chunks while the last ones travel. Only root may write it; otherwise
/// this is skipped.
fn raise_readahead(root: &std::fs::Metadata) {
    let (major, minor) = (
        nix::sys::stat::major(root.dev()),
        nix::sys::stat::minor(root.dev()),
    );
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&knob, (READAHEAD / 1024).to_string()) {
        Ok(()) => debug!("readahead raised to {} KiB", READAHEAD / 1024),
        Err(err) => debug!("readahead left at the kernel's default ({knob}: {err})"),
    }
}

/// The signals that stop mountd, registered before mounting so none is missed.
struct Shutdown {
    term: Signal,
    interrupt: Signal,
}

impl Shutdown {
    fn install(runtime: &Runtime) -> anyhow::Result<Self> {
        let _context = runtime.enter();
        Ok(Self {
            term: signal(SignalKind::terminate()).context("handling SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("handling SIGINT")?,
        })
    }

    /// The signal's name, or `None` when the session ended first (unmounted from outside).
    async fn wait(mut self, session_ended: oneshot::Receiver<()>) -> Option<&'static str> {
        tokio::select! {
            _ = self.term.recv() => Some("SIGTERM"),
            _ = self.interrupt.recv() => Some("SIGINT"),
            _ = session_ended => None,
        }
    }
}
