//! A client that finds its worker by socket path, reconnects by itself when the worker restarts,
//! and retries (idempotent) calls until a deadline. Only past the deadline does the caller see an
//! error; a worker that crashes and comes back is a short stall, never a failure.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use tarpc::client::RpcError;
use tarpc::context;
pub use tarpc::context::Context;
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::services::{FetchAdminClient, FetchClient, IndexClient, WorkerClient};
use crate::types::Hello;
use crate::PROTOCOL_VERSION;

/// Default time a call keeps retrying across reconnects before it fails.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(30);
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// A generated tarpc client that can be started on a fresh connection.
pub trait Connect: Clone + Send + Sync + 'static {
    fn start(stream: UnixStream) -> Self;
    fn hello(&self, ctx: Context) -> impl Future<Output = Result<Hello, RpcError>> + Send;
}

impl Connect for FetchClient {
    fn start(stream: UnixStream) -> Self {
        FetchClient::new(
            tarpc::client::Config::default(),
            crate::codec::transport(stream),
        )
        .spawn()
    }
    fn hello(&self, ctx: Context) -> impl Future<Output = Result<Hello, RpcError>> + Send {
        FetchClient::hello(self, ctx)
    }
}

impl Connect for FetchAdminClient {
    fn start(stream: UnixStream) -> Self {
        FetchAdminClient::new(
            tarpc::client::Config::default(),
            crate::codec::transport(stream),
        )
        .spawn()
    }
    fn hello(&self, ctx: Context) -> impl Future<Output = Result<Hello, RpcError>> + Send {
        FetchAdminClient::hello(self, ctx)
    }
}

impl Connect for IndexClient {
    fn start(stream: UnixStream) -> Self {
        IndexClient::new(
            tarpc::client::Config::default(),
            crate::codec::transport(stream),
        )
        .spawn()
    }
    fn hello(&self, ctx: Context) -> impl Future<Output = Result<Hello, RpcError>> + Send {
        IndexClient::hello(self, ctx)
    }
}

impl Connect for WorkerClient {
    fn start(stream: UnixStream) -> Self {
        WorkerClient::new(
            tarpc::client::Config::default(),
            crate::codec::transport(stream),
        )
        .spawn()
    }
    fn hello(&self, ctx: Context) -> impl Future<Output = Result<Hello, RpcError>> + Send {
        WorkerClient::hello(self, ctx)
    }
}

/// Why a call failed for good.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No answer from the worker before the deadline (it is down, restarting or hung).
    #[error("{service} did not answer within {secs:.1} s: {last}")]
    Unavailable {
        service: String,
        secs: f64,
        last: String,
    },
    /// The worker answers but speaks another protocol version, or aborted the request.
    #[error("{0}")]
    Protocol(String),
}

pub struct Reconnecting<C> {
    path: PathBuf,
    service: &'static str,
    retry_for: Duration,
    slot: Mutex<Option<(u64, C)>>,
}

impl<C: Connect> Reconnecting<C> {
    pub fn new(service: &'static str, path: impl AsRef<Path>, retry_for: Duration) -> Self {
        Self {
            path: path.as_ref().to_owned(),
            service,
            retry_for,
            slot: Mutex::new(None),
        }
    }

    /// Another client of the same worker, with a connection of its own (made on first use).
    pub fn fresh(&self) -> Self {
        Self::new(self.service, &self.path, self.retry_for)
    }

    pub fn retry_for(&self) -> Duration {
        self.retry_for
    }

