//! musicfs-indexd: the search side of MusicFS.
//!
//! It owns the tantivy index and the saved collections under the state dir's `index/`, and
//! serves the [`Index`](musicfs_ipc::Index) service on its socket: fetchd feeds it catalog
//! changes (`apply`, following the catalog's change sequence), mountd and `musicfsctl` search
//! it. It never opens the network, and writes nothing outside `index/`.
//!
//! Code map: `schema.rs` (fields, analyzers, documents), `query.rs` (the query language's
//! parser), `compile.rs` (parsed query → tantivy query), `store.rs` (open/rebuild, apply,
//! commit with the catalog sequence), `search.rs` (query to hits), `rank.rs` (the order of
//! hits), `shown.rs` (what hits are shown as, in memory per segment), `collections.rs` (saved and built-in collections), `service.rs` (the tarpc service).

use std::os::unix::net::UnixListener;
use std::path::Path;

pub mod collections;
pub mod compile;
pub mod query;
pub mod rank;
pub mod schema;
pub mod search;
pub mod service;
pub mod shown;
pub mod store;

pub use service::IndexServer;
pub use store::IndexStore;

use musicfs_ipc::Index as _;

/// The service name, as in [`musicfs_ipc::layout::INDEXD`].
pub const SERVICE: &str = musicfs_ipc::layout::INDEXD;

/// Opens the index in `index_dir` and serves `listener` until SIGTERM or SIGINT, on a runtime
/// of its own.
pub fn run(listener: UnixListener, index_dir: &Path) -> anyhow::Result<()> {
    let server = IndexServer::open(index_dir)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listener, server))
}

/// Serves `listener` until SIGTERM or SIGINT (must run inside a tokio runtime).
pub async fn serve(listener: UnixListener, server: IndexServer) -> anyhow::Result<()> {
    let listener = musicfs_ipc::listen::into_tokio(listener)?;
    tracing::info!("serving on its socket");
    musicfs_ipc::server::until_stopped(musicfs_ipc::serve_unix!(listener, server.clone().serve()))
        .await?;
    Ok(())
}

#[cfg(test)]
mod testutil;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use musicfs_ipc::client::Reconnecting;
    use musicfs_ipc::{IndexClient, IndexError, WorkerClient};

    use super::*;
    use crate::testutil::{reset, track};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_the_index_over_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("indexd.sock");
        let listener = musicfs_ipc::listen::bind(&path).unwrap();
        let server = IndexServer::open(&dir.path().join("index")).unwrap();
        let serving = tokio::spawn(serve(listener, server));
        let client = Reconnecting::<IndexClient>::new(SERVICE, &path, Duration::from_secs(5));

        let hello = client
            .call(|c, ctx| async move { c.hello(ctx).await })
            .await;
        assert_eq!(hello.unwrap().service, "indexd");
        let health = client
            .call(|c, ctx| async move { c.health(ctx).await })
            .await;
        let health = health.unwrap().unwrap();
        assert!(
            health.ok && health.detail.contains("rebuilding"),
            "{health:?}"
        );
        let up_to = client
            .call(|c, ctx| async move { c.indexed_up_to(ctx).await })
            .await;
        assert_eq!(up_to.unwrap().unwrap().seq, 0);
        let search = |q: &'static str| {
            client.call(move |c, ctx| async move { c.search(ctx, q.to_owned(), 1000).await })
        };
        assert!(matches!(
            search("blur").await.unwrap(),
            Err(IndexError::NotReady(_))
        ));

        let batch = reset(
            3,
            vec![track(1, "Blur", "Song 2"), track(2, "Björk", "Hyperballad")],
        );
        let applied = client
            .call(|c, ctx| {
                let batch = batch.clone();
                async move { c.apply(ctx, batch).await }
            })
            .await;
        assert_eq!(applied.unwrap().unwrap().seq, 3);
        let hits = search("bjork").await.unwrap().unwrap();
        assert_eq!(
            (hits[0].artist.as_str(), hits[0].title.as_str()),
            ("Björk", "Hyperballad")
        );
        assert!(matches!(
            search("(").await.unwrap(),
            Err(IndexError::BadQuery(_))
        ));

        let add = |name: &'static str, query: &'static str| {
            client.call(move |c, ctx| async move {
                c.add_collection(ctx, name.to_owned(), query.to_owned())
                    .await
            })
        };
        add("Britpop", "artist:blur").await.unwrap().unwrap();
        assert!(matches!(
            add("Bad", "year:x").await.unwrap(),
            Err(IndexError::BadQuery(_))
        ));
        assert!(matches!(
            add("Recently Added", "blur").await.unwrap(),
            Err(IndexError::BuiltinCollection(_))
        ));
        let collections = client
            .call(|c, ctx| async move { c.collections(ctx).await })
            .await;
        let collections = collections.unwrap().unwrap();
        let names: Vec<&str> = collections.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Recently Added", "Britpop"]);
        let remove = |name: &'static str| {
            client
                .call(move |c, ctx| async move { c.remove_collection(ctx, name.to_owned()).await })
        };
        assert!(matches!(
            remove("Recently Added").await.unwrap(),
            Err(IndexError::BuiltinCollection(_))
        ));
        remove("Britpop").await.unwrap().unwrap();
        assert!(matches!(
            remove("Britpop").await.unwrap(),
            Err(IndexError::NoSuchCollection(_))
        ));

        // The supervisor and `musicfsctl status` ask every worker through the Worker service.
        let worker = Reconnecting::<WorkerClient>::new(SERVICE, &path, Duration::from_secs(5));
        let health = worker
            .call(|c, ctx| async move { c.health(ctx).await })
            .await;
        assert!(health.unwrap().unwrap().detail.contains("2 tracks"));
        serving.abort();
    }
}
