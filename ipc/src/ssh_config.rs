//! The part of OpenSSH's `ssh_config` (by default `~/.ssh/config`) that says how to reach a
//! host: `sftp://nas/music` reaches the `Host nas` that `ssh nas` reaches, as with sshfs.
//!
//! Read as ssh reads it: `Host` blocks whose patterns (`*`, `?`, `!` negations) match the name
//! in the URL apply, the first value given for an option wins (`IdentityFile` adds up),
//! `Include` reads other files (globs, relative to `~/.ssh`) where it stands, keywords are
//! case-insensitive and take `keyword value` or `keyword=value`, with `"quoted"` values.
//! Followed: `HostName`, `User`, `Port`, `IdentityFile`, `CertificateFile`, `IdentitiesOnly`,
//! `UserKnownHostsFile`, `GlobalKnownHostsFile`, `IdentityAgent`, `HostKeyAlias`, and
//! `ProxyJump` through one jump host. `Match` blocks, `ProxyCommand` and jumps through several hosts are not followed; they
//! are reported, so a host that needs them fails with that said.

use std::path::{Path, PathBuf};

/// Files included within files included ... at most this deep (OpenSSH's limit too).
const MAX_INCLUDE_DEPTH: usize = 16;

/// What the config says for one host (values as written; see [`expand`] for paths).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<String>,
    /// `CertificateFile`s (they add up, as `IdentityFile`s do).
    pub certificate_files: Vec<String>,
    /// `IdentitiesOnly`: offer only the identity files' keys, not every key an agent holds.
    pub identities_only: Option<bool>,
    pub known_hosts: Option<Vec<String>>,
    pub global_known_hosts: Option<Vec<String>>,
    pub identity_agent: Option<String>,
    pub host_key_alias: Option<String>,
    /// `ProxyJump`'s `[user@]host[:port]` (one host; `none` is none).
    pub proxy_jump: Option<String>,
    /// Options that apply to the host but are not followed, with where they are.
    pub not_followed: Vec<String>,
    /// The files read (the config and what it includes).
    pub files: Vec<PathBuf>,
}

/// Reads `file` (a missing one says nothing) for `host`; `ssh_dir` is where relative
/// `Include`s are. A file that exists but cannot be read or parsed is an error.
pub fn read(file: &Path, host: &str, ssh_dir: &Path) -> Result<HostSettings, String> {
    let mut reader = Reader {
        host: host.to_ascii_lowercase(),
        ssh_dir,
        settings: HostSettings::default(),
    };
    match std::fs::read_to_string(file) {
        Ok(text) => {
            reader.settings.files.push(file.to_owned());
            reader.parse(&text, file, 0)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    }
    Ok(reader.settings)
}

struct Reader<'a> {
    host: String,
    ssh_dir: &'a Path,
    settings: HostSettings,
}

