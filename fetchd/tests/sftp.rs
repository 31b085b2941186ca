//! The SFTP origin against a real OpenSSH sshd on 127.0.0.1 (musicfs-tests' `Sshd`): listing,
//! positioned reads, host key checking, and what happens when the server goes away or stops
//! answering.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_fetchd::health::unreachable;
use musicfs_fetchd::origin::{Found, Origin, MAX_DEPTH};
use musicfs_fetchd::sftp::SftpOrigin;
use musicfs_ipc::origin::{OriginConfig, Secret};
use musicfs_tests::corpus::corpus_dir;
use musicfs_tests::noise::{noise, Rng};
use musicfs_tests::rclone_sftp::RcloneSftp;
use musicfs_tests::ssh_agent::{with_passphrase, SshAgent};
use musicfs_tests::sshd::{keygen, Sshd};

/// Corpus files copied into the served folder, by the path they get there.
const FILES: &[(&str, &str)] = &[
    ("top.mp3", "audioscan/mp3/no-tags-no-xing-vbr.mp3"),
    (
        "Artist/Album/01 Large.flac",
        "audioscan/flac/picture-large.flac",
    ),
    ("Artist/Album/02 Noise.flac", "beets/whitenoise.flac"),
    (
        "Artist/Other/deep/tron.opus",
        "audioscan/opus/tron.6ch.tinypkts.opus",
    ),
    ("Artist/Other/pages.ogg", "audioscan/ogg/large-pagesize.ogg"),
];

/// A served folder: corpus files in nested dirs, a big file (pipelined reads), files that are
/// not audio, a symlinked directory and a symlink loop.
fn library() -> tempfile::TempDir {
    library_in(&std::env::temp_dir())
}

/// [`library`] in a new folder in `parent`.
fn library_in(parent: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(parent).unwrap();
    for (to, from) in FILES {
        let to = dir.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(corpus_dir().join(from), &to).unwrap();
    }
    std::fs::write(dir.path().join("big.wav"), noise(5_000_000, 7)).unwrap();
    std::fs::write(dir.path().join("Artist/Album/cover.jpg"), b"not audio").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not audio").unwrap();
    std::os::unix::fs::symlink("Artist/Other", dir.path().join("linked")).unwrap();
    std::os::unix::fs::symlink("../..", dir.path().join("Artist/Other/loop")).unwrap();
    dir
}

