//! The host-key check against a known_hosts file, as OpenSSH makes it: host names compared in
//! lower case, `[host]:port` for another port than 22, hashed names (`|1|salt|hash`, Debian's
//! default), patterns with `*` and `?` and negated `!patterns`, several keys for one host (any
//! may match), `@revoked` keys refused whatever else the file says, fields apart by any
//! whitespace. `@cert-authority` lines are not used: host certificates are not accepted, so such
//! a host is refused. A line that cannot be parsed (a key type this client does not know) is
//! skipped: it can only make a host unknown, never trusted.

use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use musicfs_ipc::ssh_config::host_matches;
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::PublicKey;

/// What the file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for the host holds this key.
    Trusted,
    /// No line for the host holds a key of this type.
    Unknown,
    /// Lines for the host hold other keys of this type (the first one's line number).
    Mismatch { line: usize },
    /// The key is marked `@revoked` (on this line).
    Revoked { line: usize },
}

/// Checks `key`, shown by `host` on `port`, against the known_hosts text `file`.
pub fn check(file: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    let host = host.to_ascii_lowercase();
    let name = match port {
        22 => host,
        port => format!("[{host}]:{port}"),
    };
    let mut verdict = Verdict::Unknown;
    for (index, line) in file.lines().enumerate() {
        let line_no = index + 1;
        let text = line.split('#').next().unwrap_or_default();
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let Ok(entry) = fields.join(" ").parse::<Entry>() else {
            tracing::debug!(line = line_no, "known_hosts line not understood; skipped");
            continue;
        };
        let same_key = entry.public_key().key_data() == key.key_data();
        match entry.marker() {
            Some(Marker::Revoked) if same_key => return Verdict::Revoked { line: line_no },
            Some(_) => continue,
            None => {}
        }
        if !matches_host(entry.host_patterns(), &name) {
            continue;
        }
        if same_key {
            verdict = Verdict::Trusted;
        } else if entry.public_key().algorithm() == key.algorithm() && verdict == Verdict::Unknown {
            verdict = Verdict::Mismatch { line: line_no };
        }
    }
    verdict
}

/// Checks `key` against every file of `paths` as against one (as OpenSSH reads its user and
/// global known_hosts files): a revocation anywhere refuses, a listing anywhere else trusts,
/// and another key of the type anywhere is a mismatch. Files that do not exist are skipped;
/// with none there at all, the error is `NotFound`. Returns the file the verdict's line is in.
pub fn check_files<'a>(
    paths: &'a [PathBuf],
    host: &str,
    port: u16,
    key: &PublicKey,
) -> std::io::Result<(Verdict, Option<&'a Path>)> {
    let mut verdict = (Verdict::Unknown, None);
    let mut found = false;
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", path.display()),
                ))
            }
        };
        found = true;
        let rank = |v: &Verdict| match v {
            Verdict::Revoked { .. } => 3,
            Verdict::Trusted => 2,
            Verdict::Mismatch { .. } => 1,
            Verdict::Unknown => 0,
        };
        let this = check(&text, host, port, key);
        if rank(&this) > rank(&verdict.0) {
            verdict = (this, Some(path.as_path()));
        }
    }
    match found {
        true => Ok(verdict),
        false => Err(std::io::ErrorKind::NotFound.into()),
    }
}

/// Whether a line's host field names `name` (`host` or `[host]:port`, lower case).
fn matches_host(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.chain_update(name.as_bytes()).verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(patterns) => host_matches(patterns.iter().map(String::as_str), name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvjgFCtONIB1UmnxCd8pCC+erwz/5DwrB6nGpUZvEMl";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk/VbcpgrlmKX4zE1et6oUkS6ZCt3FbEbeVXgKSDATn";

    fn key(text: &str) -> PublicKey {
        text.parse().unwrap()
    }

    #[test]
    fn names_ports_case_and_whitespace_as_openssh_reads_them() {
        let file = format!("# comment\n\nNAS.lan\t {ED25519} a comment\n[nas.lan]:2222 {OTHER}\n");
        assert_eq!(check(&file, "nas.lan", 22, &key(ED25519)), Verdict::Trusted);
        assert_eq!(check(&file, "Nas.LAN", 22, &key(ED25519)), Verdict::Trusted);
        assert_eq!(check(&file, "nas.lan", 2222, &key(OTHER)), Verdict::Trusted);
        assert_eq!(
            check(&file, "nas.lan", 2222, &key(ED25519)),
            Verdict::Mismatch { line: 4 }
        );
        assert_eq!(
            check(&file, "other.lan", 22, &key(ED25519)),
            Verdict::Unknown
        );
    }

    #[test]
    fn hashed_names_match_their_host_only() {
        // `ssh-keygen -H` of "nas.lan" with this salt.
        let salt = [7u8; 20];
        let mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        let hash = mac.chain_update(b"nas.lan").finalize().into_bytes();
        use russh::keys::ssh_encoding::base64::{Base64, Encoding};
        let line = format!(
            "|1|{}|{} {ED25519}",
            Base64::encode_string(&salt),
            Base64::encode_string(&hash)
        );
        assert_eq!(check(&line, "nas.lan", 22, &key(ED25519)), Verdict::Trusted);
        assert_eq!(
            check(&line, "nas.lan", 22, &key(OTHER)),
            Verdict::Mismatch { line: 1 }
        );
        assert_eq!(
            check(&line, "nas2.lan", 22, &key(ED25519)),
            Verdict::Unknown
        );
    }

    #[test]
    fn patterns_negations_several_keys_and_revocations() {
        let file =
            format!("*.lan,!guest.lan {ED25519}\nmirror?.lan {OTHER}\nmirror1.lan {ED25519}\n");
        assert_eq!(check(&file, "nas.lan", 22, &key(ED25519)), Verdict::Trusted);
        assert_eq!(
            check(&file, "guest.lan", 22, &key(ED25519)),
            Verdict::Unknown
        );
        // Two keys listed for one host: either is trusted, whichever line comes first.
        assert_eq!(
            check(&file, "mirror1.lan", 22, &key(ED25519)),
            Verdict::Trusted
        );
        assert_eq!(
            check(&file, "mirror1.lan", 22, &key(OTHER)),
            Verdict::Trusted
        );
        assert_eq!(
            check(&file, "mirror12.lan", 22, &key(OTHER)),
            Verdict::Mismatch { line: 1 }
        );
        // A revoked key is refused wherever else it is listed.
        let revoked = format!("{file}@revoked * {ED25519}\n");
        assert_eq!(
            check(&revoked, "nas.lan", 22, &key(ED25519)),
            Verdict::Revoked { line: 4 }
        );
        assert_eq!(
            check(&revoked, "mirror1.lan", 22, &key(OTHER)),
            Verdict::Trusted
        );
        // A certificate authority is no key of the host's.
        let ca = format!("@cert-authority *.lan {ED25519}\n");
        assert_eq!(check(&ca, "nas.lan", 22, &key(ED25519)), Verdict::Unknown);
        // A line this client cannot parse never trusts anything.
        let odd = format!("nas.lan sk-ssh-ed25519@openssh.com AAAAbroken\nnas.lan {ED25519}\n");
        assert_eq!(check(&odd, "nas.lan", 22, &key(ED25519)), Verdict::Trusted);
        assert_eq!(
            check(&odd, "nas.lan", 22, &key(OTHER)),
            Verdict::Mismatch { line: 2 }
        );
    }
}
