//! The S3 origin against a real S3 server (s3s-fs, which checks SigV4 signatures) on loopback:
//! listing, stat, ranged reads, bad credentials, a server that goes away and comes back, and one
//! that stops answering mid-read.

mod common;

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, Instant};

use musicfs_fetchd::health::unreachable;
use musicfs_fetchd::origin::{Origin, RangeRead};
use musicfs_fetchd::s3::S3Origin;
use musicfs_ipc::origin::{OriginConfig, Secret};
use musicfs_tests::corpus::corpus_dir;
use musicfs_tests::noise::noise;
use musicfs_tests::s3server::S3Server;

const BUCKET: &str = "music";
const TIMEOUT_SECONDS: u64 = 2;

fn config(server: &S3Server, url: &str, secret: &str) -> OriginConfig {
    let mut c = OriginConfig::from_url(url);
    c.endpoint = Some(server.endpoint());
    c.path_style = true;
    c.access_key_id = Some(server.access_key().to_owned());
    c.secret_access_key = Some(Secret::new(secret));
    c.timeout_seconds = Some(TIMEOUT_SECONDS);
    c
}

fn origin_with(server: &S3Server, url: &str, secret: &str) -> S3Origin {
    let c = config(server, url, secret);
    S3Origin::new(&c, &c.parsed().unwrap()).expect("origin")
}

fn origin(server: &S3Server) -> S3Origin {
    origin_with(server, &format!("s3://{BUCKET}/lib"), server.secret_key())
}

fn corpus(rel: &str) -> Vec<u8> {
    std::fs::read(corpus_dir().join(rel)).expect("corpus file")
}

/// A library under `lib/` (audio in nested folders, a non-audio file) and objects outside it.
/// Returns the audio files under the prefix by relative path.
fn library(server: &S3Server) -> BTreeMap<String, Vec<u8>> {
    let mut audio = BTreeMap::new();
    let files = [
        (
            "Artist + Band/Album (1999)/01 Song.mp3",
            "audioscan/mp3/v2.4-apic-png.mp3",
        ),
        (
            "Artist + Band/Album (1999)/02 Other.mp3",
            "audioscan/mp3/v2.3-mp3HD.mp3",
        ),
        ("a/b/c/deep.flac", "audioscan/flac/picture-large.flac"),
        ("top.ogg", "audioscan/ogg/large-page-segments.ogg"),
        ("Surround.OPUS", "audioscan/opus/test-8-7.1.opus"),
    ];
    for (i, (rel, source)) in files.into_iter().enumerate() {
        let data = corpus(source);
        if i % 2 == 0 {
            server.put(BUCKET, &format!("lib/{rel}"), &data);
        } else {
            // Put in place as a plain file, without the server's object info.
            let path = server.bucket_dir(BUCKET).join("lib").join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, &data).unwrap();
        }
        audio.insert(rel.to_owned(), data);
    }
    // Larger than one parallel read, an odd size, real audio in front.
    let mut big = corpus("audioscan/flac/picture-large.flac");
    big.extend(noise(5 * 1024 * 1024 + 12_345, 7));
    server.put(BUCKET, "lib/big/long.flac", &big);
    audio.insert("big/long.flac".into(), big);
    server.put(BUCKET, "lib/notes.txt", b"not audio");
    server.put(BUCKET, "lib/a/cover.jpg", &noise(1000, 3));
    server.put(BUCKET, "outside.mp3", &corpus("audioscan/mp3/v2.2-pic.mp3"));
    server.put(
        BUCKET,
        "lib2/sibling.mp3",
        &corpus("audioscan/mp3/v2.2-pic.mp3"),
    );
    audio
}