/// What a walk must find: every audio file, with the link's files under its name too.
fn expected(root: &Path) -> Vec<Found> {
    let mut paths: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
    paths.push("big.wav".into());
    paths.push("linked/deep/tron.opus".into());
    paths.push("linked/pages.ogg".into());
    let mut found: Vec<Found> = paths
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(root.join(&path)).unwrap();
            Found {
                path,
                size: meta.len(),
                // SFTP (v3) carries whole seconds.
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000,
            }
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

fn config(sshd: &Sshd, root: &Path) -> OriginConfig {
    let mut config = OriginConfig::from_url(sshd.url(root));
    config.identity_file = Some(sshd.identity_file());
    config.known_hosts = Some(sshd.known_hosts());
    config.timeout_seconds = Some(2);
    config
}

fn origin(config: &OriginConfig) -> io::Result<SftpOrigin> {
    SftpOrigin::new(config, &config.parsed().unwrap())
}

/// Reads `[offset, offset + len)` of an origin file, checking it against the local bytes.
fn check_read(file: &dyn musicfs_fetchd::origin::RangeRead, local: &[u8], offset: u64, len: usize) {
    let mut buf = vec![0xAA; len];
    let n = file.read_at(offset, &mut buf).unwrap();
    let start = (offset as usize).min(local.len());
    let want = &local[start..(start + len).min(local.len())];
    assert_eq!(n, want.len(), "length read at {offset}+{len}");
    assert!(buf[..n] == *want, "bytes read at {offset}+{len} differ");
}

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
fn unknown_or_changed_host_keys_are_refused() {
    let sshd = Sshd::new();
    let lib = library();
    let mut config = config(&sshd, lib.path());
    let other = sshd.dir().join("other_key");
    keygen(&other);
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut fields = other_key.split_whitespace();
    let (alg, key) = (fields.next().unwrap(), fields.next().unwrap());

    let changed = sshd.dir().join("changed_known_hosts");
    std::fs::write(
        &changed,
        format!("[127.0.0.1]:{} {alg} {key}\n", sshd.port()),
    )
    .unwrap();
    let empty = sshd.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let absent = sshd.dir().join("absent_known_hosts");
    let good = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    let server_key = good
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ");
    let revoked = sshd.dir().join("revoked_known_hosts");
    std::fs::write(&revoked, format!("{good}@revoked * {server_key}\n")).unwrap();
    let cases = [
        (&changed, "does not match"),
        (&empty, "is not in known_hosts"),
        (&absent, "does not exist"),
        (&revoked, "is marked @revoked"),
    ];
    for (known_hosts, says) in cases {
        config.known_hosts = Some(known_hosts.clone());
        let origin = origin(&config).unwrap();
        let err = origin.probe().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(says), "{msg}");
        assert!(
            msg.contains(&format!("[127.0.0.1]:{}", sshd.port())),
            "{msg}"
        );
        assert!(msg.contains(&known_hosts.display().to_string()), "{msg}");
        assert!(
            unreachable(&err),
            "a refused host marks the origin down: {msg}"
        );
        assert!(origin.walk().is_err());
        assert!(origin.open("top.mp3").is_err());
    }
    // The right key is accepted on its own line among others, after another key of the host
    // (a name for two servers), apart by tabs, and with the name hashed (`ssh-keygen -H`, as
    // Debian's HashKnownHosts writes it).
    let host = format!("[127.0.0.1]:{}", sshd.port());
    let listed = [
        format!("# keys\nother.example {alg} {key}\n{good}"),
        format!("{host} {alg} {key}\n{good}"),
        format!("{host}\t{}\n", server_key.replacen(' ', "\t ", 1)),
    ];
    for text in listed {
        std::fs::write(&empty, &text).unwrap();
        config.known_hosts = Some(empty.clone());
        let probed = origin(&config).unwrap().probe();
        assert!(probed.is_ok(), "{text}: {probed:?}");
    }
    std::fs::write(&empty, &good).unwrap();
    let hashed = std::process::Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&empty)
        .status()
        .unwrap();
    assert!(hashed.success());
    let text = std::fs::read_to_string(&empty).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    origin(&config).unwrap().probe().unwrap();
}

