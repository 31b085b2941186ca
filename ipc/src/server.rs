//! The accept loop every worker runs on its listening socket.

use std::cell::RefCell;
use std::future::Future;
use std::task::Poll;

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
/// on a thread of the connection's own: see [`serve_on_threads`].
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
        $crate::server::serve_on_threads($listener, $serve)
    };
    ($listener:expr, $serve:expr) => {
        $crate::serve_unix!(
            $listener,
            $serve,
            admit = |_: &tokio::net::UnixStream| Ok(())
        )
    };
}

/// Serves `serve` on `listener` with a thread for each connection, which answers its
/// requests one at a time. The thread waits for the connection on a runtime of its own and
/// runs each request outside it, with the calling runtime's handle entered: a request that
/// blocks (a read from the cache or an origin) blocks only its own connection, without the
/// hand-offs `block_in_place` costs a runtime worker (another worker is woken to take over
/// its tasks, and the threads swap roles after). The answer is written by the thread that
/// made it, and a new request wakes the thread that serves it.
///
/// It suits clients that wait for each answer before asking again, as mountd's `Blocking`
/// does: requests pipelined on one connection wait for each other. Measured in
/// bench/RESULTS.md ("IPC round trip").
pub async fn serve_on_threads<S>(listener: UnixListener, serve: S)
where
    S: tarpc::server::Serve + Clone + Send + 'static,
    S::Req: serde::de::DeserializeOwned + Send + 'static,
    S::Resp: serde::Serialize + Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    accept_loop(listener, |stream| {
        let (serve, runtime) = (serve.clone(), runtime.clone());
        let started = stream.into_std().and_then(|stream| {
            std::thread::Builder::new()
                .name("rpc-conn".into())
                .spawn(move || serve_connection(stream, serve, runtime))
        });
        if let Err(e) = started {
            tracing::warn!("cannot serve a connection: {e}");
        }
        std::future::ready(())
    })
    .await
}

fn serve_connection<S>(
    stream: std::os::unix::net::UnixStream,
    serve: S,
    runtime: tokio::runtime::Handle,
) where
    S: tarpc::server::Serve + Clone,
    S::Req: serde::de::DeserializeOwned,
    S::Resp: serde::Serialize,
{
    use futures::{Stream as _, StreamExt as _};
    use tarpc::server::{BaseChannel, Channel as _};
    let own = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(own) => own,
        Err(e) => return tracing::warn!("cannot serve a connection: {e}"),
    };
    let requests = own.block_on(async {
        let transport = crate::codec::transport(UnixStream::from_std(stream)?);
        std::io::Result::Ok(BaseChannel::with_defaults(transport).requests())
    });
    let mut requests = match requests {
        Ok(requests) => std::pin::pin!(requests),
        Err(e) => return tracing::warn!("cannot serve a connection: {e}"),
    };
    AFTER_ANSWER.with(|jobs| *jobs.borrow_mut() = Some(Vec::new()));
    // A request that arrived while the last answer was written.
    let mut arrived = None;
    loop {
        // Polling for the next request also writes the answers made since.
        let next = match arrived.take() {
            Some(next) => next,
            None => own.block_on(requests.next()),
        };
        let request = match next {
            Some(Ok(request)) => request,
            Some(Err(e)) => break tracing::debug!("connection ended: {e}"),
            None => break,
        };
        let _entered = runtime.enter();
        futures::executor::block_on(request.execute(serve.clone()));
        let jobs = AFTER_ANSWER.with(|jobs| jobs.borrow_mut().as_mut().map(std::mem::take));
        let jobs = jobs.unwrap_or_default();
        if !jobs.is_empty() {
            // Write the answer now (one poll), then do what the request left for after it.
            let poll = std::future::poll_fn(|cx| Poll::Ready(requests.as_mut().poll_next(cx)));
            if let Poll::Ready(next) = own.block_on(poll) {
                arrived = Some(next);
            }
            for job in jobs {
                job();
            }
        }
    }
}

type Job = Box<dyn FnOnce()>;

thread_local! {
    /// What the request being served left for after its answer: `Some` on the threads of
    /// [`serve_on_threads`].
    static AFTER_ANSWER: RefCell<Option<Vec<Job>>> = const { RefCell::new(None) };
}

/// Runs `job` once the answer to the request this thread is serving has been written, when
/// the request is served by [`serve_on_threads`]; otherwise runs it now. For work the asker
/// need not wait for: fetchd stores the bytes it fetched for a read after sending them.
pub fn after_answer(job: impl FnOnce() + 'static) {
    let job = AFTER_ANSWER.with(|jobs| match jobs.borrow_mut().as_mut() {
        Some(jobs) => {
            jobs.push(Box::new(job));
            None
        }
        None => Some(job),
    });
    if let Some(job) = job {
        job();
    }
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

    /// Notes what happened, in order; its `health` leaves a slow job for after the answer.
    #[derive(Clone, Default)]
    struct Later(std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>);

    impl Later {
        fn note(&self, what: &'static str) {
            self.0.lock().unwrap().push(what);
        }
    }

    impl Worker for Later {
        async fn hello(self, _: Context) -> Hello {
            unreachable!("not asked")
        }
        async fn health(self, _: Context) -> Result<Health, WorkerError> {
            let later = self.clone();
            super::after_answer(move || {
                std::thread::sleep(PAUSE);
                later.note("job");
            });
            self.note("handler");
            Ok(Health {
                service: "later".into(),
                pid: std::process::id(),
                ok: true,
                detail: String::new(),
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_left_for_after_the_answer_runs_once_the_answer_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("later.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let later = Later::default();
        let serving = later.clone();
        let server =
            tokio::spawn(
                async move { crate::serve_unix!(listener, serving.serve(), in_order).await },
            );
        let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let client = WorkerClient::new(Default::default(), crate::codec::transport(stream)).spawn();
        for _ in 0..2 {
            assert!(client.health(context::current()).await.unwrap().unwrap().ok);
            later.note("answered");
        }
        let deadline = Instant::now() + 10 * PAUSE;
        while later.0.lock().unwrap().len() < 6 && Instant::now() < deadline {
            tokio::time::sleep(PAUSE / 10).await;
        }
        // The second request waited for the first one's job: one connection, one thread.
        assert_eq!(
            *later.0.lock().unwrap(),
            ["handler", "answered", "job", "handler", "answered", "job"]
        );
        // Outside a connection's thread the job runs at once.
        let now = Later::default();
        let _ = now.clone().health(context::current()).await;
        assert_eq!(*now.0.lock().unwrap(), ["job", "handler"]);
        server.abort();
    }
}
