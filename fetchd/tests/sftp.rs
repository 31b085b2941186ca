//! The SFTP origin against a real OpenSSH sshd on 127.0.0.1 (musicfs-tests' `Sshd`) and
//! `rclone serve sftp`: listing, positioned reads, and what happens when the server goes away
//! or stops answering. How it logs in: `sftp_logins.rs`.

mod sftp_fixture;

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_fetchd::health::unreachable;
use musicfs_fetchd::origin::{Found, Origin, MAX_DEPTH};
use musicfs_fetchd::sftp::SftpOrigin;
use musicfs_ipc::origin::OriginConfig;
use musicfs_tests::noise::{noise, Rng};
use musicfs_tests::rclone_sftp::RcloneSftp;
use musicfs_tests::sshd::Sshd;
use sftp_fixture::{check_read, config, expected, library, library_in, origin};

/// An origin for the served folder `root`, the bytes of its `big.wav`, and that file opened
/// and its first MiB read through the origin.
fn big_file_read_once(
    sshd: &Sshd,
    root: &Path,
) -> (
    SftpOrigin,
    Vec<u8>,
    Box<dyn musicfs_fetchd::origin::RangeRead>,
) {
    let origin = origin(&config(sshd, root)).unwrap();
    let local = std::fs::read(root.join("big.wav")).unwrap();
    let file = origin.open("big.wav").unwrap();
    check_read(&*file, &local, 0, 1 << 20);
    (origin, local, file)
}

/// Asserts that `f` fails within `limit` with an error that marks the origin down.
fn fails_unreachable<T: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> io::Result<T>,
) {
    let start = Instant::now();
    let err = f().expect_err(what);
    let took = start.elapsed();
    assert!(took < limit, "{what} took {took:?}: {err}");
    assert!(
        unreachable(&err),
        "{what}: {:?} does not mark the origin down: {err}",
        err.kind()
    );
}

#[test]
fn walk_stat_and_reads_match_the_served_files() {
    let sshd = Sshd::new();
    let lib = library();
    let origin = origin(&config(&sshd, lib.path())).unwrap();
    assert_eq!(
        origin.name(),
        format!(
            "sftp://{}@127.0.0.1:{}{}",
            sshd.user(),
            sshd.port(),
            lib.path().display()
        )
    );
    serves_like_the_folder(&origin, lib.path(), expected(lib.path()));
}

/// `sftp://nas/~/Music`: a folder in the login's home, as curl and rclone write it.
#[test]
fn a_folder_in_the_logins_home_is_named_with_a_tilde() {
    let sshd = Sshd::new();
    let lib = library_in(&sshd.home());
    let name = lib.path().file_name().unwrap().to_str().unwrap();
    let mut config = config(&sshd, lib.path());
    config.url = format!("sftp://{}@127.0.0.1:{}/~/{name}", sshd.user(), sshd.port());
    let origin = origin(&config).unwrap();
    assert_eq!(origin.name(), config.url);
    serves_like_the_folder(&origin, lib.path(), expected(lib.path()));
}

/// An origin on `rclone serve sftp` serving `root`.
fn rclone_origin(server: &RcloneSftp) -> SftpOrigin {
    let mut config = OriginConfig::from_url(server.url());
    config.identity_file = Some(server.identity_file());
    config.known_hosts = Some(server.known_hosts());
    config.timeout_seconds = Some(2);
    origin(&config).unwrap()
}

/// Another SFTP server than OpenSSH's (Go's, as `rclone serve sftp` runs it; NAS firmware and
/// appliances ship others again): the same walk, stats and reads. It leaves symlinks out.
#[test]
fn another_servers_implementation_serves_the_same() {
    let lib = library();
    let server = RcloneSftp::serving(lib.path(), false);
    let mut want = expected(lib.path());
    want.retain(|f| !f.path.starts_with("linked/"));
    serves_like_the_folder(&rclone_origin(&server), lib.path(), want);
}

