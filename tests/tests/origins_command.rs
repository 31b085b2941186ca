//! `musicfsctl origins`: every origin of the command line and the config shown as fetchd will
//! reach it, none of its secrets shown, and the exit status 1 when one cannot be resolved.

use std::process::Command;

#[test]
fn origins_shows_each_origin_and_fails_for_one_that_cannot_be_resolved() {
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(
        ssh.join("config"),
        "Host nas\n HostName 10.0.0.5\n ProxyJump ann@gate\n",
    )
    .unwrap();
    let config = home.path().join("musicfs.toml");
    std::fs::write(
        &config,
        "[[origins]]\nurl = \"s3://music/lib\"\nendpoint = \"http://127.0.0.1:9000\"\n\
         access_key_id = \"AKIA\"\nsecret_access_key = \"s3cret-key\"\n\n\
         [[origins]]\nurl = \"sftp://music@nas/srv\"\npassword = \"pa55word\"\n",
    )
    .unwrap();
    let run = |origins: &[&str]| {
        let out = Command::new(musicfs_tests::bin("musicfsctl"))
            .arg("origins")
            .arg("--config")
            .arg(&config)
            .args(origins)
            .env("HOME", home.path())
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    };
    let (ok, text) = run(&[home.path().to_str().unwrap()]);
    assert!(ok, "{text}");
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks.len(), 3, "{text}");
    assert!(blocks[0].contains("local:        a folder"), "{text}");
    assert!(
        blocks[1].starts_with("s3://music/lib\n")
            && blocks[1].contains("endpoint:     http://127.0.0.1:9000")
            && blocks[1].contains("keys:         from the config file"),
        "{text}"
    );
    assert!(
        blocks[2].starts_with("sftp://music@nas:22/srv\n")
            && blocks[2].contains("jump host 1:  ann@gate:22")
            && blocks[2].contains("connect to:   10.0.0.5:22 as music")
            && blocks[2].contains("password:     from the config file"),
        "{text}"
    );
    assert!(
        !text.contains("s3cret-key") && !text.contains("pa55word"),
        "{text}"
    );

    let (ok, text) = run(&["sftp://nas:99999/srv"]);
    assert!(!ok, "an origin that cannot be resolved fails the command");
    assert!(
        text.contains("cannot be resolved: ") && text.contains("bad port"),
        "{text}"
    );
}