impl Reader<'_> {
    fn parse(&mut self, text: &str, file: &Path, depth: usize) -> Result<(), String> {
        // Lines before the first `Host` apply to every host.
        let mut active = true;
        for (number, line) in text.lines().enumerate() {
            let at = || format!("{} line {}", file.display(), number + 1);
            let Some((keyword, args)) = split_line(line).map_err(|e| format!("{}: {e}", at()))?
            else {
                continue;
            };
            let first = args.first().cloned().unwrap_or_default();
            let s = &mut self.settings;
            match keyword.as_str() {
                "host" => active = host_matches(args.iter().map(String::as_str), &self.host),
                "match" => {
                    active = false;
                    s.not_followed
                        .push(format!("Match {} ({})", args.join(" "), at()));
                }
                _ if !active => {}
                _ if args.is_empty() => return Err(format!("{}: {keyword} needs a value", at())),
                "include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(format!("{}: includes nested too deep", at()));
                    }
                    for pattern in &args {
                        for included in self.included(pattern)? {
                            let Ok(text) = std::fs::read_to_string(&included) else {
                                continue;
                            };
                            self.settings.files.push(included.clone());
                            self.parse(&text, &included, depth + 1)?;
                        }
                    }
                }
                "hostname" => first_wins(&mut s.hostname, first.replace("%h", &self.host)),
                "user" => first_wins(&mut s.user, first),
                "port" => {
                    let port = first.parse().map_err(|_| format!("{}: bad port", at()))?;
                    first_wins(&mut s.port, port);
                }
                "identityfile" => s.identity_files.push(first),
                "certificatefile" => s.certificate_files.push(first),
                "identitiesonly" => {
                    let only = yes_or_no(&first).ok_or_else(|| {
                        format!("{}: IdentitiesOnly {first}: must be yes or no", at())
                    })?;
                    first_wins(&mut s.identities_only, only);
                }
                "userknownhostsfile" => first_wins(&mut s.known_hosts, args),
                "globalknownhostsfile" => first_wins(&mut s.global_known_hosts, args),
                "identityagent" => first_wins(&mut s.identity_agent, first),
                "hostkeyalias" => first_wins(&mut s.host_key_alias, first),
                "proxyjump" if !first.contains(',') => {
                    first_wins(&mut s.proxy_jump, first);
                }
                "proxyjump" | "proxycommand" if !first.eq_ignore_ascii_case("none") => {
                    let name = match keyword.as_str() {
                        "proxyjump" => "ProxyJump",
                        _ => "ProxyCommand",
                    };
                    let what = format!("{name} {} ({})", args.join(" "), at());
                    s.not_followed.push(what);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The files an `Include` pattern names, sorted (a `*`/`?` in the last component is a
    /// glob).
    fn included(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let path = match pattern.strip_prefix("~/") {
            Some(rest) => self.ssh_dir.parent().unwrap_or(self.ssh_dir).join(rest),
            None => self.ssh_dir.join(pattern),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let (Some(dir), Some(name)) = (path.parent(), name) else {
            return Ok(Vec::new());
        };
        if !name.contains(['*', '?']) {
            return Ok(vec![path]);
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(Vec::new());
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| wildcard(name.as_bytes(), e.file_name().as_encoded_bytes()))
            .map(|e| e.path())
            .collect();
        found.sort();
        Ok(found)
    }
}

fn first_wins<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// `yes` or `no` (any case), as ssh reads a flag.
fn yes_or_no(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// A line's keyword (lower-cased) and its values; `None` for blank lines and comments.
fn split_line(line: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_ascii_lowercase();
    let mut rest = line[end..].trim_start();
    if let Some(after) = rest.strip_prefix('=') {
        rest = after.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut arg = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some(c) => arg.push(c),
                    None => return Err("unclosed quote".into()),
                }
            }
        } else {
            while let Some(&c) = chars.peek().filter(|c| !c.is_whitespace()) {
                arg.push(c);
                chars.next();
            }
        }
        args.push(arg);
    }
    Ok(Some((keyword, args)))
}

/// Whether `name` (lower case) matches a list of host patterns: one matches, and no negated
/// one does. Patterns are compared without regard to case.
pub fn host_matches<'a>(patterns: impl IntoIterator<Item = &'a str>, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('!') {
            Some(negated) if wildcard(negated.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= wildcard(pattern.as_bytes(), name.as_bytes()),
        }
    }
    matched
}

/// `*` (any run) and `?` (any one byte) matching of the whole of `text`.
pub fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it has taken up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    p = sp + 1;
                    t = st + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// What `%` tokens in a path stand for.
pub struct Tokens<'a> {
    pub home: &'a Path,
    pub local_user: &'a str,
    /// The host name to connect to (after `HostName`).
    pub host: &'a str,
    pub user: &'a str,
    pub port: u16,
}

/// A path option's value with `~/`, `%d` (home), `%u` (local user), `%h`, `%r` (remote user),
/// `%p`, `%%` and `${VAR}` expanded; `None` if it names an unset variable.
pub fn expand(value: &str, tokens: &Tokens<'_>) -> Option<PathBuf> {
    let value = match value.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", tokens.home.display()),
        None => value.to_owned(),
    };
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('d') => out.push_str(&tokens.home.to_string_lossy()),
                Some('u') => out.push_str(tokens.local_user),
                Some('h') => out.push_str(tokens.host),
                Some('r') => out.push_str(tokens.user),
                Some('p') => out.push_str(&tokens.port.to_string()),
                Some(other) => out.push(other),
                None => out.push('%'),
            },
            '$' if chars.as_str().starts_with('{') => {
                let rest = &chars.as_str()[1..];
                let end = rest.find('}')?;
                out.push_str(&std::env::var(&rest[..end]).ok()?);
                chars = rest[end + 1..].chars();
            }
            c => out.push(c),
        }
    }
    Some(PathBuf::from(out))
}

#[cfg(test)]
#[path = "ssh_config_tests.rs"]
mod tests;
