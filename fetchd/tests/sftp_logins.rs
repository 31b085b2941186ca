//! How the SFTP origin finds and logs in to a real OpenSSH sshd on 127.0.0.1 (musicfs-tests'
//! `Sshd`): host keys checked as OpenSSH checks them, configuration errors, keys through
//! ssh-agent, certificates, `IdentitiesOnly`, passwords by either method, hosts named in
//! ssh_config, jump hosts (one or several) and proxy commands.

mod sftp_fixture;

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use musicfs_fetchd::health::unreachable;
use musicfs_fetchd::origin::Origin;
use musicfs_ipc::origin::{OriginConfig, Secret};
use musicfs_tests::ssh_agent::{with_passphrase, SshAgent};
use musicfs_tests::sshd::{certify, keygen, Sshd};
use sftp_fixture::{check_read, config, expected, library, origin};

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

/// A server that trusts a user CA (`TrustedUserCAKeys`) and not the key itself: the key's
/// certificate is offered from `KEY-cert.pub` beside it, from `certificate_file`, and through
/// the agent, whether the agent holds the certificate or only the key.
#[test]
fn certificates_signed_by_a_ca_the_server_trusts_log_in() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("user_ca");
    keygen(&ca);
    let sshd = Sshd::with_config(&format!("TrustedUserCAKeys {}.pub\n", ca.display()));
    let lib = library();
    let dir = sshd.dir();
    let key = dir.join("certified_ed25519");
    keygen(&key);
    let cert = certify(&ca, &key, sshd.user(), "-5m:+1h");
    let mut config = config(&sshd, lib.path());
    config.identity_file = Some(key.clone());
    config.identity_agent = Some("none".into());
    let accepted = || sshd.log().matches("Accepted publickey").count();
    let certified = || sshd.log().matches("ED25519-CERT").count();

    // Beside the key, as ssh finds it.
    assert_eq!(
        origin(&config).unwrap().walk().unwrap().0,
        expected(lib.path())
    );
    assert!(sshd.log().contains("ID musicfs-test"), "{}", sshd.log());
    let (logins, by_cert) = (accepted(), certified());

    // Elsewhere: without `certificate_file` the key alone is refused.
    let elsewhere = dir.join("signed.pub");
    std::fs::rename(&cert, &elsewhere).unwrap();
    let err = origin(&config).unwrap().probe().unwrap_err().to_string();
    assert!(err.contains("refused the key"), "{err}");
    config.certificate_file = Some(elsewhere.clone());
    origin(&config).unwrap().probe().unwrap();
    assert!(accepted() > logins && certified() > by_cert);

    // An expired one is refused, and named; a certificate_file that is not there is a
    // configuration error, as an identity_file is.
    let expired_key = dir.join("expired_ed25519");
    std::fs::copy(&key, &expired_key).unwrap();
    std::fs::copy(key.with_extension("pub"), expired_key.with_extension("pub")).unwrap();
    let expired = certify(&ca, &expired_key, sshd.user(), "20200101:20200102");
    config.certificate_file = Some(expired.clone());
    let err = origin(&config).unwrap().probe().unwrap_err().to_string();
    assert!(
        err.contains(&format!("the certificate {}", expired.display())),
        "{err}"
    );
    config.certificate_file = Some(dir.join("no_such-cert.pub"));
    let err = origin(&config).unwrap_err().to_string();
    assert!(err.contains("no_such-cert.pub"), "{err}");

    // A key with a passphrase and its certificate file; the agent holds only the key.
    let locked = dir.join("locked_ed25519");
    with_passphrase(&key, &locked, "correct horse");
    std::fs::copy(&elsewhere, dir.join("locked_ed25519-cert.pub")).unwrap();
    let plain_copy = dir.join("agent_copy");
    std::fs::copy(&key, &plain_copy).unwrap();
    let agent = SshAgent::new();
    agent.add(&plain_copy);
    config.identity_file = Some(locked);
    config.certificate_file = None;
    config.identity_agent = Some(agent.socket());
    let (logins, by_cert) = (accepted(), certified());
    origin(&config).unwrap().probe().unwrap();
    assert!(accepted() > logins && certified() > by_cert);

    // The agent holds the certificate (ssh-add takes `KEY-cert.pub` beside the key), and no
    // identity file is there.
    let agent = SshAgent::new();
    std::fs::copy(&elsewhere, &cert).unwrap();
    agent.add(&key);
    let ssh_config = dir.join("ssh_config");
    std::fs::write(&ssh_config, "IdentityFile /nonexistent/key\n").unwrap();
    let mut config = OriginConfig::from_url(sshd.url(lib.path()));
    config.known_hosts = Some(sshd.known_hosts());
    config.ssh_config = Some(ssh_config);
    config.identity_agent = Some(agent.socket());
    let (logins, by_cert) = (accepted(), certified());
    origin(&config).unwrap().probe().unwrap();
    assert!(accepted() > logins && certified() > by_cert);
}

