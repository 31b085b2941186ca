//! Remote origins on a real mount: a real OpenSSH sshd, a real S3 server (s3s-fs, which
//! checks SigV4 signatures) and nginx on 127.0.0.1. The corpus reads back byte-identical through
//! all three,
//! the first scan reads only tag bytes, the same library on both origins shows once, reads fail
//! over when the preferred origin stalls, cached tracks play with every origin gone, uncached
//! reads then fail with EIO instead of hanging, and a returning origin is used again.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_tests::albums::drop_page_cache;
use musicfs_tests::corpus::{corpus_dir, noise_library, noise_track_path};
use musicfs_tests::mount::Mount;
use musicfs_tests::nginx::Nginx;
use musicfs_tests::s3server::S3Server;
use musicfs_tests::ssh_agent::{with_passphrase, SshAgent};
use musicfs_tests::sshd::Sshd;
use musicfs_tests::web_servers::WebServer;
use serde_json::Value;

const BUCKET: &str = "music";

fn sftp_origin(sshd: &Sshd, dir: &Path, priority: i32) -> String {
    format!(
        "[[origins]]\nurl = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\
         priority = {priority}\nscan_interval_seconds = 1\ntimeout_seconds = 2\n",
        sshd.url(dir),
        sshd.identity_file().display(),
        sshd.known_hosts().display()
    )
}

fn s3_origin(s3: &S3Server, prefix: &str, priority: i32) -> String {
    format!(
        "[[origins]]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"{}\"\npath_style = true\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n\
         priority = {priority}\nscan_interval_seconds = 1\ntimeout_seconds = 2\n",
        s3.endpoint(),
        s3.access_key(),
        s3.secret_key()
    )
}

/// Mounts with the given config text and no command-line origins.
fn mount_with(tmp: &Path, config: &str) -> Mount {
    mount_with_env(tmp, config, &[])
}

/// [`mount_with`], with `env` set for `musicfsctl` and its workers.
fn mount_with_env(tmp: &Path, config: &str, env: &[(&str, &Path)]) -> Mount {
    let path = tmp.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mnt = tmp.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let cfg = path.to_str().unwrap();
    Mount::start_with_env(&[], &tmp.join("state"), &mnt, &["--config", cfg], env)
}

/// Every file below `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The core-format tagged corpus files (flac, mp3, ogg, opus, m4a), copied to `dir`.
fn corpus_copy(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let corpus = corpus_dir();
    let rows = musicfs_tests::corpus::read_manifest(&corpus.join("MANIFEST.tsv"));
    let mut out = BTreeMap::new();
    for row in rows {
        let format = row.get("format");
        if row.get("category") != "tagged"
            || !["flac", "mp3", "ogg", "opus", "m4a"].contains(&format)
        {
            continue;
        }
        let rel = row.get("path").to_owned();
        let bytes = std::fs::read(corpus.join(&rel)).unwrap();
        let to = dir.join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, &bytes).unwrap();
        out.insert(rel, bytes);
    }
    out
}

fn origin<'a>(status: &'a Value, scheme: &str) -> &'a Value {
    status["origins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"].as_str().unwrap().starts_with(scheme))
        .unwrap_or_else(|| panic!("no {scheme} origin in {status}"))
}

