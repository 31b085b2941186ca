//! Logging set-up shared by every binary: journald when its socket exists, stderr otherwise.
//! Panics are logged through tracing before the process dies.

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// Initialises logging for `service`. The filter comes from `MUSICFS_LOG` (default `info`;
/// the tag library's own complaints about files are summarised by the scanner instead, and
/// tarpc's warnings about a connection that broke are left out: the clients reconnect and
/// retry by themselves, and a worker's restart is logged by whoever restarts it).
pub fn init(service: &'static str) {
    let filter = || {
        EnvFilter::try_from_env("MUSICFS_LOG")
            .unwrap_or_else(|_| EnvFilter::new("info,lofty=error,tarpc=error"))
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
    log_panics(service);
}

/// Makes every panic an error event (with its message and place) before the process dies, so a
/// crashed worker leaves its reason in the journal or the supervisor's log.
pub fn log_panics(service: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(service, "panic: {info}");
    }));
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panic_is_logged_through_tracing_with_its_message_and_place() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        log_panics("testd");
        let result = tracing::subscriber::with_default(subscriber, || {
            std::panic::catch_unwind(|| panic!("the index is on fire"))
        });
        let _ = std::panic::take_hook();
        assert!(result.is_err());
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("ERROR"), "{log}");
        assert!(
            log.contains("panic: ") && log.contains("the index is on fire"),
            "{log}"
        );
        assert!(log.contains("logging.rs"), "no place in {log}");
        assert!(log.contains("testd"), "no service in {log}");
    }
}
