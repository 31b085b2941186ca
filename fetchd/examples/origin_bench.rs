//! Throughput and latency of the remote origins against real servers on this machine:
//! `cargo run --release -p musicfs-fetchd --example origin_bench -- [sftp|s3|http|all]`.
//!
//! - SFTP on loopback (OpenSSH's sshd, musicfs-tests' `Sshd`): sequential reads of a 30 MiB file
//!   in 64 KiB, 1 MiB and 4 MiB pieces, four readers at once, random 64 KiB reads.
//! - SFTP over a link with 20 ms each way (a TCP proxy that delays every byte): connecting, one
//!   64 KiB read, sequential reads of a 20 MiB file in 1, 4 and 16 MiB pieces.
//! - S3 on loopback (s3s-fs, musicfs-tests' `S3Server`): the same figures as SFTP on loopback.
//! - `scan`: fetchd's first scan of the test corpus (real files of every format) over SFTP, on
//!   loopback and over a link with 2 ms each way (a home network's Wi-Fi): files per second,
//!   and the bytes it read; and an HTTP origin's walk of 300 album folders over that link, from
//!   JSON listings, HTML pages and WebDAV.
//! - HTTP on loopback (nginx, musicfs-tests' `Nginx`): the same figures, and the random reads
//!   once more by a bare keep-alive HTTP/1.1 client (one socket, no library): what is left is
//!   the server's and the kernel's share, the rest of the origin's time is its client's.
//!
//! Every read is checked against the bytes served, so a fast wrong answer does not count.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use musicfs_fetchd::catalog::Catalog;
use musicfs_fetchd::chunks::ChunkStore;
use musicfs_fetchd::http::HttpOrigin;
use musicfs_fetchd::origin::{Origin, RangeRead};
use musicfs_fetchd::origins::Origins;
use musicfs_fetchd::s3::S3Origin;
use musicfs_fetchd::scan::{self, ScanProgress};
use musicfs_fetchd::sftp::SftpOrigin;
use musicfs_ipc::origin::{OriginConfig, Secret};
use musicfs_tests::nginx::Nginx;
use musicfs_tests::noise::{noise, Rng};
use musicfs_tests::s3server::S3Server;
use musicfs_tests::sshd::Sshd;
use musicfs_tests::web_servers::WebServer;

/// The file read on loopback, and the one read over the slow link.
const LOOPBACK_SIZE: usize = 30 << 20;
const SLOW_SIZE: usize = 20 << 20;
/// Each way, on the slow link.
const DELAY: Duration = Duration::from_millis(20);
const RANDOM_READS: usize = 300;
const SLOW_READS: usize = 20;
const TIMEOUT_SECONDS: u64 = 10;
/// Each way, on the link the scan is measured over.
const SCAN_DELAY: Duration = Duration::from_millis(2);
/// Album folders in the library the HTTP walk lists.
const ALBUMS: usize = 300;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    match which.as_str() {
        "sftp" => sftp(),
        "s3" => s3(),
        "http" => http(),
        "scan" => {
            scan();
            http_walk();
        }
        "all" => {
            sftp();
            s3();
            http();
            scan();
            http_walk();
        }
        other => {
            eprintln!("unknown origin {other:?}; usage: origin_bench [sftp|s3|http|scan|all]");
            std::process::exit(2);
        }
    }
}

fn sftp() {
    let sshd = Sshd::new();
    let dir = tempfile::tempdir().unwrap();

    let data = noise(LOOPBACK_SIZE, 3);
    std::fs::write(dir.path().join("big.flac"), &data).unwrap();
    let config = on_loopback(&sshd, dir.path());
    let origin = SftpOrigin::new(&config, &config.parsed().unwrap()).unwrap();
    println!(
        "SFTP on loopback (OpenSSH sshd), a {} MiB file",
        LOOPBACK_SIZE >> 20
    );
    loopback(&origin, "big.flac", &data);

    let data = noise(SLOW_SIZE, 5);
    std::fs::write(dir.path().join("slow.flac"), &data).unwrap();
    let config = through_proxy(&sshd, dir.path(), DELAY);
    let origin = SftpOrigin::new(&config, &config.parsed().unwrap()).unwrap();
    println!(
        "SFTP over {} ms each way (delaying proxy), a {} MiB file",
        DELAY.as_millis(),
        SLOW_SIZE >> 20
    );
    slow_link(&origin, "slow.flac", &data);
}

