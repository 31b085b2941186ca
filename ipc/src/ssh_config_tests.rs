use super::*;

fn asked(host: &str) -> Asked<'_> {
    Asked {
        host,
        user: None,
        local_user: "ann",
    }
}

fn settings(config: &str, host: &str) -> HostSettings {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config");
    std::fs::write(&file, config).unwrap();
    let mut s = read(&file, asked(host), dir.path()).unwrap();
    s.files.clear();
    s
}

#[test]
fn the_first_value_from_the_blocks_that_match_wins() {
    let config = "\
# defaults before any Host apply to all
User fallback-is-not-first

Host other
    HostName other.example
    Port 2200

Host NAS nas.local
    HostName=192.168.1.10
    Port = 2222
    IdentityFile ~/.ssh/nas_key
    CertificateFile ~/.ssh/nas_key-cert.pub
    identitiesonly YES
    UserKnownHostsFile \"~/.ssh/known hosts\" ~/.ssh/known_hosts2

Host *
    User everyone
    Port 22
    IdentityFile ~/.ssh/id_ed25519
    CertificateFile ~/.ssh/ca-signed.pub
    IdentitiesOnly no
    IdentityAgent ${XDG_RUNTIME_DIR}/agent
";
    let nas = settings(config, "nas");
    assert_eq!(nas.hostname.as_deref(), Some("192.168.1.10"));
    assert_eq!(nas.port, Some(2222));
    // Lines before the first Host come first, so they win.
    assert_eq!(nas.user.as_deref(), Some("fallback-is-not-first"));
    assert_eq!(nas.identity_files, ["~/.ssh/nas_key", "~/.ssh/id_ed25519"]);
    assert_eq!(
        nas.certificate_files,
        ["~/.ssh/nas_key-cert.pub", "~/.ssh/ca-signed.pub"]
    );
    assert_eq!(nas.identities_only, Some(true));
    assert_eq!(
        nas.known_hosts,
        Some(vec![
            "~/.ssh/known hosts".into(),
            "~/.ssh/known_hosts2".into()
        ])
    );
    assert_eq!(
        nas.identity_agent.as_deref(),
        Some("${XDG_RUNTIME_DIR}/agent")
    );

    let elsewhere = settings(config, "music.example");
    assert_eq!(elsewhere.hostname, None);
    assert_eq!(elsewhere.port, Some(22));
    assert_eq!(elsewhere.identity_files, ["~/.ssh/id_ed25519"]);
    assert_eq!(elsewhere.identities_only, Some(false));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config");
    std::fs::write(&file, "Host *\n  IdentitiesOnly sometimes\n").unwrap();
    let err = read(&file, asked("nas"), dir.path()).unwrap_err();
    assert!(
        err.contains("line 2") && err.contains("must be yes or no"),
        "{err}"
    );
}

#[test]
fn patterns_negations_and_unfollowed_options_are_read_as_ssh_does() {
    let config = "\
Host *.lan !printer.lan
    ProxyJump gate,way
    HostName %h.example

Match originalhost nas.lan exec \"test %n = nas.lan\"
    Port 9999

Match originalhost nas.lan version OpenSSH_9*
    Port 9998

Host printer.lan
    ProxyJump ann@gateway:2222
    ProxyCommand ssh -W %h:%p elsewhere
    Port 631
";
    let nas = settings(config, "Nas.LAN");
    assert_eq!(nas.hostname.as_deref(), Some("nas.lan.example"));
    assert_eq!(nas.port, Some(9999), "the exec held");
    assert_eq!(nas.not_followed.len(), 1, "{:?}", nas.not_followed);
    assert_eq!(nas.proxy_jump.as_deref(), Some("gate,way"), "two jumps");
    // A Match that needs `version` is not followed, but reported.
    assert!(nas.not_followed[0].starts_with("Match originalhost nas.lan version OpenSSH_9* ("));

    let printer = settings(config, "printer.lan");
    assert_eq!(printer.hostname, None, "the negation excludes it");
    assert_eq!(printer.port, Some(631));
    assert_eq!(printer.proxy_jump.as_deref(), Some("ann@gateway:2222"));
    assert_eq!(printer.proxy_command, None, "the first of the two wins");
    assert!(
        printer.not_followed.iter().all(|n| n.starts_with("Match")),
        "{:?}",
        printer.not_followed
    );
}

