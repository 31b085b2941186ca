//! The HTTP origin against real web servers on loopback: nginx publishing a folder with JSON
//! listings and with HTML ones, `rclone serve http` and Python's `http.server` (HTML). The walk
//! (nested folders, hostile and non-audio names), stat, ranged reads checked byte for byte, a
//! file replaced after it was opened, a server that goes away and comes back, a folder it does
//! not publish, and a server that ignores ranges.

mod common;

use std::collections::BTreeMap;
use std::io;

use musicfs_fetchd::health::unreachable;
use musicfs_fetchd::http::HttpOrigin;
use musicfs_fetchd::origin::{Origin, RangeRead};
use musicfs_ipc::origin::OriginConfig;
use musicfs_ipc::origin::Secret;
use musicfs_tests::corpus::corpus_dir;
use musicfs_tests::nginx::{Nginx, PRIVATE_PASSWORD, PRIVATE_USER};
use musicfs_tests::noise::noise;
use musicfs_tests::web_servers::WebServer;

fn origin(url: &str) -> HttpOrigin {
    let mut config = OriginConfig::from_url(url);
    config.timeout_seconds = Some(2);
    HttpOrigin::new(&config, &config.parsed().unwrap()).expect("origin")
}

/// A library in `dir`: audio in nested folders (names that need percent-encoding), a file
/// larger than one parallel read, and files that are not audio. Returns the audio by path.
fn library(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let corpus = |rel: &str| std::fs::read(corpus_dir().join(rel)).expect("corpus file");
    let mut big = corpus("audioscan/flac/picture-large.flac");
    big.extend(noise(5 * 1024 * 1024 + 12_345, 9));
    let files = [
        (
            "Artist + Band/Album #1 (1999)/01 Song?.mp3",
            corpus("audioscan/mp3/v2.4-apic-png.mp3"),
        ),
        (
            "Björk/Homogenic/02 Jóga 100%.flac",
            corpus("audioscan/flac/picture.flac"),
        ),
        (
            "a/b/c/deep.ogg",
            corpus("audioscan/ogg/large-page-segments.ogg"),
        ),
        ("big/long.flac", big),
    ];
    let mut audio = BTreeMap::new();
    for (rel, data) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &data).unwrap();
        audio.insert(rel.to_owned(), data);
    }
    std::fs::write(dir.join("notes.txt"), b"not audio").unwrap();
    std::fs::write(dir.join("a/cover.jpg"), noise(1000, 3)).unwrap();
    audio
}

/// Adds a 70 kB file of noise at `rel` in `dir` to the library and to `audio`.
fn add_file(dir: &std::path::Path, audio: &mut BTreeMap<String, Vec<u8>>, rel: &str, seed: u64) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let data = noise(70_000, seed);
    std::fs::write(&path, &data).unwrap();
    audio.insert(rel.to_owned(), data);
}

fn read_all(file: &dyn RangeRead, piece: usize) -> Vec<u8> {
    let mut out = vec![0; file.len() as usize];
    let mut at = 0;
    while at < out.len() {
        let end = (at + piece).min(out.len());
        let n = file.read_at(at as u64, &mut out[at..end]).expect("read");
        assert!(n > 0, "no progress at {at}");
        at += n;
    }
    out
}

/// Walks the folder `lib` published at `url`, which holds `audio`: exactly those files are
/// listed, with the sizes and dates (whole seconds) the folder has and HEAD reports, and every
/// one reads back byte for byte in single and parallel ranged GETs.
fn reads_like_the_folder(url: &str, lib: &std::path::Path, audio: &BTreeMap<String, Vec<u8>>) {
    reads_like_the_folder_through(&origin(url), lib, audio);
}

/// [`reads_like_the_folder`] through an origin already made (with credentials, say).
fn reads_like_the_folder_through(
    o: &HttpOrigin,
    lib: &std::path::Path,
    audio: &BTreeMap<String, Vec<u8>>,
) {
    o.probe().expect("probe");

    let found = common::walk_lists_exactly(o, audio);
    for f in &found {
        // The listing's mtime is the one HEAD reports (whole seconds), as the scanner compares.
        let local = std::fs::metadata(lib.join(&f.path)).unwrap();
        let secs = local
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i128;
        assert_eq!(f.mtime_ns, secs * 1_000_000_000, "{}", f.path);
        assert_eq!(o.stat(&f.path).unwrap(), (f.size, f.mtime_ns), "{}", f.path);
    }

    for (rel, data) in audio {
        let file = o.open(rel).expect("open");
        assert_eq!(file.len(), data.len() as u64);
        // 1 MiB and 3 MiB pieces: single GETs and parallel ones.
        assert_eq!(&read_all(&*file, 1 << 20), data, "{rel}");
        assert_eq!(&read_all(&*file, 3 << 20), data, "{rel}");
        let mut tail = vec![0; 100];
        let n = file.read_at(data.len() as u64 - 10, &mut tail).unwrap();
        assert_eq!(&tail[..n], &data[data.len() - 10..]);
    }
    let missing = o.stat("nope.mp3").unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound, "{missing}");
}

