//! How an SFTP origin logs in, in OpenSSH's order: its identity file (or ssh_config's, or the
//! user's default keys), then the keys an ssh-agent holds, then a password (as `password`,
//! then through keyboard-interactive, the way sshd with PAM on FreeBSD and macOS takes it).
//! Each key's certificates (`certificate_file`, ssh_config's `CertificateFile`s,
//! `FILE-cert.pub` beside the identity file, those the agent holds) are offered before it.
//!
//! - A key file without a passphrase is loaded at start.
//! - A key file with a passphrase is never decrypted here: its public half is read (from the
//!   file itself, or `FILE.pub`) and offered first through the agent, which signs with the key
//!   `ssh-add` gave it. With no agent, such a file is a configuration error that says so.
//! - The agent is the socket `identity_agent` or ssh_config's `IdentityAgent` names (`none`: no
//!   agent), else `$SSH_AUTH_SOCK` (see `musicfs_ipc::sftp_target`).
//!   It is asked at every new connection, so a key added after start is used, and an agent
//!   that went away is named in the refusal. With `IdentitiesOnly` only its keys (and
//!   certificates) of the identity files and certificate files are offered: an agent holding
//!   many keys otherwise uses up the server's `MaxAuthTries` before a password is tried, and
//!   shows every key to every server.
//! - Certificate files are read at each login (they are renewed, often daily); one replaced by
//!   a new file restarts fetchd (see `SftpOrigin::new`), as the sandbox admitted the old one.

use std::fmt::Write as _;

use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Certificate, PublicKey};
use russh::{AgentAuthError, Signer};

use super::*;

/// What a key file holds, as far as it can be read without a passphrase.
enum KeyFile {
    Private(Arc<PrivateKey>),
    /// The public half of a key with a passphrase.
    Locked(PublicKey),
}

/// The credentials of one origin. Holds the key and the password, so it has no `Debug`.
pub(super) struct Login {
    user: String,
    /// An identity file and its key.
    key: Option<(PathBuf, Arc<PrivateKey>)>,
    /// An identity file with a passphrase and its public key, offered through the agent.
    locked: Option<(PathBuf, PublicKey)>,
    agent: Option<PathBuf>,
    password: Option<Secret>,
    /// Certificate files, read at each login; those that are not there are left out.
    certificates: Vec<PathBuf>,
    /// Offer only the agent's keys that are an identity file's or a certificate's.
    identities_only: bool,
}

impl Login {
    /// Reads the identity file (or the first usable of ssh_config's or the default ones);
    /// fails when there is no way to log in. `name` names the origin in warnings.
    pub(super) fn new(
        config: &OriginConfig,
        target: &SftpTarget,
        name: &str,
    ) -> Result<Self, String> {
        let agent = target.agent.clone();
        let (mut key, mut locked) = (None, None);
        match &target.identity {
            Identity::Configured(file) => match load_key(file)? {
                KeyFile::Private(k) => key = Some((file.clone(), k)),
                KeyFile::Locked(_) if agent.is_none() => {
                    return Err(format!(
                        "identity file {} has a passphrase: add it to an ssh-agent (`ssh-add \
                         {0}`) and start musicfs where SSH_AUTH_SOCK names that agent (or set \
                         identity_agent), or use a key without a passphrase",
                        file.display()
                    ))
                }
                KeyFile::Locked(public) => locked = Some((file.clone(), public)),
            },
            Identity::Candidates(files) => {
                for file in files {
                    match load_key(file) {
                        Ok(KeyFile::Private(k)) => key = Some((file.clone(), k)),
                        Ok(KeyFile::Locked(public)) if agent.is_some() => {
                            locked = Some((file.clone(), public))
                        }
                        Ok(KeyFile::Locked(_)) => {
                            tracing::warn!(
                                origin = name,
                                "not using {}: it has a passphrase and no ssh-agent is set \
                                 (SSH_AUTH_SOCK)",
                                file.display()
                            );
                            continue;
                        }
                        Err(e) if file.exists() => {
                            tracing::warn!(origin = name, "not using {e}");
                            continue;
                        }
                        Err(_) => continue,
                    }
                    break;
                }
            }
        }
        // The origin's own certificate file must be usable, as its identity file must.
        if let Some(file) = &config.certificate_file {
            if target.certificates.contains(file) {
                load_certificate(file)?;
            }
        }
        let password = config.password.clone().or_else(|| {
            let env = std::env::var("MUSICFS_SFTP_PASSWORD").ok();
            env.filter(|p| !p.is_empty()).map(Secret::new)
        });
        if key.is_none() && agent.is_none() && password.is_none() {
            let tried: Vec<String> = target
                .identity
                .files()
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            return Err(format!(
                "no identity file (set identity_file, or make one of {}), no ssh-agent \
                 (SSH_AUTH_SOCK) and no password",
                tried.join(", ")
            ));
        }
        Ok(Self {
            user: target.user.clone(),
            key,
            locked,
            agent,
            password,
            certificates: target.certificates.clone(),
            identities_only: target.identities_only,
        })
    }

