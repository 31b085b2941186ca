//! The systemd unit set in `systemd/`: the units pass `systemd-analyze verify` once installed,
//! `install.sh` stages a consistent tree (users, the `run/` link to the sockets, `enable` links),
//! each worker serves on a socket it inherits the way systemd hands it over, and mountd's
//! sd_notify messages (`READY=1`, `WATCHDOG=1`, `STOPPING=1`) arrive on a `NOTIFY_SOCKET`.
//!
//! systemd is not PID 1 on the test machines, so nothing here starts a unit; what the units do at
//! run time is checked piece by piece with systemd's own tools.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use musicfs_ipc::client::Reconnecting;
use musicfs_ipc::layout::{self, StateDir};
use musicfs_ipc::{FetchAdminClient, FetchClient, WorkerClient};
use musicfs_tests::mount::is_mounted;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Every unit file `systemd/` must ship.
const UNITS: [&str; 9] = [
    "musicfs-fetchd.service",
    "musicfs-fetchd.socket",
    "musicfs-fetchd-admin.socket",
    "musicfs-indexd.service",
    "musicfs-indexd.socket",
    "musicfs-mountd@.service",
    "musicfs-plugind.service",
    "musicfs-plugind.socket",
    "musicfs.target",
];
/// The instance enabled by default (`DefaultInstance=`): the mount at /srv/musicfs.
const MOUNTD_INSTANCE: &str = "musicfs-mountd@srv-musicfs.service";
/// The state dir the units give every process.
const STATE_DIR: &str = "/var/lib/musicfs";
/// A tagged corpus file: shows up as Led Zeppelin's "Good Times Bad Times".
const TRACK: &str = "audioscan/flac/picture.flac";

fn systemd_dir() -> PathBuf {
    musicfs_tests::workspace().join("systemd")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `systemd/install.sh` with the binaries of this build into `dest` (`DESTDIR`).
fn install(dest: &Path) {
    let build_dir = musicfs_tests::bin("musicfsctl")
        .parent()
        .unwrap()
        .to_owned();
    let out = run(Command::new(systemd_dir().join("install.sh"))
        .arg(build_dir)
        .env("DESTDIR", dest));
    assert!(out.status.success(), "install.sh failed: {}", text(&out));
    assert!(
        text(&out).contains("systemctl enable --now musicfs.target"),
        "install.sh must print the enable command: {}",
        text(&out)
    );
}

fn units_dir(dest: &Path) -> PathBuf {
    dest.join("etc/systemd/system")
}

/// `systemd-analyze verify --root=dest` on `units` (installed under `dest`).
fn verify(dest: &Path, units: &[&str]) -> Output {
    let paths = units.iter().map(|u| units_dir(dest).join(u));
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", dest.display()))
        .args(paths))
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let shipped: BTreeSet<String> = std::fs::read_dir(systemd_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            [".service", ".socket", ".target"]
                .iter()
                .any(|ext| name.ends_with(ext))
        })
        .collect();
    let expected: BTreeSet<String> = UNITS.iter().map(|u| u.to_string()).collect();
    assert_eq!(shipped, expected, "the unit files in systemd/");

    // `verify` insists that every Exec* program exists, so it runs on an installed tree:
    // install.sh stages into a temporary DESTDIR, and `--root` makes verify resolve programs
    // and unit dependencies there. systemd's own units (sysinit.target, multi-user.target, ...)
    // and the distro tools the units call are copied in from this machine.
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("root");
    install(&dest);
    std::fs::create_dir_all(dest.join("usr/lib/systemd")).unwrap();
    let out = run(Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(dest.join("usr/lib/systemd/")));
    assert!(out.status.success(), "{}", text(&out));
    std::fs::create_dir_all(dest.join("usr/bin")).unwrap();
    for tool in ["mkdir", "umount"] {
        std::fs::copy(
            Path::new("/usr/bin").join(tool),
            dest.join("usr/bin").join(tool),
        )
        .unwrap();
    }

    // The template is verified as is (systemd instantiates it as "i") and as the default instance.
    let mut all: Vec<&str> = UNITS.to_vec();
    all.push(MOUNTD_INSTANCE);
    let out = verify(&dest, &all);
    assert!(out.status.success(), "verify failed: {}", text(&out));
    // Unknown keys and bad values are only warnings (exit 0): a clean unit set prints nothing.
    assert_eq!(text(&out), "", "verify complained");

    // The same check fails once a program the units run is missing: the pass above means the
    // installed programs were found, not that verify looked at nothing.
    std::fs::remove_file(dest.join("usr/local/bin/musicfs-fetchd")).unwrap();
    let out = verify(&dest, &["musicfs-fetchd.service"]);
    assert!(
        !out.status.success() && text(&out).contains("/usr/local/bin/musicfs-fetchd"),
        "verify must notice a missing program: {}",
        text(&out)
    );
}

