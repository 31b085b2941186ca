//! `musicfsctl cache stats|pin|unpin|prefetch|clear`: fetchd's chunk cache from the command line,
//! over fetchd's admin socket. Paths name places in the mount: absolute paths inside the mount
//! point (found in the supervisor's or mountd's record), or paths relative to the mount's root.

use std::io::{IsTerminal, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use musicfs_ipc::client::Reconnecting;
use musicfs_ipc::layout::{self, MountdRecord, StateDir};
use musicfs_ipc::size::human;
use musicfs_ipc::{BackgroundFetch, CacheStats, FetchAdminClient, FetchError};
use serde::Serialize;

use crate::cli::CacheCommand;
use crate::record;
use crate::report::fetch_line;
use crate::status::write_stdout;

/// How long one call may take (pinning a big subtree reads many manifests).
const DEADLINE: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Without a terminal, a progress line at most this often.
const PLAIN_LINE_EVERY: Duration = Duration::from_secs(5);

/// fetchd's admin socket, each call retried for up to 30 s (fetchd restarting).
pub(crate) fn fetchd(state: &StateDir) -> Reconnecting<FetchAdminClient> {
    Reconnecting::new(
        layout::FETCHD_ADMIN,
        state.socket(layout::FETCHD_ADMIN),
        DEADLINE,
    )
}

/// Turns a fetchd refusal into the message users see.
fn explain(err: FetchError) -> anyhow::Error {
    match err {
        FetchError::NoSuchPath(path) => anyhow!("{path}: no such path in the mount"),
        other => anyhow!("{other}"),
    }
}

pub fn run(state: &StateDir, command: &CacheCommand) -> anyhow::Result<ExitCode> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let client = fetchd(state);
        match command {
            CacheCommand::Stats { json } => {
                let stats = stats(&client).await?;
                let text = match json {
                    true => serde_json::to_string(&StatsJson::from(&stats))? + "\n",
                    false => stats_text(&stats),
                };
                write_stdout(&text)?;
                Ok(ExitCode::SUCCESS)
            }
            CacheCommand::Pin { path, no_wait } => {
                let path = mount_relative(path, mountpoint(state).as_deref())?;
                let subtree = client
                    .call(|c, ctx| {
                        let path = path.clone();
                        async move { c.pin(ctx, path).await }
                    })
                    .await?
                    .map_err(explain)?;
                let shown = shown(&subtree.path);
                println!(
                    "pinned {shown}: {} tracks, {}",
                    subtree.tracks,
                    human(subtree.bytes)
                );
                match no_wait {
                    true => Ok(ExitCode::SUCCESS),
                    false => wait_fetched(&client).await,
                }
            }
            CacheCommand::Unpin { path } => {
                let path = mount_relative(path, mountpoint(state).as_deref())?;
                let was = client
                    .call(|c, ctx| {
                        let path = path.clone();
                        async move { c.unpin(ctx, path).await }
                    })
                    .await?
                    .map_err(explain)?;
                if !was {
                    eprintln!("musicfsctl: {} was not pinned", shown(&path));
                    return Ok(ExitCode::FAILURE);
                }
                println!("unpinned {}", shown(&path));
                Ok(ExitCode::SUCCESS)
            }
            CacheCommand::Prefetch { path, wait } => {
                let path = mount_relative(path, mountpoint(state).as_deref())?;
                let subtree = client
                    .call(|c, ctx| {
                        let path = path.clone();
                        async move { c.prefetch(ctx, path).await }
                    })
                    .await?
                    .map_err(explain)?;
                println!(
                    "fetching {}: {} tracks, {}",
                    shown(&subtree.path),
                    subtree.tracks,
                    human(subtree.bytes)
                );
                match wait {
                    true => wait_fetched(&client).await,
                    false => Ok(ExitCode::SUCCESS),
                }
            }
            CacheCommand::Clear => {
                let cleared = client
                    .call(|c, ctx| async move { c.clear(ctx).await })
                    .await?
                    .map_err(explain)?;
                println!(
                    "removed {} chunks ({}); pinned chunks kept",
                    cleared.chunks,
                    human(cleared.bytes)
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn stats(client: &Reconnecting<FetchAdminClient>) -> anyhow::Result<CacheStats> {
    client
        .call(|c, ctx| async move { c.cache_stats(ctx).await })
        .await?
        .map_err(explain)
}

/// Shows the background fetch until it is idle; fails if a track could not be fetched.
async fn wait_fetched(client: &Reconnecting<FetchAdminClient>) -> anyhow::Result<ExitCode> {
    let terminal = std::io::stderr().is_terminal();
    let mut last_line: Option<Instant> = None;
    loop {
        let fetch = stats(client).await?.fetch;
        let line = fetch_line(&fetch);
        if !fetch.active {
            if terminal {
                eprint!("\r\x1b[K");
            }
            eprintln!("{line}");
            return Ok(finished(&fetch));
        }
        if terminal {
            eprint!("\r\x1b[K{line}");
            let _ = std::io::stderr().flush();
        } else if last_line.is_none_or(|t| t.elapsed() >= PLAIN_LINE_EVERY) {
            eprintln!("{line}");
            last_line = Some(Instant::now());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn finished(fetch: &BackgroundFetch) -> ExitCode {
    match fetch.failed {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// The mount point of the running mount on this state dir, if one is known.
fn mountpoint(state: &StateDir) -> Option<PathBuf> {
    record::read(&state.supervisor_file())
        .filter(|r| record::pid_alive(r.pid))
        .map(|r| PathBuf::from(r.mountpoint))
        .or_else(|| {
            MountdRecord::read(&state.mountd_file())
                .filter(|r| record::pid_alive(r.pid))
                .map(|r| r.mountpoint)
        })
}

/// A path as fetchd takes it: relative to the mount's root, `/`-separated. An absolute path
/// must lie inside the mount point.
pub fn mount_relative(arg: &str, mountpoint: Option<&Path>) -> anyhow::Result<String> {
    let path = Path::new(arg);
    let relative = if path.is_absolute() {
        let Some(mountpoint) = mountpoint else {
            bail!(
                "{arg}: no running mount found on this state dir to take an absolute path from; \
                 give the path relative to the mount's root (e.g. \"Artist/Album (2001)\")"
            );
        };
        let inside = path
            .strip_prefix(mountpoint)
            .ok()
            .map(Path::to_owned)
            .or_else(|| {
                // The mount point may have been recorded through a symlink, or given through one.
                let real = mountpoint.canonicalize().ok()?;
                let parent = path.parent()?.canonicalize().ok()?;
                let full = parent.join(path.file_name()?);
                full.strip_prefix(real).ok().map(Path::to_owned)
            });
        let Some(inside) = inside else {
            bail!("{arg} is not inside the mount at {}", mountpoint.display());
        };
        inside
    } else {
        path.to_owned()
    };
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(name) => parts.push(
                name.to_str()
                    .ok_or_else(|| anyhow!("{arg}: not valid UTF-8"))?
                    .to_owned(),
            ),
            Component::CurDir => {}
            Component::ParentDir => bail!("{arg}: '..' cannot name a place in the mount"),
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(parts.join("/"))
}

/// How a mount-relative path is shown (`/` for the root).
fn shown(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// `cache stats --json`.
#[derive(Debug, Serialize)]
struct StatsJson {
    bytes: u64,
    chunks: u64,
    budget: Option<u64>,
    min_free: u64,
    free_disk: Option<u64>,
    hits: u64,
    misses: u64,
    /// hits / (hits + misses); null before any read.
    hit_ratio: Option<f64>,
    pinned_chunks: u64,
    pinned_bytes: u64,
    staging_files: u64,
    staging_bytes: u64,
    per_origin: Vec<OriginBytes>,
    pins: Vec<String>,
    fetch: BackgroundFetch,
}

#[derive(Debug, Serialize)]
struct OriginBytes {
    origin: String,
    bytes: u64,
}

fn hit_ratio(stats: &CacheStats) -> Option<f64> {
    let reads = stats.hits + stats.misses;
    (reads > 0).then(|| stats.hits as f64 / reads as f64)
}

impl From<&CacheStats> for StatsJson {
    fn from(s: &CacheStats) -> Self {
        Self {
            bytes: s.bytes,
            chunks: s.chunks,
            budget: s.budget,
            min_free: s.min_free,
            free_disk: s.free_disk,
            hits: s.hits,
            misses: s.misses,
            hit_ratio: hit_ratio(s),
            pinned_chunks: s.pinned_chunks,
            pinned_bytes: s.pinned_bytes,
            staging_files: s.staging_files,
            staging_bytes: s.staging_bytes,
            per_origin: s
                .per_origin
                .iter()
                .map(|(origin, bytes)| OriginBytes {
                    origin: origin.clone(),
                    bytes: *bytes,
                })
                .collect(),
            pins: s.pins.clone(),
            fetch: s.fetch.clone(),
        }
    }
}

/// Aligned lines for people.
fn stats_text(s: &CacheStats) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<13}{value}\n"));
    let budget = match s.budget {
        Some(b) => format!(" of {} budget", human(b)),
        None => " (no budget)".to_owned(),
    };
    line(
        "cache",
        format!("{}{budget}, {} chunks", human(s.bytes), s.chunks),
    );
    let free = s.free_disk.map_or("unknown".to_owned(), human);
    line(
        "free disk",
        format!("{free} (keeping at least {})", human(s.min_free)),
    );
    let ratio = hit_ratio(s).map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    line(
        "hit ratio",
        format!("{ratio} ({} hits, {} misses)", s.hits, s.misses),
    );
    line(
        "pinned",
        format!("{} in {} chunks", human(s.pinned_bytes), s.pinned_chunks),
    );
    for pin in &s.pins {
        line("  pin", shown(pin).to_owned());
    }
    if s.staging_files > 0 {
        line(
            "staging",
            format!(
                "{} for {} tracks not yet cut into chunks (outside the budget)",
                human(s.staging_bytes),
                s.staging_files
            ),
        );
    }
    for (origin, bytes) in &s.per_origin {
        line("fetched", format!("{} from {origin}", human(*bytes)));
    }
    if s.fetch.tracks_total > 0 || s.fetch.active {
        line("background", fetch_line(&s.fetch));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_relative_to_the_mount_root() {
        let mnt = Some(Path::new("/mnt/music"));
        let cases = [
            ("/mnt/music/Artist/Album (2001)", "Artist/Album (2001)"),
            ("/mnt/music/Artist/Album (2001)/", "Artist/Album (2001)"),
            ("/mnt/music", ""),
            ("Artist/./Album", "Artist/Album"),
            ("Artist", "Artist"),
        ];
        for (arg, want) in cases {
            assert_eq!(mount_relative(arg, mnt).unwrap(), want, "{arg}");
        }
        let err = mount_relative("/srv/other/x", mnt).unwrap_err().to_string();
        assert!(err.contains("not inside the mount at /mnt/music"), "{err}");
        let err = mount_relative("/mnt/music/x", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("relative to the mount's root"), "{err}");
        assert!(mount_relative("A/../B", mnt).is_err());
    }

    #[test]
    fn stats_read_well_for_people_and_scripts() {
        let stats = CacheStats {
            bytes: 3 << 29,
            chunks: 12,
            budget: Some(2 << 30),
            min_free: 1 << 30,
            free_disk: Some(40 << 30),
            hits: 93,
            misses: 7,
            pinned_chunks: 4,
            pinned_bytes: 1 << 20,
            staging_files: 2,
            staging_bytes: 3 << 20,
            per_origin: vec![("/srv/music".into(), 5 << 20)],
            pins: vec!["Artist/Album (2001)".into()],
            fetch: BackgroundFetch {
                active: true,
                tracks_done: 3,
                tracks_total: 12,
                bytes_done: 40 << 20,
                bytes_total: 120 << 20,
                ..Default::default()
            },
        };
        let text = stats_text(&stats);
        for want in [
            "cache        1.5 GiB of 2.0 GiB budget, 12 chunks",
            "free disk    40.0 GiB (keeping at least 1.0 GiB)",
            "hit ratio    93.0% (93 hits, 7 misses)",
            "  pin        Artist/Album (2001)",
            "staging      3.0 MiB for 2 tracks not yet cut into chunks (outside the budget)",
            "fetched      5.0 MiB from /srv/music",
            "background   fetching 3/12 tracks, 40.0 MiB of 120.0 MiB",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        let json: serde_json::Value = serde_json::to_value(StatsJson::from(&stats)).unwrap();
        assert_eq!(json["hit_ratio"], 0.93);
        assert_eq!(json["per_origin"][0]["origin"], "/srv/music");
        assert_eq!(json["fetch"]["tracks_total"], 12);
        assert_eq!(json["pins"][0], "Artist/Album (2001)");
        assert_eq!(json["staging_bytes"], 3 << 20);
    }
}