#[test]
fn match_tagged_is_matched_against_the_tag_set_before_it() {
    let config = "\
Host nas.lan
    Tag music
Match tagged music,!old
    User listener
Match !tagged *?
    Port 2022
";
    let nas = settings(config, "nas.lan");
    assert_eq!((nas.user.as_deref(), nas.port), (Some("listener"), None));
    assert_eq!(nas.tag.as_deref(), Some("music"));
    // No Tag is the empty name: `tagged music` does not hold, `!tagged *?` does.
    let other = settings(config, "other.lan");
    assert_eq!((other.user.as_deref(), other.port), (None, Some(2022)));
    assert!(other.not_followed.is_empty(), "{:?}", other.not_followed);
}

#[test]
fn a_proxy_command_is_kept_as_written_and_the_first_proxy_wins() {
    let config = "\
Host nas
    ProxyCommand=cloudflared access ssh --hostname \"%h\"  --id x
Host *
    ProxyJump ignored
    ProxyCommand ignored too
Host other
    ProxyCommand NONE
";
    let nas = settings(config, "nas");
    assert_eq!(
        nas.proxy_command.as_deref(),
        Some("cloudflared access ssh --hostname \"%h\"  --id x")
    );
    assert_eq!(nas.proxy_jump, None);
    let other = settings(config, "other");
    assert_eq!(other.proxy_jump.as_deref(), Some("ignored"));
    assert_eq!(other.proxy_command, None);
    let none = settings("ProxyCommand none\nProxyJump gate\n", "x");
    assert_eq!(
        (none.proxy_command.as_deref(), none.proxy_jump),
        (Some("none"), None)
    );
}

#[test]
fn match_blocks_apply_by_host_user_and_in_the_final_pass() {
    let config = "\
Host nas
    HostName 10.0.0.5
Match host 10.0.0.5 user music
    Port 2222
Match originalhost NAS !user music
    Port 2200
Match localuser ann,bob
    IdentityFile ~/.ssh/local_key
Match final host 10.0.0.5
    IdentitiesOnly yes
    Port 1
Match all
    User fallback
Match host 10.0.0.5 sessiontype subsystem
    ProxyJump gate
Match host elsewhere exec \"true\"
    Port 3
Match !final
    CertificateFile ~/.ssh/first-pass-cert.pub
Host *
    Port 22
";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config");
    std::fs::write(&file, config).unwrap();
    let read_as = |user: Option<&str>, local_user: &str| {
        let asked = Asked {
            host: "nas",
            user,
            local_user,
        };
        read(&file, asked, dir.path()).unwrap()
    };
    let music = read_as(Some("music"), "ann");
    assert_eq!(music.hostname.as_deref(), Some("10.0.0.5"));
    assert_eq!(music.port, Some(2222), "`host` is matched after HostName");
    assert_eq!(music.identity_files, ["~/.ssh/local_key"]);
    assert_eq!(music.identities_only, Some(true), "final blocks apply");
    assert_eq!(music.user.as_deref(), Some("fallback"));
    assert_eq!(
        music.certificate_files,
        ["~/.ssh/first-pass-cert.pub"],
        "read once in each pass, listed once"
    );
    assert_eq!(music.not_followed.len(), 1, "{:?}", music.not_followed);
    assert!(music.not_followed[0].starts_with("Match host 10.0.0.5 sessiontype subsystem ("));
    assert_eq!(music.proxy_jump, None);

    // No user in the URL: `user` is the one set so far, else the local user.
    let local = read_as(None, "bob");
    assert_eq!(local.port, Some(2200));
    assert_eq!(local.identity_files, ["~/.ssh/local_key"]);
    let other = read_as(None, "carol");
    assert!(other.identity_files.is_empty());

    std::fs::write(&file, "Match host\n  Port 1\n").unwrap();
    let err = read(&file, asked("nas"), dir.path()).unwrap_err();
    assert!(
        err.contains("line 1") && err.contains("Match host needs"),
        "{err}"
    );
}