/// An SFTP origin for `dir` on sshd.
fn on_loopback(sshd: &Sshd, dir: &std::path::Path) -> OriginConfig {
    let mut config = OriginConfig::from_url(sshd.url(dir));
    config.identity_file = Some(sshd.identity_file());
    config.known_hosts = Some(sshd.known_hosts());
    config.timeout_seconds = Some(TIMEOUT_SECONDS);
    config
}

/// An SFTP origin for `dir` reached through a proxy that delays every byte by `delay` each way.
fn through_proxy(sshd: &Sshd, dir: &std::path::Path, delay: Duration) -> OriginConfig {
    let port = delayed_proxy(sshd.port(), delay);
    let mut config = OriginConfig::from_url(format!(
        "sftp://{}@127.0.0.1:{port}{}",
        sshd.user(),
        dir.display()
    ));
    // The proxy answers with sshd's host key, under its own port.
    let known = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    let known = known.replace(&format!(":{} ", sshd.port()), &format!(":{port} "));
    let file = sshd.dir().join(format!("known_hosts_{port}"));
    std::fs::write(&file, known).unwrap();
    config.known_hosts = Some(file);
    config.identity_file = Some(sshd.identity_file());
    config.timeout_seconds = Some(TIMEOUT_SECONDS);
    config
}

/// fetchd's first scan of the corpus over SFTP, on loopback and over a delaying link.
fn scan() {
    let sshd = Sshd::new();
    let lib = tempfile::tempdir().unwrap();
    let corpus = musicfs_tests::corpus::corpus_dir();
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&corpus)
        .arg(lib.path().join("corpus"))
        .status()
        .unwrap();
    assert!(copied.success());
    let dir = lib.path().join("corpus");
    println!("fetchd's first scan of the corpus over SFTP");
    for (link, config) in [
        ("loopback", on_loopback(&sshd, &dir)),
        ("2 ms each way", through_proxy(&sshd, &dir, SCAN_DELAY)),
    ] {
        let state = tempfile::tempdir().unwrap();
        let stats = std::sync::Arc::new(musicfs_fetchd::origin::OriginStats::default());
        let origins = Origins::open(&[config], stats.clone()).unwrap();
        let catalog = Catalog::open(&state.path().join("catalog")).unwrap();
        let store = ChunkStore::open(&state.path().join("chunks")).unwrap();
        let started = Instant::now();
        let summary = scan::scan(
            &origins,
            None,
            &catalog,
            &store,
            &ScanProgress::default(),
            &Default::default(),
        )
        .unwrap();
        let took = started.elapsed();
        let read = stats.bytes_read.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "  {link:<14} {} files in {:.2} s: {:.0} files/s; {:.2} MB read",
            summary.seen,
            took.as_secs_f64(),
            summary.seen as f64 / took.as_secs_f64(),
            read as f64 / 1e6
        );
    }
}