    /// The identity file in use, if any (read at start; replacing it needs a restart).
    pub(super) fn key_file(&self) -> Option<&Path> {
        let key = self.key.as_ref().map(|(file, _)| file);
        key.or(self.locked.as_ref().map(|(file, _)| file))
            .map(PathBuf::as_path)
    }

    /// The certificate files looked for at each login.
    pub(super) fn certificate_files(&self) -> &[PathBuf] {
        &self.certificates
    }

    /// The certificates that can be read now; unreadable ones are noted.
    fn read_certificates(&self, notes: &mut String) -> Vec<(PathBuf, Certificate)> {
        let mut certificates = Vec::new();
        for file in self.certificates.iter().filter(|f| f.exists()) {
            match load_certificate(file) {
                Ok(certificate) => certificates.push((file.clone(), certificate)),
                Err(e) => {
                    let _ = write!(notes, "; {e}");
                }
            }
        }
        certificates
    }

    /// The public keys of the identity files: what `IdentitiesOnly` lets the agent offer.
    fn identity_keys<'a>(&'a self, certificates: &'a [(PathBuf, Certificate)]) -> Vec<&'a KeyData> {
        let key = self.key.iter().map(|(_, k)| k.public_key().key_data());
        let locked = self.locked.iter().map(|(_, k)| k.key_data());
        let certified = certificates.iter().map(|(_, c)| c.public_key());
        key.chain(locked).chain(certified).collect()
    }

    /// Tries every way to log in until one is accepted; the error lists what was refused.
    pub(super) async fn authenticate(&self, ssh: &mut client::Handle<HostCheck>) -> io::Result<()> {
        let failed = |e: &dyn std::fmt::Display| io::Error::other(format!("authenticating: {e}"));
        let user = self.user.as_str();
        let mut tried = Vec::new();
        let mut notes = String::new();
        let certificates = self.read_certificates(&mut notes);
        if let Some((file, key)) = &self.key {
            for (cert_file, certificate) in &certificates {
                if certificate.public_key() != key.public_key().key_data() {
                    continue;
                }
                let result = ssh
                    .authenticate_openssh_cert(user, key.clone(), certificate.clone())
                    .await;
                if result.map_err(|e| failed(&e))?.success() {
                    return Ok(());
                }
                tried.push(format!("the certificate {}", cert_file.display()));
            }
            let hash = rsa_hash(ssh, key.public_key()).await?;
            let key = PrivateKeyWithHashAlg::new(key.clone(), hash);
            let result = ssh.authenticate_publickey(user, key).await;
            if result.map_err(|e| failed(&e))?.success() {
                return Ok(());
            }
            tried.push(format!("the key {}", file.display()));
        }
        if let Some(socket) = &self.agent {
            match self.agent_offers(socket, &certificates).await {
                Ok((agent, offers, left_out)) => {
                    if let Some((file, public)) = &self.locked {
                        if !offers.iter().any(|o| o.key() == public.key_data()) {
                            let file = file.display();
                            let _ = write!(
                                notes,
                                "; identity file {file} has a passphrase and the agent does \
                                 not hold its key (ssh-add {file})"
                            );
                        }
                    }
                    let mut signer = KeySigner(agent);
                    for offer in &offers {
                        let hash = rsa_hash(ssh, &PublicKey::new(offer.key().clone(), "")).await?;
                        match offer.try_with(ssh, user, hash, &mut signer).await {
                            Ok(true) => return Ok(()),
                            Ok(false) => {}
                            Err(e) => {
                                let _ = write!(notes, "; the agent did not sign: {e}");
                                break;
                            }
                        }
                    }
                    let socket = socket.display();
                    match offers.len() {
                        0 if left_out == 0 => {
                            let _ = write!(notes, "; the ssh-agent at {socket} holds no key");
                        }
                        0 => {}
                        1 => tried.push(format!("the key of the ssh-agent at {socket}")),
                        n => tried.push(format!("the {n} keys of the ssh-agent at {socket}")),
                    }
                    if left_out > 0 {
                        let _ = write!(
                            notes,
                            "; IdentitiesOnly: {left_out} other keys of the ssh-agent not offered"
                        );
                    }
                }
                Err(e) => {
                    let socket = socket.display();
                    let _ = write!(notes, "; the ssh-agent at {socket} was not asked: {e}");
                }
            }
        }
        if let Some(password) = &self.password {
            let result = ssh.authenticate_password(user, password.expose()).await;
            if result.map_err(|e| failed(&e))?.success() {
                return Ok(());
            }
            // sshd on FreeBSD and macOS (PAM) takes passwords only this way.
            if keyboard_interactive(ssh, user, password)
                .await
                .map_err(|e| failed(&e))?
            {
                return Ok(());
            }
            tried.push("the password".to_owned());
        }
        let tried = match tried.is_empty() {
            true => "nothing could be tried".to_owned(),
            false => format!("the server refused {}", tried.join(" and ")),
        };
        Err(io::Error::other(format!("{tried} for user {user}{notes}")))
    }

