//! The namespace fetchd serves now, and the one it replaced, kept while mountd still shows it.
//!
//! mountd shows one generation of the tree at a time and asks for entries, attributes and
//! listings at that generation. When a scan swaps the namespace, mountd first drops the
//! kernel's cached entries while still showing the old tree, then moves to the new generation,
//! then drops what the kernel was handed meanwhile. Were fetchd to answer from the new tree at
//! once, a listing could show a retagged track's new name while the kernel still held its old
//! one: `ls` new, `stat` old. The namespace replaced is forgotten once mountd asks for the
//! current one (or another swap replaces it), so at most two are ever held.
//!
//! mountd learns of a swap at once: it asks for the generation saying which one it shows, and
//! the answer waits until they differ ([`next_generation`](Namespaces::next_generation)). A
//! swap waits, briefly, until mountd shows it ([`wait_shown`](Namespaces::wait_shown)), so a
//! scan or `musicfsctl rescan` that has finished is already visible through the mount.

use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::namespace::Namespace;

/// A mount that has not asked for the generation for this long is gone: swaps do not wait
/// for it. (It asks again at least every [`NEXT_GENERATION_WAIT`].)
const ATTACHED_FOR: Duration = Duration::from_secs(15);

/// How long a request for the next generation waits for a swap before answering anyway.
pub const NEXT_GENERATION_WAIT: Duration = Duration::from_secs(5);

pub struct Namespaces {
    inner: RwLock<Inner>,
    /// What the mount says it shows, and when it last said so.
    mount: Mutex<Mount>,
    /// Woken, with `mount` held, by every swap and whenever the mount says what it shows.
    changed: Condvar,
}

#[derive(Default)]
struct Mount {
    shows: Option<u64>,
    asked: Option<Instant>,
}

struct Inner {
    current: Arc<Namespace>,
    generation: u64,
    previous: Option<(u64, Arc<Namespace>)>,
}

