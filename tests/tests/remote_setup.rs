//! Remote origins on a real mount, as an admin sets them up: secrets kept out of logs, `ps`
//! and status; a known_hosts file replaced; keys in ssh-agent; an SSH certificate renewed; an
//! origin whose key is missing at start; a host named only in ssh_config, also one whose
//! address depends on the network the machine is on; an S3 bucket from an AWS profile.

use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_tests::corpus::{corpus_dir, noise_library, noise_track_path};
use musicfs_tests::mount::Mount;
use musicfs_tests::nginx::Nginx;
use musicfs_tests::remote::{
    corpus_copy, json_value, lines_in, mount_with, mount_with_env, origin, put_tracks, sftp_origin,
    sftp_origin_with_key, wait_down, wait_for, BUCKET,
};
use musicfs_tests::run_ok;
use musicfs_tests::s3server::S3Server;
use musicfs_tests::ssh_agent::{with_passphrase, SshAgent};
use musicfs_tests::sshd::{certify, keygen, Sshd};

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
    let config = sftp_origin_with_key(&sshd, &library, &locked);
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

/// A NAS that takes only keys signed by its user CA, and a client whose certificate is renewed
/// (a new file renamed over `KEY-cert.pub`, signed by the CA that replaced the old one) while
/// mounted: the new certificate is what the next login offers. fetchd's sandbox admitted the
/// old file only, so fetchd restarts itself to take the new one in.
#[test]
fn a_renewed_ssh_certificate_keeps_the_nas_mounted() {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(8, 20);
    let (old_ca, new_ca) = (tmp.path().join("old_ca"), tmp.path().join("new_ca"));
    keygen(&old_ca);
    keygen(&new_ca);
    let trusted = tmp.path().join("trusted_user_cas");
    let trust = |ca: &Path| std::fs::copy(ca.with_extension("pub"), &trusted).unwrap();
    trust(&old_ca);
    let mut sshd = Sshd::with_config(&format!("TrustedUserCAKeys {}\n", trusted.display()));
    let key = tmp.path().join("id_ed25519");
    keygen(&key);
    certify(&old_ca, &key, sshd.user(), "-5m:+1h");
    let config = sftp_origin_with_key(&sshd, &library, &key);
    let mount = mount_with(tmp.path(), &config);
    let status = mount.status(true);
    assert_eq!(origin(&status, "sftp://")["up"], true, "{status}");
    let original = |i: usize| std::fs::read(library.join(format!("noise-{i:02}.flac"))).unwrap();
    assert!(std::fs::read(mount.path(&noise_track_path(1))).unwrap() == original(1));

    let renewed = tmp.path().join("renewal/id_ed25519");
    std::fs::create_dir(renewed.parent().unwrap()).unwrap();
    std::fs::copy(&key, &renewed).unwrap();
    std::fs::copy(key.with_extension("pub"), renewed.with_extension("pub")).unwrap();
    let cert = certify(&new_ca, &renewed, sshd.user(), "-5m:+1h");
    std::fs::rename(&cert, tmp.path().join("id_ed25519-cert.pub")).unwrap();
    trust(&new_ca);
    sshd.stop();
    sshd.start();

    wait_for(
        "the renewed certificate is used",
        Duration::from_secs(30),
        || std::fs::read(mount.path(&noise_track_path(2))).is_ok_and(|read| read == original(2)),
    );
    assert!(sshd.log().contains("ED25519-CERT"), "{}", sshd.log());
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
    let config = sftp_origin_with_key(&sshd, &library, &key);
    let original = |i: usize| std::fs::read(library.join(format!("noise-{i:02}.flac"))).unwrap();
    let mount = mount_with(tmp.path(), &config);
    mount.status(true);
    assert!(std::fs::read(mount.path(&noise_track_path(1))).unwrap() == original(1));
    // Played, the track is cut into chunks in the background. Pinning it waits until it is
    // whole in the cache (the chunk store's size is no sign: it holds the scan's tag blocks
    // too, and a cut half done under load passed for a whole one).
    let pinned = mount.ctl(&["cache", "pin", &noise_track_path(1)]);
    assert!(pinned.status.success(), "{pinned:?}");
    assert!(mount.stop().success());

    let away = tmp.path().join("elsewhere");
    std::fs::rename(&key, &away).unwrap();
    let mount = mount_with(tmp.path(), &config);
    mount.status(true);
    let (error, status) = wait_down(&mount, "sftp://");
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

/// An HTTPS origin whose `ca_file` is not there yet at start (a certificate still being
/// copied over): the origin is down with the reason while the mount serves, and once the file
/// is there (fetchd's sandbox admitted the path as it was at start, so fetchd restarts to take
/// it in) the origin is up and its tracks play.
#[test]
fn an_https_origin_whose_ca_file_appears_after_start_is_used_once_it_is_there() {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(8, 20);
    let nginx = Nginx::serving(&library);
    let ca_file = tmp.path().join("nas-ca.pem");
    let config = format!(
        "[[origins]]\nurl = \"{}\"\nca_file = \"{}\"\ntimeout_seconds = 2\n",
        nginx.tls_url(),
        ca_file.display()
    );
    let mount = mount_with(tmp.path(), &config);
    let (error, status) = wait_down(&mount, "https://");
    assert!(error.contains("ca_file"), "{status}");

    std::fs::copy(nginx.ca_file(), &ca_file).unwrap();
    wait_for("the origin is up", Duration::from_secs(30), || {
        origin(&mount.status(false), "https://")["up"] == true
    });
    mount.status(true);
    let original = std::fs::read(library.join("noise-01.flac")).unwrap();
    wait_for("the tracks are listed", Duration::from_secs(10), || {
        mount.path(&noise_track_path(1)).exists()
    });
    assert!(std::fs::read(mount.path(&noise_track_path(1))).unwrap() == original);
}

/// `musicfsctl mount sftp://music-nas/... DIR` with no MusicFS config at all, as one would
/// run sshfs: the user's `~/.ssh/config` says which address, port, user, key and known_hosts
/// that name stands for, and the jump host in front of it, reached by `ProxyJump` and then by a
/// `ProxyCommand` (`ssh -W`, which fetchd's outside helper runs outside the sandbox). The
/// address and port come from a `Match exec` block (a command run before the sandbox; the
/// block's answer must hold inside it too). The keys and known_hosts live outside `~/.ssh`, so
/// fetchd's sandbox must have admitted the files the ssh_config names.
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
    // At home (`Match exec`), the NAS is at sshd's port; elsewhere at a port nothing listens on.
    std::fs::write(home.join("at-home"), "").unwrap();
    // ssh finds `~` through the password database, not $HOME: the gate's paths are whole.
    let config = home.join(".ssh/config");
    let ways = [
        "ProxyJump gate".to_owned(),
        format!("ProxyCommand ssh -F {} -W %h:%p gate", config.display()),
    ];
    for (round, proxy) in ways.iter().enumerate() {
        let text = format!(
            "Match originalhost music-nas exec \"test -e %d/at-home\"\n  \
             HostName 127.0.0.1\n  Port {}\n\
             Host music-nas\n  HostName 127.0.0.1\n  Port 9\n  User {}\n  \
             IdentityFile ~/keys/nas\n  UserKnownHostsFile %d/keys/known_hosts\n  {proxy}\n\
             Host gate\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             UserKnownHostsFile {}\n  BatchMode yes\n",
            sshd.port(),
            sshd.user(),
            gate.port(),
            gate.user(),
            home.join("keys/gate").display(),
            home.join("keys/gate_hosts").display(),
        );
        std::fs::write(&config, text).unwrap();
        let url = format!("sftp://music-nas{}", library.display());
        let logins = gate.log().matches("Accepted publickey").count();
        let mount = mount_at_home(tmp.path(), &url, &home, round);
        let status = mount.status(true);
        assert_eq!(status["catalog"]["tracks"], 8, "{proxy}: {status}");
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
            gate.log().matches("Accepted publickey").count() > logins,
            "{proxy}: the jump host was not used:\n{}",
            gate.log()
        );
        assert!(mount.stop().success());
    }
}