/// A server that follows symlinks itself shows a loop as endless directories: the walk stops
/// at the depth bound and says why.
#[test]
fn a_loop_the_server_does_not_show_as_one_is_walked_to_a_bound() {
    let lib = tempfile::tempdir().unwrap();
    std::fs::create_dir(lib.path().join("Album")).unwrap();
    std::fs::write(lib.path().join("Album/01.flac"), noise(1000, 1)).unwrap();
    std::os::unix::fs::symlink("..", lib.path().join("Album/again")).unwrap();
    let server = RcloneSftp::serving(lib.path(), true);
    let origin = rclone_origin(&server);
    let (done, walked) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(origin.walk()));
    let (found, failed) = walked
        .recv_timeout(Duration::from_secs(60))
        .expect("the walk ends")
        .unwrap();
    // Album/01.flac, Album/again/Album/01.flac, ...: one more for each two levels.
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths.len(), MAX_DEPTH / 2, "{paths:?}");
    assert!(paths.contains(&"Album/again/Album/01.flac"), "{paths:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (path, why) = &failed[0];
    // The directory one level past the bound (its path has MAX_DEPTH + 1 components).
    assert_eq!(path.matches('/').count(), MAX_DEPTH, "{path}");
    assert!(why.contains("too deep"), "{path}: {why}");
}

/// Walks `origin`, which serves the folder `root` made by [`library`]: it lists `want`, and
/// every listed file's stat and reads of every size at random offsets, from one thread and
/// from many, match the folder.
fn serves_like_the_folder(origin: &SftpOrigin, root: &Path, want: Vec<Found>) {
    let (found, failed) = origin.walk().unwrap();
    assert_eq!(found, want);
    assert!(failed.is_empty(), "{failed:?}");
    for f in &found {
        assert_eq!(
            origin.stat(&f.path).unwrap(),
            (f.size, f.mtime_ns),
            "{}",
            f.path
        );
    }
    let missing = origin.stat("Artist/nope.flac").unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound, "{missing}");
    assert!(
        missing.to_string().contains("Artist/nope.flac"),
        "{missing}"
    );
    assert_eq!(
        origin.open("nope.mp3").err().unwrap().kind(),
        io::ErrorKind::NotFound
    );
    origin.probe().unwrap();

    let mut rng = Rng::new(42);
    for f in &found {
        let local = std::fs::read(root.join(&f.path)).unwrap();
        let file = origin.open(&f.path).unwrap();
        assert_eq!(file.len(), local.len() as u64);
        let len = local.len() as u64;
        // Whole file, a read spanning the end, reads at and past the end.
        check_read(&*file, &local, 0, local.len());
        check_read(&*file, &local, len - 1000, 64 * 1024);
        check_read(&*file, &local, len, 10);
        check_read(&*file, &local, len + 5000, 10);
        for _ in 0..20 {
            let size = [1, 4096, 16 * 1024, 64 * 1024, 300_000, 1 << 20][rng.below(6) as usize];
            check_read(&*file, &local, rng.below(len), size);
        }
    }

    // Many threads at once over the pool, each with its own file.
    let big = std::fs::read(root.join("big.wav")).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let big = &big;
            s.spawn(move || {
                let mut rng = Rng::new(t + 1);
                let file = origin.open("big.wav").unwrap();
                for _ in 0..10 {
                    let offset = rng.below(big.len() as u64);
                    check_read(&*file, big, offset, 256 * 1024 + 17);
                    check_read(&*file, big, offset, 64 * 1024);
                }
            });
        }
    });
}

/// fetchd's RPC handlers read on their runtime's worker threads; tests and tools may call from
/// a single-threaded runtime. Either way the read completes, and on the multi-threaded runtime
/// the other tasks keep running meanwhile.
#[test]
fn reads_from_inside_a_tokio_runtime_complete_and_leave_its_other_tasks_running() {
    let sshd = Sshd::new();
    let lib = library();
    let origin = std::sync::Arc::new(origin(&config(&sshd, lib.path())).unwrap());
    let local = std::sync::Arc::new(std::fs::read(lib.path().join("big.wav")).unwrap());

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    multi.block_on(async {
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let reads: Vec<_> = (0..4u64)
            .map(|t| {
                let (origin, local) = (origin.clone(), local.clone());
                // Straight from tasks on the workers: the origin steps aside itself.
                tokio::spawn(async move {
                    let file = origin.open("big.wav").unwrap();
                    for i in 0..20 {
                        check_read(&*file, &local, (t * 20 + i) * 50_000, 64 * 1024);
                    }
                })
            })
            .collect();
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        let file = origin.open("big.wav").unwrap();
        for i in 0..20 {
            check_read(&*file, &local, i * 200_000, 300_000);
        }
        for read in reads {
            read.await.unwrap();
        }
        assert!(
            ticks.load(std::sync::atomic::Ordering::Relaxed) > before,
            "the runtime's other tasks stood still during the reads"
        );
        ticker.abort();
    });

    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    single.block_on(async {
        let file = origin.open("big.wav").unwrap();
        check_read(&*file, &local, 12_345, 1 << 20);
    });
}