#[test]
fn includes_are_read_where_they_stand_with_globs() {
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir_all(ssh.join("config.d")).unwrap();
    std::fs::write(
        ssh.join("config"),
        "Include config.d/*.conf\nHost nas\n  Port 1\nHost skipped\n  Include ~/.ssh/never\n",
    )
    .unwrap();
    std::fs::write(ssh.join("config.d/10-nas.conf"), "Host nas\n  User ann\n").unwrap();
    std::fs::write(ssh.join("config.d/20-all.conf"), "Host *\n  Port 2\n").unwrap();
    std::fs::write(ssh.join("config.d/notes.txt"), "Port 3\n").unwrap();
    std::fs::write(ssh.join("never"), "broken \"line\n").unwrap();
    let nas = read(&ssh.join("config"), asked("nas"), &ssh).unwrap();
    assert_eq!(nas.user.as_deref(), Some("ann"));
    assert_eq!(nas.port, Some(2), "the include came before `Host nas`");
    assert_eq!(
        nas.files,
        [
            ssh.join("config"),
            ssh.join("config.d/10-nas.conf"),
            ssh.join("config.d/20-all.conf")
        ]
    );

    // A missing config says nothing; a broken one that applies is an error naming its line.
    assert_eq!(
        read(&ssh.join("absent"), asked("nas"), &ssh).unwrap(),
        HostSettings::default()
    );
    let err = read(&ssh.join("never"), asked("nas"), &ssh).unwrap_err();
    assert!(err.contains("never line 1: unclosed quote"), "{err}");
}

#[test]
fn tokens_in_paths_are_expanded() {
    let tokens = Tokens {
        home: Path::new("/home/ann"),
        local_user: "ann",
        host: "192.168.1.10",
        original_host: "nas",
        user: "music",
        port: 2222,
    };
    assert_eq!(
        expand("~/.ssh/id_%r@%h:%p", &tokens).unwrap(),
        Path::new("/home/ann/.ssh/id_music@192.168.1.10:2222")
    );
    assert_eq!(
        expand("%n-%d/keys/%u%%", &tokens).unwrap(),
        Path::new("nas-/home/ann/keys/ann%")
    );
    let var = std::env::var("PATH").unwrap();
    assert_eq!(
        expand("${PATH}/x", &tokens).unwrap(),
        PathBuf::from(format!("{var}/x"))
    );
    assert_eq!(expand("${MUSICFS_SURELY_UNSET_VARIABLE}", &tokens), None);
    let name = String::from_utf8(
        std::process::Command::new("hostname")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let (name, uid) = (name.trim(), nix::unistd::getuid());
    let short = name.split('.').next().unwrap();
    assert_eq!(
        expand("%l/%L/%i", &tokens).unwrap(),
        PathBuf::from(format!("{name}/{short}/{uid}"))
    );
}

#[test]
fn wildcards_match_the_whole_name() {
    assert!(wildcard(b"*.lan", b"nas.lan"));
    assert!(!wildcard(b"*.lan", b"nas.lan.evil.com"));
    assert!(wildcard(b"n?s*", b"nas.lan"));
    assert!(!wildcard(b"n?s", b"nas.lan"));
    assert!(wildcard(b"*", b""));
    assert!(wildcard(b"a*b*c", b"aXXbYYc"));
    assert!(!wildcard(b"a*b*c", b"aXXbYY"));
}

#[test]
fn match_exec_and_localnetwork_apply_a_block_where_this_machine_is() {
    let dir = tempfile::tempdir().unwrap();
    let (flag, ran) = (dir.path().join("home"), dir.path().join("ran"));
    std::fs::write(dir.path().join("home-nas-music-22"), "").unwrap();
    let at_home = format!("test -e {}-%n-%r-%p", flag.display());
    let config = format!(
        "\
Host nas
    User music
Match originalhost nas exec \"{at_home}\"
    HostName 192.168.1.10
Match originalhost nas !exec \"{at_home}\"
    HostName nas.example.org
Match host never exec \"touch {}\"
    Port 1
Match exec \"exit 1\"
    Port 2
Match localnetwork 224.0.0.0/4
    IdentityFile ~/.ssh/away
Match localnetwork 224.0.0.0/4,127.0.0.0/8
    IdentityFile ~/.ssh/here
Match localnetwork home
    IdentityFile ~/.ssh/never
",
        ran.display()
    );
    let file = dir.path().join("config");
    std::fs::write(&file, config).unwrap();
    let read_as = |user: Option<&str>| {
        let asked = Asked {
            host: "nas",
            user,
            local_user: "ann",
        };
        read(&file, asked, dir.path()).unwrap()
    };
    let home = read_as(None);
    assert_eq!(home.hostname.as_deref(), Some("192.168.1.10"), "{home:?}");
    assert_eq!(home.port, None, "`exit 1` does not hold");
    assert_eq!(home.identity_files, ["~/.ssh/here"], "loopback is up");
    assert_eq!(home.not_followed.len(), 1, "{:?}", home.not_followed);
    assert!(home.not_followed[0].starts_with("Match localnetwork home ("));
    let away = read_as(Some("guest"));
    assert_eq!(away.hostname.as_deref(), Some("nas.example.org"));
    assert!(!ran.exists(), "not run once an earlier criterion failed");
}
