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
/// `Serve*` value (for example `server.clone().serve()`), evaluated per connection.
#[macro_export]
macro_rules! serve_unix {
    ($listener:expr, $serve:expr, admit = $admit:expr) => {{
        use $crate::__reexport::{futures::StreamExt as _, tarpc::server::Channel as _};
        $crate::server::accept_loop_admitting($listener, $admit, move |stream| {
            let transport = $crate::codec::transport(stream);
            let serve = $serve;
            async move {
                $crate::__reexport::tarpc::server::BaseChannel::with_defaults(transport)
                    .execute(serve)
                    .for_each(|response| async move {
                        tokio::spawn(response);
                    })
                    .await;
            }
        })
    }};
    ($listener:expr, $serve:expr) => {
        $crate::serve_unix!(
            $listener,
            $serve,
            admit = |_: &tokio::net::UnixStream| Ok(())
        )
    };
}