fn wait_for(what: &str, within: Duration, ready: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// Reads `len` bytes at `offset` of a file with the kernel's read-ahead off.
fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: a valid open fd.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    assert_eq!(rc, 0);
    let mut buf = vec![0; len];
    let n = file.read_at(&mut buf, offset).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn the_corpus_reads_back_identical_through_sftp_s3_and_http_and_scans_read_only_tags() {
    let tmp = tempfile::tempdir().unwrap();
    // Named as people name folders: the URLs carry these names %-escaped.
    let nas = tmp.path().join("Our NAS 100%");
    let originals = corpus_copy(&nas);
    let sshd = Sshd::new();
    let s3 = S3Server::new();
    // The S3 and web copies live at other paths: five copies of every track. The web copies
    // are published by nginx with JSON listings over HTTPS (a certificate from its own CA,
    // which the sandboxed fetchd reads from ca_file), by rclone with HTML pages, and by rclone
    // over WebDAV behind a password (as Nextcloud).
    let web = tmp.path().join("web");
    let pages = tmp.path().join("pages");
    let dav_dir = tmp.path().join("dav");
    for (rel, bytes) in &originals {
        s3.put(BUCKET, &format!("my lib/copy/{rel}"), bytes);
        for path in [
            web.join("web copy").join(rel),
            pages.join("html copy").join(rel),
            dav_dir.join("dav copy").join(rel),
        ] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
    let nginx = Nginx::serving(&web);
    let rclone = WebServer::rclone(&pages);
    let dav = WebServer::rclone_webdav(&dav_dir, Some(("ann", "dav-password")));
    let web_origin = |url: String, priority: i32| {
        format!("[[origins]]\nurl = \"{url}\"\npriority = {priority}\ntimeout_seconds = 2\n")
    };
    let ca_file = tmp.path().join("home-ca.pem");
    std::fs::copy(nginx.ca_file(), &ca_file).unwrap();
    let config = sftp_origin(&sshd, &nas, 1)
        + &s3_origin(&s3, "my%20lib", 2)
        + &web_origin(nginx.tls_url(), 3)
        + &format!("ca_file = \"{}\"\n", ca_file.display())
        + &web_origin(rclone.url(), 4)
        + &web_origin(dav.url(), 5)
        + "username = \"ann\"\npassword = \"dav-password\"\n";
    let mount = mount_with(tmp.path(), &config);
    let status = mount.status(true);
    let tracks = status["catalog"]["tracks"].as_u64().unwrap();
    let left_out = status["catalog"]["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["shown"] == false)
        .count();
    assert_eq!(
        tracks as usize + left_out,
        5 * originals.len(),
        "{}",
        status["catalog"]
    );

    // The first scan read the tag bytes only: on average at most two of the scanner's 16 KiB
    // blocks per track (a head block, and a tail block where tags live at the end).
    for scheme in [
        "sftp://",
        "s3://",
        &nginx.tls_url(),
        &rclone.url(),
        &dav.url(),
    ] {
        let read = origin(&status, scheme)["bytes_read"].as_u64().unwrap();
        let total: usize = originals.values().map(Vec::len).sum();
        let per_track = read / originals.len() as u64;
        eprintln!(
            "{scheme} first scan: {read} bytes of {total} ({per_track} per track, {} tracks)",
            originals.len()
        );
        assert!(
            per_track <= 48 * 1024,
            "{scheme}: {per_track} bytes per track"
        );
    }

    // What the scan read is kept: reading the head and the tail of any track (as tag readers
    // and players probing a file do, without the kernel's read-ahead) asks no origin for
    // anything.
    let origin_bytes = |status: &Value| -> u64 {
        status["origins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["bytes_read"].as_u64().unwrap())
            .sum()
    };
    let before = origin_bytes(&mount.status(false));
    for entry in walkdir::WalkDir::new(&mount.mountpoint) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            read_at(entry.path(), 0, 4096);
            let size = entry.metadata().unwrap().len();
            read_at(entry.path(), size.saturating_sub(4096), 4096);
        }
    }
    assert_eq!(
        origin_bytes(&mount.status(false)),
        before,
        "head reads went to an origin"
    );

    // Every track in the tree is byte-identical to an original.
    let by_sha: BTreeMap<String, &String> = originals.iter().map(|(r, b)| (sha(b), r)).collect();
    let shown = files(&mount.mountpoint);
    assert_eq!(shown.len() as u64, tracks);
    for (path, bytes) in &shown {
        assert!(
            by_sha.contains_key(&sha(bytes)),
            "{path} differs from every original"
        );
    }

    // A file added on the NAS shows up at the next listing, without a remount.
    std::fs::copy(corpus_dir().join("beets/full.flac"), nas.join("added.flac")).unwrap();
    let album = mount.path("the artist/the album (2001)");
    let took = wait_for("file added over sftp", Duration::from_secs(10), || {
        musicfs_tests::sorted_names(&album).len() >= 3
    });
    eprintln!("added over sftp: visible after {took:?}");
}

#[test]
fn reads_fail_over_play_offline_fail_with_eio_and_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(8, 20);
    let sshd = Sshd::new();
    let s3 = S3Server::new();
    let mut originals = BTreeMap::new();
    for i in 1..=8 {
        let name = format!("noise-{i:02}.flac");
        let bytes = std::fs::read(library.join(&name)).unwrap();
        s3.put(BUCKET, &format!("lib/{name}"), &bytes);
        originals.insert(i, bytes);
    }
    let (sshd, mut s3) = (sshd, s3);
    let config = sftp_origin(&sshd, &library, 1) + &s3_origin(&s3, "lib", 2);
    let mount = mount_with(tmp.path(), &config);
    let status = mount.status(true);
    assert_eq!(
        status["catalog"]["tracks"], 8,
        "the same file on two origins shows once"
    );
    let track = |i: usize| mount.path(&noise_track_path(i));
    let read = |i: usize| std::fs::read(track(i));
    let wire = || -> u64 {
        let status = mount.status(false);
        ["sftp://", "s3://"]
            .iter()
            .map(|s| origin(&status, s)["bytes_read"].as_u64().unwrap())
            .sum()
    };

    // A tag scan after MusicFS's own, as MPD makes it: 8 KiB from each head with the kernel's
    // read-ahead on (it asks for 32 KiB). What the first scan kept answers it.
    let before = wire();
    drop_page_cache();
    for i in 1..=8 {
        let mut head = vec![0; 8192];
        std::fs::File::open(track(i))
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        assert_eq!(head, originals[&i][..8192]);
    }
    assert_eq!(
        wire(),
        before,
        "a tag scan through the mount went to an origin"
    );

    // Track 1 played: cached.
    assert_eq!(read(1).unwrap(), originals[&1]);
    std::thread::sleep(Duration::from_millis(500));

    // The NAS stalls mid-stream: the read goes on from S3, and the NAS is marked down.
    let mut file = std::fs::File::open(track(2)).unwrap();
    let mut head = vec![0; 256 * 1024];
    file.read_exact(&mut head).unwrap();
    sshd.stall();
    let started = Instant::now();
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert_eq!(head, originals[&2]);
    eprintln!(
        "stalled NAS: track 2 finished from S3 in {:?}",
        started.elapsed()
    );
    let took = wait_for("NAS marked down", Duration::from_secs(8), || {
        origin(&mount.status(false), "sftp://")["up"] == false
    });
    eprintln!("stalled NAS marked down after {took:?}");
    // While the NAS is down, tracks come from S3 only.
    let sftp_before = origin(&mount.status(false), "sftp://")["bytes_read"]
        .as_u64()
        .unwrap();
    assert_eq!(read(3).unwrap(), originals[&3]);
    let sftp_after = origin(&mount.status(false), "sftp://")["bytes_read"]
        .as_u64()
        .unwrap();
    assert_eq!(sftp_after, sftp_before, "a down origin was asked");

    // Every origin gone: cached tracks still play; the listing is whole; uncached reads fail
    // with EIO within the deadline instead of hanging.
    s3.stop();
    std::thread::sleep(Duration::from_secs(1));
    drop_page_cache();
    for i in [1, 2, 3] {
        assert_eq!(read(i).unwrap(), originals[&i], "cached track {i} offline");
    }
    let album = mount.path("Noise/Long Noise (2024)");
    assert_eq!(
        musicfs_tests::sorted_names(&album).len(),
        8,
        "listing lost entries"
    );
    let started = Instant::now();
    let err = read(5).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        musicfs_tests::sorted_names(&album).len(),
        8,
        "a rescan dropped tracks"
    );
    assert_eq!(
        std::fs::metadata(track(5)).unwrap().size(),
        originals[&5].len() as u64
    );

    // Back: the NAS answers again and is used again.
    sshd.resume();
    let took = wait_for("NAS back up", Duration::from_secs(10), || {
        origin(&mount.status(false), "sftp://")["up"] == true
    });
    eprintln!("NAS back up after {took:?}");
    let sftp_before = origin(&mount.status(false), "sftp://")["bytes_read"]
        .as_u64()
        .unwrap();
    assert_eq!(read(5).unwrap(), originals[&5]);
    let sftp_after = origin(&mount.status(false), "sftp://")["bytes_read"]
        .as_u64()
        .unwrap();
    assert!(
        sftp_after > sftp_before,
        "track 5 not read from the returning NAS"
    );
}

