//! Privilege separation without systemd (issue 3, item 4), seen from outside the running
//! workers (`/proc/<pid>/status`) and from inside them: each worker binary, run with
//! `MUSICFS_SANDBOX_PROBE`, enters its own sandbox with its own policy, then tries the listed
//! actions and prints what the kernel answered. Every forbidden action is chosen so that plain
//! file permissions would allow it: only the sandbox refuses it. Each test also checks an action
//! that must succeed, so a probe that fails at everything proves nothing and fails the test.
//!
//! CI runs these as root, which is what the user switch needs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use musicfs_tests::mount::Mount;
use nix::unistd::User;

/// A temp dir every user may enter (a plain temp dir is 0700), so that only the sandbox stands
/// between a dropped worker and the files in it.
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    set_mode(dir.path(), 0o755);
    dir
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes a file anyone may read and write.
fn open_file(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"data").unwrap();
    set_mode(path, 0o666);
}

/// Runs `program` with `args` and the probe `actions`; returns each action's outcome (`ok` or
/// an errno name such as `EACCES`).
fn probe(program: &str, args: &[OsString], actions: &[String]) -> BTreeMap<String, String> {
    let out = Command::new(musicfs_tests::bin(program))
        .args(args)
        .env("MUSICFS_SANDBOX_PROBE", actions.join(";"))
        .output()
        .expect("run the worker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program}: {}\n{stdout}{stderr}",
        out.status
    );
    let outcomes: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|line| line.rsplit_once(": "))
        .map(|(action, outcome)| (action.to_owned(), outcome.to_owned()))
        .collect();
    for action in actions {
        assert!(
            outcomes.contains_key(action),
            "{program} did not report {action}:\n{stdout}{stderr}"
        );
    }
    outcomes
}

fn read(path: &Path) -> String {
    format!("read={}", path.display())
}

fn write(path: &Path) -> String {
    format!("write={}", path.display())
}

fn state_args(state: &Path) -> Vec<OsString> {
    vec!["--state-dir".into(), state.into()]
}

fn assert_outcome(outcomes: &BTreeMap<String, String>, action: &str, expected: &str) {
    assert_eq!(
        outcomes.get(action).map(String::as_str),
        Some(expected),
        "{action}; all outcomes: {outcomes:#?}"
    );
}

