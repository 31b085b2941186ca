//! A laptop that moves between networks. An ssh_config that tells home from away (`Match
//! localnetwork 192.168.1.0/24`, `Match exec "nc -z 192.168.1.10 22"`) gives its SFTP origins
//! another address once the machine has moved, but fetchd resolved them, and set its sandbox
//! up, with the answers it got at start. So when ssh_config asked either, a thread looks at the
//! interfaces' addresses every few seconds; when they change it asks again (`exec` through the
//! outside helper, `outside.rs`), and if an answer is not the one fetchd started with, fetchd
//! restarts (`restart.rs`; the mount stays up) and resolves its origins anew.

use std::time::Duration;

use musicfs_ipc::ssh_match_local as here;

/// How often the interfaces' addresses are looked at.
const EVERY: Duration = Duration::from_secs(3);

/// Starts watching, if ssh_config asked where this machine is.
pub fn start() {
    if !here::asked() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("net-watch".into())
        .spawn(watch);
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the network for ssh_config's Match blocks: {e}");
    }
}

fn watch() {
    let mut last = here::addresses();
    loop {
        std::thread::sleep(EVERY);
        let now = here::addresses();
        if now == last {
            continue;
        }
        last = now;
        let exec = |command: &str| crate::outside::exec(command).map_err(|e| e.to_string());
        if let Some(why) = here::changed(&last, &exec) {
            crate::restart::request(&format!("the network changed: {why}"));
            return;
        }
        tracing::debug!("the network changed; ssh_config's Match blocks answer as before");
    }
}