fn read(file: &dyn RangeRead, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0xAA; len];
    let n = file.read_at(offset, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn walk_stat_and_ranged_reads_match_the_objects() {
    let server = S3Server::new();
    let audio = library(&server);
    let origin = origin(&server);
    assert_eq!(origin.name(), "s3://music/lib");
    origin.probe().expect("probe");

    let found = common::walk_lists_exactly(&origin, &audio);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    for f in &found {
        // The scanner compares stat with the walk: they must agree exactly.
        assert_eq!(
            origin.stat(&f.path).unwrap(),
            (f.size, f.mtime_ns),
            "{}",
            f.path
        );
        assert!((now - f.mtime_ns).abs() < 120 * 1_000_000_000, "{f:?}");
    }

    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below.max(1)
    };
    for (rel, data) in &audio {
        let file = origin.open(rel).expect("open");
        let len = data.len() as u64;
        assert_eq!(file.len(), len);
        for _ in 0..12 {
            let offset = next(len);
            let want = next(200_000) as usize + 1;
            let got = read(&*file, offset, want).unwrap();
            let end = (offset as usize + want).min(data.len());
            assert_eq!(got, data[offset as usize..end], "{rel} at {offset}+{want}");
        }
        // Across the end: short; at and past the end: nothing.
        assert_eq!(
            read(&*file, len - 10, 100).unwrap(),
            data[data.len() - 10..]
        );
        assert!(read(&*file, len, 100).unwrap().is_empty());
        assert!(read(&*file, len + 5, 100).unwrap().is_empty());
        assert_eq!(read(&*file, 0, data.len()).unwrap(), *data, "{rel} whole");
    }

    // Large reads go out as parallel ranged GETs; each piece must land in its place.
    let data = &audio["big/long.flac"];
    let file = origin.open("big/long.flac").unwrap();
    let got = read(&*file, 777_777, 3 * 1024 * 1024 + 3).unwrap();
    assert_eq!(got, data[777_777..777_777 + 3 * 1024 * 1024 + 3]);
    let got = read(&*file, 1, data.len() + 1000).unwrap();
    assert_eq!(got, data[1..]);

    let missing = origin.stat("nope.mp3").unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound, "{missing}");
    let missing = origin.open("a/b/missing.flac").err().unwrap();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound, "{missing}");
    let bad = origin.stat("../outside.mp3").unwrap_err();
    assert_eq!(bad.kind(), io::ErrorKind::NotFound, "{bad}");
}

#[test]
fn the_whole_bucket_is_an_origin_too() {
    let server = S3Server::new();
    let audio = library(&server);
    let origin = origin_with(&server, "s3://music", server.secret_key());
    assert_eq!(origin.name(), "s3://music");
    let (found, _) = origin.walk().unwrap();
    let mut paths: Vec<_> = found.into_iter().map(|f| f.path).collect();
    paths.sort();
    let mut expected: Vec<_> = audio.keys().map(|p| format!("lib/{p}")).collect();
    expected.extend(["lib2/sibling.mp3".to_owned(), "outside.mp3".to_owned()]);
    expected.sort();
    assert_eq!(paths, expected);
}

#[test]
fn listing_follows_continuation_tokens() {
    let server = S3Server::new();
    let dir = server.bucket_dir(BUCKET).join("lib");
    let n = 1234;
    for i in 0..n {
        let sub = dir.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("{i:05}.mp3")), i.to_string()).unwrap();
        if i % 10 == 0 {
            std::fs::write(sub.join(format!("{i:05}.txt")), "x").unwrap();
        }
    }
    let origin = origin(&server);
    let (found, failed) = origin.walk().unwrap();
    assert!(failed.is_empty());
    assert_eq!(found.len(), n, "more than one page of 1000 keys");
    let small_pages = origin.with_page_size(97);
    let (found, _) = small_pages.walk().unwrap();
    let mut paths: Vec<_> = found.iter().map(|f| f.path.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), n, "every key exactly once over 13 pages");
    let f = found.iter().find(|f| f.path == "d3/00010.mp3").unwrap();
    assert_eq!(f.size, 2);
}

#[test]
fn a_wrong_secret_is_refused_clearly_without_showing_it() {
    let server = S3Server::new();
    library(&server);
    let wrong = "wrong-secret-5f3a9c";
    let origin = origin_with(&server, "s3://music/lib", wrong);
    assert!(!format!("{origin:?}").contains(wrong));
    let errors = [
        origin.walk().err().unwrap(),
        origin.probe().unwrap_err(),
        origin.stat("top.ogg").unwrap_err(),
        origin.open("top.ogg").err().unwrap(),
    ];
    for e in errors {
        let text = e.to_string();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{text}");
        assert!(!unreachable(&e), "a refusal is not an outage: {text}");
        assert!(text.contains("secret_access_key"), "{text}");
        assert!(text.contains("s3://music/lib"), "{text}");
        for hidden in [wrong, server.secret_key(), "X-Amz-Signature"] {
            assert!(!text.contains(hidden), "{text}");
        }
        eprintln!("{text}");
    }
}