impl Namespaces {
    /// `generation` starts from the clock, so a restarted fetchd's differs from the last one's.
    pub fn new(namespace: Namespace, generation: u64) -> Self {
        Self {
            inner: RwLock::new(Inner {
                current: Arc::new(namespace),
                generation,
                previous: None,
            }),
            mount: Mutex::new(Mount::default()),
            changed: Condvar::new(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn current(&self) -> Arc<Namespace> {
        self.read().current.clone()
    }

    /// Bumped by every swap.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// The current namespace and its generation, read together.
    pub fn current_with_generation(&self) -> (u64, Arc<Namespace>) {
        let inner = self.read();
        (inner.generation, inner.current.clone())
    }

    /// Serves `namespace` from now on, as the next generation (returned); the current one is
    /// kept for whoever still shows it.
    pub fn replace(&self, namespace: Namespace) -> u64 {
        let generation = {
            let mut inner = self.write();
            let old = std::mem::replace(&mut inner.current, Arc::new(namespace));
            inner.previous = Some((inner.generation, old));
            inner.generation += 1;
            inner.generation
        };
        // Under `mount`, which a waiter holds while it checks the generation: no wake is lost.
        let _mount = lock(&self.mount);
        self.changed.notify_all();
        generation
    }

    /// The mount shows generation `shown`: the current generation once it differs from that,
    /// at once if it does, else after a swap or `within`. Blocks the calling thread.
    pub fn next_generation(&self, shown: u64, within: Duration) -> u64 {
        self.report(shown);
        let mount = lock(&self.mount);
        let _ = self
            .changed
            .wait_timeout_while(mount, within, |_| self.generation() == shown)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.generation()
    }

    fn report(&self, shown: u64) {
        if shown == self.generation() {
            self.at(shown);
        }
        let mut mount = lock(&self.mount);
        mount.shows = Some(shown);
        mount.asked = Some(Instant::now());
        self.changed.notify_all();
    }

    /// Waits up to `within` until a mount attached to this fetchd shows `generation`. False
    /// at once when no mount has asked lately; false after `within` if it never said so.
    pub fn wait_shown(&self, generation: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut mount = lock(&self.mount);
        loop {
            let attached = mount.asked.is_some_and(|t| t.elapsed() < ATTACHED_FOR);
            if !attached {
                return false;
            }
            if mount.shows == Some(generation) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            mount = self
                .changed
                .wait_timeout(mount, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// The namespace of generation `at` while it is held, else the current one (a generation
    /// from before fetchd started, or two swaps back). Asked for the current generation, it
    /// lets go of the one before: its reader has moved on.
    pub fn at(&self, at: u64) -> Arc<Namespace> {
        {
            let inner = self.read();
            match &inner.previous {
                Some((generation, namespace)) if *generation == at => return namespace.clone(),
                Some(_) if at == inner.generation => {}
                _ => return inner.current.clone(),
            }
        }
        let mut inner = self.write();
        if inner.generation == at {
            inner.previous = None;
        }
        inner.current.clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::tests::{build, info};

    /// A tree of one track titled `title`.
    fn namespace(title: &str) -> Namespace {
        build(vec![("a.flac", info("A", "B", title, 1))]).2
    }

    /// The name of the one track's file.
    fn shown(ns: &Namespace) -> String {
        let mut ino = musicfs_ipc::ROOT_INO;
        loop {
            let entries = ns.readdir(ino).unwrap();
            let first = entries.iter().find(|e| !e.name.starts_with('.')).unwrap();
            if first.attr.kind != musicfs_ipc::NodeKind::Dir {
                return first.name.clone();
            }
            ino = first.attr.ino;
        }
    }

    #[test]
    fn the_tree_replaced_is_served_until_its_reader_asks_for_the_new_one() {
        let namespaces = Namespaces::new(namespace("Old"), 10);
        namespaces.replace(namespace("New"));
        assert_eq!(namespaces.generation(), 11);
        let at = |generation| shown(&namespaces.at(generation));
        assert!(shown(&namespaces.current()).contains("New"));
        assert!(at(10).contains("Old"));
        assert!(at(10).contains("Old"), "asked twice");
        // A generation this fetchd never had (mountd saw another one): the current tree.
        assert!(at(3).contains("New"));
        assert!(at(10).contains("Old"));
        // The reader moved on: the old tree is let go.
        assert!(at(11).contains("New"));
        assert!(at(10).contains("New"));
        // Two swaps: only the one before the current is kept.
        namespaces.replace(namespace("Newer"));
        namespaces.replace(namespace("Newest"));
        assert!(at(12).contains("Newer"));
        assert!(at(11).contains("Newest"));
    }

    #[test]
    fn a_swap_wakes_the_mount_and_waits_until_it_shows_the_new_tree() {
        let namespaces = Arc::new(Namespaces::new(namespace("Old"), 10));
        // No mount has asked: a swap does not wait for one.
        let started = Instant::now();
        let swapped = namespaces.replace(namespace("New"));
        assert!(!namespaces.wait_shown(swapped, Duration::from_secs(5)));
        assert!(started.elapsed() < Duration::from_secs(1));

        // A mount showing generation 11 asks for the next one, then moves to it and says so.
        let mount = {
            let namespaces = namespaces.clone();
            std::thread::spawn(move || {
                let next = namespaces.next_generation(11, Duration::from_secs(5));
                let asked_again = Instant::now();
                let again = namespaces.next_generation(next, Duration::from_millis(200));
                (next, again, asked_again.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let swapped = namespaces.replace(namespace("Newer"));
        assert_eq!(swapped, 12);
        assert!(namespaces.wait_shown(swapped, Duration::from_secs(5)));
        let (next, again, waited) = mount.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!((next, again), (12, 12));
        assert!(
            waited >= Duration::from_millis(200),
            "no swap, yet it answered at once"
        );
        // The mount moved on: the tree before is let go.
        assert!(shown(&namespaces.at(11)).contains("Newer"));
    }
}
