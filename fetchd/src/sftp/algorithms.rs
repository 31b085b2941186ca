//! The SSH algorithms a session offers. By default OpenSSH's client defaults, of those russh
//! has (russh's own leave out the NIST-curve key exchanges, AES-128-GCM and HMAC-SHA1, which
//! OpenSSH offers and some NAS and embedded servers need), with AES-256-GCM first: it costs the
//! least CPU per byte here (hardware AES). ssh_config's `KexAlgorithms`, `Ciphers`, `MACs` and
//! `HostKeyAlgorithms` change them as they change ssh's: a list replaces the defaults, `+list`
//! adds to them, `-list` takes from them and `^list` puts its own first, with `*` and `?`
//! wildcards; so `KexAlgorithms +diffie-hellman-group14-sha1` reaches an old NAS that ssh
//! reaches with it. Names russh does not have are left out; a list that leaves nothing is an
//! error that says so.

use musicfs_ipc::ssh_config::{wildcard, Algorithms};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg};
use russh::{cipher, kex, mac};

/// OpenSSH 9's default key exchanges, of those russh has, then the extensions a client
/// announces (ext-info, strict kex), which russh expects among them.
const KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::ECDH_SHA2_NISTP256,
    kex::ECDH_SHA2_NISTP384,
    kex::ECDH_SHA2_NISTP521,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G18_SHA512,
    kex::DH_G14_SHA256,
];
const KEX_EXTENSIONS: &[kex::Name] = &[
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];
const CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_128_GCM,
    cipher::AES_128_CTR,
    cipher::AES_192_CTR,
    cipher::AES_256_CTR,
];
const MACS: &[mac::Name] = &[
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA1_ETM,
    mac::HMAC_SHA256,
    mac::HMAC_SHA512,
    mac::HMAC_SHA1,
];

/// What a session offers: russh's preferences.
pub(super) fn preferred(algorithms: &Algorithms) -> Result<russh::Preferred, String> {
    let all_kex = kex::ALL_KEX_ALGORITHMS.iter().map(|n| **n);
    let mut kex = apply("KexAlgorithms", algorithms.kex.as_deref(), KEX, all_kex)?;
    for extension in KEX_EXTENSIONS {
        if !kex.contains(extension) {
            kex.push(*extension);
        }
    }
    let all_ciphers = cipher::ALL_CIPHERS.iter().map(|n| **n);
    let all_macs = mac::ALL_MAC_ALGORITHMS.iter().map(|n| **n);
    let host_keys = russh::Preferred::DEFAULT.key.to_vec();
    Ok(russh::Preferred {
        kex: kex.into(),
        cipher: apply(
            "Ciphers",
            algorithms.ciphers.as_deref(),
            CIPHERS,
            all_ciphers,
        )?
        .into(),
        mac: apply("MACs", algorithms.macs.as_deref(), MACS, all_macs)?.into(),
        key: apply(
            "HostKeyAlgorithms",
            algorithms.host_keys.as_deref(),
            &host_keys,
            host_keys.iter().cloned().chain(more_host_keys()),
        )?
        .into(),
        ..russh::Preferred::DEFAULT
    })
}

/// Whether ssh_config's `HostKeyAlgorithms`, if any, leaves the order to the client (it
/// changes the defaults rather than replacing them): then the key types known_hosts holds for
/// the host go first, as ssh puts them.
pub(super) fn host_keys_reorderable(algorithms: &Algorithms) -> bool {
    algorithms
        .host_keys
        .as_deref()
        .is_none_or(|spec| spec.starts_with(['+', '-', '^']))
}

/// Host key types russh has beyond its defaults.
fn more_host_keys() -> impl Iterator<Item = Algorithm> {
    [
        EcdsaCurve::NistP256,
        EcdsaCurve::NistP384,
        EcdsaCurve::NistP521,
    ]
    .into_iter()
    .map(|curve| Algorithm::Ecdsa { curve })
    .chain([HashAlg::Sha256, HashAlg::Sha512].map(|hash| Algorithm::Rsa { hash: Some(hash) }))
}

