//! Crash-loop backoff for restarting a worker: the first restart comes quickly, a worker that keeps
//! dying right after its start waits longer each time (doubling up to a cap), and one that ran for
//! a while is back to the quick restart.

use std::time::Duration;

/// Delay before the first restart: short, since a player is waiting on the restarted worker.
pub const INITIAL: Duration = Duration::from_millis(20);
/// Longest delay between two restarts.
pub const MAX: Duration = Duration::from_secs(30);
/// A worker that ran at least this long before dying did not crash-loop: a worker that cannot
/// start (bad state, missing binary) dies well within it, while one killed at random moments
/// under load has been serving for longer and is restarted at once.
pub const STABLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: INITIAL }
    }
}

impl Backoff {
    /// The delay before restarting a worker that died after running for `ran`.
    pub fn delay_after_exit(&mut self, ran: Duration) -> Duration {
        if ran >= STABLE {
            self.next = INITIAL;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_millis(30);

    #[test]
    fn doubles_while_crash_looping_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..12)
            .map(|_| backoff.delay_after_exit(QUICK).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 30000]
        );
    }

    #[test]
    fn resets_after_a_stable_run() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.delay_after_exit(QUICK);
        }
        assert_eq!(backoff.delay_after_exit(STABLE), INITIAL);
        assert_eq!(backoff.delay_after_exit(QUICK), INITIAL * 2);
    }

    #[test]
    fn first_crash_restarts_quickly() {
        assert_eq!(Backoff::default().delay_after_exit(QUICK), INITIAL);
        assert_eq!(Backoff::default().delay_after_exit(STABLE * 3), INITIAL);
    }
}
