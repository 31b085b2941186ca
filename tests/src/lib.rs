//! Test harness for MusicFS end-to-end tests: it runs the real binaries (`musicfsctl mount`
//! supervising every worker) on real FUSE mounts, and knows where the shared test corpus and
//! generated synthetic libraries live.

pub mod albums;
pub mod aws_standin;
pub mod corpus;
pub mod faulty_fs;
pub mod mount;
pub mod nginx;
pub mod noise;
pub mod rclone_sftp;
pub mod remote;
pub mod s3server;
pub mod ssh_agent;
pub mod sshd;
pub mod tmpfs;
pub mod web_servers;

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives in the workspace")
        .to_owned()
}

/// A binary built by this workspace (same profile as the running test).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary is in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` first (the test command does)",
        path.display()
    );
    path
}

/// The names in a directory, sorted; empty when it cannot be listed.
pub fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Waits until every thread of `pid` is stopped (state `T` in /proc), after a SIGSTOP: the
/// signal is delivered asynchronously, and a test must not race a server still answering.
pub fn wait_stopped(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        let all_stopped = tasks.is_ok_and(|tasks| {
            tasks.filter_map(|t| t.ok()).all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                // The state follows the command name's closing parenthesis.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
            })
        });
        if all_stopped || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Waits until `port` on 127.0.0.1 accepts connections (a server `child` just started). `Err`
/// says why not: the child exited (with its status) or 15 s passed.
pub fn wait_listening(child: &mut std::process::Child, port: u16) -> Result<(), String> {
    use std::time::{Duration, Instant};
    let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited ({status})"));
        }
        if Instant::now() > deadline {
            return Err("it did not listen within 15 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Starts `command`, a server told to listen on `port` on 127.0.0.1 (its output dropped), and
/// waits until it does. Panics naming `program` if it cannot start or does not listen.
pub fn start_server(
    program: &str,
    mut command: std::process::Command,
    port: u16,
) -> std::process::Child {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} does not start ({e}); `scripts/deps.sh test` installs it")
        });
    if let Err(why) = wait_listening(&mut child, port) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{program} did not listen on port {port}: {why}");
    }
    child
}

/// Runs `command` with no stdin and returns its stdout; fails the test, with its stderr, if it
/// cannot start (`install` says what provides it) or fails.
pub fn run_ok(command: &mut std::process::Command, install: &str) -> Vec<u8> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{shown}: {e} ({install})"));
    assert!(
        out.status.success(),
        "{shown} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