#[test]
fn a_stopped_server_fails_fast_and_a_restarted_one_is_used_again() {
    let mut sshd = Sshd::new();
    let lib = library();
    let origin = origin(&config(&sshd, lib.path())).unwrap();
    let local = std::fs::read(lib.path().join("top.mp3")).unwrap();
    let file = origin.open("top.mp3").unwrap();
    check_read(&*file, &local, 0, 4096);

    sshd.stop();
    let limit = Duration::from_millis(2500);
    fails_unreachable("probe", limit, || origin.probe());
    fails_unreachable("stat", limit, || origin.stat("top.mp3"));
    fails_unreachable("walk", limit, || origin.walk());
    fails_unreachable("open", limit, || origin.open("top.mp3").map(|_| ()));
    fails_unreachable("read", limit, || file.read_at(0, &mut [0; 4096]));

    sshd.start();
    origin.probe().unwrap();
    assert_eq!(origin.walk().unwrap().0, expected(lib.path()));
    // The file opened before the restart reads again, on a new connection.
    check_read(&*file, &local, 1000, 100_000);
}

#[test]
fn a_stalled_server_times_out_and_is_used_again_when_it_answers() {
    let sshd = Sshd::new();
    let lib = library();
    let (origin, local, file) = big_file_read_once(&sshd, lib.path());

    sshd.stall();
    let limit = Duration::from_millis(3500);
    let start = Instant::now();
    let err = file.read_at(1 << 20, &mut vec![0; 1 << 20]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(
        start.elapsed() < limit,
        "a stalled read took {:?}",
        start.elapsed()
    );
    fails_unreachable("probe", limit, || origin.probe());
    fails_unreachable("stat", limit, || origin.stat("big.wav"));

    sshd.resume();
    origin.probe().unwrap();
    check_read(&*file, &local, 1 << 20, 1 << 20);
    assert_eq!(origin.stat("big.wav").unwrap().0, local.len() as u64);
}

/// A NAS whose disk sleeps answers the first read after a pause only once the disk has spun
/// up, 5-20 s later, while sshd answers at once. A read then waits for the disk instead of
/// failing at the timeout (the player got EIO and skipped the track); a server that answers
/// nothing at all still fails at the timeout (above).
#[test]
fn a_server_whose_disk_is_spinning_up_is_waited_for() {
    let sshd = Sshd::new();
    let lib = library();
    let (origin, local, file) = big_file_read_once(&sshd, lib.path());

    assert!(
        sshd.stall_file_servers() > 0,
        "no SFTP server process to stall"
    );
    let spin_up = Duration::from_millis(4500);
    let started = Instant::now();
    let disk = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(spin_up);
            sshd.resume();
        });
        check_read(&*file, &local, 1 << 20, 1 << 20);
        started.elapsed()
    });
    assert!(
        disk >= spin_up,
        "answered in {disk:?}, before the disk was up"
    );
    origin.probe().unwrap();
    check_read(&*file, &local, 3 << 20, 100_000);
}

/// Calls are driven by the threads that make them, so between calls nobody would answer the
/// server: one that checks on idle clients (`ClientAliveInterval`) would hang up on them and
/// every read after a pause would pay for a new connection.
#[test]
fn an_idle_connection_answers_the_servers_keepalives_and_stays_up() {
    let sshd = Sshd::with_config("ClientAliveInterval 1\nClientAliveCountMax 1\n");
    let lib = library();
    let origin = origin(&config(&sshd, lib.path())).unwrap();
    let local = std::fs::read(lib.path().join("top.mp3")).unwrap();
    let file = origin.open("top.mp3").unwrap();
    check_read(&*file, &local, 0, 4096);
    let connections = |log: &str| log.matches("Connection from").count();
    let before = connections(&sshd.log());

    // sshd asks every second and hangs up on a client that leaves two questions unanswered
    // (3.5 s after the client stopped, with OpenSSH 9.2).
    std::thread::sleep(Duration::from_secs(6));
    check_read(&*file, &local, 4096, 4096);
    let log = sshd.log();
    assert!(!log.contains("not responding"), "sshd hung up:\n{log}");
    assert_eq!(connections(&log), before, "reconnected:\n{log}");
}