#[test]
fn configuration_errors_fail_new_and_a_down_server_does_not() {
    let sshd = Sshd::new();
    let lib = library();
    let mut config = config(&sshd, lib.path());
    let missing = sshd.dir().join("no_such_key");
    config.identity_file = Some(missing.clone());
    let err = origin(&config).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");

    std::fs::write(sshd.dir().join("garbage_key"), "not a key").unwrap();
    config.identity_file = Some(sshd.dir().join("garbage_key"));
    let err = origin(&config).unwrap_err().to_string();
    assert!(err.contains("garbage_key"), "{err}");

    // No network in `new`: a server that is not there is found out by the first request.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = OriginConfig::from_url(format!("sftp://nobody@127.0.0.1:{port}/music"));
    config.identity_file = Some(sshd.identity_file());
    config.known_hosts = Some(sshd.known_hosts());
    let origin = origin(&config).unwrap();
    let err = origin.probe().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn a_key_with_a_passphrase_logs_in_through_ssh_agent() {
    let sshd = Sshd::new();
    let lib = library();
    let locked = sshd.dir().join("locked_ed25519");
    with_passphrase(&sshd.identity_file(), &locked, "correct horse");
    let mut config = config(&sshd, lib.path());
    config.identity_file = Some(locked.clone());

    // No agent: the passphrase is never asked for; the error says what to do instead.
    config.identity_agent = Some("none".into());
    let err = origin(&config).unwrap_err().to_string();
    assert!(
        err.contains("locked_ed25519 has a passphrase") && err.contains("ssh-add"),
        "{err}"
    );

    // An agent without the key: the refusal names the key file and how to add it.
    let mut agent = SshAgent::new();
    config.identity_agent = Some(agent.socket());
    let without = origin(&config).unwrap();
    let err = without.probe().unwrap_err().to_string();
    assert!(
        err.contains("the agent does not hold its key (ssh-add") && err.contains("locked_ed25519"),
        "{err}"
    );

    // Another key first, then the one the server knows: every key the agent holds is offered.
    let stranger = sshd.dir().join("stranger_ed25519");
    keygen(&stranger);
    agent.add(&stranger);
    agent.add(&sshd.identity_file());
    let with = origin(&config).unwrap();
    assert_eq!(with.walk().unwrap().0, expected(lib.path()));
    let local = std::fs::read(lib.path().join("big.wav")).unwrap();
    let file = with.open("big.wav").unwrap();
    check_read(&*file, &local, 0, 1 << 20);
    // The origin that was refused logs in too, now that the agent holds the key.
    without.probe().unwrap();

    // An agent that went away is named; the connections made stay up.
    agent.stop();
    let err = origin(&config).unwrap().probe().unwrap_err().to_string();
    let socket = agent.socket().display().to_string();
    assert!(
        err.contains(&format!("the ssh-agent at {socket} was not asked")),
        "{err}"
    );
    check_read(&*file, &local, 3_000_000, 100_000);
}

/// A password, where the server takes one: offered as `password` (Debian's sshd) or only
/// through keyboard-interactive (FreeBSD's and macOS's, with PAM). A wrong one is refused,
/// named as what was tried, and never shown.
#[test]
fn a_password_logs_in_by_whichever_method_the_server_offers() {
    const PASSWORD: &str = "correct horse battery staple";
    let lib = library();
    for (methods, accepted) in [
        (
            "PasswordAuthentication yes\nKbdInteractiveAuthentication no\n",
            "Accepted password",
        ),
        (
            "PasswordAuthentication no\nKbdInteractiveAuthentication yes\n",
            "Accepted keyboard-interactive/pam",
        ),
    ] {
        let sshd = Sshd::with_password(PASSWORD, methods);
        let with = |password: &str| {
            let mut config = OriginConfig::from_url(sshd.url(lib.path()));
            config.known_hosts = Some(sshd.known_hosts());
            config.password = Some(Secret::new(password));
            config.identity_agent = Some("none".into());
            config.ssh_config = Some("none".into());
            config.timeout_seconds = Some(5);
            origin(&config).unwrap()
        };
        let (found, _) = with(PASSWORD).walk().expect(methods);
        assert_eq!(found, expected(lib.path()));
        assert!(sshd.log().contains(accepted), "{}", sshd.log());

        let err = with("wrong horse").walk().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("refused") && text.contains("the password"),
            "{text}"
        );
        assert!(!text.contains("wrong horse"), "{text}");
    }
}

