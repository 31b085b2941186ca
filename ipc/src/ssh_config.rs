//! The part of OpenSSH's `ssh_config` (by default `~/.ssh/config`) that says how to reach a
//! host: `sftp://nas/music` reaches the `Host nas` that `ssh nas` reaches, as with sshfs.
//!
//! Read as ssh reads it: `Host` blocks whose patterns (`*`, `?`, `!` negations) match the name
//! in the URL apply, the first value given for an option wins (`IdentityFile` adds up),
//! `Include` reads other files (globs, relative to `~/.ssh`) where it stands, keywords are
//! case-insensitive and take `keyword value` or `keyword=value`, with `"quoted"` values.
//! Followed: `HostName`, `User`, `Port`, `IdentityFile`, `CertificateFile`, `IdentitiesOnly`,
//! `UserKnownHostsFile`, `GlobalKnownHostsFile`, `IdentityAgent`, `HostKeyAlias`, `Tag`,
//! `KexAlgorithms`, `Ciphers`, `MACs`, `HostKeyAlgorithms`, `ProxyCommand` and `ProxyJump`
//! (of these two the first given wins). `Match` blocks apply as
//! ssh applies them where their criteria are `all`, `host`, `originalhost`, `user`,
//! `localuser`, `tagged`, `exec`, `localnetwork` ([`crate::ssh_match_local`]), `canonical` and
//! `final` (negated with `!` too; `final` blocks in a second pass, as ssh makes one); a block
//! that also needs another criterion (`version`, `sessiontype`, ...) is not followed, and is
//! reported, so a host that needs it fails with that said.

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
    /// `Tag`: the name `Match tagged` blocks are matched against (`ssh -P` gives it too).
    pub tag: Option<String>,
    /// `KexAlgorithms`, `Ciphers`, `MACs` and `HostKeyAlgorithms` as written.
    pub algorithms: Algorithms,
    /// `ProxyJump`'s `[user@]host[:port]`, or several such, comma-separated, in the order
    /// they are connected through (`none` is none).
    pub proxy_jump: Option<String>,
    /// `ProxyCommand` as written, for `sh -c` (`none` is none). Of it and `ProxyJump`, the
    /// first given wins, as in ssh.
    pub proxy_command: Option<String>,
    /// Options that apply to the host but are not followed, with where they are.
    pub not_followed: Vec<String>,
    /// The files read (the config and what it includes).
    pub files: Vec<PathBuf>,
}

/// Who is asking for which host: what `Match` blocks are matched against.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// The host as named (the URL's).
    pub host: &'a str,
    /// The remote user the URL names, if it does.
    pub user: Option<&'a str>,
    /// The local user's name.
    pub local_user: &'a str,
}

