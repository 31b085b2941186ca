//! [`Blocking`]: a [`Reconnecting`] client for plain threads that wait for each answer (mountd's
//! FUSE threads).
//!
//! Each call borrows a connection from a pool, with a single-threaded runtime of its own, and the
//! calling thread drives it: the worker's answer wakes the caller directly. Blocking on a shared
//! multi-threaded runtime instead hands the call to a runtime worker and back, one more wake-up
//! per call, which cost about 50 µs on an idle machine (`examples/rpc_bench.rs` measures both).
//! The pool holds as many connections as calls ever ran at once.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::client::{CallError, Connect, Context, Reconnecting, RpcError};

pub struct Blocking<C> {
    /// The worker to connect to; never used for calls itself.
    template: Reconnecting<C>,
    idle: Mutex<Vec<Conn<C>>>,
}

/// A connection and the runtime its client runs on (only while a call drives it).
struct Conn<C> {
    runtime: Runtime,
    client: Reconnecting<C>,
}

impl<C: Connect> Blocking<C> {
    /// Calls go to `client`'s worker, each on a connection of its own while it runs.
    pub fn new(client: Reconnecting<C>) -> Self {
        Self {
            template: client,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn retry_for(&self) -> Duration {
        self.template.retry_for()
    }

    /// [`Reconnecting::call`], blocking this thread, which must not be a runtime's own.
    pub fn call<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        F: Fn(C, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        self.call_within(self.retry_for(), f)
    }

    /// [`Reconnecting::call_within`], blocking this thread, which must not be a runtime's own.
    pub fn call_within<T, F, Fut>(&self, within: Duration, f: F) -> Result<T, CallError>
    where
        F: Fn(C, Context) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => Conn {
                runtime: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| CallError::Unavailable {
                        service: self.template.service().to_owned(),
                        secs: 0.0,
                        last: format!("no runtime for the call: {e}"),
                    })?,
                client: self.template.fresh(),
            },
        };
        let result = conn.runtime.block_on(conn.client.call_within(within, f));
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        result
    }
}
