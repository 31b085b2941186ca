//! Who may use an admin socket. Unix permissions on the socket (0660 in a 0750 runtime dir) are
//! the first gate; this is the second: the connecting process's credentials (`SO_PEERCRED`) must
//! be root's, the serving process's own user's, or carry the configured admin group.

use nix::unistd::{Gid, Group, Uid};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPolicy {
    owner: Uid,
    group: Option<Gid>,
}

impl AdminPolicy {
    /// Root and the current user; plus members of `group` when one is named. An unknown group
    /// is an error: a typo must not silently lock admins out (or in).
    pub fn new(group: Option<&str>) -> Result<Self, String> {
        let group = match group {
            None => None,
            Some(name) => Some(
                Group::from_name(name)
                    .map_err(|e| format!("admin group {name}: {e}"))?
                    .ok_or_else(|| format!("admin group {name} does not exist"))?
                    .gid,
            ),
        };
        Ok(Self {
            owner: Uid::effective(),
            group,
        })
    }

    /// Admits or refuses the peer of `stream`, saying why it was refused.
    pub fn check(&self, stream: &tokio::net::UnixStream) -> Result<(), String> {
        let cred = stream
            .peer_cred()
            .map_err(|e| format!("cannot read peer credentials: {e}"))?;
        let (uid, gid) = (Uid::from_raw(cred.uid()), Gid::from_raw(cred.gid()));
        if uid.is_root() || uid == self.owner {
            return Ok(());
        }
        if let Some(group) = self.group {
            let member = gid == group
                || cred
                    .pid()
                    .is_some_and(|pid| supplementary_groups(pid).contains(&group));
            if member {
                return Ok(());
            }
        }
        Err(format!(
            "uid {uid} (pid {}) is not root, the owner or in the admin group",
            cred.pid().unwrap_or(0)
        ))
    }
}

/// The supplementary groups of a process, from `/proc/PID/status`.
fn supplementary_groups(pid: i32) -> Vec<Gid> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .map(Gid::from_raw)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_group_is_an_error() {
        let err = AdminPolicy::new(Some("no-such-group-musicfs")).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[tokio::test]
    async fn own_user_is_admitted() {
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        AdminPolicy::new(None).unwrap().check(&a).unwrap();
    }

    #[test]
    fn own_supplementary_groups_are_read() {
        let mine = nix::unistd::getgroups().unwrap();
        let read = supplementary_groups(std::process::id() as i32);
        for g in mine {
            assert!(read.contains(&g), "{g} missing from {read:?}");
        }
    }
}