    /// What to offer through the agent: its keys and certificates, and the certificate files
    /// of a key it holds; those of the identity file with a passphrase first, each key's
    /// certificates before it. Left out: the key already tried from its file (and its
    /// certificate files), and with
    /// `IdentitiesOnly` every key no identity or certificate file names (how many, returned).
    async fn agent_offers(
        &self,
        socket: &Path,
        certificates: &[(PathBuf, Certificate)],
    ) -> Result<(AgentClient<tokio::net::UnixStream>, Vec<Offer>, usize), String> {
        let mut agent = AgentClient::connect_uds(socket)
            .await
            .map_err(|e| e.to_string())?;
        let identities = agent
            .request_identities()
            .await
            .map_err(|e| e.to_string())?;
        let mut offers: Vec<Offer> = identities
            .into_iter()
            .map(|identity| match identity {
                AgentIdentity::PublicKey { key, .. } => Offer::Key(key),
                AgentIdentity::Certificate { certificate, .. } => {
                    Offer::Certificate(Box::new(certificate))
                }
            })
            .collect();
        let held: Vec<KeyData> = offers.iter().map(|o| o.key().clone()).collect();
        let tried = self.key.as_ref().map(|(_, k)| k.public_key().key_data());
        for (_, certificate) in certificates {
            let offered = offers
                .iter()
                .any(|o| matches!(o, Offer::Certificate(c) if **c == *certificate));
            let key = certificate.public_key();
            if held.contains(key) && !offered && Some(key) != tried {
                offers.push(Offer::Certificate(Box::new(certificate.clone())));
            }
        }
        offers.retain(|o| !matches!(o, Offer::Key(k) if Some(k.key_data()) == tried));
        let before = offers.len();
        if self.identities_only {
            let named = self.identity_keys(certificates);
            offers.retain(|o| named.contains(&o.key()));
        }
        let left_out = before - offers.len();
        let first = self.locked.as_ref().map(|(_, k)| k.key_data());
        offers.sort_by_key(|o| (Some(o.key()) != first, matches!(o, Offer::Key(_))));
        Ok((agent, offers, left_out))
    }
}

/// A key or a certificate the agent signs for.
enum Offer {
    Key(PublicKey),
    Certificate(Box<Certificate>),
}

impl Offer {
    fn key(&self) -> &KeyData {
        match self {
            Offer::Key(key) => key.key_data(),
            Offer::Certificate(certificate) => certificate.public_key(),
        }
    }

