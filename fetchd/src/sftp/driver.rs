//! The origin's runtime: a single-threaded tokio runtime driven by the threads that call the
//! origin, with a caretaker thread that drives it while nobody does.
//!
//! A caller runs everything a request needs itself: it writes the request to the socket, waits
//! in epoll, decrypts the answer and hands it to its own future. On a multi-threaded runtime
//! the connection's tasks ran on workers, so each request woke a worker to send it and each
//! answer woke a worker that then woke the caller: two hand-offs between threads per round
//! trip, each costing tens of microseconds when a CPU has to be woken for it. Through the
//! origin alone (`examples/sftp_probe.rs`, nine runs each way): random 64 KiB reads, median
//! 0.43 → 0.32 ms; cold sequential reads, median 350 → 401 MB/s (bench/RESULTS.md).
//!
//! While more threads call at once, one of them drives and the others wait for their answers,
//! as with tokio's `block_on` on a current-thread runtime. Once no call has come for a
//! [`TICK`], the caretaker drives the runtime until the next one, so what the connections do on
//! their own still happens: keepalives and their answers, closing handles, a connection being
//! added in the background, noticing that a server hung up. The first call after a pause waits
//! for the caretaker to let go (two thread wake-ups); calls in a stream do not.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::sync::Notify;

/// How long the runtime must go without a call before the caretaker drives it.
const TICK: Duration = Duration::from_millis(50);

/// The runtime and its caretaker, which stops when this is dropped.
pub(super) struct Driver {
    inner: Arc<Inner>,
}

struct Inner {
    rt: Option<Runtime>,
    /// Threads inside `block_on` now.
    callers: AtomicUsize,
    /// Calls made so far.
    calls: AtomicUsize,
    /// A caller came: the caretaker lets go of the runtime.
    arrived: Notify,
    stop: AtomicBool,
}

impl Driver {
    pub(super) fn new(name: &str) -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let inner = Arc::new(Inner {
            rt: Some(rt),
            callers: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            arrived: Notify::new(),
            stop: AtomicBool::new(false),
        });
        let caretaker = inner.clone();
        std::thread::Builder::new()
            .name(format!("sftp-idle {name}").chars().take(15).collect())
            .spawn(move || caretaker.take_care())?;
        Ok(Self { inner })
    }

    pub(super) fn handle(&self) -> Handle {
        self.inner.rt().handle().clone()
    }

    /// Runs `f` to completion on the calling thread, driving the runtime while it waits (or
    /// waiting for the thread that does). Inside a single-threaded runtime, where blocking is
    /// not allowed, a helper thread does it; on a worker of a multi-threaded one (fetchd's RPC
    /// handlers read through `block_in_place`) the worker hands its other tasks off first.
    pub(super) fn block_on<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Err(_) => self.inner.call(f),
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| self.inner.call(f)),
            Ok(_) => std::thread::scope(|s| {
                s.spawn(|| self.inner.call(f))
                    .join()
                    .expect("sftp call panicked")
            }),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.inner.arrived.notify_one();
    }
}

impl Inner {
    fn rt(&self) -> &Runtime {
        self.rt
            .as_ref()
            .expect("the runtime lives as long as the driver")
    }

    fn call<F: Future>(&self, f: F) -> F::Output {
        struct Calling<'a>(&'a AtomicUsize);
        impl Drop for Calling<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.callers.fetch_add(1, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::Relaxed);
        let _calling = Calling(&self.callers);
        self.arrived.notify_one();
        self.rt().block_on(f)
    }

    /// Once a tick has passed with no call, drives the runtime until a caller comes. While
    /// calls keep coming, their callers drive it and the caretaker stays out of their way.
    fn take_care(&self) {
        let mut seen = usize::MAX;
        while !self.stop.load(Ordering::Relaxed) {
            let calls = self.calls.load(Ordering::Relaxed);
            if std::mem::replace(&mut seen, calls) != calls
                || self.callers.load(Ordering::SeqCst) > 0
            {
                std::thread::sleep(TICK);
                continue;
            }
            // A permit left by a caller that has come and gone ends this at once.
            self.rt().block_on(self.arrived.notified());
        }
    }
}

impl Drop for Inner {
    /// Without waiting for the tasks: the last owner may be a task of another runtime.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Waits up to 2 s for `done`.
    fn eventually(done: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        done()
    }

    #[test]
    fn tasks_run_between_calls_and_calls_still_complete() {
        let driver = Driver::new("tasks").unwrap();
        // A timer and a task that no caller waits for, as a keepalive is.
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        driver.handle().spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert!(
            eventually(|| fired.load(Ordering::SeqCst)),
            "nobody ran the task"
        );
        // A caller takes the runtime back from the caretaker, from several threads at once.
        std::thread::scope(|s| {
            for i in 0..4u64 {
                let driver = &driver;
                s.spawn(move || {
                    let got = driver.block_on(async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        i
                    });
                    assert_eq!(got, i);
                });
            }
        });
    }

    #[test]
    fn dropping_the_driver_stops_its_caretaker() {
        let caretakers = || {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.trim() == "sftp-idle dropt")
                .count()
        };
        let driver = Driver::new("dropt").unwrap();
        // The thread names itself once it runs.
        assert!(eventually(|| caretakers() == 1), "no caretaker");
        drop(driver);
        assert!(
            eventually(|| caretakers() == 0),
            "the caretaker outlived its driver"
        );
    }
}