#[test]
fn walks_stats_and_reads_a_folder_nginx_lists_in_json_byte_for_byte() {
    let lib = tempfile::tempdir().unwrap();
    let audio = library(lib.path());
    let server = Nginx::serving(lib.path());
    reads_like_the_folder(&server.url(), lib.path(), &audio);
}

/// nginx's default `autoindex on;` (HTML pages): the same files, sizes and dates as its JSON.
#[test]
fn walks_stats_and_reads_a_folder_nginx_lists_in_html_byte_for_byte() {
    let lib = tempfile::tempdir().unwrap();
    let audio = library(lib.path());
    let server = Nginx::serving(lib.path());
    reads_like_the_folder(&server.html_url(), lib.path(), &audio);
}

/// Sets the mtime of `rel` in `dir` to `ago` before now.
fn written_ago(dir: &std::path::Path, rel: &str, ago: std::time::Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(dir.join(rel))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

/// A folder nginx lists in HTML is walked again without a HEAD per file: a file whose row on
/// the page reads as it did at the last walk, written well before that walk's HEAD, keeps
/// what the HEAD said. A file written again (another size; the same size in another minute) is
/// asked again, and a file written in the last two minutes is asked at every walk.
#[test]
fn walks_again_ask_only_files_whose_html_row_changed_or_is_recent() {
    let lib = tempfile::tempdir().unwrap();
    let mut audio = library(lib.path());
    let minutes = |n: u64| std::time::Duration::from_secs(60 * n);
    for rel in audio.keys() {
        written_ago(lib.path(), rel, minutes(10));
    }
    let server = Nginx::serving(lib.path());
    let o = origin(&server.html_url());
    // nginx logs a request once it has answered it: counted when the log has stopped growing.
    let heads = || {
        let count = || server.html_requests().matches("\"HEAD /html/").count();
        let mut last = count();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            match count() {
                now if now == last => return now,
                now => last = now,
            }
        }
    };
    let mtime = |found: &[musicfs_fetchd::origin::Found], rel: &str| {
        let f = found.iter().find(|f| f.path == rel).unwrap();
        let local = std::fs::metadata(lib.path().join(rel)).unwrap();
        let secs = local
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH);
        (
            f.mtime_ns,
            i128::from(secs.unwrap().as_secs()) * 1_000_000_000,
        )
    };

    let first = common::walk_lists_exactly(&o, &audio);
    assert_eq!(heads(), audio.len());
    let again = common::walk_lists_exactly(&o, &audio);
    assert_eq!(heads(), audio.len(), "a second walk sent HEADs");
    assert_eq!(again, first);

    let grown = "Björk/Homogenic/02 Jóga 100%.flac";
    audio.get_mut(grown).unwrap().extend(noise(5000, 4));
    std::fs::write(lib.path().join(grown), &audio[grown]).unwrap();
    let found = common::walk_lists_exactly(&o, &audio);
    assert_eq!(heads(), audio.len() + 1);
    let (listed, local) = mtime(&found, grown);
    assert_eq!(listed, local);
    // Written just now: asked again, as its row may not show a second write this minute.
    common::walk_lists_exactly(&o, &audio);
    assert_eq!(heads(), audio.len() + 2);

    let same_size = "a/b/c/deep.ogg";
    let mut data = audio[same_size].clone();
    data[100] ^= 0xff;
    std::fs::write(lib.path().join(same_size), &data).unwrap();
    written_ago(lib.path(), same_size, minutes(5));
    let found = common::walk_lists_exactly(&o, &audio);
    assert_eq!(
        heads(),
        audio.len() + 4,
        "the rewritten and the recent file"
    );
    let (listed, local) = mtime(&found, same_size);
    assert_eq!(listed, local);
    written_ago(lib.path(), grown, minutes(3));
    common::walk_lists_exactly(&o, &audio);
    assert_eq!(
        heads(),
        audio.len() + 5,
        "the file written 3 minutes ago, once"
    );
    common::walk_lists_exactly(&o, &audio);
    assert_eq!(heads(), audio.len() + 5);
}

/// Another server altogether: `rclone serve http` (its own HTML pages, with sort links and
/// `&amp;` in hrefs; no ETag).
#[test]
fn walks_stats_and_reads_a_folder_rclone_serves_byte_for_byte() {
    let lib = tempfile::tempdir().unwrap();
    let mut audio = library(lib.path());
    let odd = "Simon & Garfunkel/Bridge; 'Live' <1970>/03 \"Cecilia\".flac";
    add_file(lib.path(), &mut audio, odd, 12);
    let server = WebServer::rclone(lib.path());
    reads_like_the_folder(&server.url(), lib.path(), &audio);
}

