//! Sockets are capabilities: the data path and admin operations listen on separate sockets,
//! 0660 in a 0750 runtime dir, and fetchd's admin socket admits (by `SO_PEERCRED`) only root, its
//! own user and members of the configured admin group; anyone else is refused even when the
//! file permissions would let them connect.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use musicfs_ipc::layout;
use musicfs_tests::mount::Mount;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// `musicfsctl status --json` run as `uid`/`gid`; returns fetchd's entry and the catalog.
fn status_as(mount: &Mount, uid: u32, gid: u32) -> (serde_json::Value, serde_json::Value) {
    let out = Command::new(musicfs_tests::bin("musicfsctl"))
        .arg("--state-dir")
        .arg(&mount.state_dir)
        .args(["status", "--json"])
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (json["workers"][0].clone(), json["catalog"].clone())
}

fn library(dir: &Path) -> std::path::PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let corpus = musicfs_tests::corpus::corpus_dir();
    std::fs::copy(
        corpus.join("audioscan/flac/picture.flac"),
        lib.join("a.flac"),
    )
    .unwrap();
    lib
}

#[test]
fn admin_socket_admits_root_owner_and_admin_group_only() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = library(tmp.path());
    // Debian's nogroup (gid 65534) is the admin group; `daemon` (uid 1, gid 1) is outside it.
    let config = tmp.path().join("musicfs.toml");
    std::fs::write(&config, "admin_group = \"nogroup\"\n").unwrap();
    let (state, mnt) = (tmp.path().join("state"), tmp.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    // The state dir must be traversable by the other users for this test to reach the sockets.
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mount = Mount::start_at(
        &[&lib],
        &state,
        &mnt,
        &["--config", config.to_str().unwrap()],
    );
    mount.status(true);
    let run = state.join("run");
    let admin = run.join(format!("{}.sock", layout::FETCHD_ADMIN));
    let data = run.join(format!("{}.sock", layout::FETCHD));

    // Separate sockets, 0660, in a 0750 dir.
    assert_eq!(mode(&run), 0o750);
    assert_eq!(mode(&admin) & 0o777, 0o660);
    assert_eq!(mode(&data) & 0o777, 0o660);

    // Open the file permissions wide, so only fetchd's own check stands between others and it.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&admin, std::fs::Permissions::from_mode(0o666)).unwrap();

    let (root, catalog) = status_as(&mount, 0, 0);
    assert_eq!(root["healthy"], true, "{root}");
    assert_eq!(catalog["tracks"], 1);

    let (outsider, catalog) = status_as(&mount, 1, 1);
    assert_eq!(outsider["healthy"], false, "uid 1 was admitted: {outsider}");
    assert!(catalog.is_null(), "uid 1 got the catalog: {catalog}");

    let (member, catalog) = status_as(&mount, 65534, 65534);
    assert_eq!(
        member["healthy"], true,
        "the admin group was refused: {member}"
    );
    assert_eq!(catalog["tracks"], 1);
}