    /// Offers it to the server, the agent signing; whether the server took it.
    async fn try_with(
        &self,
        ssh: &mut client::Handle<HostCheck>,
        user: &str,
        hash: Option<russh::keys::HashAlg>,
        signer: &mut KeySigner,
    ) -> Result<bool, AgentAuthError> {
        let result = match self {
            Offer::Key(key) => {
                ssh.authenticate_publickey_with(user, key.clone(), hash, signer)
                    .await?
            }
            Offer::Certificate(c) => {
                ssh.authenticate_certificate_with(user, (**c).clone(), hash, signer)
                    .await?
            }
        };
        Ok(result.success())
    }
}

/// Has the agent sign with the key itself where a certificate is offered: the signature is the
/// key's either way, and the agent holds the key also when the certificate is a file's.
struct KeySigner(AgentClient<tokio::net::UnixStream>);

impl Signer for KeySigner {
    type Error = AgentAuthError;

    #[allow(clippy::manual_async_fn)]
    fn auth_sign(
        &mut self,
        identity: &AgentIdentity,
        hash_alg: Option<russh::keys::HashAlg>,
        to_sign: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        let key = AgentIdentity::from(identity.public_key().into_owned());
        async move { self.0.auth_sign(&key, hash_alg, to_sign).await }
    }
}

/// Logs in by keyboard-interactive, answering every prompt that hides what is typed with the
/// password and any other (a user name) with `user`, as ssh does with a password it was given.
/// A few rounds at most: PAM may ask again, or send a message with no prompt.
async fn keyboard_interactive(
    ssh: &mut client::Handle<HostCheck>,
    user: &str,
    password: &Secret,
) -> Result<bool, russh::Error> {
    use russh::client::KeyboardInteractiveAuthResponse as Answer;
    let mut answer = ssh
        .authenticate_keyboard_interactive_start(user, None)
        .await?;
    for _ in 0..4 {
        let Answer::InfoRequest { prompts, .. } = answer else {
            break;
        };
        let responses = prompts
            .iter()
            .map(|p| match p.echo {
                false => password.expose().to_owned(),
                true => user.to_owned(),
            })
            .collect();
        answer = ssh
            .authenticate_keyboard_interactive_respond(responses)
            .await?;
    }
    Ok(matches!(answer, Answer::Success))
}

/// The signature hash to use with an RSA key (the best the server supports); none for others.
async fn rsa_hash(
    ssh: &mut client::Handle<HostCheck>,
    key: &PublicKey,
) -> io::Result<Option<russh::keys::HashAlg>> {
    if !key.algorithm().is_rsa() {
        return Ok(None);
    }
    let hash = ssh.best_supported_rsa_hash().await;
    let hash = hash.map_err(|e| io::Error::other(format!("authenticating: {e}")))?;
    Ok(hash.flatten())
}

/// Reads an OpenSSH certificate (`ssh-keygen -s`'s `KEY-cert.pub`).
fn load_certificate(file: &Path) -> Result<Certificate, String> {
    russh::keys::load_openssh_certificate(file)
        .map_err(|e| format!("certificate file {}: {e}", file.display()))
}

/// Reads a key file; the public half of one with a passphrase comes from the file (OpenSSH's
/// format keeps it in clear) or from `FILE.pub` beside it.
fn load_key(file: &Path) -> Result<KeyFile, String> {
    match russh::keys::load_secret_key(file, None) {
        Ok(key) => Ok(KeyFile::Private(Arc::new(key))),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let public = PrivateKey::read_openssh_file(file)
                .map(|k| k.public_key().clone())
                .or_else(|_| {
                    let mut pub_file = file.as_os_str().to_owned();
                    pub_file.push(".pub");
                    russh::keys::load_public_key(PathBuf::from(pub_file))
                })
                .map_err(|e| {
                    format!(
                        "identity file {} has a passphrase, and its public key cannot be read \
                         from it or from {0}.pub: {e}",
                        file.display()
                    )
                })?;
            Ok(KeyFile::Locked(public))
        }
        Err(e) => Err(format!("identity file {}: {e}", file.display())),
    }
}