#[test]
fn a_host_named_in_ssh_config_is_reached_as_ssh_reaches_it() {
    let sshd = Sshd::new();
    let lib = library();
    let ssh_config = sshd.dir().join("ssh_config");
    let write = |known_hosts: &Path, extra: &str| {
        let text = format!(
            "Host music-nas\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             UserKnownHostsFile {}\n{extra}\nHost *\n  Port 1\n  User nobody\n",
            sshd.port(),
            sshd.user(),
            sshd.identity_file().display(),
            known_hosts.display()
        );
        std::fs::write(&ssh_config, text).unwrap();
    };
    write(&sshd.known_hosts(), "");
    let url = format!("sftp://music-nas{}", lib.path().display());
    let mut config = OriginConfig::from_url(&url);
    config.ssh_config = Some(ssh_config.clone());
    config.identity_agent = Some("none".into());
    config.timeout_seconds = Some(2);
    let nas = origin(&config).unwrap();
    assert_eq!(
        nas.name(),
        format!(
            "sftp://{}@music-nas:{}{}",
            sshd.user(),
            sshd.port(),
            lib.path().display()
        )
    );
    assert_eq!(nas.walk().unwrap().0, expected(lib.path()));

    // The key is looked up under HostKeyAlias, as OpenSSH does (with no port).
    let alias_hosts = sshd.dir().join("alias_known_hosts");
    let known = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    let key = known.split_once(' ').unwrap().1;
    std::fs::write(&alias_hosts, format!("nas-key {key}")).unwrap();
    write(&alias_hosts, "  HostKeyAlias nas-key\n");
    origin(&config).unwrap().probe().unwrap();
    std::fs::write(&alias_hosts, known).unwrap();
    let err = origin(&config).unwrap().probe().unwrap_err().to_string();
    assert!(err.contains("host nas-key ("), "{err}");

    // The user's known_hosts files and the system's are searched as one, as OpenSSH does: a
    // key listed in either is trusted, a revocation in either refuses.
    let (user_file, global_file) = (sshd.dir().join("user_hosts"), sshd.dir().join("global"));
    let listed = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    let key = listed.split_once(' ').unwrap().1.trim();
    write(
        &user_file,
        &format!("  GlobalKnownHostsFile {}\n", global_file.display()),
    );
    let write_both = |user: &str, global: &str| {
        std::fs::write(&user_file, user).unwrap();
        std::fs::write(&global_file, global).unwrap();
    };
    let probe = || origin(&config).unwrap().probe();
    write_both(
        "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n",
        &listed,
    );
    probe().unwrap();
    write_both(&listed, "");
    probe().unwrap();
    write_both("", &format!("@revoked * {key}\n{listed}"));
    let err = probe().unwrap_err().to_string();
    assert!(
        err.contains("@revoked") && err.contains("global line 1"),
        "{err}"
    );
    std::fs::remove_file(&global_file).unwrap();
    std::fs::remove_file(&user_file).unwrap();
    let err = probe().unwrap_err().to_string();
    assert!(err.contains("none of the known_hosts files"), "{err}");

    // Without the ssh_config the name is only a name: nothing resolves it.
    config.ssh_config = Some("none".into());
    config.identity_file = Some(sshd.identity_file());
    config.known_hosts = Some(sshd.known_hosts());
    let err = origin(&config).unwrap().probe().unwrap_err().to_string();
    assert!(err.contains("music-nas"), "{err}");
}

/// A NAS reached through a jump host (`ProxyJump` in ssh_config): each connection is a session
/// with the jump host and, inside it, one with the NAS, each host with its own key, user and
/// known_hosts.
#[test]
fn a_nas_behind_a_jump_host_is_reached_through_it() {
    let nas = Sshd::new();
    let mut gate = Sshd::new();
    let closed_gate = Sshd::with_config("AllowTcpForwarding no\n");
    let lib = library();
    let ssh_config = nas.dir().join("ssh_config");
    let write = |gate: &Sshd| {
        let text = format!(
            "Host music-nas\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             UserKnownHostsFile {}\n  ProxyJump gate\n\
             Host gate\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             UserKnownHostsFile {}\n",
            nas.port(),
            nas.user(),
            nas.identity_file().display(),
            nas.known_hosts().display(),
            gate.port(),
            gate.user(),
            gate.identity_file().display(),
            gate.known_hosts().display()
        );
        std::fs::write(&ssh_config, text).unwrap();
    };
    write(&gate);
    let mut config = OriginConfig::from_url(format!("sftp://music-nas{}", lib.path().display()));
    config.ssh_config = Some(ssh_config.clone());
    config.identity_agent = Some("none".into());
    config.timeout_seconds = Some(2);
    let through = origin(&config).unwrap();
    assert_eq!(through.walk().unwrap().0, expected(lib.path()));
    let local = std::fs::read(lib.path().join("big.wav")).unwrap();
    check_read(&*through.open("big.wav").unwrap(), &local, 1000, 2 << 20);
    assert!(
        gate.log().contains("Connection from 127.0.0.1"),
        "the jump host saw no connection:\n{}",
        gate.log()
    );

    // The jump host gone: new connections say which host failed.
    gate.stop();
    let err = origin(&config).unwrap().probe().unwrap_err().to_string();
    let jump = format!("jump host sftp://{}@gate:{}", gate.user(), gate.port());
    assert!(err.contains(&jump), "{err}");

    // A jump host that does not forward: the refusal names both hosts.
    write(&closed_gate);
    let err = origin(&config).unwrap().probe().unwrap_err().to_string();
    let to = format!("to 127.0.0.1:{}", nas.port());
    assert!(err.contains("jump host") && err.contains(&to), "{err}");
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