/// Where the audio of a FLAC file starts: after its last metadata block.
fn flac_audio_start(bytes: &[u8]) -> usize {
    assert_eq!(&bytes[..4], b"fLaC");
    let mut at = 4;
    loop {
        let header = &bytes[at..at + 4];
        let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        at += 4 + len;
        if header[0] & 0x80 != 0 {
            return at;
        }
    }
}

#[test]
fn a_retagged_30_mb_flac_is_fetched_again_only_in_its_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let nas = tmp.path().join("nas");
    std::fs::create_dir_all(&nas).unwrap();
    let big = noise_library(1, 300).join("noise-01.flac");
    std::fs::copy(&big, nas.join("big.flac")).unwrap();
    let size = std::fs::metadata(nas.join("big.flac")).unwrap().len();
    assert!(size > 30_000_000, "{size}");
    let sshd = Sshd::new();
    let mount = mount_with(tmp.path(), &sftp_origin(&sshd, &nas, 1));
    mount.status(true);
    let shown = mount.path(&noise_track_path(1));
    assert_eq!(
        std::fs::read(&shown).unwrap(),
        std::fs::read(nas.join("big.flac")).unwrap()
    );
    // Cached: wait for it to be cut into chunks.
    wait_for("track cached", Duration::from_secs(20), || {
        mount.status(false)["cache"]["bytes"].as_u64().unwrap() >= size
    });

    // Retag at the origin; without padding to absorb it, the audio moves.
    let status = std::process::Command::new("metaflac")
        .args([
            "--set-tag=COMMENT=retagged on the NAS",
            "--set-tag=MOOD=calm",
        ])
        .arg("--dont-use-padding")
        .arg(nas.join("big.flac"))
        .status()
        .expect("metaflac (apt-get install flac)");
    assert!(status.success());
    let new = std::fs::read(nas.join("big.flac")).unwrap();
    assert_ne!(new.len() as u64, size, "the retag should move the audio");
    let before = origin(&mount.status(false), "sftp://")["bytes_read"]
        .as_u64()
        .unwrap();
    wait_for("retag seen", Duration::from_secs(10), || {
        std::fs::metadata(&shown).is_ok_and(|m| m.size() == new.len() as u64)
    });
    assert_eq!(std::fs::read(&shown).unwrap(), new);
    let refetched = origin(&mount.status(false), "sftp://")["bytes_read"]
        .as_u64()
        .unwrap()
        - before;
    let tag_block = flac_audio_start(&new) as u64;
    let bound = 2 * 64 * 1024 + tag_block;
    eprintln!("retag of a {size}-byte FLAC: {refetched} bytes fetched again (bound {bound}, tag block {tag_block})");
    assert!(
        refetched < bound,
        "{refetched} bytes fetched again (bound {bound})"
    );
}

