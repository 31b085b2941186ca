//! Telling systemd how the mount is doing (`Type=notify`): `READY=1` once the mount answers,
//! `STOPPING=1` when mountd starts unmounting, and `WATCHDOG=1` pings at half the interval systemd
//! asks for (`WATCHDOG_USEC`). Without `NOTIFY_SOCKET` (not started by systemd) each is a no-op.

use sd_notify::NotifyState;
use tokio::runtime::Handle;

/// The mount is live; `status` is shown by `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// mountd is about to unmount and exit.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings the watchdog from a task on `runtime` (mountd's own, which also waits for the signals
/// that stop it), so a wedged runtime stops the pings and systemd restarts mountd.
pub fn start_watchdog(runtime: &Handle) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(timeout / 2);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {err}");
    }
}