/// A WebDAV folder behind a password, as Nextcloud publishes one: found to be WebDAV by its
/// answer to PROPFIND, listed with sizes and dates from it (no HEAD per file), and read with
/// ranged GETs. The server (`rclone serve webdav`) escapes names its own way.
#[test]
fn walks_stats_and_reads_a_webdav_folder_byte_for_byte() {
    let lib = tempfile::tempdir().unwrap();
    let mut audio = library(lib.path());
    add_file(
        lib.path(),
        &mut audio,
        "Café & Bar/Disc 1; 'Live'/01 %41 \"x\".flac",
        13,
    );
    let server = WebServer::rclone_webdav(lib.path(), Some(("ann", "cloud-app-password")));
    let mut config = OriginConfig::from_url(server.url());
    config.timeout_seconds = Some(2);
    config.username = Some("ann".into());
    config.password = Some(Secret::new("cloud-app-password"));
    let o = HttpOrigin::new(&config, &config.parsed().unwrap()).unwrap();
    common::walk_lists_exactly(&o, &audio);
    let log = server.log();
    assert!(log.contains("PROPFIND from"), "{log}");
    assert!(!log.contains("HEAD from"), "{log}");
    reads_like_the_folder_through(&o, lib.path(), &audio);

    let err = origin(&server.url()).walk().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
}

/// Python's `http.server` lists folders but answers every ranged GET with the whole file: the
/// walk lists the files, and a read says what is wrong and what to use instead.
#[test]
fn a_server_that_ignores_ranges_is_named_as_such() {
    let lib = tempfile::tempdir().unwrap();
    let audio = library(lib.path());
    let server = WebServer::python(lib.path());
    let o = origin(&server.url());
    common::walk_lists_exactly(&o, &audio);
    let file = o.open("Björk/Homogenic/02 Jóga 100%.flac").expect("open");
    let err = file.read_at(0, &mut [0; 4096]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("ignores Range requests"), "{err}");
}

/// A file replaced (same size, other bytes, a later mtime) after it was opened at `url`, the
/// folder `lib` published: its reads fail rather than mix two versions.
fn replaced_file_fails_its_reads(url: &str, lib: &std::path::Path) {
    let o = origin(url);
    let file = o.open("a.flac").unwrap();
    let mut buf = vec![0; 1000];
    file.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, noise(300_000, 4)[..1000]);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(lib.join("a.flac"), noise(300_000, 5)).unwrap();
    let err = file.read_at(0, &mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("replaced"), "{err}");
}

/// nginx sends an ETag: reads are pinned with `If-Match`.
#[test]
fn a_file_replaced_after_it_was_opened_fails_its_reads() {
    let lib = tempfile::tempdir().unwrap();
    std::fs::write(lib.path().join("a.flac"), noise(300_000, 4)).unwrap();
    let server = Nginx::serving(lib.path());
    replaced_file_fails_its_reads(&server.url(), lib.path());
}

/// rclone sends no ETag: reads are pinned to the date with `If-Unmodified-Since`.
#[test]
fn a_file_replaced_on_a_server_without_etags_fails_its_reads() {
    let lib = tempfile::tempdir().unwrap();
    std::fs::write(lib.path().join("a.flac"), noise(300_000, 4)).unwrap();
    let server = WebServer::rclone(lib.path());
    replaced_file_fails_its_reads(&server.url(), lib.path());
}

#[test]
fn a_server_that_goes_away_is_unreachable_and_is_used_again_when_back() {
    let lib = tempfile::tempdir().unwrap();
    let data = noise(100_000, 6);
    std::fs::write(lib.path().join("a.flac"), &data).unwrap();
    let mut server = Nginx::serving(lib.path());
    let o = origin(&server.url());
    let file = o.open("a.flac").unwrap();

    server.stop();
    let err = o.walk().unwrap_err();
    assert!(unreachable(&err), "{err}");
    assert!(unreachable(&o.probe().unwrap_err()));
    let mut buf = vec![0; 4096];
    assert!(unreachable(&file.read_at(0, &mut buf).unwrap_err()));

    server.start();
    o.probe().expect("back");
    file.read_at(0, &mut buf)
        .expect("the open file reads again");
    assert_eq!(buf, data[..4096]);
}

#[test]
fn a_folder_the_server_does_not_publish_is_not_found() {
    let lib = tempfile::tempdir().unwrap();
    let server = Nginx::serving(lib.path());
    // Beside the published folder there is nothing: nginx answers 404.
    let above = server.url().trim_end_matches("music/").to_owned() + "elsewhere/";
    let err = origin(&above).walk().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
}