/// Reads `file` (a missing one says nothing) for `asked.host`; `ssh_dir` is where relative
/// `Include`s are. A file that exists but cannot be read or parsed is an error.
pub fn read(file: &Path, asked: Asked<'_>, ssh_dir: &Path) -> Result<HostSettings, String> {
    let mut reader = Reader {
        host: asked.host.to_ascii_lowercase(),
        user: asked.user,
        local_user: asked.local_user,
        ssh_dir,
        settings: HostSettings::default(),
        final_pass: false,
        wants_final: false,
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(reader.settings),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    reader.settings.files.push(file.to_owned());
    reader.parse(&text, file, 0)?;
    if reader.wants_final {
        // As ssh: read again, with `Match final` blocks applying; what is set stays set.
        reader.final_pass = true;
        reader.parse(&text, file, 0)?;
        let s = &mut reader.settings;
        for list in [
            &mut s.identity_files,
            &mut s.certificate_files,
            &mut s.not_followed,
        ] {
            dedup_keeping_order(list);
        }
        dedup_keeping_order(&mut s.files);
    }
    Ok(reader.settings)
}

fn dedup_keeping_order<T: PartialEq + Clone>(list: &mut Vec<T>) {
    let mut kept: Vec<T> = Vec::with_capacity(list.len());
    for item in list.drain(..) {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    *list = kept;
}

struct Reader<'a> {
    host: String,
    user: Option<&'a str>,
    local_user: &'a str,
    ssh_dir: &'a Path,
    settings: HostSettings,
    /// The second reading, where `Match final` and `Match canonical` blocks apply.
    final_pass: bool,
    /// A `Match final` or `canonical` was met: ssh reads the files a second time.
    wants_final: bool,
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
                "match" => active = self.match_line(&args, &at())?,
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
                "tag" => first_wins(&mut s.tag, first),
                "kexalgorithms" => first_wins(&mut s.algorithms.kex, first),
                "ciphers" => first_wins(&mut s.algorithms.ciphers, first),
                "macs" => first_wins(&mut s.algorithms.macs, first),
                "hostkeyalgorithms" => first_wins(&mut s.algorithms.host_keys, first),
                "proxyjump" | "proxycommand"
                    if s.proxy_jump.is_some() || s.proxy_command.is_some() => {}
                "proxycommand" => s.proxy_command = Some(split_keyword(line).1.to_owned()),
                "proxyjump" => s.proxy_jump = Some(first),
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether a `Match` line's criteria all hold. A line that also needs a criterion not
    /// decided here (`version`, `sessiontype`, ...) does not apply, and is reported if
    /// the others hold.
    fn match_line(&mut self, args: &[String], at: &str) -> Result<bool, String> {
        let mut words = args.iter();
        let (mut holds, mut undecided) = (true, false);
        while let Some(word) = words.next() {
            let word = word.to_ascii_lowercase();
            let (negated, criterion) = match word.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, word.as_str()),
            };
            let decided = match criterion {
                "all" => Some(true),
                "canonical" | "final" => {
                    self.wants_final = true;
                    Some(self.final_pass)
                }
                _ => {
                    let Some(list) = words.next() else {
                        return Err(format!("{at}: Match {criterion} needs an argument"));
                    };
                    let patterns = list.split(',');
                    let hostname = self.settings.hostname.as_deref();
                    let user = self.user.or(self.settings.user.as_deref());
                    match criterion {
                        "host" => {
                            let name = hostname.unwrap_or(&self.host).to_ascii_lowercase();
                            Some(host_matches(patterns, &name))
                        }
                        "originalhost" => Some(host_matches(patterns, &self.host)),
                        "user" => Some(list_matches(patterns, user.unwrap_or(self.local_user))),
                        "localuser" => Some(list_matches(patterns, self.local_user)),
                        // No `Tag` is the empty name, as in ssh.
                        "tagged" => {
                            let tag = self.settings.tag.as_deref().unwrap_or("");
                            Some(list_matches(patterns, tag))
                        }
                        // As ssh: not run once an earlier criterion failed.
                        "exec" if !holds => Some(false),
                        "exec" => Some(self.exec(list, at)),
                        "localnetwork" => Some(self.on_network(list, at)),
                        _ => None,
                    }
                }
            };
            match decided {
                Some(matched) => holds &= matched != negated,
                None => undecided = true,
            }
        }
        if holds && undecided && !self.final_pass {
            let line = format!("Match {} ({at})", args.join(" "));
            self.settings.not_followed.push(line);
        }
        Ok(holds && !undecided)
    }

    /// Whether a `Match exec` command holds (tokens expanded as ssh does); one that cannot be
    /// run or does not end in time does not hold, and is reported.
    fn exec(&mut self, command: &str, at: &str) -> bool {
        let home = self.ssh_dir.parent().unwrap_or(self.ssh_dir);
        let host = self.settings.hostname.as_deref().unwrap_or(&self.host);
        let user = self.user.or(self.settings.user.as_deref());
        let tokens = Tokens {
            home,
            local_user: self.local_user,
            host,
            original_host: &self.host,
            user: user.unwrap_or(self.local_user),
            port: self.settings.port.unwrap_or(22),
        };
        let Some(command) = expand(command, &tokens) else {
            let why = format!("Match exec {command} ({at}): it names an unset variable");
            self.settings.not_followed.push(why);
            return false;
        };
        let command = command.to_string_lossy();
        crate::ssh_match_local::holds(&command).unwrap_or_else(|e| {
            let why = format!("Match exec {command} ({at}): {e}");
            self.settings.not_followed.push(why);
            false
        })
    }

    /// Whether this machine is on one of a `Match localnetwork` line's networks; a list that
    /// cannot be read (or interfaces that cannot be listed) does not hold, and is reported.
    fn on_network(&mut self, networks: &str, at: &str) -> bool {
        crate::ssh_match_local::on_network(networks).unwrap_or_else(|e| {
            let why = format!("Match localnetwork {networks} ({at}): {e}");
            self.settings.not_followed.push(why);
            false
        })
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

/// The SSH algorithms ssh_config asks for: each a comma-separated list that replaces the
/// defaults, or adds to them (`+`), takes from them (`-`, wildcards) or puts its own first
/// (`^`); `None` keeps the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Algorithms {
    pub kex: Option<String>,
    pub ciphers: Option<String>,
    pub macs: Option<String>,
    pub host_keys: Option<String>,
}

fn first_wins<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// A line's keyword as written and its value as written (`keyword value`, `keyword=value`).
fn split_keyword(line: &str) -> (&str, &str) {
    let line = line.trim();
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let rest = line[end..].trim_start();
    let rest = rest.strip_prefix('=').map_or(rest, str::trim_start);
    (&line[..end], rest)
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
    let (keyword, rest) = split_keyword(line);
    let keyword = keyword.to_ascii_lowercase();
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
    let lower = patterns.into_iter().map(str::to_ascii_lowercase);
    list_matches(lower, name)
}

/// Whether `name` matches a list of patterns (one matches, no negated one does), as written:
/// user names, which ssh compares with their case.
fn list_matches<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        match pattern.as_ref().strip_prefix('!') {
            Some(negated) if wildcard(negated.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= wildcard(pattern.as_ref().as_bytes(), name.as_bytes()),
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
    /// The host as named (the URL's), before `HostName`.
    pub original_host: &'a str,
    pub user: &'a str,
    pub port: u16,
}

/// A path option's (or `Match exec` command's) value with `~/`, `%d` (home), `%u` (local
/// user), `%i` (local user id), `%l` and `%L` (this machine's name, whole and up to the first
/// dot), `%h`, `%n` (the host as named), `%r` (remote user), `%p`, `%%` and `${VAR}` expanded;
/// `None` if it names an unset variable.
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
                Some('n') => out.push_str(tokens.original_host),
                Some('r') => out.push_str(tokens.user),
                Some('p') => out.push_str(&tokens.port.to_string()),
                Some('i') => out.push_str(&nix::unistd::getuid().to_string()),
                Some(c @ ('l' | 'L')) => {
                    let name = nix::unistd::gethostname().unwrap_or_default();
                    let name = name.to_string_lossy();
                    let short = name.split('.').next().unwrap_or_default();
                    out.push_str(if c == 'l' { &name } else { short });
                }
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