/// fetchd reads a track in several runs at once, each through an open file of its own: they
/// share the connection they find, since each new one costs the server a key exchange. Another
/// file read meanwhile would queue behind them, so it gets a connection of its own.
#[test]
fn one_files_parallel_reads_share_a_connection_and_another_files_get_their_own() {
    let sshd = Sshd::new();
    let lib = library();
    let origin = origin(&config(&sshd, lib.path())).unwrap();
    let big = std::fs::read(lib.path().join("big.wav")).unwrap();
    // Sessions, not connections: the harness's check that sshd listens connects too.
    let connections = || sshd.log().matches("Accepted publickey").count();
    for round in 0..3u64 {
        std::thread::scope(|s| {
            for run in 0..6u64 {
                let (origin, big) = (&origin, &big);
                s.spawn(move || {
                    let file = origin.open("big.wav").unwrap();
                    let offset = (round * 6 + run) * 200_000 % big.len() as u64;
                    check_read(&*file, big, offset, 1 << 20);
                });
            }
        });
    }
    assert_eq!(connections(), 1, "one file's reads opened more connections");

    let other_path = "Artist/Album/02 Noise.flac";
    let other_local = std::fs::read(lib.path().join(other_path)).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = origin.open("big.wav").unwrap();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                check_read(&*file, &big, 0, big.len());
            }
        });
        let other = origin.open(other_path).unwrap();
        let mut rng = Rng::new(5);
        while connections() < 2 && Instant::now() < deadline {
            let offset = rng.below(other_local.len() as u64);
            check_read(&*other, &other_local, offset, 64 * 1024);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(
        connections() >= 2,
        "another file's reads got no connection of their own within 10 s"
    );
}

/// A name that is not UTF-8 on the server (an audio file, a folder) is left out of the walk
/// with the reason; everything else is listed as usual.
#[test]
fn names_that_are_not_utf8_are_skipped_with_a_reason() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let sshd = Sshd::new();
    let lib = library();
    let noise = lib.path().join("Artist/Album/02 Noise.flac");
    let bad_file = lib.path().join(OsStr::from_bytes(b"bad \xff name.flac"));
    std::fs::copy(&noise, bad_file).unwrap();
    let bad_dir = lib.path().join(OsStr::from_bytes(b"folder \xfe"));
    std::fs::create_dir(&bad_dir).unwrap();
    std::fs::copy(&noise, bad_dir.join("inside.flac")).unwrap();
    std::fs::write(lib.path().join(OsStr::from_bytes(b"notes \xff.txt")), b"x").unwrap();

    let origin = origin(&config(&sshd, lib.path())).unwrap();
    let (found, failed) = origin.walk().unwrap();
    assert_eq!(found, expected(lib.path()));
    let mut failed: Vec<(String, String)> = failed;
    failed.sort();
    let names: Vec<&str> = failed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        ["bad \u{fffd} name.flac", "folder \u{fffd}"],
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .all(|(_, why)| why.contains("not valid UTF-8")),
        "{failed:?}"
    );
}

/// Whoever may write the library on the NAS must not be able to show the mount's users a file
/// only the SSH account may read: links leading out of the origin's folder are reported, not
/// followed (links inside it are, as `linked` in the library is).
#[test]
fn links_out_of_the_origins_folder_are_not_followed() {
    let sshd = Sshd::new();
    let lib = library();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("id_rsa");
    std::fs::write(&secret, b"-----BEGIN OPENSSH PRIVATE KEY-----").unwrap();
    std::fs::create_dir(outside.path().join("more")).unwrap();
    std::fs::copy(
        lib.path().join("Artist/Album/02 Noise.flac"),
        outside.path().join("more/x.flac"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, lib.path().join("Artist/secret.flac")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("more"), lib.path().join("more")).unwrap();
    std::os::unix::fs::symlink("02 Noise.flac", lib.path().join("Artist/Album/again.flac"))
        .unwrap();

    let origin = origin(&config(&sshd, lib.path())).unwrap();
    let (found, mut failed) = origin.walk().unwrap();
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert!(paths.contains(&"Artist/Album/again.flac"), "{paths:?}");
    assert!(!paths
        .iter()
        .any(|p| p.contains("secret") || p.starts_with("more")));
    failed.sort();
    let names: Vec<&str> = failed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["Artist/secret.flac", "more"], "{failed:?}");
    assert!(failed
        .iter()
        .all(|(_, why)| why.contains("outside the origin")));
}