    /// The worker's name, as errors show it.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Runs `f` with a connected client, reconnecting and retrying until `retry_for` has passed.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        F: Fn(C, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        self.call_within(self.retry_for, f).await
    }

    /// One attempt on the connection (made now if there is none), its answer awaited for up to
    /// `within`: for a long call that must fail when the worker goes away mid-call, not be sent
    /// again until a distant deadline.
    pub async fn call_once<T, F, Fut>(&self, within: Duration, f: F) -> Result<T, CallError>
    where
        F: FnOnce(C, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let started = Instant::now();
        self.attempt(started + within, f)
            .await
            .map_err(|failed| match failed {
                Failed::Final(e) => e,
                Failed::Retry(last) => CallError::Unavailable {
                    service: self.service.to_owned(),
                    secs: started.elapsed().as_secs_f64(),
                    last,
                },
            })
    }

    /// Like [`call`](Self::call) with an explicit deadline.
    pub async fn call_within<T, F, Fut>(&self, within: Duration, f: F) -> Result<T, CallError>
    where
        F: Fn(C, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let give_up = Instant::now() + within;
        let mut backoff = Duration::from_millis(5);
        loop {
            let last = match self.attempt(give_up, &f).await {
                Ok(v) => return Ok(v),
                Err(Failed::Final(e)) => return Err(e),
                Err(Failed::Retry(last)) => last,
            };
            if Instant::now() + backoff >= give_up {
                return Err(CallError::Unavailable {
                    service: self.service.to_owned(),
                    secs: within.as_secs_f64(),
                    last,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One call on the connection (made now if there is none) with `deadline`. A connection
    /// that failed is forgotten, so the next attempt makes a new one.
    async fn attempt<T, F, Fut>(&self, deadline: Instant, f: F) -> Result<T, Failed>
    where
        F: FnOnce(C, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let (generation, client) = match self.client().await {
            Ok(got) => got,
            Err(CallError::Unavailable { last, .. }) => return Err(Failed::Retry(last)),
            Err(e) => return Err(Failed::Final(e)),
        };
        let mut ctx = context::current();
        ctx.deadline = deadline.into_std();
        match f(client, ctx).await {
            Ok(v) => Ok(v),
            Err(RpcError::Server(e)) => Err(Failed::Final(CallError::Protocol(e.to_string()))),
            Err(e) => {
                self.forget(generation).await;
                Err(Failed::Retry(e.to_string()))
            }
        }
    }

    async fn client(&self) -> Result<(u64, C), CallError> {
        let mut slot = self.slot.lock().await;
        if let Some((generation, client)) = slot.as_ref() {
            return Ok((*generation, client.clone()));
        }
        let unavailable = |last: String| CallError::Unavailable {
            service: self.service.to_owned(),
            secs: 0.0,
            last,
        };
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|e| unavailable(format!("connect {}: {e}", self.path.display())))?;
        let client = C::start(stream);
        let mut ctx = context::current();
        ctx.deadline = std::time::Instant::now() + HELLO_TIMEOUT;
        let hello = client
            .hello(ctx)
            .await
            .map_err(|e| unavailable(format!("handshake: {e}")))?;
        if hello.protocol != PROTOCOL_VERSION {
            return Err(CallError::Protocol(format!(
                "{} speaks protocol {} but this program speaks {}; run matching versions",
                hello.service, hello.protocol, PROTOCOL_VERSION
            )));
        }
        let generation = slot.as_ref().map_or(0, |(g, _)| g + 1);
        *slot = Some((generation, client.clone()));
        Ok((generation, client))
    }

    async fn forget(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            *slot = None;
        }
    }
}

/// Why an attempt failed: for good, or in a way another attempt may get past (the worker
/// gone or restarting), with what it said.
enum Failed {
    Final(CallError),
    Retry(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{Worker, WorkerClient};
    use crate::{Health, WorkerError};

    /// A worker whose health check never answers.
    #[derive(Clone)]
    struct Hangs;

    impl Worker for Hangs {
        async fn hello(self, _: Context) -> Hello {
            Hello::new("hangs")
        }
        async fn health(self, _: Context) -> Result<Health, WorkerError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn call_once_fails_when_the_worker_goes_away_mid_call_instead_of_retrying() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hangs.sock");
        // The worker on a runtime of its own: shutting it down closes every connection, as
        // the worker's process exiting would.
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.spawn(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                crate::serve_unix!(listener, Hangs.serve()).await
            });
            let _ = stopped.recv();
            rt.shutdown_background();
        });
        let client = Reconnecting::<WorkerClient>::new("hangs", &path, Duration::from_secs(30));
        client
            .call(|c, ctx| async move { c.hello(ctx).await })
            .await
            .unwrap();

        // The worker dies (its socket file stays, refusing) while the hour-long call waits.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.send(()).unwrap();
        });
        let started = Instant::now();
        let call = client.call_once(Duration::from_secs(3600), |c, ctx| async move {
            c.health(ctx).await
        });
        let err = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("call_once kept waiting after the worker went away")
            .unwrap_err();
        assert!(matches!(err, CallError::Unavailable { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
