//! Keeps the kernel's caches honest: entries, attributes and directory listings are cached for a
//! long time (see [`TTL`](crate::fuse::TTL)), and this watcher drops them all as soon as fetchd's
//! namespace generation changes (a rescan changed the tree, or fetchd restarted): fetchd answers
//! its request for the generation when that happens.
//!
//! mountd shows one generation at a time (fetchd keeps the tree it replaced for this), and
//! moves to a new one in three steps:
//! 1. While the old tree is still shown, the kernel is told to forget every entry it was
//!    handed and every directory's listing and attributes; what it asks for meanwhile comes
//!    from the old tree, so it never mixes the two.
//! 2. Once the answers being given are sent, the new generation is shown.
//! 3. The kernel forgets what it was handed during step 1 (typically a few entries).
//!
//! Without this, a listing could come from the new tree while the kernel still held entries
//! of the old one: `ls` showed a retagged track's new name and `stat` still found its old one,
//! for up to a poll. What remains is step 3: for the few entries the kernel looked up while
//! step 1 ran, the time it takes to drop them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{INodeNo, Notifier};
use musicfs_ipc::{CURRENT, ROOT_INO};
use tracing::{debug, info};

use crate::backend::Backend;
use crate::core::FsCore;

/// The least time between two requests for the generation, when one came back at once without
/// a change (fetchd holds a request until its generation moves; an older one or a test's fake
/// does not) or failed.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Watches for ever on its own thread (notifications must never be sent from inside a FUSE
/// request handler: the kernel may be waiting on that very request). Each request for the
/// generation says which one is shown, so fetchd answers it as soon as its own moves on, and
/// knows when the mount shows its new tree.
pub fn spawn<B: Backend + 'static>(core: Arc<FsCore<B>>, notifier: Notifier) {
    std::thread::Builder::new()
        .name("mountd-inval".into())
        .spawn(move || {
            let mut shown = CURRENT;
            loop {
                let asked = Instant::now();
                match core.backend().generation(shown) {
                    Ok(now) if now != shown => {
                        let dropped = switch(&core, &notifier, now);
                        if shown != CURRENT {
                            info!(
                                entries = dropped,
                                "namespace changed; kernel caches dropped"
                            );
                        }
                        shown = now;
                        // Asking again at once tells fetchd the new tree is shown.
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => debug!("asking for the namespace generation: {e}"),
                }
                std::thread::sleep(POLL_EVERY.saturating_sub(asked.elapsed()));
            }
        })
        .expect("spawn the invalidation thread");
}

/// Moves the mount to generation `now` in the three steps above. Returns how many entries
/// were invalidated.
pub fn switch<B: Backend>(core: &FsCore<B>, notifier: &Notifier, now: u64) -> usize {
    let dropped = invalidate(notifier, core.take_known_entries());
    core.show(now);
    dropped + invalidate(notifier, core.take_known_entries())
}

/// Tells the kernel to forget `entries`, and the attributes and cached listings of their
/// directories and the root. Returns how many entries were invalidated.
fn invalidate(notifier: &Notifier, entries: Vec<(u64, String)>) -> usize {
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