/// `spec` (ssh_config's value for `option`) applied to `defaults`; `all` is everything russh
/// has of the kind.
fn apply<T: Named + Clone>(
    option: &str,
    spec: Option<&str>,
    defaults: &[T],
    all: impl Iterator<Item = T>,
) -> Result<Vec<T>, String> {
    let Some(spec) = spec else {
        return Ok(defaults.to_vec());
    };
    let all: Vec<T> = all
        .filter(|a| a.name() != "none" && a.name() != "clear")
        .collect();
    let matching = |list: &str| -> Vec<T> {
        let mut found: Vec<T> = Vec::new();
        for pattern in list.split(',').map(str::trim) {
            for a in &all {
                let name = a.name();
                if wildcard(pattern.as_bytes(), name.as_bytes())
                    && !found.iter().any(|f| f.name() == name)
                {
                    found.push(a.clone());
                }
            }
        }
        found
    };
    let without = |list: &[T], taken: &[T]| -> Vec<T> {
        let list = list
            .iter()
            .filter(|a| !taken.iter().any(|t| t.name() == a.name()));
        list.cloned().collect()
    };
    let chosen = match spec.as_bytes().first() {
        Some(b'+') => {
            let added = matching(&spec[1..]);
            let mut chosen = defaults.to_vec();
            chosen.extend(without(&added, defaults));
            chosen
        }
        Some(b'-') => without(defaults, &matching(&spec[1..])),
        Some(b'^') => {
            let first = matching(&spec[1..]);
            let mut chosen = first.clone();
            chosen.extend(without(defaults, &first));
            chosen
        }
        _ => matching(spec),
    };
    if chosen.is_empty() {
        let have: Vec<&str> = all.iter().map(Named::name).collect();
        return Err(format!(
            "ssh config: {option} {spec} leaves no algorithm MusicFS has (it has {})",
            have.join(",")
        ));
    }
    Ok(chosen)
}

/// An algorithm's name as SSH and ssh_config write it.
trait Named {
    fn name(&self) -> &str;
}

impl Named for kex::Name {
    fn name(&self) -> &str {
        self.as_ref()
    }
}

impl Named for cipher::Name {
    fn name(&self) -> &str {
        self.as_ref()
    }
}

impl Named for mac::Name {
    fn name(&self) -> &str {
        self.as_ref()
    }
}

impl Named for Algorithm {
    fn name(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spec: Option<&str>, pick: fn(&russh::Preferred) -> Vec<String>) -> Vec<String> {
        let algorithms = Algorithms {
            kex: spec.map(str::to_owned),
            ciphers: spec.map(str::to_owned),
            macs: spec.map(str::to_owned),
            host_keys: spec.map(str::to_owned),
        };
        pick(&preferred(&algorithms).unwrap())
    }

    fn kex(p: &russh::Preferred) -> Vec<String> {
        p.kex.iter().map(|n| n.name().to_owned()).collect()
    }

    fn ciphers(p: &russh::Preferred) -> Vec<String> {
        p.cipher.iter().map(|n| n.name().to_owned()).collect()
    }

    #[test]
    fn the_defaults_are_openssh_s_with_aes_gcm_first() {
        let kex = names(None, kex);
        for offered in ["curve25519-sha256", "ecdh-sha2-nistp256", "ext-info-c"] {
            assert!(kex.iter().any(|k| k == offered), "{kex:?}");
        }
        assert!(!kex.iter().any(|k| k.ends_with("sha1")), "{kex:?}");
        let ciphers = names(None, ciphers);
        assert_eq!(ciphers[0], "aes256-gcm@openssh.com");
        assert!(ciphers.iter().any(|c| c == "aes128-gcm@openssh.com"));
        let macs: Vec<String> = preferred(&Algorithms::default())
            .unwrap()
            .mac
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        assert_eq!(macs.last().map(String::as_str), Some("hmac-sha1"));
    }

    #[test]
    fn ssh_config_adds_takes_puts_first_or_replaces() {
        let added = names(Some("+diffie-hellman-group14-sha1"), kex);
        assert_eq!(
            added[added.len() - 3],
            "diffie-hellman-group14-sha1",
            "{added:?}"
        );
        assert_eq!(added[0], "mlkem768x25519-sha256");

        let spec = Algorithms {
            ciphers: Some("-aes256*,chacha20*".into()),
            ..Algorithms::default()
        };
        let p = preferred(&spec).unwrap();
        assert_eq!(
            ciphers(&p),
            ["aes128-gcm@openssh.com", "aes128-ctr", "aes192-ctr"]
        );

        let spec = Algorithms {
            ciphers: Some("^aes128-ctr".into()),
            kex: Some("diffie-hellman-group14-sha1,curve25519-sha256".into()),
            ..Algorithms::default()
        };
        let p = preferred(&spec).unwrap();
        assert_eq!(ciphers(&p)[..2], ["aes128-ctr", "aes256-gcm@openssh.com"]);
        assert_eq!(
            kex(&p),
            [
                "diffie-hellman-group14-sha1",
                "curve25519-sha256",
                "ext-info-c",
                "kex-strict-c-v00@openssh.com"
            ]
        );

        let spec = Algorithms {
            host_keys: Some("ssh-ed25519,rsa-sha2-256".into()),
            ..Algorithms::default()
        };
        let keys: Vec<String> = preferred(&spec)
            .unwrap()
            .key
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(keys, ["ssh-ed25519", "rsa-sha2-256"]);
        assert!(!host_keys_reorderable(&spec));
        assert!(host_keys_reorderable(&Algorithms::default()));

        let spec = Algorithms {
            macs: Some("umac-64@openssh.com".into()),
            ..Algorithms::default()
        };
        let err = preferred(&spec).unwrap_err();
        assert!(
            err.contains("MACs umac-64@openssh.com leaves no algorithm"),
            "{err}"
        );
    }
}