/// A folder the server refuses (403) is reported and the rest listed; one it fails to list
/// (503: an overloaded NAS, a proxy timing out) fails the whole walk, which the scan takes as
/// "keep what is known", instead of a listing without it, which would read as its tracks
/// removed.
#[test]
fn a_folder_the_server_fails_to_list_fails_the_walk_and_a_refused_one_is_reported() {
    let lib = tempfile::tempdir().unwrap();
    for rel in ["a.flac", "Refused/b.flac"] {
        let path = lib.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, noise(1000, 2)).unwrap();
    }
    let server = Nginx::serving(lib.path());
    let o = origin(&server.url());
    let (found, failed) = o.walk().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "Refused");
    assert!(failed[0].1.contains("403"), "{failed:?}");

    std::fs::create_dir(lib.path().join("Unavailable")).unwrap();
    std::fs::write(lib.path().join("Unavailable/c.flac"), noise(1000, 3)).unwrap();
    let err = o.walk().unwrap_err();
    assert!(unreachable(&err), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
}

/// An answer that is neither a JSON listing nor an HTML page (a file where the folder should
/// be) is no listing, and the error says what servers give one.
#[test]
fn a_server_that_gives_no_listing_is_told_what_to_serve() {
    let lib = tempfile::tempdir().unwrap();
    std::fs::write(lib.path().join("a.flac"), noise(1000, 1)).unwrap();
    std::fs::create_dir(lib.path().join("Album")).unwrap();
    std::fs::write(lib.path().join("Album/index.html"), b"plain words, no page").unwrap();
    let server = Nginx::serving(lib.path());
    let (found, failed) = origin(&server.html_url()).walk().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "Album");
    assert!(failed[0].1.contains("autoindex on"), "{failed:?}");
}

/// A home server whose HTTPS certificate comes from its own CA (a NAS's, mkcert's): refused
/// with a message that says what to do, read once the CA is given as `ca_file`. A `ca_file`
/// that holds no certificate is a configuration error.
#[test]
fn an_https_server_with_its_own_ca_is_trusted_through_ca_file() {
    let lib = tempfile::tempdir().unwrap();
    let audio = library(lib.path());
    let server = Nginx::serving(lib.path());
    let url = server.tls_url();

    let err = origin(&url).walk().unwrap_err();
    let text = err.to_string();
    eprintln!("untrusted: {text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("ca_file"), "{text}");

    let with_ca = |file: &std::path::Path| {
        let mut config = OriginConfig::from_url(&url);
        config.timeout_seconds = Some(2);
        config.ca_file = Some(file.to_owned());
        HttpOrigin::new(&config, &config.parsed().unwrap())
    };
    let trusted = with_ca(&server.ca_file()).expect("origin");
    common::walk_lists_exactly(&trusted, &audio);
    let (rel, data) = audio.iter().next().unwrap();
    assert_eq!(&read_all(&*trusted.open(rel).unwrap(), 1 << 20), data);

    let not_pem = lib.path().join("notes.txt");
    let err = with_ca(&not_pem).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("ca_file"), "{err}");
    let err = with_ca(&lib.path().join("missing.pem")).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

/// A folder published behind a password (nginx's `auth_basic`): read with the username and
/// password the origin's config gives; without them, or with a wrong one, the error says
/// which, and never shows the password.
#[test]
fn a_folder_behind_basic_authentication_is_read_with_the_configured_credentials() {
    let lib = tempfile::tempdir().unwrap();
    let audio = library(lib.path());
    let server = Nginx::serving(lib.path());
    let url = server.private_url();

    let err = origin(&url).walk().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("asks for credentials"), "{err}");

    let with = |password: &str| {
        let mut config = OriginConfig::from_url(&url);
        config.timeout_seconds = Some(2);
        config.username = Some(PRIVATE_USER.into());
        config.password = Some(Secret::new(password));
        HttpOrigin::new(&config, &config.parsed().unwrap())
    };
    let err = with("wrong-password-17").unwrap().walk().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    let text = err.to_string();
    assert!(text.contains("refused the username and password"), "{text}");
    assert!(!text.contains("wrong-password-17"), "{text}");

    let private = with(PRIVATE_PASSWORD).unwrap();
    let (found, failed) = private.walk().unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, audio.keys().map(String::as_str).collect::<Vec<_>>());
    let file = private.open("big/long.flac").unwrap();
    assert!(read_all(&*file, 300_000) == audio["big/long.flac"]);

    let mut half = OriginConfig::from_url(&url);
    half.username = Some(PRIVATE_USER.into());
    let err = HttpOrigin::new(&half, &half.parsed().unwrap()).unwrap_err();
    assert!(err.to_string().contains("together"), "{err}");
}
