//! Logging set-up shared by every binary: journald when its socket exists, stderr otherwise.
//! Panics are logged through tracing before the process dies.

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// Initialises logging for `service`. The filter comes from `MUSICFS_LOG` (default `info`;
/// the tag library's own complaints about files are summarised by the scanner instead).
pub fn init(service: &'static str) {
    let filter = || {
        EnvFilter::try_from_env("MUSICFS_LOG")
            .unwrap_or_else(|_| EnvFilter::new("info,lofty=error"))
    };
    let journald = std::path::Path::new(JOURNALD_SOCKET)
        .exists()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    let registry = tracing_subscriber::registry().with(filter());
    let result = match journald {
        Some(layer) => registry
            .with(layer.with_syslog_identifier(format!("musicfs-{service}")))
            .try_init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(false)
                    .with_thread_ids(false),
            )
            .try_init(),
    };
    drop(result);
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(service, "panic: {info}");
    }));
}