/// The value of `Key=` in a unit file.
fn unit_value(unit: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(unit).unwrap();
    let prefix = format!("{key}=");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{} has no {key}=", unit.display()))
        .to_owned()
}

#[test]
fn install_stages_users_links_and_enables_the_whole_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("root");
    install(&dest);
    let config = dest.join("etc/musicfs/config.toml");
    musicfs_ipc::config::Config::load(Some(&config)).expect("the sample config is valid");
    let mode = std::os::unix::fs::PermissionsExt::mode(&config.metadata().unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "config.toml may hold origin credentials"
    );

    // What install.sh runs on a real machine, here against the staged tree.
    let root = format!("--root={}", dest.display());
    for args in [
        vec!["systemd-sysusers", &root],
        vec!["systemd-tmpfiles", &root, "--create"],
    ] {
        let out = run(Command::new(args[0]).args(&args[1..]));
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let passwd = std::fs::read_to_string(dest.join("etc/passwd")).unwrap();
    for worker in layout::WORKERS {
        let unit = units_dir(&dest).join(format!("musicfs-{worker}.service"));
        let user = unit_value(&unit, "User");
        assert!(
            passwd.lines().any(|l| l.starts_with(&format!("{user}:"))),
            "sysusers.d does not create {user}"
        );
    }
    // fetchd connects to indexd's socket (group musicfs) to keep the search index fed.
    let group = std::fs::read_to_string(dest.join("etc/group")).unwrap();
    let indexd_socket = units_dir(&dest).join("musicfs-indexd.socket");
    let socket_group = unit_value(&indexd_socket, "SocketGroup");
    let fetchd_user = unit_value(&units_dir(&dest).join("musicfs-fetchd.service"), "User");
    let members = group
        .lines()
        .find(|l| l.starts_with(&format!("{socket_group}:")))
        .and_then(|l| l.rsplit(':').next())
        .unwrap_or_default();
    assert!(
        members.split(',').any(|m| m == fetchd_user),
        "{fetchd_user} cannot reach indexd's socket (group {socket_group}: {members:?})"
    );

    // mountd and musicfsctl find each worker at <state dir>/run/<worker>.sock; systemd listens
    // at the socket unit's ListenStream=. The run/ link must make them the same file.
    let state = StateDir::new(STATE_DIR);
    let run_link = dest.join(state.run_dir().strip_prefix("/").unwrap());
    let target = std::fs::read_link(&run_link).expect("the state dir's run/ is a link");
    for worker in layout::WORKERS.into_iter().chain([layout::FETCHD_ADMIN]) {
        let socket_unit = units_dir(&dest).join(format!("musicfs-{worker}.socket"));
        let listen = PathBuf::from(unit_value(&socket_unit, "ListenStream"));
        let file_name = state.socket(worker).file_name().unwrap().to_owned();
        assert_eq!(listen, target.join(file_name), "{worker}'s socket path");
    }
    let mountd = units_dir(&dest).join("musicfs-mountd@.service");
    assert!(unit_value(&mountd, "ExecStart").contains(&format!("--state-dir {STATE_DIR} ")));

    // `systemctl enable musicfs.target` (offline, on the staged tree) enables the whole set.
    let out = run(Command::new("systemctl")
        .arg(format!("--root={}", dest.display()))
        .args(["enable", "musicfs.target"]));
    assert!(out.status.success(), "systemctl enable: {}", text(&out));
    let wants = |target: &str| -> BTreeSet<String> {
        std::fs::read_dir(units_dir(&dest).join(format!("{target}.wants")))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert!(wants("multi-user.target").contains("musicfs.target"));
    let expected: BTreeSet<String> = [
        "musicfs-fetchd.socket",
        "musicfs-fetchd-admin.socket",
        "musicfs-indexd.socket",
        "musicfs-plugind.socket",
        MOUNTD_INSTANCE,
    ]
    .map(String::from)
    .into();
    assert_eq!(wants("musicfs.target"), expected);
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing running.
struct Running(Child);

impl Running {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.0.id() as i32), signal).unwrap();
    }

    /// Waits up to `within` for the process to exit.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A worker started the way systemd starts it: `systemd-socket-activate` listens on `socket`