/// An address that no machine running the tests has: it stands for the home network.
const HOME_ADDRESS: &str = "10.254.77.77";

/// `HOME_ADDRESS` on the loopback interface while it lives.
struct AtHome;

impl AtHome {
    fn arrive() -> Self {
        let mut ip = std::process::Command::new("ip");
        ip.args(["addr", "add", &format!("{HOME_ADDRESS}/32"), "dev", "lo"]);
        run_ok(&mut ip, "Debian's iproute2");
        AtHome
    }
}

impl Drop for AtHome {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{HOME_ADDRESS}/32"), "dev", "lo"])
            .status();
    }
}

/// A laptop that comes home: its ssh_config reaches the NAS at sshd's port on the home network
/// and at a port nothing listens on elsewhere, telling the two apart by `Match localnetwork`,
/// then by `Match exec` (which fetchd's outside helper runs again). Mounted away, the NAS is
/// down; once the machine has an address on the home network, fetchd notices, restarts with
/// the new answer and reads the NAS, with no remount.
#[test]
fn a_laptop_that_comes_home_reaches_its_nas_without_a_remount() {
    let tmp = tempfile::tempdir().unwrap();
    let library = noise_library(8, 20);
    let sshd = Sshd::new();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(sshd.identity_file(), home.join(".ssh/nas")).unwrap();
    std::fs::copy(sshd.known_hosts(), home.join(".ssh/known_hosts")).unwrap();
    let ways = [
        format!("localnetwork {HOME_ADDRESS}/32"),
        format!("exec \"ip -o addr show dev lo | grep -qF ' {HOME_ADDRESS}/'\""),
    ];
    for (round, way) in ways.iter().enumerate() {
        let config = format!(
            "Match originalhost music-nas {way}\n  Port {}\n\
             Host music-nas\n  HostName 127.0.0.1\n  Port 9\n  User {}\n  \
             IdentityFile ~/.ssh/nas\n",
            sshd.port(),
            sshd.user()
        );
        std::fs::write(home.join(".ssh/config"), config).unwrap();
        drop(AtHome); // not at home yet (a run that died may have left the address behind)
        let url = format!("sftp://music-nas{}", library.display());
        let mount = mount_at_home(tmp.path(), &url, &home, round);
        let status = mount.status(true);
        let nas = origin(&status, "sftp://");
        assert_eq!(nas["up"], false, "{way}: away, out of reach: {status}");
        assert!(nas["name"].as_str().unwrap().contains(":9/"), "{status}");

        let at_home = AtHome::arrive();
        wait_for(way, Duration::from_secs(60), || {
            mount.status(false)["catalog"]["tracks"] == 8
        });
        let status = mount.status(true);
        let nas = origin(&status, "sftp://");
        assert_eq!(nas["up"], true, "{way}: {status}");
        let port = format!(":{}/", sshd.port());
        assert!(nas["name"].as_str().unwrap().contains(&port), "{status}");
        let fetchd = status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "fetchd")
            .unwrap();
        assert!(fetchd["restarts"].as_u64().unwrap() >= 1, "{status}");
        let original = std::fs::read(library.join("noise-05.flac")).unwrap();
        assert!(std::fs::read(mount.path(&noise_track_path(5))).unwrap() == original);
        assert!(mount.stop().success());
        drop(at_home);
    }
}