/// The `key:` line of `/proc/<pid>/status`, fields split on whitespace.
fn status_field(pid: u64, key: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The pid of every worker once all four answer (each enters its sandbox before it serves).
fn healthy_worker_pids(mount: &Mount) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = mount.status(false);
        let workers = status["workers"].as_array().expect("workers").clone();
        if workers.iter().all(|w| w["healthy"] == true) {
            return workers
                .iter()
                .map(|w| {
                    let name = w["name"].as_str().unwrap().to_owned();
                    (name, w["pid"].as_u64().expect("a running worker has a pid"))
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "workers not healthy: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn workers_under_musicfsctl_drop_root_and_set_no_new_privs() {
    let root = nix::unistd::geteuid().is_root();
    let origin = tempfile::tempdir().unwrap();
    let mount = Mount::start(&[origin.path()]);
    let pids = healthy_worker_pids(&mount);
    let nobody = User::from_name("nobody").unwrap().expect("user nobody");
    let own_uid = nix::unistd::getuid().to_string();
    for (name, &pid) in &pids {
        let no_new_privs = status_field(pid, "NoNewPrivs");
        // An ordinary user's mountd needs the setuid fusermount3 to unmount.
        let expected = if name == "mountd" && !root { "0" } else { "1" };
        assert_eq!(no_new_privs, [expected], "{name} NoNewPrivs");
    }
    for name in ["indexd", "plugind"] {
        let pid = pids[name];
        let uid = if root {
            nobody.uid.to_string()
        } else {
            own_uid.clone()
        };
        // Real, effective, saved and filesystem ids: no way back to root.
        assert_eq!(status_field(pid, "Uid"), [uid.as_str(); 4], "{name} Uid");
        if root {
            let gid = nobody.gid.to_string();
            assert_eq!(status_field(pid, "Gid"), [gid.as_str(); 4], "{name} Gid");
            assert_eq!(status_field(pid, "Groups"), [gid.as_str()], "{name} Groups");
        }
        assert_eq!(
            status_field(pid, "CapEff"),
            ["0000000000000000"],
            "{name} CapEff"
        );
        // 2: a seccomp filter is installed.
        assert_eq!(status_field(pid, "Seccomp"), ["2"], "{name} Seccomp");
    }
    // The index dir was created and handed to indexd's user.
    let index = std::fs::metadata(mount.state_dir.join("index")).unwrap();
    let uid = if root {
        nobody.uid.as_raw()
    } else {
        nix::unistd::getuid().as_raw()
    };
    assert_eq!(index.uid(), uid);
    assert!(mount.stop().success());
}

#[test]
fn indexd_reaches_only_its_index_dir() {
    let dir = open_tempdir();
    let state = dir.path().join("state");
    let outside = dir.path().join("outside.txt");
    let catalog_file = state.join("catalog/data.mdb");
    open_file(&outside);
    open_file(&catalog_file);
    let in_index = state.join("index/segment");
    let actions = [
        write(&in_index),
        read(&in_index),
        read(&outside),
        write(&outside),
        read(Path::new("/etc/passwd")),
        read(&catalog_file),
    ];
    let outcomes = probe("musicfs-indexd", &state_args(&state), &actions);
    assert_outcome(&outcomes, &actions[0], "ok");
    assert_outcome(&outcomes, &actions[1], "ok");
    for action in &actions[2..] {
        assert_outcome(&outcomes, action, "EACCES");
    }
}

#[test]
fn plugind_only_reads_its_plugin_dir() {
    let dir = open_tempdir();
    let state = dir.path().join("state");
    let plugins = state.join("plugins");
    let plugin = plugins.join("tagfix.wasm");
    open_file(&plugin);
    set_mode(&plugins, 0o777);
    let elsewhere = dir.path().join("elsewhere.txt");
    open_file(&elsewhere);
    let actions = [
        read(&plugin),
        write(&plugin),
        write(&plugins.join("new.wasm")),
        read(&elsewhere),
        read(Path::new("/etc/passwd")),
    ];
    let outcomes = probe("musicfs-plugind", &state_args(&state), &actions);
    assert_outcome(&outcomes, &actions[0], "ok");
    for action in &actions[1..] {
        assert_outcome(&outcomes, action, "EACCES");
    }
}

#[test]
fn fetchd_reads_origins_and_writes_only_its_state() {
    let dir = open_tempdir();
    let state = dir.path().join("state");
    let origin = dir.path().join("music");
    let track = origin.join("Artist/track.flac");
    open_file(&track);
    set_mode(&origin, 0o777);
    let index_file = state.join("index/meta.json");
    open_file(&index_file);
    // Whoever may write an origin could point a link at a file only fetchd could read.
    let secret = dir.path().join("secret.txt");
    open_file(&secret);
    let link = origin.join("Artist/link.flac");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let actions = [
        read(&track),
        write(&state.join("chunks/new-chunk")),
        write(&state.join("catalog/data.mdb")),
        write(&track),
        write(&origin.join("new.flac")),
        read(&index_file),
        read(&link),
        read(Path::new("/etc/passwd")),
    ];
    let mut args = state_args(&state);
    args.push(origin.clone().into());
    let outcomes = probe("musicfs-fetchd", &args, &actions);
    for action in &actions[..3] {
        assert_outcome(&outcomes, action, "ok");
    }
    for action in &actions[3..] {
        assert_outcome(&outcomes, action, "EACCES");
    }
}

/// With a remote origin, fetchd resolves host names inside its sandbox, and glibc loads the
/// name service module a lookup needs (`libnss_mdns` for `nas.local`, `libnss_resolve`) only
/// then: the system's library folder must stay readable. Secrets elsewhere stay out of reach.
#[test]
fn fetchd_with_a_remote_origin_can_load_name_service_modules() {
    let dir = open_tempdir();
    let state = dir.path().join("state");
    let secret = dir.path().join("secret.txt");
    open_file(&secret);
    // A module that is not part of libc itself wherever it is installed.
    let module = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
    ]
    .iter()
    .map(|dir| Path::new(dir).join("libnss_dns.so.2"))
    .find(|path| path.exists())
    .expect("glibc's libnss_dns.so.2");
    let actions = [read(&module), read(Path::new("/etc/hosts")), read(&secret)];
    let mut args = state_args(&state);
    args.push("sftp://music@nas.invalid/srv/music".into());
    let outcomes = probe("musicfs-fetchd", &args, &actions);
    assert_outcome(&outcomes, &actions[0], "ok");
    assert_outcome(&outcomes, &actions[1], "ok");
    assert_outcome(&outcomes, &actions[2], "EACCES");
}

#[test]
fn indexd_and_plugind_cannot_open_network_sockets() {
    let dir = open_tempdir();
    let state = dir.path().join("state");
    let refused = ["socket=inet", "socket=inet6", "socket=netlink"];
    let actions: Vec<String> = refused
        .iter()
        .chain(&["socket=unix"])
        .map(|a| a.to_string())
        .collect();
    for program in ["musicfs-indexd", "musicfs-plugind"] {
        let outcomes = probe(program, &state_args(&state), &actions);
        assert_outcome(&outcomes, "socket=unix", "ok");
        for action in refused {
            assert_outcome(&outcomes, action, "EACCES");
        }
    }
    // fetchd keeps the network (remote origins): the same probe opens the same sockets there.
    let origin = dir.path().join("music");
    std::fs::create_dir(&origin).unwrap();
    let mut args = state_args(&state);
    args.push(origin.into());
    let outcomes = probe("musicfs-fetchd", &args, &actions);
    for action in &actions {
        assert_outcome(&outcomes, action, "ok");
    }
}

#[test]
fn fetchd_switches_to_the_configured_user_and_is_handed_its_state() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches users, so it runs as root (as CI does)"
    );
    let user = User::from_name("daemon").unwrap().expect("user daemon");
    let dir = open_tempdir();
    let state = dir.path().join("state");
    let origin = dir.path().join("music");
    let track = origin.join("track.flac");
    open_file(&track);
    set_mode(&track, 0o644);
    // A chunk left by an earlier run as root: handed over with its directory.
    let old_chunk = state.join("chunks/ab/old");
    open_file(&old_chunk);
    set_mode(&old_chunk, 0o600);
    let config = dir.path().join("musicfs.toml");
    std::fs::write(&config, "[users]\nfetchd = \"daemon\"\n").unwrap();
    let new_chunk = state.join("chunks/ab/new");
    let actions = [
        read(&track),
        write(&new_chunk),
        write(&old_chunk),
        write(&track),
    ];
    let mut args = state_args(&state);
    args.extend([OsString::from("--config"), config.into(), origin.into()]);
    let outcomes = probe("musicfs-fetchd", &args, &actions);
    assert_outcome(&outcomes, &actions[0], "ok");
    assert_outcome(&outcomes, &actions[1], "ok");
    assert_outcome(&outcomes, &actions[2], "ok");
    assert_outcome(&outcomes, &actions[3], "EACCES");
    let owner = |path: PathBuf| std::fs::metadata(path).unwrap().uid();
    assert_eq!(
        owner(new_chunk),
        user.uid.as_raw(),
        "the probe ran as daemon"
    );
    for handed in [state.join("chunks"), state.join("chunks/ab"), old_chunk] {
        assert_eq!(owner(handed.clone()), user.uid.as_raw(), "{handed:?}");
    }
    assert_eq!(owner(state.join("catalog")), user.uid.as_raw());
}