#[test]
fn secrets_never_reach_logs_process_lists_or_status() {
    const SECRET: &str = "s3-secret-that-must-not-leak";
    const PASSWORD: &str = "sftp-password-that-must-not-leak";
    const WEB_PASSWORD: &str = "http-password-that-must-not-leak";
    let tmp = tempfile::tempdir().unwrap();
    let nas = tmp.path().join("nas");
    corpus_copy(&nas);
    let sshd = Sshd::new();
    let s3 = S3Server::new();
    s3.put(
        BUCKET,
        "lib/a.flac",
        &std::fs::read(corpus_dir().join("beets/full.flac")).unwrap(),
    );
    let web = Nginx::serving(&nas);
    // A wrong S3 secret and a wrong web password (refused on every request, so errors are
    // logged), and a password for an SFTP server that is not there (so connection errors are
    // logged).
    let wrong = format!(
        "[[origins]]\nurl = \"s3://{BUCKET}/lib\"\nendpoint = \"{}\"\npath_style = true\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{SECRET}\"\ntimeout_seconds = 2\n\
         [[origins]]\nurl = \"sftp://nobody@127.0.0.1:1/music\"\npassword = \"{PASSWORD}\"\n\
         known_hosts = \"{}\"\ntimeout_seconds = 2\n\
         [[origins]]\nurl = \"{}\"\nusername = \"ann\"\npassword = \"{WEB_PASSWORD}\"\n\
         timeout_seconds = 2\n",
        s3.endpoint(),
        s3.access_key(),
        sshd.known_hosts().display(),
        web.private_url()
    );
    let config = sftp_origin(&sshd, &nas, 1) + &wrong;
    let config_path = tmp.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let log = tmp.path().join("musicfs.log");
    let mount = Mount::start_logged(
        &[],
        &tmp.path().join("state"),
        &mnt,
        &["--config", config_path.to_str().unwrap()],
        &log,
    );
    let status = mount.status(true);
    // Let the probes fail a few times.
    std::thread::sleep(Duration::from_secs(3));
    let text = mount.ctl(&["status"]);
    let json = mount.ctl(&["status", "--json"]);
    let mut seen = String::from_utf8_lossy(&text.stdout).into_owned();
    seen += &String::from_utf8_lossy(&json.stdout);
    let mut pids: Vec<i64> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["pid"].as_i64())
        .collect();
    pids.push(status["supervisor_pid"].as_i64().unwrap());
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        seen += &String::from_utf8_lossy(&cmdline).replace('\0', " ");
    }
    drop(mount);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("s3://music/lib")
            && logged.contains("sftp://nobody@127.0.0.1:1/music")
            && logged.contains("refused the username and password"),
        "the failing origins were not reported: {logged}"
    );
    for secret in [SECRET, PASSWORD, WEB_PASSWORD] {
        assert!(!logged.contains(secret), "{secret} in the log:\n{logged}");
        assert!(!seen.contains(secret), "{secret} in status or ps:\n{seen}");
    }
    // The refused signature is reported as what it is.
    let s3_status = origin(&json_value(&json.stdout), "s3://").clone();
    assert_eq!(
        s3_status["up"], true,
        "a refused key is not an outage: {s3_status}"
    );
    assert!(
        logged.to_lowercase().contains("denied") || logged.contains("403"),
        "{logged}"
    );
}

