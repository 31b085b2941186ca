//! `musicfsctl rescan [ORIGIN...]`: asks fetchd to scan origins again now (a remote origin is
//! otherwise listed again only every `scan_interval_seconds`), waits for the scans and prints
//! what each found. Exits with failure when an origin could not be listed.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use musicfs_ipc::layout::StateDir;
use musicfs_ipc::{FetchError, Rescanned};

use crate::cli::RescanArgs;

/// How long the scans may take; generous, as listing even a large remote library takes minutes.
const SCANS: Duration = Duration::from_secs(6 * 3600);

pub fn run(state: &StateDir, args: &RescanArgs) -> anyhow::Result<ExitCode> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let client = crate::cache::fetchd(state);
        // Fails within 30 s when fetchd is not there, before the long wait; the scans are
        // asked for once, so a fetchd gone mid-scan is an error now, not a retry for hours.
        client
            .call(|c, ctx| async move { c.hello(ctx).await })
            .await?;
        let origins = args.origins.clone();
        let scanned = client
            .call_once(SCANS, |c, ctx| async move { c.rescan(ctx, origins).await })
            .await?
            .map_err(|e| match e {
                FetchError::NoSuchOrigin(which) => anyhow!("no such origin: {which}"),
                other => anyhow!("{other}"),
            })?;
        match args.json {
            true => println!("{}", serde_json::to_string(&scanned)?),
            false => scanned
                .iter()
                .for_each(|origin| println!("{}", line(origin))),
        }
        Ok(
            match scanned
                .iter()
                .any(|o| o.unreachable || o.kept_while_empty > 0 || o.unread > 0)
            {
                true => ExitCode::FAILURE,
                false => ExitCode::SUCCESS,
            },
        )
    })
}

fn line(o: &Rescanned) -> String {
    let secs = o.millis as f64 / 1000.0;
    if o.unreachable {
        return format!(
            "{}: could not be listed; its files stay as they were ({secs:.1} s)",
            o.origin
        );
    }
    if o.kept_while_empty > 0 {
        return format!(
            "{}: lists no files, though it had {}; they stay listed (a disk not mounted, or a \
             share served empty? remove the origin from the config to drop them) ({secs:.1} s)",
            o.origin, o.kept_while_empty
        );
    }
    if o.unread > 0 {
        return format!(
            "{}: stopped answering while new or changed files were read: {} of {} listed not \
             read, kept as they were until the next scan ({secs:.1} s)",
            o.origin,
            o.unread,
            files(o.seen)
        );
    }
    format!(
        "{}: {} listed, {} new or changed, {} gone, {} unreadable ({secs:.1} s)",
        o.origin,
        files(o.seen),
        o.read,
        o.removed,
        o.problems
    )
}

fn files(n: u64) -> String {
    match n {
        1 => "1 file".into(),
        n => format!("{n} files"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_changed_or_that_the_origin_did_not_answer() {
        let mut o = Rescanned {
            origin: "sftp://nas/music".into(),
            seen: 120,
            read: 2,
            removed: 1,
            problems: 0,
            unreachable: false,
            kept_while_empty: 0,
            unread: 0,
            millis: 1530,
        };
        assert_eq!(
            line(&o),
            "sftp://nas/music: 120 files listed, 2 new or changed, 1 gone, 0 unreadable (1.5 s)"
        );
        o.seen = 1;
        assert!(line(&o).starts_with("sftp://nas/music: 1 file listed, "));
        o.unreachable = true;
        assert_eq!(
            line(&o),
            "sftp://nas/music: could not be listed; its files stay as they were (1.5 s)"
        );
        (o.unreachable, o.seen, o.kept_while_empty) = (false, 0, 120);
        assert!(
            line(&o).starts_with("sftp://nas/music: lists no files, though it had 120; they stay"),
            "{}",
            line(&o)
        );
        (o.kept_while_empty, o.seen, o.unread) = (0, 120, 2);
        assert_eq!(
            line(&o),
            "sftp://nas/music: stopped answering while new or changed files were read: 2 of \
             120 files listed not read, kept as they were until the next scan (1.5 s)"
        );
    }
}
