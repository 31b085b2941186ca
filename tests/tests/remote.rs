//! Remote origins on a real mount: a real OpenSSH sshd, a real S3 server (s3s-fs, which
//! checks SigV4 signatures), nginx and rclone's web and WebDAV servers on 127.0.0.1. The corpus
//! reads back byte-identical through all of them, the first scan reads only tag bytes, the same
//! library on two origins shows once (a copy retagged on one of them twice), reads fail over when the preferred origin stalls, cached
//! tracks play with every origin gone, uncached reads then fail with EIO instead of hanging, a
//! returning origin is used again, and a retag is fetched again only in its tags. How an admin
//! sets origins up: `remote_setup.rs`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_tests::albums::drop_page_cache;
use musicfs_tests::corpus::{corpus_dir, noise_library, noise_track_path};
use musicfs_tests::faulty_fs::{Faults, FaultyFs, STALL};
use musicfs_tests::nginx::Nginx;
use musicfs_tests::remote::{
    corpus_copy, mount_with, origin, read_at, s3_origin, sftp_origin, wait_for, BUCKET,
};
use musicfs_tests::s3server::S3Server;
use musicfs_tests::sshd::Sshd;
use musicfs_tests::web_servers::WebServer;
use serde_json::Value;

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

/// A track retagged in place on the NAS, the way tag editors do it (metaflac writes into the
/// padding: same path, same size) while the S3 copy keeps the old tags: two tracks, not one with
/// two copies. Each plays its own bytes, and a read of the NAS's, the NAS stalled, fails instead
/// of going on in the other file's bytes.
#[test]
fn a_copy_retagged_in_its_padding_is_a_track_of_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let nas = tmp.path().join("nas");
    std::fs::create_dir_all(&nas).unwrap();
    let original = std::fs::read(noise_library(1, 20).join("noise-01.flac")).unwrap();
    let retagged_path = nas.join("noise-01.flac");
    std::fs::write(&retagged_path, &original).unwrap();
    let status = std::process::Command::new("metaflac")
        .args(["--remove-tag=TITLE", "--set-tag=TITLE=Retagged"])
        .arg(&retagged_path)
        .status()
        .expect("metaflac (apt-get install flac)");
    assert!(status.success());
    let retagged = std::fs::read(&retagged_path).unwrap();
    assert_eq!(retagged.len(), original.len(), "metaflac used the padding");
    assert_ne!(retagged, original);
    let sshd = Sshd::new();
    let s3 = S3Server::new();
    s3.put(BUCKET, "lib/noise-01.flac", &original);
    let config = sftp_origin(&sshd, &nas, 1) + &s3_origin(&s3, "lib", 2);
    let mount = mount_with(tmp.path(), &config);

    assert_eq!(mount.status(true)["catalog"]["tracks"], 2);
    let album = mount.path("Noise/Long Noise (2024)");
    assert_eq!(
        musicfs_tests::sorted_names(&album),
        ["01 Noise 01.flac", "01 Retagged.flac"]
    );
    let s3_copy = album.join("01 Noise 01.flac");
    let nas_copy = album.join("01 Retagged.flac");
    assert!(std::fs::read(&s3_copy).unwrap() == original);
    // The NAS's track, its head kept by the scan, the rest not yet fetched when the NAS stalls.
    sshd.stall();
    wait_for("NAS marked down", Duration::from_secs(8), || {
        origin(&mount.status(false), "sftp://")["up"] == false
    });
    let read = std::fs::read(&nas_copy).map(|bytes| bytes.len());
    assert!(
        matches!(&read, Err(e) if e.raw_os_error() == Some(libc::EIO)),
        "the NAS's track read while the NAS was down: {read:?}"
    );
    sshd.resume();
    wait_for("NAS back up", Duration::from_secs(10), || {
        origin(&mount.status(false), "sftp://")["up"] == true
    });
    assert!(std::fs::read(&nas_copy).unwrap() == retagged);
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

/// A remote track whole in the cache reads as a local one: opened through the page cache, so a
/// player gets the kernel's readahead and a second play never reaches fetchd. Until it is
/// whole it is opened with direct I/O (above), so every read reaches fetchd.
#[test]
fn a_remote_track_whole_in_the_cache_plays_again_from_the_page_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("nas");
    std::fs::create_dir_all(&lib).unwrap();
    let track = lib.join("noise.flac");
    std::fs::copy(noise_library(1, 60).join("noise-01.flac"), &track).unwrap();
    let original = std::fs::read(&track).unwrap();
    let sshd = Sshd::new();
    let mount = mount_with(tmp.path(), &sftp_origin(&sshd, &lib, 1));
    mount.status(true);
    let path = mount.path("Noise/Long Noise (2024)/01 Noise 01.flac");
    // Reads fetchd answered, from its cache or an origin.
    let served = || {
        let out = mount.ctl(&["cache", "stats", "--json"]);
        assert!(out.status.success(), "{out:?}");
        let stats = musicfs_tests::remote::json_value(&out.stdout);
        stats["hits"].as_u64().unwrap() + stats["misses"].as_u64().unwrap()
    };

    let head = 1 << 20;
    for play in 1..=2 {
        let before = served();
        assert!(read_at(&path, 0, head) == original[..head]);
        assert!(
            served() > before,
            "play {play} of a track not yet cached never reached fetchd"
        );
    }

    let pinned = mount.ctl(&["cache", "pin", "Noise"]);
    assert!(pinned.status.success(), "{pinned:?}");
    drop_page_cache();
    let before = served();
    assert!(std::fs::read(&path).unwrap() == original);
    assert!(
        served() > before,
        "the page cache was dropped, yet fetchd served nothing"
    );
    let before = served();
    assert!(std::fs::read(&path).unwrap() == original);
    assert_eq!(
        served(),
        before,
        "the second play of a cached track reached fetchd"
    );
}

