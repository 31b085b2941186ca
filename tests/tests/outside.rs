//! fetchd's outside helper (`fetchd/src/outside.rs`) on a real mount: the commands an origin's
//! configuration names that fetchd's sandbox cannot run, run by the helper side by side.

use std::path::{Path, PathBuf};
use std::time::Duration;

use musicfs_tests::corpus::{corpus_dir, noise_library, noise_track_path};
use musicfs_tests::remote::{lines_in, mount_with_env, wait_for, BUCKET};
use musicfs_tests::s3server::S3Server;
use musicfs_tests::sshd::Sshd;

/// A TCP proxy over stdin and stdout in one process (so that stopping it ends the connection),
/// as `ProxyCommand proxy.py %h %p`.
const PROXY: &str = r#"import os, select, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
while True:
    ready, _, _ = select.select([0, s], [], [])
    for f in ready:
        if f == 0:
            data = os.read(0, 65536)
            if not data:
                sys.exit(0)
            s.sendall(data)
        else:
            data = s.recv(65536)
            if not data:
                sys.exit(0)
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
"#;

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// The file under `dir` (the mount) of `len` bytes.
fn file_of_size(dir: &Path, len: u64) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let meta = entry.metadata().ok()?;
        if meta.is_dir() && !entry.file_name().to_string_lossy().starts_with('.') {
            if let Some(found) = file_of_size(&path, len) {
                return Some(found);
            }
        } else if meta.is_file() && meta.len() == len {
            return Some(path);
        }
    }
    None
}

/// A credential process that waits for its user (a password manager asking to be unlocked)
/// holds up no other origin: while it waits, an SFTP origin reached through a `ProxyCommand`
/// whose connections were cut connects again and serves a read.
#[test]
fn a_credential_process_waiting_for_its_user_holds_up_no_proxy_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(8, 20);
    let sshd = Sshd::new();
    let s3 = S3Server::new();
    let bucket_track = std::fs::read(corpus_dir().join("beets/full.flac")).unwrap();
    s3.put(BUCKET, "lib/a.flac", &bucket_track);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();

    let proxy = home.join("proxy.py");
    std::fs::write(&proxy, PROXY).unwrap();
    std::fs::write(
        home.join(".ssh/config"),
        format!(
            "Host nas\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             UserKnownHostsFile {}\n  ProxyCommand python3 {} %h %p\n",
            sshd.port(),
            sshd.user(),
            sshd.identity_file().display(),
            sshd.known_hosts().display(),
            proxy.display()
        ),
    )
    .unwrap();
    // Keys that expire in 62 s, so due again 2 s after; with `block` there, the process
    // waits for `unlocked`.
    let (runs, block, unlocked) = (home.join("runs"), home.join("block"), home.join("unlocked"));
    script(
        &home.join("keys.sh"),
        &format!(
            "#!/bin/sh\necho run >> {}\n\
             if [ -e {} ]; then while [ ! -e {} ]; do sleep 0.1; done; fi\n\
             at=$(date -u -d '+62 seconds' +%Y-%m-%dT%H:%M:%SZ)\n\
             printf '{{\"Version\": 1, \"AccessKeyId\": \"%s\", \"SecretAccessKey\": \"%s\", \
             \"Expiration\": \"%s\"}}\\n' {} {} \"$at\"\n",
            runs.display(),
            block.display(),
            unlocked.display(),
            s3.access_key(),
            s3.secret_key()
        ),
    );
    std::fs::write(
        home.join(".aws/config"),
        format!(
            "[profile vault]\nregion = us-east-1\ncredential_process = {}\ns3 =\n  \
             endpoint_url = {}\n  addressing_style = path\n",
            home.join("keys.sh").display(),
            s3.endpoint()
        ),
    )
    .unwrap();
    let config = format!(
        "[[origins]]\nurl = \"sftp://nas{}\"\ntimeout_seconds = 5\n\n\
         [[origins]]\nurl = \"s3://{BUCKET}/lib\"\nprofile = \"vault\"\ntimeout_seconds = 5\n",
        library.display()
    );
    let mount = mount_with_env(tmp.path(), &config, &[("HOME", &home)]);
    let status = mount.status(true);
    assert_eq!(status["catalog"]["tracks"], 9, "{status}");
    let in_bucket = file_of_size(&mount.mountpoint, bucket_track.len() as u64).unwrap();

    // The keys are due; the next one waits for its user.
    std::thread::sleep(Duration::from_secs(3));
    std::fs::write(&block, "").unwrap();
    let ran = || lines_in(&runs);
    let before = ran();
    // (The read itself may give up first: the mount's deadline for a read with no origin.)
    let reader = in_bucket.clone();
    let waiting = std::thread::spawn(move || std::fs::read(reader));
    wait_for("the credential process", Duration::from_secs(20), || {
        ran() > before
    });
    let keys = home.join("keys.sh").display().to_string();
    let still_waiting = || {
        let mut pgrep = std::process::Command::new("pgrep");
        pgrep.args(["-f", &keys]).status().unwrap().success()
    };

    // The SFTP origin's connections are cut; it connects again through new proxies.
    let stopped = std::process::Command::new("pkill")
        .args(["-f", &proxy.display().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success(), "no proxy was running");
    let original = std::fs::read(library.join("noise-06.flac")).unwrap();
    assert!(std::fs::read(mount.path(&noise_track_path(6))).unwrap() == original);
    assert!(
        still_waiting(),
        "the SFTP read waited for the credential process to end"
    );

    std::fs::write(&unlocked, "").unwrap();
    let _ = waiting.join().unwrap();
    wait_for("the bucket's track", Duration::from_secs(30), || {
        std::fs::read(&in_bucket).is_ok_and(|read| read == bucket_track)
    });
}