fn json_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The admin replaces the known_hosts file (`ssh-keygen -R` writes a new file and renames it
/// over the old one), then the NAS restarts, so every connection is made again: fetchd, whose
/// sandbox admitted the old file only, restarts itself and reads the new one, instead of
/// refusing the NAS for ever with "Permission denied".
#[test]
fn a_replaced_known_hosts_file_is_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(8, 20);
    let mut sshd = Sshd::new();
    let mount = mount_with(tmp.path(), &sftp_origin(&sshd, &library, 1));
    mount.status(true);
    let original = |i: usize| std::fs::read(library.join(format!("noise-{i:02}.flac"))).unwrap();
    assert_eq!(
        std::fs::read(mount.path(&noise_track_path(1))).unwrap(),
        original(1)
    );

    let known_hosts = sshd.known_hosts();
    let replacement = known_hosts.with_extension("new");
    std::fs::copy(&known_hosts, &replacement).unwrap();
    std::fs::rename(&replacement, &known_hosts).unwrap();
    sshd.stop();
    sshd.start();

    let started = Instant::now();
    let last = loop {
        match std::fs::read(mount.path(&noise_track_path(2))) {
            Ok(bytes) => break bytes,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(30),
                "the NAS was not read again: {e}; {}",
                mount.status(false)["origins"]
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(last, original(2));
    eprintln!("read again after {:?}", started.elapsed());
}

/// A desktop user's NAS: the key has a passphrase and lives in their ssh-agent, which
/// `SSH_AUTH_SOCK` names in the session that runs `musicfsctl mount`. fetchd (sandboxed, with
/// its own copy of the environment) asks that agent to sign, and the library reads back whole.
#[test]
fn a_key_with_a_passphrase_in_ssh_agent_mounts_a_nas() {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(8, 20);
    let sshd = Sshd::new();
    let locked = tmp.path().join("id_ed25519");
    with_passphrase(&sshd.identity_file(), &locked, "correct horse");
    let agent = SshAgent::new();
    agent.add(&sshd.identity_file());
    let config = format!(
        "[[origins]]\nurl = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\
         timeout_seconds = 2\n",
        sshd.url(&library),
        locked.display(),
        sshd.known_hosts().display()
    );
    let socket = agent.socket();
    let mount = mount_with_env(tmp.path(), &config, &[("SSH_AUTH_SOCK", &socket)]);
    let status = mount.status(true);
    let sftp = origin(&status, "sftp://");
    assert_eq!(sftp["up"], true, "{status}");
    for i in [1, 8] {
        let original = std::fs::read(library.join(format!("noise-{i:02}.flac"))).unwrap();
        let read = std::fs::read(mount.path(&noise_track_path(i))).unwrap();
        assert!(read == original, "track {i} differs through the mount");
    }
}

/// An SFTP origin whose key file is missing at start (a home folder not mounted yet, a key
/// being replaced) used to stop fetchd from starting at all, the local cache and every other
/// origin with it, and the mount never came up. Now the origin is down with the reason, its
/// tracks stay listed, the cached one plays, and once the key is back it is used again.
#[test]
fn a_remote_origin_whose_key_is_missing_at_start_is_down_until_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(8, 20);
    let sshd = Sshd::new();
    let key = tmp.path().join("id_ed25519");
    std::fs::copy(sshd.identity_file(), &key).unwrap();
    let config = format!(
        "[[origins]]\nurl = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\
         timeout_seconds = 2\n",
        sshd.url(&library),
        key.display(),
        sshd.known_hosts().display()
    );
    let original = |i: usize| std::fs::read(library.join(format!("noise-{i:02}.flac"))).unwrap();
    let mount = mount_with(tmp.path(), &config);
    mount.status(true);
    assert!(std::fs::read(mount.path(&noise_track_path(1))).unwrap() == original(1));
    let size = original(1).len() as u64;
    wait_for("track 1 is cached", Duration::from_secs(10), || {
        let stats = mount.ctl(&["cache", "stats", "--json"]).stdout;
        let stats: Value = serde_json::from_slice(&stats).unwrap();
        // Chunks appear only when a whole track is cut (the heads the scan kept are smaller).
        stats["bytes"].as_u64().unwrap() >= size
    });
    assert!(mount.stop().success());

    let away = tmp.path().join("elsewhere");
    std::fs::rename(&key, &away).unwrap();
    let mount = mount_with(tmp.path(), &config);
    mount.status(true);
    wait_for("the origin is down", Duration::from_secs(10), || {
        origin(&mount.status(false), "sftp://")["up"] == false
    });
    let status = mount.status(false);
    let error = origin(&status, "sftp://")["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("identity file") && error.contains("id_ed25519"),
        "{status}"
    );
    let album = mount.path(&noise_track_path(1));
    let listed = std::fs::read_dir(album.parent().unwrap()).unwrap().count();
    assert_eq!(listed, 8, "tracks of the origin that is down are listed");
    assert!(std::fs::read(mount.path(&noise_track_path(1))).unwrap() == original(1));
    let err = std::fs::read(mount.path(&noise_track_path(2))).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");

    std::fs::rename(&away, &key).unwrap();
    wait_for("the origin is up again", Duration::from_secs(30), || {
        origin(&mount.status(false), "sftp://")["up"] == true
    });
    assert!(std::fs::read(mount.path(&noise_track_path(2))).unwrap() == original(2));
}

/// `musicfsctl mount sftp://music-nas/... DIR` with no MusicFS config at all, as one would
/// run sshfs: the user's `~/.ssh/config` says which address, port, user, key and known_hosts
/// that name stands for, and the jump host in front of it. The keys and known_hosts live
/// outside `~/.ssh`, so fetchd's sandbox must have admitted the files the ssh_config names.
#[test]
fn an_ssh_config_host_mounts_with_no_other_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(8, 20);
    let sshd = Sshd::new();
    let gate = Sshd::new();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::create_dir_all(home.join("keys")).unwrap();
    std::fs::copy(sshd.identity_file(), home.join("keys/nas")).unwrap();
    std::fs::copy(sshd.known_hosts(), home.join("keys/known_hosts")).unwrap();
    std::fs::copy(gate.identity_file(), home.join("keys/gate")).unwrap();
    std::fs::copy(gate.known_hosts(), home.join("keys/gate_hosts")).unwrap();
    std::fs::write(
        home.join(".ssh/config"),
        format!(
            "Host music-nas\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  \
             IdentityFile ~/keys/nas\n  UserKnownHostsFile %d/keys/known_hosts\n  \
             ProxyJump gate\n\
             Host gate\n  HostName 127.0.0.1\n  Port {}\n  IdentityFile ~/keys/gate\n  \
             UserKnownHostsFile ~/keys/gate_hosts\n",
            sshd.port(),
            sshd.user(),
            gate.port()
        ),
    )
    .unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let url = format!("sftp://music-nas{}", library.display());
    let mount = Mount::start_with_env(
        &[Path::new(&url)],
        &tmp.path().join("state"),
        &mnt,
        &[],
        &[("HOME", &home)],
    );
    let status = mount.status(true);
    assert_eq!(status["catalog"]["tracks"], 8, "{status}");
    let nas = origin(&status, "sftp://");
    assert_eq!(
        nas["name"],
        format!(
            "sftp://{}@music-nas:{}{}",
            sshd.user(),
            sshd.port(),
            library.display()
        )
    );
    let original = std::fs::read(library.join("noise-03.flac")).unwrap();
    assert!(std::fs::read(mount.path(&noise_track_path(3))).unwrap() == original);
    assert!(
        gate.log().contains("Accepted publickey"),
        "the jump host was not used:\n{}",
        gate.log()
    );
}

