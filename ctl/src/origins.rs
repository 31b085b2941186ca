//! `musicfsctl origins`: how each origin will be reached, resolved by the code fetchd resolves
//! it with (`musicfs_ipc::sftp_target`, `s3_target`), without connecting, as `ssh -G` shows
//! what ssh would do: for an SFTP origin the address, user and host key it is checked under,
//! the jump hosts or proxy command on the way, the keys, certificates, agent and known_hosts
//! files (each marked when missing) and the ssh_config lines not followed; for an S3 origin the
//! endpoint, region, addressing and where its keys come from. Secrets are never shown, only
//! where they come from.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use musicfs_ipc::config::Config;
use musicfs_ipc::origin::{OriginConfig, OriginUrl};
use musicfs_ipc::s3_role::RoleSource;
use musicfs_ipc::s3_target::S3Target;
use musicfs_ipc::sftp_target::{Identity, SftpTarget};

use crate::cli::OriginsArgs;

/// Prints each origin's description; exits 1 if any cannot be resolved (the reason is shown).
pub fn run(args: &OriginsArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref()).map_err(|e| anyhow!("{e}; fix the file"))?;
    let origins = config.origins_with(&args.origins);
    if origins.is_empty() {
        return Err(anyhow!(
            "no origins: name some, or give --config with origins"
        ));
    }
    let home = std::env::home_dir();
    let env = |name: &str| std::env::var(name).ok();
    let mut all_resolved = true;
    for (i, origin) in origins.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match describe(origin, home.as_deref(), &env) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                all_resolved = false;
                println!("{}\n  cannot be resolved: {e}", origin.url);
            }
        }
    }
    Ok(match all_resolved {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

/// One origin, as lines of text: its URL, then indented `what: value` lines.
pub fn describe(
    origin: &OriginConfig,
    home: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    match origin.parsed()? {
        OriginUrl::Local(path) => {
            let state = match path.is_dir() {
                true => "a folder",
                false => "not there now",
            };
            let _ = writeln!(out, "{}\n  local:        {state}", path.display());
        }
        OriginUrl::Sftp { .. } => {
            let target = SftpTarget::resolve(origin, home)?;
            let _ = writeln!(out, "{}", target.name());
            let jumps: Vec<&SftpTarget> = target.hops().skip(1).collect();
            for (n, hop) in jumps.iter().rev().enumerate() {
                let (user, name, port) = (&hop.user, &hop.host, hop.port);
                let _ = writeln!(out, "  jump host {}:  {user}@{name}:{port}", n + 1);
                sftp_lines(&mut out, hop, "    ");
            }
            if !jumps.is_empty() {
                let (user, name, port) = (&target.user, &target.host, target.port);
                let _ = writeln!(out, "  then:         {user}@{name}:{port}");
            }
            sftp_lines(&mut out, &target, "  ");
            if origin.password.is_some() {
                let _ = writeln!(out, "  password:     from the config file");
            }
            files_line(&mut out, "  ssh_config:   ", &target.config_files);
            for what in &target.not_followed {
                let _ = writeln!(out, "  not followed: {what}");
            }
        }
        OriginUrl::S3 { bucket, prefix } => {
            let target = S3Target::resolve(origin, home, env)?;
            let style = match target.path_style {
                true => "path style",
                false => "virtual-host style",
            };
            let name = match prefix.is_empty() {
                true => format!("s3://{bucket}"),
                false => format!("s3://{bucket}/{prefix}"),
            };
            let _ = writeln!(out, "{name}");
            let _ = writeln!(out, "  endpoint:     {} ({style})", target.endpoint);
            let _ = writeln!(out, "  region:       {}", target.region);
            let keys = match (&target.keys_from, &target.credential_process, &target.sso) {
                (Some(from), _, _) => format!("from {from}"),
                (None, Some(command), _) => format!("from credential_process {command}"),
                (None, None, Some(sso)) => format!(
                    "SSO role {} in account {}, with the token of aws sso login ({}) in {}",
                    sso.role_name,
                    sso.account_id,
                    sso.session
                        .as_deref()
                        .map_or(sso.start_url.clone(), |s| format!("sso_session {s}")),
                    sso.cache_dir.display()
                ),
                (None, None, None) => match (&target.role, &target.workload) {
                    (Some(role), _) => {
                        let via: Vec<String> =
                            std::iter::successors(Some(role), |r| match &*r.source {
                                RoleSource::Role(inner) => Some(inner),
                                _ => None,
                            })
                            .map(|r| r.role_arn.clone())
                            .collect();
                        format!(
                            "role {} assumed at {}",
                            via.join(", assumed with role "),
                            role.sts
                        )
                    }
                    (None, Some(workload)) => format!("from {}", workload.describe()),
                    (None, None) => format!("none: {}", target.keys_missing()),
                },
            };
            let _ = writeln!(out, "  keys:         {keys}");
            files_line(&mut out, "  ca file:      ", target.ca_file.as_slice());
        }
        OriginUrl::Http { base } => {
            let _ = writeln!(out, "{base}");
            if let Some(user) = &origin.username {
                let password = match origin.password {
                    Some(_) => "with the config file's password",
                    None => "without a password",
                };
                let _ = writeln!(out, "  login:        {user}, {password}");
            }
            files_line(&mut out, "  ca file:      ", origin.ca_file.as_slice());
        }
    }
    Ok(out)
}

/// How one SSH host is reached and logged in to, each line starting with `indent`.
fn sftp_lines(out: &mut String, host: &SftpTarget, indent: &str) {
    let _ = writeln!(
        out,
        "{indent}connect to:   {}:{} as {}",
        host.connect_to, host.port, host.user
    );
    if let Some(command) = &host.proxy_command {
        let _ = writeln!(out, "{indent}through:      ProxyCommand {command}");
    }
    let key = match host.key_port {
        22 => host.key_name.clone(),
        port => format!("[{}]:{port}", host.key_name),
    };
    let known = found(&host.known_hosts, "it cannot be checked, so it is refused");
    let _ = writeln!(out, "{indent}host key:     {key} in {known}");
    let identity = match &host.identity {
        Identity::Configured(file) => shown(file),
        Identity::Candidates(files) => found(files, "the agent's keys or a password only"),
    };
    let _ = writeln!(out, "{indent}identity:     {identity}");
    let certificates: Vec<&PathBuf> = host.certificates.iter().filter(|c| c.exists()).collect();
    if !certificates.is_empty() {
        let certificates: Vec<String> = certificates.iter().map(|c| shown(c)).collect();
        let _ = writeln!(out, "{indent}certificates: {}", certificates.join(", "));
    }
    let agent = match &host.agent {
        Some(socket) if host.identities_only => {
            format!("{} (only the identity files' keys)", shown(socket))
        }
        Some(socket) => shown(socket),
        None => "none".into(),
    };
    let _ = writeln!(out, "{indent}agent:        {agent}");
    let a = &host.algorithms;
    for (option, value) in [
        ("KexAlgorithms", &a.kex),
        ("Ciphers", &a.ciphers),
        ("MACs", &a.macs),
        ("HostKeyAlgorithms", &a.host_keys),
    ] {
        if let Some(value) = value {
            let _ = writeln!(out, "{indent}algorithms:   {option} {value}");
        }
    }
}

/// The files of `files` that are there (the first is the one used, or they are searched as
/// one), else that none is and what that means.
fn found(files: &[PathBuf], else_: &str) -> String {
    let there: Vec<String> = files
        .iter()
        .filter(|f| f.exists())
        .map(|f| f.display().to_string())
        .collect();
    match there.is_empty() {
        false => there.join(", "),
        true => {
            let all: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            format!("none of {} is there: {else_}", all.join(", "))
        }
    }
}

/// `label` then the files, comma-separated, each marked when it is not there.
fn files_line(out: &mut String, label: &str, files: &[PathBuf]) {
    if files.is_empty() {
        return;
    }
    let files: Vec<String> = files.iter().map(|f| shown(f)).collect();
    let _ = writeln!(out, "{label}{}", files.join(", "));
}

fn shown(path: &Path) -> String {
    match path.exists() {
        true => path.display().to_string(),
        false => format!("{} (missing)", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use musicfs_ipc::origin::Secret;

    use super::*;

    /// A home with an ssh_config, a key and known_hosts, and AWS files.
    fn home() -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::create_dir_all(home.path().join(".aws")).unwrap();
        std::fs::write(
            ssh.join("config"),
            "Host nas\n HostName 10.0.0.5\n Port 2222\n User music\n ProxyJump gate\n\
             \x20KexAlgorithms +diffie-hellman-group14-sha1\n\
             Host gate\n HostName gate.example\n User ann\n IdentityFile ~/.ssh/gate\n\
             Match host 10.0.0.5 version OpenSSH_9*\n Port 1\n",
        )
        .unwrap();
        std::fs::write(ssh.join("id_ed25519"), "").unwrap();
        std::fs::write(ssh.join("known_hosts"), "").unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            "[b2]\naws_access_key_id = KEYB2\naws_secret_access_key = b2-secret\n",
        )
        .unwrap();
        home
    }

    fn described(home: &Path, edit: impl Fn(&mut OriginConfig), url: &str) -> String {
        let mut origin = OriginConfig::from_url(url);
        origin.identity_agent = Some("none".into());
        edit(&mut origin);
        let env = |name: &str| (name == "AWS_REGION").then(|| "eu-west-1".to_owned());
        describe(&origin, Some(home), &env).unwrap()
    }

    #[test]
    fn an_sftp_origin_shows_its_route_keys_and_what_is_not_followed() {
        let home = home();
        let h = home.path().display();
        let text = described(
            home.path(),
            |o| o.password = Some(Secret::new("pa55word")),
            "sftp://nas/srv/music",
        );
        let expected = format!(
            "sftp://music@nas:2222/srv/music\n\
             \x20 jump host 1:  ann@gate:22\n\
             \x20   connect to:   gate.example:22 as ann\n\
             \x20   host key:     gate.example in {h}/.ssh/known_hosts\n\
             \x20   identity:     none of {h}/.ssh/gate is there: the agent's keys or a password \
             only\n\
             \x20   agent:        none\n\
             \x20 then:         music@nas:2222\n\
             \x20 connect to:   10.0.0.5:2222 as music\n\
             \x20 host key:     [10.0.0.5]:2222 in {h}/.ssh/known_hosts\n\
             \x20 identity:     {h}/.ssh/id_ed25519\n\
             \x20 agent:        none\n\
             \x20 algorithms:   KexAlgorithms +diffie-hellman-group14-sha1\n\
             \x20 password:     from the config file\n\
             \x20 ssh_config:   {h}/.ssh/config\n\
             \x20 not followed: Match host 10.0.0.5 version OpenSSH_9* ({h}/.ssh/config line 11)\n"
        );
        assert_eq!(text, expected);
        assert!(!text.contains("pa55word"));

        std::fs::remove_file(home.path().join(".ssh/known_hosts")).unwrap();
        let text = described(
            home.path(),
            |o| o.ssh_config = Some("none".into()),
            "sftp://a@b/x",
        );
        assert!(
            text.contains("so it is refused") && text.contains("known_hosts2"),
            "{text}"
        );
    }

    #[test]
    fn an_s3_origin_shows_where_its_keys_come_from_never_the_keys() {
        let home = home();
        let text = described(home.path(), |o| o.profile = Some("b2".into()), "s3://music");
        assert!(text.starts_with("s3://music\n"), "{text}");
        assert!(text.contains("region:       eu-west-1\n"), "{text}");
        assert!(text.contains("keys:         from profile \"b2\""), "{text}");
        assert!(
            !text.contains("b2-secret") && !text.contains("KEYB2"),
            "{text}"
        );

        let text = described(
            home.path(),
            |o| {
                o.access_key_id = Some("AKIA".into());
                o.secret_access_key = Some(Secret::new("s3cret"));
            },
            "s3://music/lib",
        );
        assert!(
            text.contains("keys:         from the config file"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");

        let text = described(home.path(), |o| o.profile = Some("none".into()), "s3://m");
        assert!(
            text.contains("keys:         none: no credentials"),
            "{text}"
        );

        let home = home.path();
        std::fs::write(
            home.join(".aws/config"),
            "[profile pod]\nrole_arn = arn:aws:iam::1:role/r\nweb_identity_token_file = /t/token\n",
        )
        .unwrap();
        let text = described(home, |o| o.profile = Some("pod".into()), "s3://m");
        assert!(
            text.contains(
                "keys:         from role arn:aws:iam::1:role/r for the web identity in /t/token \
                 (STS at https://sts.eu-west-1.amazonaws.com)"
            ),
            "{text}"
        );
    }
}