/// and, on the first connection, execs the worker in its place with the socket as fd 3
/// (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`).
fn socket_activated(worker: &str, socket: &Path, args: &[&OsStr]) -> Running {
    let child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(socket)
        .arg(format!("--fdname={worker}"))
        .arg("--")
        .arg(musicfs_tests::bin(&format!("musicfs-{worker}")))
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("start systemd-socket-activate");
    Running(child)
}

/// A temp dir with a state dir and an origin holding one corpus track.
struct Library {
    tmp: tempfile::TempDir,
}

impl Library {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let origin = tmp.path().join("origin");
        std::fs::create_dir(&origin).unwrap();
        let corpus = musicfs_tests::corpus::corpus_dir();
        std::fs::copy(corpus.join(TRACK), origin.join("track.flac")).unwrap();
        Self { tmp }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn state(&self) -> StateDir {
        StateDir::new(self.path("state"))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// How long a call may wait for a worker (debug builds on a busy 2-core machine).
const CALL_DEADLINE: Duration = Duration::from_secs(60);

fn check_worker_serves_on_inherited_socket(worker: &'static str) {
    let lib = Library::new();
    // Outside the state dir's layout: the worker can only serve here through fd 3.
    let socket = lib.path(&format!("activated-{worker}.sock"));
    let state = lib.state();
    let process = socket_activated(
        worker,
        &socket,
        &[OsStr::new("--state-dir"), state.root().as_os_str()],
    );
    let client = Reconnecting::<WorkerClient>::new(worker, &socket, CALL_DEADLINE);
    let rt = runtime();
    let hello = rt
        .block_on(client.call(|c, ctx| async move { c.hello(ctx).await }))
        .expect("hello over the inherited socket");
    assert_eq!(hello.service, worker);
    assert_eq!(
        hello.pid,
        process.pid(),
        "the activated process itself answers"
    );
    let health = rt
        .block_on(client.call(|c, ctx| async move { c.health(ctx).await }))
        .unwrap()
        .unwrap();
    assert!(health.ok, "{health:?}");
    assert!(
        !state.socket(worker).exists(),
        "{worker} bound a socket of its own instead of serving the inherited one"
    );
}

#[test]
fn indexd_serves_on_a_socket_inherited_from_systemd() {
    check_worker_serves_on_inherited_socket(layout::INDEXD);
}

#[test]
fn plugind_serves_on_a_socket_inherited_from_systemd() {
    check_worker_serves_on_inherited_socket(layout::PLUGIND);
}

#[test]
fn fetchd_serves_on_a_socket_inherited_from_systemd() {
    let lib = Library::new();
    let socket = lib.path("activated-fetchd.sock");
    let state = lib.state();
    let origin = lib.path("origin");
    let args = [
        OsStr::new("--state-dir"),
        state.root().as_os_str(),
        origin.as_os_str(),
    ];
    let process = socket_activated(layout::FETCHD, &socket, &args);
    let client = Reconnecting::<FetchClient>::new(layout::FETCHD, &socket, CALL_DEADLINE);
    let rt = runtime();
    let hello = rt
        .block_on(client.call(|c, ctx| async move { c.hello(ctx).await }))
        .expect("hello over the inherited socket");
    assert_eq!(hello.service, layout::FETCHD);
    assert_eq!(
        hello.pid,
        process.pid(),
        "the activated process itself answers"
    );
    // Only the data socket was passed: fetchd binds its admin socket itself.
    let admin = Reconnecting::<FetchAdminClient>::new(
        layout::FETCHD_ADMIN,
        state.socket(layout::FETCHD_ADMIN),
        CALL_DEADLINE,
    );
    let status = rt
        .block_on(admin.call(|c, ctx| async move { c.status(ctx).await }))
        .unwrap()
        .unwrap();
    assert_eq!(status.pid, process.pid());
    assert!(
        status.origins.iter().any(|o| Path::new(&o.name) == origin),
        "{:?} does not list {}",
        status.origins,
        origin.display()
    );
    assert!(
        !state.socket(layout::FETCHD).exists(),
        "fetchd bound a socket of its own instead of serving the inherited one"
    );
}

/// Lazily unmounts its path when dropped if a failed test left it mounted.
struct UnmountOnDrop(PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("--lazy").arg(&self.0).status();
        }
    }
}