/// A player starting a track on a NAS whose disk sleeps: the disk takes seconds to spin up
/// while sshd answers at once. The read waits for the disk, the track plays whole, and the
/// NAS is never marked down (which would send every other read to EIO or another copy).
#[test]
fn a_track_on_a_nas_whose_disk_is_spinning_up_plays() {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(8, 20);
    let sshd = Sshd::new();
    let mount = mount_with(tmp.path(), &sftp_origin(&sshd, &library, 1));
    mount.status(true);
    assert!(sshd.stall_file_servers() > 0);
    let spin_up = Duration::from_secs(4);
    let track = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(spin_up);
            sshd.resume();
        });
        std::fs::read(mount.path(&noise_track_path(4)))
    });
    let original = std::fs::read(library.join("noise-04.flac")).unwrap();
    assert!(track.unwrap() == original, "the track differs");
    let status = mount.status(false);
    assert_eq!(origin(&status, "sftp://")["up"], true, "{status}");
}

/// A bucket set up for the AWS tools (`aws configure --profile music-test`, with the
/// endpoint of an S3-compatible service) mounts with only its URL and the profile's name:
/// keys, endpoint and path-style addressing come from `~/.aws`, which fetchd's sandbox admits.
#[test]
fn an_s3_bucket_mounts_with_the_keys_and_endpoint_of_an_aws_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::new();
    let library = noise_library(8, 20);
    for i in [1, 2] {
        let name = format!("noise-{i:02}.flac");
        s3.put(
            BUCKET,
            &format!("lib/{name}"),
            &std::fs::read(library.join(&name)).unwrap(),
        );
    }
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = WRONG\naws_secret_access_key = wrong\n\n\
             [music-test]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3.access_key(),
            s3.secret_key()
        ),
    )
    .unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!(
            "[profile music-test]\nregion = us-east-1\ns3 =\n  endpoint_url = {}\n  \
             addressing_style = path\n",
            s3.endpoint()
        ),
    )
    .unwrap();
    let config = format!("[[origins]]\nurl = \"s3://{BUCKET}/lib\"\nprofile = \"music-test\"\n");
    let mount = mount_with_env(tmp.path(), &config, &[("HOME", &home)]);
    let status = mount.status(true);
    assert_eq!(status["catalog"]["tracks"], 2, "{status}");
    let original = std::fs::read(library.join("noise-02.flac")).unwrap();
    assert!(std::fs::read(mount.path(&noise_track_path(2))).unwrap() == original);
}