#[test]
fn construction_needs_no_server_but_needs_credentials() {
    let server = S3Server::new();
    let mut c = config(&server, "s3://music/lib", "s");
    c.endpoint = Some("http://127.0.0.1:9".into());
    let down = S3Origin::new(&c, &c.parsed().unwrap()).expect("a server down at start is fine");
    let e = down.probe().unwrap_err();
    assert!(unreachable(&e), "{e}");

    c.secret_access_key = None;
    let e = S3Origin::new(&c, &c.parsed().unwrap()).unwrap_err();
    assert!(e.to_string().contains("together"), "{e}");
    // A profile no shared file of this machine's user has.
    c.profile = Some("musicfs-test-no-such-profile".into());
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        c.access_key_id = None;
        let e = S3Origin::new(&c, &c.parsed().unwrap()).unwrap_err();
        assert!(e.to_string().contains("no credentials"), "{e}");
    }
}

fn assert_fails_fast<T>(what: &str, call: impl FnOnce() -> io::Result<T>) -> io::Error {
    let started = Instant::now();
    let e = call().err().unwrap_or_else(|| panic!("{what} succeeded"));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(TIMEOUT_SECONDS) + Duration::from_millis(1500),
        "{what} took {took:?}: {e}"
    );
    assert!(unreachable(&e), "{what}: {:?} {e}", e.kind());
    e
}

#[test]
fn a_stopped_server_fails_within_the_timeout_and_a_restarted_one_is_used_again() {
    let mut server = S3Server::new();
    let audio = library(&server);
    let origin = origin(&server);
    let file = origin.open("top.ogg").unwrap();
    let data = &audio["top.ogg"];
    assert_eq!(read(&*file, 100, 5000).unwrap(), data[100..5100]);

    server.stop();
    assert_fails_fast("probe", || origin.probe());
    assert_fails_fast("walk", || origin.walk());
    assert_fails_fast("stat", || origin.stat("top.ogg"));
    assert_fails_fast("open", || origin.open("top.ogg").map(drop));
    let e = assert_fails_fast("read", || read(&*file, 0, 1000));
    eprintln!("stopped: {e}");

    server.start();
    origin.probe().expect("probe after restart");
    assert_eq!(read(&*file, 100, 5000).unwrap(), data[100..5100]);
    assert_eq!(origin.walk().unwrap().0.len(), audio.len());
}

#[test]
fn a_stalled_server_times_out_instead_of_hanging() {
    let server = S3Server::new();
    let audio = library(&server);
    let origin = origin(&server);
    let data = &audio["big/long.flac"];
    let file = origin.open("big/long.flac").unwrap();
    assert_eq!(read(&*file, 0, 65536).unwrap(), data[..65536]);

    server.stall();
    let e = assert_fails_fast("a 64 KiB read", || read(&*file, 65536, 65536));
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    let e = assert_fails_fast("a 4 MiB read", || read(&*file, 0, 4 << 20));
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert_fails_fast("probe", || origin.probe());
    eprintln!("stalled: {e}");

    server.resume();
    assert_eq!(read(&*file, 65536, 65536).unwrap(), data[65536..131072]);
    assert_eq!(read(&*file, 0, 4 << 20).unwrap(), data[..4 << 20]);
}

/// A large object read front to back in 4 MiB and 1 MiB pieces (each split into parallel
/// ranged GETs, the last one short) comes back whole, and random 64 KiB reads land in place.
/// Throughput is measured by `examples/origin_bench.rs`.
#[test]
fn a_large_object_reads_back_whole_in_sequential_and_random_reads() {
    let server = S3Server::new();
    let data = noise(30_000_000, 11);
    server.put(BUCKET, "lib/thirty.flac", &data);
    let origin = origin(&server);
    let file = origin.open("thirty.flac").unwrap();
    for chunk in [4 << 20, 1 << 20] {
        let mut all = Vec::with_capacity(data.len());
        while all.len() < data.len() {
            let got = read(&*file, all.len() as u64, chunk).unwrap();
            assert!(!got.is_empty(), "nothing read at {}", all.len());
            all.extend(got);
        }
        assert!(
            all == data,
            "sequential read with {chunk}-byte reads differs"
        );
    }
    for i in 0..200u64 {
        let offset = (i * 7_919_993) % (data.len() as u64 - 65536);
        let got = read(&*file, offset, 65536).unwrap();
        assert!(
            got == data[offset as usize..offset as usize + 65536],
            "at {offset}"
        );
    }
}