/// The walk of a library of `ALBUMS` album folders, through the 2 ms link, as each kind of
/// listing gives it: nginx's JSON, nginx's HTML pages (then a HEAD per file at the first walk,
/// none at the next while the pages read the same), and WebDAV (`rclone serve webdav`:
/// PROPFIND first, sizes and dates in the listing). Each walked twice, as a rescan does.
fn http_walk() {
    let dir = tempfile::tempdir().unwrap();
    let track = musicfs_tests::corpus::corpus_dir().join("audioscan/flac/test.flac");
    for album in 0..ALBUMS {
        let folder = dir
            .path()
            .join(format!("Artist {}/Album {album}", album / 10));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(&track, folder.join("01 Track.flac")).unwrap();
        // Written a while ago, as a library is (a file written in the last two minutes is
        // asked with a HEAD at every walk of HTML pages).
        let written = std::time::SystemTime::now() - Duration::from_secs(3600);
        let file = std::fs::File::options()
            .write(true)
            .open(folder.join("01 Track.flac"))
            .unwrap();
        file.set_modified(written).unwrap();
    }
    let server = Nginx::serving(dir.path());
    let dav = WebServer::rclone_webdav(dir.path(), None);
    for (kind, url) in [
        ("JSON listings (nginx)", server.url()),
        ("HTML pages (nginx)", server.html_url()),
        ("WebDAV (rclone serve webdav)", dav.url()),
    ] {
        let url: url::Url = url.parse().unwrap();
        let port = delayed_proxy(url.port().unwrap(), SCAN_DELAY);
        let mut config = OriginConfig::from_url(format!("http://127.0.0.1:{port}{}", url.path()));
        config.timeout_seconds = Some(TIMEOUT_SECONDS);
        let origin = HttpOrigin::new(&config, &config.parsed().unwrap()).unwrap();
        let walk = || {
            let started = Instant::now();
            let (found, failed) = origin.walk().unwrap();
            assert_eq!((found.len(), failed.len()), (ALBUMS, 0));
            started.elapsed().as_secs_f64()
        };
        let (first, next) = (walk(), walk());
        println!(
            "HTTP walk of {ALBUMS} album folders ({} listings), 2 ms each way, {kind}: \
             {first:.2} s, the next walk {next:.2} s",
            ALBUMS + ALBUMS / 10 + 1,
        );
    }
}

fn s3() {
    let server = S3Server::new();
    let data = noise(LOOPBACK_SIZE, 11);
    server.put("music", "lib/big.flac", &data);
    let mut config = OriginConfig::from_url("s3://music/lib");
    config.endpoint = Some(server.endpoint());
    config.path_style = true;
    config.access_key_id = Some(server.access_key().to_owned());
    config.secret_access_key = Some(Secret::new(server.secret_key()));
    config.timeout_seconds = Some(TIMEOUT_SECONDS);
    let origin = S3Origin::new(&config, &config.parsed().unwrap()).unwrap();
    println!(
        "S3 on loopback (s3s-fs), a {} MiB object",
        LOOPBACK_SIZE >> 20
    );
    loopback(&origin, "big.flac", &data);
}

fn http() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(LOOPBACK_SIZE, 13);
    std::fs::write(dir.path().join("big.flac"), &data).unwrap();
    let server = Nginx::serving(dir.path());
    let mut config = OriginConfig::from_url(server.url());
    config.timeout_seconds = Some(TIMEOUT_SECONDS);
    let origin = HttpOrigin::new(&config, &config.parsed().unwrap()).unwrap();
    println!(
        "HTTP on loopback (nginx), a {} MiB file",
        LOOPBACK_SIZE >> 20
    );
    loopback(&origin, "big.flac", &data);
    let bare = BareHttp::connect(&server.url(), "big.flac");
    let times = random_reads(&bare, &data, RANDOM_READS, 9);
    row(
        "  the same by a bare HTTP/1.1 client",
        format!(
            "median {}, p90 {}",
            ms(percentile(&times, 50)),
            ms(percentile(&times, 90))
        ),
    );
}

/// Ranged GETs on one keep-alive connection, written and parsed by hand: the floor under any
/// HTTP client's reads.
struct BareHttp {
    stream: std::sync::Mutex<std::io::BufReader<TcpStream>>,
    request: String,
    len: u64,
}

impl BareHttp {
    fn connect(base: &str, rel: &str) -> Self {
        let rest = base.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let stream = TcpStream::connect(host).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream: std::sync::Mutex::new(std::io::BufReader::with_capacity(1 << 17, stream)),
            request: format!("GET /{path}{rel} HTTP/1.1\r\nHost: {host}\r\n"),
            len: LOOPBACK_SIZE as u64,
        }
    }
}