/// A bucket set up for the AWS tools (`aws configure --profile music-test`, with the
/// endpoint of an S3-compatible service) mounts with only its URL and the profile's name:
/// keys, endpoint and path-style addressing come from `~/.aws`, which fetchd's sandbox admits.
#[test]
fn an_s3_bucket_mounts_with_the_keys_and_endpoint_of_an_aws_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::new();
    let library = noise_library(8, 20);
    put_tracks(&s3, &library, 2);
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

/// A profile whose keys come from a `credential_process` (as `aws configure
/// export-credentials --format process` bridges SSO): fetchd's outside helper runs it, the
/// keys sign the reads, and new ones are fetched before they expire. A process that fails
/// takes the origin down with what it said; fixed, the origin is used again.
#[test]
fn an_s3_profile_with_a_credential_process_mounts_and_renews_its_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::new();
    let library = noise_library(8, 20);
    put_tracks(&s3, &library, 3);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let (process, runs) = (home.join("keys.sh"), home.join("runs"));
    // Keys that expire in 62 s: a minute before, they are due again.
    let working = format!(
        "#!/bin/sh\necho run >> {}\nat=$(date -u -d '+62 seconds' +%Y-%m-%dT%H:%M:%SZ)\n\
         printf '{{\"Version\": 1, \"AccessKeyId\": \"%s\", \"SecretAccessKey\": \"%s\", \
         \"SessionToken\": \"temporary\", \"Expiration\": \"%s\"}}\\n' {} {} \"$at\"\n",
        runs.display(),
        s3.access_key(),
        s3.secret_key()
    );
    std::fs::write(&process, &working).unwrap();
    std::fs::set_permissions(
        &process,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!(
            "[profile sso]\nregion = us-east-1\ncredential_process = {}\ns3 =\n  \
             endpoint_url = {}\n  addressing_style = path\n",
            process.display(),
            s3.endpoint()
        ),
    )
    .unwrap();
    let config = format!(
        "[[origins]]\nurl = \"s3://{BUCKET}/lib\"\nprofile = \"sso\"\ntimeout_seconds = 2\n"
    );
    let mount = mount_with_env(tmp.path(), &config, &[("HOME", &home)]);
    let status = mount.status(true);
    assert_eq!(status["catalog"]["tracks"], 3, "{status}");
    let original = |i: usize| std::fs::read(library.join(format!("noise-{i:02}.flac"))).unwrap();
    assert!(std::fs::read(mount.path(&noise_track_path(1))).unwrap() == original(1));
    let ran = || lines_in(&runs);
    let before = ran();
    std::thread::sleep(Duration::from_secs(3));
    assert!(std::fs::read(mount.path(&noise_track_path(2))).unwrap() == original(2));
    assert!(ran() > before, "the keys were not renewed ({before} runs)");

    std::fs::write(
        &process,
        "#!/bin/sh\necho 'the SSO session has expired' >&2\nexit 1\n",
    )
    .unwrap();
    let (error, status) = wait_down(&mount, "s3://");
    assert!(
        error.contains("credential_process") && error.contains("the SSO session has expired"),
        "{status}"
    );
    assert!(!status.to_string().contains(s3.secret_key()), "{status}");
    std::fs::write(&process, &working).unwrap();
    wait_for("the origin is up again", Duration::from_secs(30), || {
        origin(&mount.status(false), "s3://")["up"] == true
    });
    assert!(std::fs::read(mount.path(&noise_track_path(3))).unwrap() == original(3));
}

