//! How an SFTP origin logs in, in OpenSSH's order: its identity file (or ssh_config's, or the
//! user's default keys), then the keys an ssh-agent holds, then a password (as `password`,
//! then through keyboard-interactive, the way sshd with PAM on FreeBSD and macOS takes it).
//!
//! - A key file without a passphrase is loaded at start.
//! - A key file with a passphrase is never decrypted here: its public half is read (from the
//!   file itself, or `FILE.pub`) and offered first through the agent, which signs with the key
//!   `ssh-add` gave it. With no agent, such a file is a configuration error that says so.
//! - The agent is the socket `identity_agent` or ssh_config's `IdentityAgent` names (`none`: no
//!   agent), else `$SSH_AUTH_SOCK` (see `musicfs_ipc::sftp_target`).
//!   It is asked at every new connection, so a key added after start is used, and an agent
//!   that went away is named in the refusal.

use std::fmt::Write as _;

use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::PublicKey;

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
        })
    }

    /// The identity file in use, if any (read at start; replacing it needs a restart).
    pub(super) fn key_file(&self) -> Option<&Path> {
        let key = self.key.as_ref().map(|(file, _)| file);
        key.or(self.locked.as_ref().map(|(file, _)| file))
            .map(PathBuf::as_path)
    }

    /// Tries every way to log in until one is accepted; the error lists what was refused.
    pub(super) async fn authenticate(&self, ssh: &mut client::Handle<HostCheck>) -> io::Result<()> {
        let failed = |e: &dyn std::fmt::Display| io::Error::other(format!("authenticating: {e}"));
        let user = self.user.as_str();
        let mut tried = Vec::new();
        let mut notes = String::new();
        if let Some((file, key)) = &self.key {
            let hash = rsa_hash(ssh, key.public_key()).await?;
            let key = PrivateKeyWithHashAlg::new(key.clone(), hash);
            let result = ssh.authenticate_publickey(user, key).await;
            if result.map_err(|e| failed(&e))?.success() {
                return Ok(());
            }
            tried.push(format!("the key {}", file.display()));
        }
        if let Some(socket) = &self.agent {
            match self.agent_keys(socket).await {
                Ok((mut agent, keys)) => {
                    if let Some((file, public)) = &self.locked {
                        if !keys.contains(public) {
                            let file = file.display();
                            let _ = write!(
                                notes,
                                "; identity file {file} has a passphrase and the agent does \
                                 not hold its key (ssh-add {file})"
                            );
                        }
                    }
                    for public in &keys {
                        let hash = rsa_hash(ssh, public).await?;
                        let result = ssh
                            .authenticate_publickey_with(user, public.clone(), hash, &mut agent)
                            .await;
                        match result {
                            Ok(r) if r.success() => return Ok(()),
                            Ok(_) => {}
                            Err(e) => {
                                let _ = write!(notes, "; the agent did not sign: {e}");
                                break;
                            }
                        }
                    }
                    let socket = socket.display();
                    match keys.len() {
                        0 => {
                            let _ = write!(notes, "; the ssh-agent at {socket} holds no key");
                        }
                        1 => tried.push(format!("the key of the ssh-agent at {socket}")),
                        n => tried.push(format!("the {n} keys of the ssh-agent at {socket}")),
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

    /// The agent's plain keys (not certificates), an identity file's key first; the key
    /// already tried from its file left out.
    async fn agent_keys(
        &self,
        socket: &Path,
    ) -> Result<(AgentClient<tokio::net::UnixStream>, Vec<PublicKey>), String> {
        let mut agent = AgentClient::connect_uds(socket)
            .await
            .map_err(|e| e.to_string())?;
        let identities = agent
            .request_identities()
            .await
            .map_err(|e| e.to_string())?;
        let mut keys: Vec<PublicKey> = identities
            .into_iter()
            .filter_map(|identity| match identity {
                AgentIdentity::PublicKey { key, .. } => Some(key),
                AgentIdentity::Certificate { .. } => None,
            })
            .collect();
        if let Some((_, tried)) = &self.key {
            keys.retain(|key| key != tried.public_key());
        }
        if let Some((_, first)) = &self.locked {
            keys.sort_by_key(|key| key != first);
        }
        Ok((agent, keys))
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