/// A 45 MB track on a network mount (a FUSE file system that fails on purpose, priority 1,
/// with `timeout_seconds` of 2) and on the test sshd (priority 2), mounted; and the first
/// 256 KiB of it played from the network mount.
struct NetworkMount {
    original: Vec<u8>,
    played: Vec<u8>,
    file: std::fs::File,
    faults: Faults,
    network: std::path::PathBuf,
    mount: musicfs_tests::mount::Mount,
    _sshd: Sshd,
    _fs: FaultyFs,
    _tmp: tempfile::TempDir,
}

fn network_mount_playing() -> NetworkMount {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(1, 300);
    let original = std::fs::read(library.join("noise-01.flac")).unwrap();
    let network = tmp.path().join("nfs");
    std::fs::create_dir(&network).unwrap();
    let faults = Faults::default();
    let fs = FaultyFs::mount(&library, &network, faults.clone());
    let sshd = Sshd::new();
    let config = format!(
        "[[origins]]\nurl = \"{}\"\npriority = 1\ntimeout_seconds = 2\n",
        network.display()
    ) + &sftp_origin(&sshd, &library, 2);
    let mount = mount_with(tmp.path(), &config);
    assert_eq!(mount.status(true)["catalog"]["tracks"], 1);
    let mut file = std::fs::File::open(mount.path(&noise_track_path(1))).unwrap();
    let mut played = vec![0; 256 * 1024];
    file.read_exact(&mut played).unwrap();
    NetworkMount {
        original,
        played,
        file,
        faults,
        network,
        mount,
        _sshd: sshd,
        _fs: fs,
        _tmp: tmp,
    }
}

/// A library on a network mount (NFS, SMB) whose server fails mid-song, with the same files on
/// the NAS over SFTP: the player's read goes on from the SFTP copy, byte for byte.
#[test]
fn a_track_on_a_failing_network_mount_plays_on_from_another_copy() {
    let NetworkMount {
        original,
        mut played,
        mut file,
        faults,
        mount,
        // Bound, not dropped: the servers and the mount live as long as the test.
        network: _,
        _sshd,
        _fs,
        _tmp,
    } = network_mount_playing();
    let sftp_bytes = || {
        origin(&mount.status(false), "sftp://")["bytes_read"]
            .as_u64()
            .unwrap()
    };
    let before = sftp_bytes();
    faults
        .lock()
        .unwrap()
        .insert("noise-01.flac".into(), nix::errno::Errno::EIO as i32);
    file.read_to_end(&mut played).unwrap();
    assert!(played == original, "the track read back differs");
    let from_sftp = sftp_bytes() - before;
    eprintln!("after the mount failed: {from_sftp} bytes from the SFTP copy");
    assert!(from_sftp > 0, "nothing came from the SFTP copy");
}

/// The same with the network mount hanging instead (NFS mounts are `hard` by default: a read
/// blocks for as long as the server is away): fetchd waits the origin's timeout, marks it down
/// and reads on from the SFTP copy, instead of the player waiting for mountd's deadline and
/// getting EIO.
#[test]
fn a_track_on_a_hanging_network_mount_plays_on_from_another_copy() {
    let NetworkMount {
        original,
        mut played,
        mut file,
        faults,
        network,
        mount,
        _sshd,
        _fs,
        _tmp,
    } = network_mount_playing();
    let stall = |on: bool| {
        let mut faults = faults.lock().unwrap();
        match on {
            true => faults.insert("noise-01.flac".into(), STALL),
            false => faults.remove(std::path::Path::new("noise-01.flac")),
        }
    };
    stall(true);
    let rest = file.read_to_end(&mut played);
    // While the mount still hangs (once it answers again, a probe finds it up).
    let status = mount.status(false);
    stall(false);
    rest.expect("the read goes on from the SFTP copy");
    assert!(played == original, "the track read back differs");
    let local = origin(&status, network.to_str().unwrap());
    assert!(
        local["error"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer"),
        "{status}"
    );
}