/// A MinIO at home behind nginx with a certificate from the home's own CA, the CA given as the
/// AWS tools take it (`AWS_CA_BUNDLE`): the sandboxed fetchd reads the bundle, trusts the
/// server, and the bucket mounts. (Signatures hold through the proxy: the Host header passes
/// unchanged.)
#[test]
fn an_s3_server_behind_https_with_its_own_ca_mounts_with_aws_ca_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::new();
    let library = noise_library(8, 20);
    for i in [1, 2] {
        let name = format!("noise-{i:02}.flac");
        let bytes = std::fs::read(library.join(&name)).unwrap();
        s3.put(BUCKET, &format!("lib/{name}"), &bytes);
    }
    let front = Nginx::tls_proxy_to(s3.port());
    let ca = tmp.path().join("home-ca.pem");
    std::fs::copy(front.ca_file(), &ca).unwrap();
    let config = format!(
        "[[origins]]\nurl = \"s3://{BUCKET}/lib\"\nendpoint = \"{}\"\npath_style = true\n\
         access_key_id = \"{}\"\nsecret_access_key = \"{}\"\ntimeout_seconds = 2\n",
        front.tls_endpoint(),
        s3.access_key(),
        s3.secret_key()
    );
    let mount = mount_with_env(tmp.path(), &config, &[("AWS_CA_BUNDLE", &ca)]);
    let status = mount.status(true);
    assert_eq!(status["catalog"]["tracks"], 2, "{status}");
    let original = std::fs::read(library.join("noise-02.flac")).unwrap();
    assert!(std::fs::read(mount.path(&noise_track_path(2))).unwrap() == original);
}

/// `musicfsctl mount URL` with no MusicFS config and `home` as `$HOME`, with round `round`'s
/// own state dir and mount point under `tmp`.
fn mount_at_home(tmp: &Path, url: &str, home: &Path, round: usize) -> Mount {
    let mnt = tmp.join(format!("mnt{round}"));
    std::fs::create_dir_all(&mnt).unwrap();
    let state = tmp.join(format!("state{round}"));
    Mount::start_with_env(&[Path::new(url)], &state, &mnt, &[], &[("HOME", home)])
}