/// `IdentitiesOnly` (ssh_config's, or the option): an agent full of other keys no longer uses
/// up the server's `MaxAuthTries` before the password is tried.
#[test]
fn identities_only_keeps_the_agents_other_keys_back() {
    const PASSWORD: &str = "correct horse battery staple";
    let lib = library();
    let sshd = Sshd::with_password(PASSWORD, "PasswordAuthentication yes\nMaxAuthTries 3\n");
    let agent = SshAgent::new();
    for n in 0..4 {
        let stranger = sshd.dir().join(format!("stranger{n}"));
        keygen(&stranger);
        agent.add(&stranger);
    }
    let ssh_config = sshd.dir().join("ssh_config");
    let with = |identities_only: &str, option: bool, password: &str| {
        let text = format!("IdentityFile /nonexistent/key\n{identities_only}");
        std::fs::write(&ssh_config, text).unwrap();
        let mut config = OriginConfig::from_url(sshd.url(lib.path()));
        config.known_hosts = Some(sshd.known_hosts());
        config.password = Some(Secret::new(password));
        config.identity_agent = Some(agent.socket());
        config.ssh_config = Some(ssh_config.clone());
        config.identities_only = option;
        config.timeout_seconds = Some(5);
        origin(&config).unwrap().probe()
    };
    let err = with("", false, PASSWORD).unwrap_err();
    // sshd may log it just after it has dropped the connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sshd
        .log()
        .contains("maximum authentication attempts exceeded")
    {
        assert!(Instant::now() < deadline, "{err}: {}", sshd.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let offered = sshd.log().matches("Failed publickey").count();
    assert!(offered >= 3, "{}", sshd.log());

    with("IdentitiesOnly yes\n", false, PASSWORD).unwrap();
    with("", true, PASSWORD).unwrap();
    assert_eq!(sshd.log().matches("Accepted password").count(), 2);
    let err = with("", true, "wrong horse").unwrap_err().to_string();
    assert!(
        err.contains("refused the password")
            && err.contains("IdentitiesOnly: 4 other keys of the ssh-agent not offered"),
        "{err}"
    );
    assert_eq!(
        sshd.log().matches("Failed publickey").count(),
        offered,
        "no key of the agent was offered: {}",
        sshd.log()
    );
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

    // The same from a `Match` block (matched after HostName, as ssh matches it).
    let text = format!(
        "Host music-nas\n  HostName 127.0.0.1\nMatch host 127.0.0.1 originalhost music-nas\n  \
         Port {}\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\nHost *\n  Port 1\n",
        sshd.port(),
        sshd.user(),
        sshd.identity_file().display(),
        sshd.known_hosts().display()
    );
    std::fs::write(&ssh_config, text).unwrap();
    assert_eq!(
        origin(&config).unwrap().walk().unwrap().0,
        expected(lib.path())
    );

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

/// A NAS two jump hosts away, each letting connections through only to the next host on the
/// way (sshd's `PermitOpen`): reached with `ProxyJump outer,inner`, and with `ProxyJump inner`
/// where the inner host's own block says `ProxyJump outer`, as ssh reaches it.
#[test]
fn a_nas_two_jump_hosts_away_is_reached_through_both() {
    let nas = Sshd::new();
    let inner = Sshd::with_config(&format!("PermitOpen 127.0.0.1:{}\n", nas.port()));
    let mut outer = Sshd::with_config(&format!("PermitOpen 127.0.0.1:{}\n", inner.port()));
    let lib = library();
    let ssh_config = nas.dir().join("ssh_config");
    let block = |name: &str, sshd: &Sshd, jump: &str| {
        format!(
            "Host {name}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             UserKnownHostsFile {}\n{jump}",
            sshd.port(),
            sshd.user(),
            sshd.identity_file().display(),
            sshd.known_hosts().display(),
        )
    };
    let mut config = OriginConfig::from_url(format!("sftp://music-nas{}", lib.path().display()));
    config.ssh_config = Some(ssh_config.clone());
    config.identity_agent = Some("none".into());
    config.timeout_seconds = Some(2);
    let connections = |sshd: &Sshd| sshd.log().matches("Connection from 127.0.0.1").count();
    let local = std::fs::read(lib.path().join("big.wav")).unwrap();
    let both = [
        block("music-nas", &nas, "  ProxyJump outer,inner\n")
            + &block("inner", &inner, "  ProxyJump elsewhere\n")
            + &block("outer", &outer, ""),
        block("music-nas", &nas, "  ProxyJump inner\n")
            + &block("inner", &inner, "  ProxyJump outer\n")
            + &block("outer", &outer, ""),
    ];
    for text in both {
        std::fs::write(&ssh_config, &text).unwrap();
        let before = (connections(&outer), connections(&inner));
        let through = origin(&config).unwrap();
        assert_eq!(through.walk().unwrap().0, expected(lib.path()), "{text}");
        check_read(&*through.open("big.wav").unwrap(), &local, 1000, 2 << 20);
        let after = (connections(&outer), connections(&inner));
        assert!(
            after.0 > before.0 && after.1 > before.1,
            "both jump hosts were connected to, in turn ({before:?} -> {after:?}), with\n{text}"
        );
    }

    // The outer host gone: new connections say which host failed.
    outer.stop();
    let err = origin(&config).unwrap().probe().unwrap_err().to_string();
    let jump = format!("jump host sftp://{}@outer:{}", outer.user(), outer.port());
    assert!(err.contains(&jump), "{err}");
}

/// Whether OpenSSH's own `ssh`, with `options`, logs in to `sshd` (the oracle for "as ssh").
fn ssh_reaches(sshd: &Sshd, options: &[&str]) -> bool {
    std::process::Command::new("ssh")
        .args([
            "-F",
            "none",
            "-o",
            "BatchMode=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ])
        .arg("-i")
        .arg(sshd.identity_file())
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            sshd.known_hosts().display()
        ))
        .args(options)
        .args([
            "-p",
            &sshd.port().to_string(),
            "-l",
            sshd.user(),
            "127.0.0.1",
            "true",
        ])
        .output()
        .unwrap()
        .status
        .success()
}

/// Servers that offer few algorithms are reached as ssh reaches them: an embedded one with only
/// a NIST-curve key exchange, AES-CTR and HMAC-SHA1 (ssh's defaults reach it; russh's alone do
/// not), and an old NAS that needs SHA-1 key exchange, refused with the reason until
/// ssh_config's `KexAlgorithms +diffie-hellman-group14-sha1` lets it in, as it lets ssh in.
#[test]
fn servers_with_few_algorithms_are_reached_as_ssh_reaches_them() {
    let lib = library();
    let local = std::fs::read(lib.path().join("big.wav")).unwrap();
    let embedded =
        Sshd::with_config("KexAlgorithms ecdh-sha2-nistp256\nCiphers aes128-ctr\nMACs hmac-sha1\n");
    assert!(ssh_reaches(&embedded, &[]), "{}", embedded.log());
    let reached = origin(&config(&embedded, lib.path())).unwrap();
    assert_eq!(reached.walk().unwrap().0, expected(lib.path()));
    check_read(&*reached.open("big.wav").unwrap(), &local, 1000, 1 << 20);

    let old_nas = Sshd::with_config("KexAlgorithms diffie-hellman-group14-sha1\n");
    let sha1_kex = ["-o", "KexAlgorithms=+diffie-hellman-group14-sha1"];
    assert!(!ssh_reaches(&old_nas, &[]) && ssh_reaches(&old_nas, &sha1_kex));
    let mut config = config(&old_nas, lib.path());
    let err = origin(&config).unwrap().probe().unwrap_err().to_string();
    let said = format!(
        "ssh to 127.0.0.1:{}: No common Kex algorithm",
        old_nas.port()
    );
    assert!(err.contains(&said), "{err}");
    let ssh_config = old_nas.dir().join("ssh_config");
    std::fs::write(
        &ssh_config,
        "Host 127.0.0.1\n  KexAlgorithms +diffie-hellman-group14-sha1\n",
    )
    .unwrap();
    config.ssh_config = Some(ssh_config.clone());
    let reached = origin(&config).unwrap();
    assert_eq!(reached.walk().unwrap().0, expected(lib.path()));
    check_read(&*reached.open("big.wav").unwrap(), &local, 0, 64 << 10);

    // A list that leaves nothing MusicFS has fails the origin with that said.
    std::fs::write(&ssh_config, "Host *\n  Ciphers 3des-cbc\n").unwrap();
    let err = origin(&config).unwrap_err().to_string();
    assert!(
        err.contains("Ciphers 3des-cbc leaves no algorithm"),
        "{err}"
    );
}

/// A NAS reached through ssh_config's `ProxyCommand` (`ssh -W` through a gate, as one reaches
/// a NAS from outside): the session runs over the command's stdin and stdout. A command that
/// cannot reach the host leaves the origin unreachable, with the command named.
#[test]
fn a_nas_is_reached_through_a_proxy_command() {
    let nas = Sshd::new();
    let gate = Sshd::new();
    let lib = library();
    let ssh_config = nas.dir().join("ssh_config");
    let write = |proxy: &str| {
        let text = format!(
            "Host nas\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             UserKnownHostsFile {}\n  ProxyCommand {proxy}\n",
            nas.port(),
            nas.user(),
            nas.identity_file().display(),
            nas.known_hosts().display()
        );
        std::fs::write(&ssh_config, text).unwrap();
    };
    write(&format!(
        "ssh -F none -i {} -o UserKnownHostsFile={} -o BatchMode=yes -p {} -l {} -W %h:%p \
         127.0.0.1",
        gate.identity_file().display(),
        gate.known_hosts().display(),
        gate.port(),
        gate.user()
    ));
    let url = format!("sftp://nas{}", lib.path().display());
    let mut config = OriginConfig::from_url(&url);
    config.ssh_config = Some(ssh_config.clone());
    config.identity_agent = Some("none".into());
    config.timeout_seconds = Some(5);
    let through = origin(&config).unwrap();
    assert_eq!(through.walk().unwrap().0, expected(lib.path()));
    let local = std::fs::read(lib.path().join("big.wav")).unwrap();
    check_read(
        &*through.open("big.wav").unwrap(),
        &local,
        1_000_000,
        300_000,
    );
    assert!(
        gate.log().contains("Accepted publickey"),
        "the gate was not used:\n{}",
        gate.log()
    );

    write("sh -c 'echo no route to nas >&2; exit 1'");
    let err = origin(&config).unwrap().probe().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("through ProxyCommand sh -c 'echo no route"),
        "{text}"
    );
    assert!(unreachable(&err), "{text}");
}
