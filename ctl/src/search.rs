//! `musicfsctl search QUERY` and `musicfsctl collection add|list|remove`: indexd's search and
//! saved collections from the command line. Result paths come from fetchd when it answers.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};
use musicfs_ipc::client::Reconnecting;
use musicfs_ipc::layout::{self, StateDir};
use musicfs_ipc::{FetchClient, Hit, IndexClient, IndexError};
use serde::Serialize;

use crate::cli::{CollectionCommand, SearchArgs};
use crate::status::write_stdout;

const DEADLINE: Duration = Duration::from_secs(10);

fn indexd(state: &StateDir) -> Reconnecting<IndexClient> {
    Reconnecting::new(layout::INDEXD, state.socket(layout::INDEXD), DEADLINE)
}

/// One result as `--json` prints it.
#[derive(Debug, Serialize)]
struct SearchResult {
    rank: usize,
    track: u64,
    artist: String,
    title: String,
    /// Where the track is in the mount, relative to its root; null if fetchd did not say.
    path: Option<String>,
}

/// Turns an indexd refusal into the one-line message users see.
fn explain(err: IndexError) -> anyhow::Error {
    match err {
        IndexError::BadQuery(why) => anyhow!("bad query: {why} (see doc/SEARCH.md)"),
        IndexError::NotReady(why) => {
            anyhow!("the index is not ready yet ({why}); try again shortly")
        }
        other => anyhow!("{other}"),
    }
}

pub fn search(state: &StateDir, args: &SearchArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let query = args.query.clone();
        let limit = args.limit;
        let hits: Vec<Hit> = indexd(state)
            .call(|c, ctx| {
                let query = query.clone();
                async move { c.search(ctx, query, limit).await }
            })
            .await?
            .map_err(explain)?;
        let fetchd = Reconnecting::<FetchClient>::new(
            layout::FETCHD,
            state.socket(layout::FETCHD),
            Duration::from_secs(2),
        );
        let tracks: Vec<_> = hits.iter().map(|h| h.track).collect();
        let paths = fetchd
            .call(|c, ctx| {
                let tracks = tracks.clone();
                async move { c.paths(ctx, tracks).await }
            })
            .await
            .unwrap_or_else(|_| vec![None; hits.len()]);
        let results: Vec<SearchResult> = hits
            .into_iter()
            .zip(paths)
            .enumerate()
            .map(|(i, (hit, path))| SearchResult {
                rank: i + 1,
                track: hit.track.0,
                artist: hit.artist,
                title: hit.title,
                path,
            })
            .collect();
        let text = if args.json {
            serde_json::to_string(&results)? + "\n"
        } else {
            let mut text = String::new();
            for r in &results {
                let place = r.path.as_deref().unwrap_or("(not in the tree)");
                text += &format!("{:>4}  {} - {}  {place}\n", r.rank, r.artist, r.title);
            }
            text
        };
        write_stdout(&text)?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn collection(state: &StateDir, command: &CollectionCommand) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let client = indexd(state);
        match command {
            CollectionCommand::List => {
                let all = client
                    .call(|c, ctx| async move { c.collections(ctx).await })
                    .await?
                    .map_err(explain)?;
                let mut text = String::new();
                for c in all {
                    let kind = if c.builtin { "built-in" } else { "saved" };
                    text += &format!("{}\t{}\t{kind}\n", c.name, c.query);
                }
                write_stdout(&text)?;
            }
            CollectionCommand::Add { name, query } => {
                if name.contains('/') || name.starts_with('.') || name.is_empty() {
                    bail!("collection name {name:?} cannot be a directory name; no '/', no leading '.'");
                }
                client
                    .call(|c, ctx| {
                        let (name, query) = (name.clone(), query.clone());
                        async move { c.add_collection(ctx, name, query).await }
                    })
                    .await?
                    .map_err(explain)?;
            }
            CollectionCommand::Remove { name } => {
                client
                    .call(|c, ctx| {
                        let name = name.clone();
                        async move { c.remove_collection(ctx, name).await }
                    })
                    .await?
                    .map_err(explain)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