/// Receives notify messages until one has the line `wanted`; panics after `within`.
fn wait_for(socket: &UnixDatagram, wanted: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok(n) = socket.recv(&mut buf) else {
            break;
        };
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if message.lines().any(|line| line == wanted) {
            return;
        }
        if seen.len() < 10 {
            seen.push(message);
        }
    }
    panic!("no {wanted} within {within:?}; received (first 10) {seen:?}");
}

#[test]
fn mountd_notifies_ready_watchdog_and_stopping() {
    let lib = Library::new();
    let state = lib.state();
    let mnt = lib.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let notify = UnixDatagram::bind(lib.path("notify.sock")).unwrap();

    let _fetchd = Running(
        Command::new(musicfs_tests::bin("musicfs-fetchd"))
            .arg("--state-dir")
            .arg(state.root())
            .arg(lib.path("origin"))
            .spawn()
            .expect("start fetchd"),
    );
    let _unmount = UnmountOnDrop(mnt.clone());
    // As root, mountd runs as its unit runs it: NoNewPrivileges, CAP_SYS_ADMIN and nothing else.
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut setpriv = Command::new("setpriv");
        setpriv.args([
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all,+sys_admin",
            "--",
        ]);
        setpriv.arg(musicfs_tests::bin("musicfs-mountd"));
        setpriv
    } else {
        Command::new(musicfs_tests::bin("musicfs-mountd"))
    };
    let mut mountd = Running(
        cmd.arg("--state-dir")
            .arg(state.root())
            .arg(&mnt)
            .env("NOTIFY_SOCKET", lib.path("notify.sock"))
            // Pings every 0.5 s, so the test sees them soon.
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .spawn()
            .expect("start mountd"),
    );

    wait_for(&notify, "READY=1", Duration::from_secs(60));
    assert!(is_mounted(&mnt), "READY=1 came before the mount was live");
    std::fs::read_dir(&mnt).expect("the mount answers once READY=1 is sent");
    for _ in 0..2 {
        wait_for(&notify, "WATCHDOG=1", Duration::from_secs(5));
    }
    // With no musicfsctl supervisor (as under systemd), status still finds the mount.
    let out = Command::new(musicfs_tests::bin("musicfsctl"))
        .arg("--state-dir")
        .arg(state.root())
        .args(["status", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mountd_report = &report["workers"][3];
    assert_eq!(mountd_report["name"], "mountd");
    assert_eq!(mountd_report["healthy"], true, "{report}");
    assert_eq!(mountd_report["pid"], mountd.pid());
    assert_eq!(report["mountpoint"], mnt.to_str().unwrap());

    mountd.signal(Signal::SIGTERM);
    wait_for(&notify, "STOPPING=1", Duration::from_secs(20));
    let status = mountd.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "mountd exited with {status}");
    assert!(!is_mounted(&mnt), "mountd exited but left the mount behind");
}
