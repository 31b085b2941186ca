//! The accept loop every worker runs on its listening socket.

use std::future::Future;

use tokio::net::{UnixListener, UnixStream};

/// Accepts connections for ever, running `handle` on each in its own task. Accept errors (for
/// example running out of descriptors) are logged and retried after a short pause.
pub async fn accept_loop<F, Fut>(listener: UnixListener, handle: F)
where
    F: Fn(UnixStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream));
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs `serving` until it ends or SIGTERM/SIGINT arrives, whichever is first; the signal is
/// logged. Every worker's main loop.
pub async fn until_stopped(serving: impl Future<Output = ()>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        () = serving => {}
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    Ok(())
}

/// Like [`accept_loop`], refusing (closing at once, with a logged reason) every connection
/// `admit` rejects.
pub async fn accept_loop_admitting<A, F, Fut>(listener: UnixListener, admit: A, handle: F)
where
    A: Fn(&UnixStream) -> Result<(), String>,
    F: Fn(UnixStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    accept_loop(listener, |stream| {
        let admitted = admit(&stream);
        if let Err(why) = &admitted {
            tracing::warn!("refused a connection: {why}");
        }
        let served = admitted.ok().map(|()| handle(stream));
        async move {
            if let Some(served) = served {
                served.await;
            }
        }
    })
    .await
}

/// Serves one tarpc service on `listener`: `$serve` is an expression building the generated
/// `Serve*` value (for example `server.clone().serve()`), evaluated per connection. Each request
/// runs in a task of its own, so one connection's requests run side by side.
///
/// `serve_unix!(listener, serve, in_order)` answers each connection's requests one at a time,
/// on the task that reads the connection, so an answer is written by the thread that made it:
/// no hand-off to another task and back. That is about 45 µs of a 64 KiB read answered from the
/// cache (bench/RESULTS.md). It suits clients that wait for each answer before asking again,
/// as mountd's `Blocking` does: requests pipelined on one connection wait for each other.
#[macro_export]
macro_rules! serve_unix {
    (@serve $listener:expr, $serve:expr, $admit:expr, |$response:ident| $run:expr) => {{
        use $crate::__reexport::{futures::StreamExt as _, tarpc::server::Channel as _};
        $crate::server::accept_loop_admitting($listener, $admit, move |stream| {
            let transport = $crate::codec::transport(stream);
            let serve = $serve;
            async move {
                $crate::__reexport::tarpc::server::BaseChannel::with_defaults(transport)
                    .execute(serve)
                    .for_each(|$response| async move { $run })
                    .await;
            }
        })
    }};
    ($listener:expr, $serve:expr, admit = $admit:expr) => {
        $crate::serve_unix!(@serve $listener, $serve, $admit, |response| {
            tokio::spawn(response);
        })
    };
    ($listener:expr, $serve:expr, in_order) => {
        $crate::serve_unix!(
            @serve $listener,
            $serve,
            |_: &tokio::net::UnixStream| Ok(()),
            |response| response.await
        )
    };
    ($listener:expr, $serve:expr) => {
        $crate::serve_unix!(
            $listener,
            $serve,
            admit = |_: &tokio::net::UnixStream| Ok(())
        )
    };
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tarpc::context::{self, Context};

    use crate::services::{Worker, WorkerClient};
    use crate::types::{Health, Hello};
    use crate::WorkerError;

    /// Takes `PAUSE` to answer `health`.
    #[derive(Clone)]
    struct Slow;

    const PAUSE: Duration = Duration::from_millis(200);

    impl Worker for Slow {
        async fn hello(self, _: Context) -> Hello {
            unreachable!("not asked")
        }
        async fn health(self, _: Context) -> Result<Health, WorkerError> {
            tokio::time::sleep(PAUSE).await;
            Ok(Health {
                service: "slow".into(),
                pid: std::process::id(),
                ok: true,
                detail: String::new(),
            })
        }
    }

    /// How long two `health` calls made at once on one connection take together.
    async fn two_at_once(in_order: bool) -> Duration {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("slow.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            if in_order {
                crate::serve_unix!(listener, Slow.serve(), in_order).await
            } else {
                crate::serve_unix!(listener, Slow.serve()).await
            }
        });
        let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let client = WorkerClient::new(Default::default(), crate::codec::transport(stream)).spawn();
        let start = Instant::now();
        let (a, b) = tokio::join!(
            client.health(context::current()),
            client.health(context::current())
        );
        let took = start.elapsed();
        assert!(a.unwrap().unwrap().ok && b.unwrap().unwrap().ok);
        server.abort();
        took
    }

    #[tokio::test]
    async fn a_connections_requests_run_side_by_side_or_in_order() {
        let side_by_side = two_at_once(false).await;
        assert!(
            side_by_side < 2 * PAUSE,
            "side by side took {side_by_side:?}"
        );
        let in_order = two_at_once(true).await;
        assert!(in_order >= 2 * PAUSE, "in order took {in_order:?}");
    }
}