/// A tag reader that takes in a whole embedded cover (MPD's FLAC reader: 8 KiB, then the
/// cover in one read, then 8 KiB) must not set off read-ahead meant for players: a track on
/// a remote origin is opened with direct I/O, so the kernel fetches nothing beyond what is
/// asked, and fetchd's own window starts small. With the kernel's 4 MiB readahead this read
/// fetched 5-7 MB of a 7 MB track. The file still maps (mmap) and reads back whole.
#[test]
fn a_tag_reader_taking_in_a_cover_fetches_about_what_it_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let noise = noise_library(1, 60);
    let lib = tmp.path().join("nas");
    std::fs::create_dir_all(&lib).unwrap();
    let track = lib.join("covered.flac");
    std::fs::copy(noise.join("noise-01.flac"), &track).unwrap();
    let cover = tmp.path().join("cover.jpg");
    let made = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("nullsrc=s=1200x1200,geq=random(1)*255:128:128")
        .args(["-frames:v", "1", "-q:v", "2"])
        .arg(&cover)
        .status()
        .unwrap();
    assert!(made.success());
    let imported = std::process::Command::new("metaflac")
        .arg(format!("--import-picture-from={}", cover.display()))
        .arg(&track)
        .status()
        .unwrap();
    assert!(imported.success());
    let original = std::fs::read(&track).unwrap();
    let cover_len = std::fs::metadata(&cover).unwrap().len() as usize;
    assert!(cover_len > 500_000, "a cover of {cover_len} bytes");

    let sshd = Sshd::new();
    let mount = mount_with(tmp.path(), &sftp_origin(&sshd, &lib, 1));
    mount.status(true);
    let fetched = || {
        origin(&mount.status(false), "sftp://")["bytes_read"]
            .as_u64()
            .unwrap()
    };
    let settled = || {
        let mut last = fetched();
        loop {
            std::thread::sleep(Duration::from_millis(700));
            let now = fetched();
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let path = mount.path("Noise/Long Noise (2024)/01 Noise 01.flac");
    let before = settled();
    let mut file = std::fs::File::open(&path).unwrap();
    let asked = 8192 + cover_len + 8192;
    let mut read = vec![0; asked];
    for range in [0..8192, 8192..8192 + cover_len, 8192 + cover_len..asked] {
        file.read_exact(&mut read[range]).unwrap();
    }
    drop(file);
    assert!(read[..] == original[..asked]);
    let cost = settled() - before;
    eprintln!("reading {asked} bytes fetched {cost}");
    assert!(
        cost <= asked as u64 + (1 << 20),
        "reading {asked} bytes fetched {cost} from the origin"
    );

    // Mapped shared, as some tag readers do, it reads the same bytes.
    let file = std::fs::File::open(&path).unwrap();
    let len = original.len();
    use std::os::fd::AsRawFd;
    // SAFETY: a read-only shared mapping of an open file, unmapped below; the slice does not
    // outlive it.
    let mapped = unsafe {
        let at = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(at, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        let same = std::slice::from_raw_parts(at as *const u8, len) == &original[..];
        libc::munmap(at, len);
        same
    };
    assert!(mapped, "the mapped track differs");
}
