//! The cost of one `Fetch::read` round trip over the real transport, without FUSE, fetchd or
//! disk: a server whose `read` answers from memory, in a child process (the way fetchd is), and
//! a client called from a plain thread the way mountd's FUSE threads call it: through
//! `musicfs_ipc::blocking::Blocking`, the thread driving its connection itself.
//!
//! `cargo run --release -p musicfs-ipc --example rpc_bench` prints the median and p90 of reads
//! of 4 KiB, 64 KiB and 1 MiB, back to back and with a 2 ms pause before each (the CPUs idle
//! between a player's reads, and waking an idle CPU is part of what a read costs).
//! `-- --malloc-defaults` measures both ends without `memory::keep_large_buffers`;
//! `-- --shared-runtime` makes the calls through a multi-threaded runtime's workers, the calling
//! thread waiting for them (as mountd did before); `-- --task-server` answers each connection's
//! requests in order on a runtime task instead of a thread of the connection's own (as fetchd
//! did before).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use musicfs_ipc::blocking::Blocking;
use musicfs_ipc::client::Reconnecting;
use musicfs_ipc::{
    Attr, DirEntry, Fetch, FetchClient, FetchError, FsStats, Hello, Ino, TrackId, TrackRef,
};
use tarpc::context::Context;

const ROUNDS: usize = 400;

#[derive(Clone)]
struct MemoryFetch;

impl Fetch for MemoryFetch {
    async fn hello(self, _: Context) -> Hello {
        Hello {
            service: "fetchd".into(),
            protocol: musicfs_ipc::PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
        }
    }
    async fn lookup(self, _: Context, _: u64, _: Ino, _: String) -> Result<Attr, FetchError> {
        Err(FetchError::NotFound)
    }
    async fn getattr(self, _: Context, _: u64, _: Ino) -> Result<Attr, FetchError> {
        Err(FetchError::NotFound)
    }
    async fn readdir(self, _: Context, _: u64, _: Ino) -> Result<Vec<DirEntry>, FetchError> {
        Err(FetchError::NotFound)
    }
    async fn readlink(self, _: Context, _: u64, _: Ino) -> Result<String, FetchError> {
        Err(FetchError::NotFound)
    }
    async fn read(
        self,
        _: Context,
        _: TrackRef,
        offset: u64,
        len: u32,
    ) -> Result<serde_bytes::ByteBuf, FetchError> {
        Ok(serde_bytes::ByteBuf::from(vec![offset as u8; len as usize]))
    }
    async fn xattrs(self, _: Context, _: Ino) -> Result<Vec<(String, String)>, FetchError> {
        Ok(Vec::new())
    }
    async fn statfs(self, _: Context) -> Result<FsStats, FetchError> {
        Err(FetchError::NotFound)
    }
    async fn generation(self, _: Context, _shown: u64) -> u64 {
        0
    }
    async fn paths(self, _: Context, tracks: Vec<TrackId>) -> Vec<Option<String>> {
        vec![None; tracks.len()]
    }
    async fn hidden(self, _: Context) -> (u64, Vec<TrackId>) {
        (0, Vec::new())
    }
}

fn serve(socket: &Path, on_task: bool) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(socket).expect("bind");
        if on_task {
            let admit = |_: &tokio::net::UnixStream| Ok(());
            musicfs_ipc::serve_unix!(@serve listener, MemoryFetch.serve(), admit, |response| {
                response.await
            })
            .await;
        } else {
            // As fetchd serves its data socket.
            musicfs_ipc::serve_unix!(listener, MemoryFetch.serve(), in_order).await;
        }
    });
    std::process::exit(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // As mountd and fetchd do, unless asked to measure glibc's defaults.
    let defaults = args.iter().any(|a| a == "--malloc-defaults");
    if !defaults {
        musicfs_ipc::memory::keep_large_buffers();
    }
    let on_task = args.iter().any(|a| a == "--task-server");
    if let Some(at) = args.iter().position(|a| a == "--serve") {
        serve(Path::new(&args[at + 1]), on_task);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let socket: PathBuf = dir.path().join("fetchd.sock");
    let mut server = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(defaults.then_some("--malloc-defaults"))
        .args(on_task.then_some("--task-server"))
        .arg("--serve")
        .arg(&socket)
        .spawn()
        .expect("start the server");
    while !socket.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The client side as mountd builds it (or as it did, with --shared-runtime).
    let shared = args.iter().any(|a| a == "--shared-runtime");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fetchd = Reconnecting::<FetchClient>::new("fetchd", &socket, Duration::from_secs(5));
    let blocking = Blocking::new(fetchd.fresh());
    let track = TrackRef {
        id: TrackId(1),
        version: 1,
    };
    let read = |len: u32| {
        let call = |c: FetchClient, ctx| async move { c.read(ctx, track, 0, len).await };
        let bytes = if shared {
            runtime.block_on(fetchd.call(call))
        } else {
            blocking.call(call)
        };
        assert_eq!(bytes.expect("call").expect("read").len(), len as usize);
    };
    read(1);
    println!(
        "Fetch::read round trip, client on a plain thread, server in another process ({}; {}; {})",
        if shared {
            "calls made by a shared runtime's workers"
        } else {
            "the calling thread drives its connection"
        },
        if on_task {
            "served on a runtime task"
        } else {
            "served on the connection's thread"
        },
        if defaults {
            "glibc's allocator defaults"
        } else {
            "large buffers kept in the heap"
        }
    );
    for len in [4 << 10, 64 << 10, 1 << 20] {
        for pause in [Duration::ZERO, Duration::from_millis(2)] {
            let mut times: Vec<Duration> = (0..ROUNDS)
                .map(|_| {
                    std::thread::sleep(pause);
                    let t = Instant::now();
                    read(len);
                    t.elapsed()
                })
                .collect();
            times.sort();
            println!(
                "  {:>5} KiB, {:>4}   median {:>7.1} µs   p90 {:>7.1} µs",
                len >> 10,
                if pause.is_zero() { "busy" } else { "idle" },
                micros(times[ROUNDS / 2]),
                micros(times[ROUNDS * 9 / 10]),
            );
        }
    }
    let _ = server.kill();
    let _ = server.wait();
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
