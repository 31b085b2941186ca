//! Keeps the kernel's caches honest: entries, attributes and directory listings are cached for a
//! long time (see [`TTL`](crate::fuse::TTL)), and this watcher drops them all as soon as fetchd's
//! namespace generation changes (a rescan changed the tree, or fetchd restarted).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fuser::{INodeNo, Notifier};
use musicfs_ipc::ROOT_INO;
use tracing::{debug, info};

use crate::backend::Backend;
use crate::core::FsCore;

/// How often fetchd's generation is asked for: the longest a changed tree stays cached.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Polls for ever on its own thread (notifications must never be sent from inside a FUSE
/// request handler: the kernel may be waiting on that very request).
pub fn spawn<B: Backend + 'static>(core: Arc<FsCore<B>>, notifier: Notifier) {
    std::thread::Builder::new()
        .name("mountd-inval".into())
        .spawn(move || {
            let mut seen = core.backend().generation().ok();
            loop {
                std::thread::sleep(POLL_EVERY);
                let Ok(now) = core.backend().generation() else {
                    continue;
                };
                if seen != Some(now) {
                    let dropped = invalidate_all(&core, &notifier);
                    info!(
                        entries = dropped,
                        "namespace changed; kernel caches dropped"
                    );
                    seen = Some(now);
                }
            }
        })
        .expect("spawn the invalidation thread");
}

/// Tells the kernel to forget every entry it may hold and every directory's attributes and
/// cached listing. Returns how many entries were invalidated.
pub fn invalidate_all<B: Backend>(core: &FsCore<B>, notifier: &Notifier) -> usize {
    let entries = core.known_entries();
    let mut dirs: HashSet<u64> = HashSet::from([ROOT_INO]);
    for (parent, name) in &entries {
        dirs.insert(*parent);
        // ENOENT only means the kernel had already dropped it.
        if let Err(e) = notifier.inval_entry(INodeNo(*parent), name.as_ref()) {
            debug!("inval_entry {parent}/{name}: {e}");
        }
    }
    for dir in dirs {
        if let Err(e) = notifier.inval_inode(INodeNo(dir), 0, 0) {
            debug!("inval_inode {dir}: {e}");
        }
    }
    entries.len()
}