impl RangeRead for BareHttp {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        let mut stream = self.stream.lock().unwrap();
        let last = offset + buf.len() as u64 - 1;
        let request = format!("{}Range: bytes={offset}-{last}\r\n\r\n", self.request);
        stream.get_mut().write_all(request.as_bytes())?;
        let mut length = None;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let n = length.expect("a Content-Length");
        stream.read_exact(&mut buf[..n])?;
        Ok(n)
    }
}

/// Sequential reads in three sizes, four readers at once, random 64 KiB reads.
fn loopback(origin: &dyn Origin, rel: &str, data: &[u8]) {
    let file = origin.open(rel).unwrap();
    for block in [64 << 10, 1 << 20, 4 << 20] {
        let secs = sequential(&*file, data, block);
        row(
            &format!("sequential, {} reads", size(block)),
            format!("{:.0} MB/s", data.len() as f64 / secs / 1e6),
        );
    }

    // Four readers at once, each with its own file, opened together.
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| sequential(&*origin.open(rel).unwrap(), data, 1 << 20));
        }
    });
    let secs = start.elapsed().as_secs_f64();
    row(
        "four readers at once, 1 MiB reads",
        format!("{:.0} MB/s in all", 4.0 * data.len() as f64 / secs / 1e6),
    );

    let times = random_reads(&*file, data, RANDOM_READS, 9);
    row(
        &format!("random 64 KiB reads ({RANDOM_READS})"),
        format!(
            "median {}, p90 {}",
            ms(percentile(&times, 50)),
            ms(percentile(&times, 90))
        ),
    );
}

/// Connecting, single 64 KiB reads, and sequential reads in large pieces.
fn slow_link(origin: &dyn Origin, rel: &str, data: &[u8]) {
    let start = Instant::now();
    let file = origin.open(rel).unwrap();
    row("connect and open", ms(start.elapsed()));
    let times = random_reads(&*file, data, SLOW_READS, 1);
    row(
        &format!("one 64 KiB read (median of {SLOW_READS})"),
        ms(percentile(&times, 50)),
    );
    for block in [1 << 20, 4 << 20, 16 << 20] {
        let secs = sequential(&*file, data, block);
        row(
            &format!("sequential, {} reads", size(block)),
            format!("{:.1} MB/s", data.len() as f64 / secs / 1e6),
        );
    }
}

/// Reads the whole file front to back, `block` bytes at a time; returns the seconds taken.
fn sequential(file: &dyn RangeRead, data: &[u8], block: usize) -> f64 {
    let start = Instant::now();
    let mut buf = vec![0; block];
    let mut offset = 0;
    while offset < data.len() {
        let n = file.read_at(offset as u64, &mut buf).unwrap();
        assert!(n > 0, "no bytes at {offset}");
        assert!(buf[..n] == data[offset..offset + n], "bytes at {offset}");
        offset += n;
    }
    start.elapsed().as_secs_f64()
}

/// The times of `count` 64 KiB reads at random offsets, sorted.
fn random_reads(file: &dyn RangeRead, data: &[u8], count: usize, seed: u64) -> Vec<Duration> {
    let mut rng = Rng::new(seed);
    let mut buf = vec![0; 64 << 10];
    let mut times: Vec<Duration> = (0..count)
        .map(|_| {
            let offset = rng.below((data.len() - buf.len()) as u64) as usize;
            let start = Instant::now();
            let n = file.read_at(offset as u64, &mut buf).unwrap();
            let took = start.elapsed();
            assert!(
                buf[..n] == data[offset..offset + buf.len()],
                "bytes at {offset}"
            );
            took
        })
        .collect();
    times.sort();
    times
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn row(what: &str, figure: String) {
    println!("  {what:<40} {figure}");
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// A TCP proxy on 127.0.0.1 to `to` that delays every byte by `delay` each way.
fn delayed_proxy(to: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            for (from, into) in [(client2, server2), (server, client)] {
                pump(from, into, delay);
            }
        }
    });
    port
}

/// Copies `from` into `into`, each read held back until `delay` after it arrived.
fn pump(mut from: TcpStream, mut into: TcpStream, delay: Duration) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0; 1 << 16];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if into.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = into.shutdown(Shutdown::Write);
    });
}
