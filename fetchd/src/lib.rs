//! musicfs-fetchd owns the origins, the chunk store (CAS) and the catalog (tracks, tags,
//! namespace). It serves the `Fetch` service to mountd: lookups from the in-memory namespace,
//! track bytes through the verified chunk store. It never serves FUSE itself.

pub mod cache;
pub mod catalog;
pub mod cdc;
pub mod chunks;
pub mod covers;
pub mod dav;
pub mod deferred;
pub mod delta;
pub mod feeder;
pub mod health;
pub mod html_listing;
pub mod http;
pub mod id3v2;
pub mod local;
pub mod names;
pub mod namespace;
pub mod namespaces;
pub mod net_watch;
pub mod netfs;
pub mod origin;
pub mod origins;
pub mod outside;
pub mod partial;
pub mod pictureless;
pub mod pins;
pub mod reader;
pub mod replicas;
pub mod reread;
pub mod restart;
pub mod s3;
pub mod s3_keys;
pub mod s3_role;
pub mod s3_sso;
pub mod s3_workload;
pub mod scan;
pub mod service;
pub mod sftp;
pub mod sigv4;
pub mod tags;
pub mod template;
pub mod track;
pub mod watch;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use musicfs_ipc::config::Config;
use musicfs_ipc::layout::StateDir;
use musicfs_ipc::peer::AdminPolicy;
use musicfs_ipc::{Fetch as _, FetchAdmin as _};

use crate::catalog::Catalog;
use crate::chunks::ChunkStore;
use crate::namespace::Namespace;
use crate::namespaces::Namespaces;
use crate::origins::Origins;
use crate::service::{AdminServer, FetchServer, State};
use crate::template::Templates;

pub struct Options {
    pub state_dir: PathBuf,
    pub origins: Vec<musicfs_ipc::origin::OriginConfig>,
    pub config: Config,
}

/// How fetchd's process ends: for a restart (see `restart`), served, or failed (logged).
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) if restart::requested() => std::process::ExitCode::from(restart::EXIT_RESTART),
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("musicfs-fetchd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Opens the state, serves the namespace persisted by the last run at once, rescans the
/// origins in the background, and serves until SIGTERM/SIGINT.
/// `data` serves mountd (`Fetch`); `admin` serves `FetchAdmin` to the peers `AdminPolicy` admits.
pub fn run(
    opts: Options,
    data: std::os::unix::net::UnixListener,
    (admin, admins): (std::os::unix::net::UnixListener, AdminPolicy),
) -> anyhow::Result<()> {
    let started = Instant::now();
    let layout = StateDir::new(&opts.state_dir);
    let templates =
        Templates::parse(&opts.config.template, &opts.config.views).map_err(anyhow::Error::msg)?;
    let catalog = Catalog::open_or_set_aside(&layout.catalog())?;
    let limits = cache::Limits::from_config(&opts.config.cache);
    let store = Arc::new(
        ChunkStore::open_with(&layout.chunks(), limits).context("opening the chunk store")?,
    );
    let stats = Arc::default();
    let origins = Arc::new(Origins::open(&opts.origins, Arc::clone(&stats))?);
    let namespace = Namespace::from_nodes(catalog.nodes()?).with_catalog(catalog.track_ids()?);
    let pins = Arc::new(pins::Pins::open(catalog.clone(), store.clone())?);
    let state = Arc::new(State {
        reader: reader::TrackReader::new(
            catalog.clone(),
            store.clone(),
            origins.clone(),
            layout.chunks().join("staging"),
        )
        .context("preparing the staging area")?,
        catalog,
        catalog_changed: tokio::sync::Notify::new(),
        namespaces: Namespaces::new(
            namespace,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        ),
        store,
        origins,
        stats,
        progress: Default::default(),
        rereads: Default::default(),
        pins,
    });
    pins::start(&state).context("starting the cache's background fetch")?;
    let weak = Arc::downgrade(&state);
    state.reader.set_next_track(Box::new(move |id| {
        weak.upgrade()
            .and_then(|state| state.namespace().next_track(id))
    }));
    let (tracks, _) = state.namespace().counts();
    tracing::info!(
        tracks,
        ms = started.elapsed().as_millis() as u64,
        "catalog loaded; serving"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let data = musicfs_ipc::listen::into_tokio(data)?;
        let admin = musicfs_ipc::listen::into_tokio(admin)?;
        tokio::spawn(feeder::run(
            state.clone(),
            layout.socket(musicfs_ipc::layout::INDEXD),
        ));
        state.origins.start_probes();
        net_watch::start();
        let rescanner = watch::Rescanner::new(state.clone(), templates);
        let admin_server = AdminServer(state.clone(), rescanner.clone());
        tokio::task::spawn_blocking(move || {
            let _ = rescanner.rescan(None, true);
            rescanner.start_watching();
        });
        let server = FetchServer(state);
        // mountd waits for each answer before it asks again on a connection.
        let serve = musicfs_ipc::serve_unix!(data, server.clone().serve(), in_order);
        let serve_admin = musicfs_ipc::serve_unix!(
            admin,
            admin_server.clone().serve(),
            admit = move |stream| admins.check(stream)
        );
        musicfs_ipc::server::until_stopped(async {
            tokio::join!(serve, serve_admin);
        })
        .await?;
        anyhow::Ok(())
    });
    // A scan in flight must not hold up shutdown: its open write transaction is simply never
    // committed, so the catalog stays as the last committed batch left it.
    runtime.shutdown_background();
    result
}
