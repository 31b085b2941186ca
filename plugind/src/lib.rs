//! musicfs-plugind: the plugin host of MusicFS.
//!
//! It will own the plugin instances (WASM modules under wasmtime with fuel, epoch and memory
//! limits; native libraries behind the same trait) loaded read-only from the state dir's
//! `plugins/`. For now it hosts no plugin: it only answers the [`Worker`] service (`hello`,
//! `health`) on its socket, so the supervisor and `musicfsctl status` can start, restart and watch
//! it like every other worker. It never opens files or sockets on a plugin's behalf.

use std::os::unix::net::UnixListener;

use musicfs_ipc::{Health, Hello, Worker, WorkerError};
use tarpc::context::Context;

/// The service name, as in [`musicfs_ipc::layout::PLUGIND`].
pub const SERVICE: &str = musicfs_ipc::layout::PLUGIND;

/// The `Worker` service of plugind.
#[derive(Clone, Debug, Default)]
pub struct PluginHost;

impl Worker for PluginHost {
    async fn hello(self, _: Context) -> Hello {
        Hello::new(SERVICE)
    }

    async fn health(self, _: Context) -> Result<Health, WorkerError> {
        Ok(Health {
            service: SERVICE.to_owned(),
            pid: std::process::id(),
            ok: true,
            detail: "serving (no plugins loaded yet)".to_owned(),
        })
    }
}

/// Serves `listener` until SIGTERM or SIGINT, on a runtime of its own.
pub fn run(listener: UnixListener) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listener))
}

/// Serves `listener` until SIGTERM or SIGINT (must run inside a tokio runtime).
pub async fn serve(listener: UnixListener) -> anyhow::Result<()> {
    let listener = musicfs_ipc::listen::into_tokio(listener)?;
    let server = PluginHost;
    tracing::info!("serving on its socket");
    musicfs_ipc::server::until_stopped(musicfs_ipc::serve_unix!(listener, server.clone().serve()))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use musicfs_ipc::client::Reconnecting;
    use musicfs_ipc::WorkerClient;

    use super::*;

    #[tokio::test]
    async fn answers_hello_and_health() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugind.sock");
        let listener = musicfs_ipc::listen::bind(&path).unwrap();
        let server = tokio::spawn(serve(listener));
        let client = Reconnecting::<WorkerClient>::new(SERVICE, &path, Duration::from_secs(5));
        let hello = client
            .call(|c, ctx| async move { c.hello(ctx).await })
            .await;
        assert_eq!(hello.unwrap().service, "plugind");
        let health = client
            .call(|c, ctx| async move { c.health(ctx).await })
            .await;
        assert!(health.unwrap().unwrap().ok);
        server.abort();
    }
}
