//! fetchd asking to be restarted, when the sandbox it entered at start keeps it from something
//! it must reach: a local origin's folder that is another folder now (a disk mounted there
//! since). It stops as on SIGTERM, then exits with [`EXIT_RESTART`], which the supervisor and
//! systemd (`Restart=on-failure`) both answer with a restart; the mount stays up meanwhile,
//! as for any worker restart, and the new sandbox takes the folder in.

use std::sync::atomic::{AtomicBool, Ordering};

/// `EX_TEMPFAIL`: not a failure of fetchd, but a reason to start it again.
pub const EXIT_RESTART: u8 = 75;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Stops fetchd so that it is started again; `why` is logged (once, however often asked).
pub fn request(why: &str) {
    if REQUESTED.swap(true, Ordering::AcqRel) {
        return;
    }
    tracing::warn!("restarting fetchd: {why}");
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGTERM) {
        tracing::error!("cannot stop fetchd to restart it: {e}");
    }
}

/// Whether fetchd stopped to be restarted.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Acquire)
}
