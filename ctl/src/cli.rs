//! The command line of `musicfsctl`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "musicfsctl", version, about = "Run and inspect MusicFS")]
pub struct Cli {
    /// State dir (default: $MUSICFS_STATE_DIR, /var/lib/musicfs for root, else
    /// $XDG_STATE_HOME/musicfs).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount ORIGINs at MOUNTPOINT and supervise the workers in the foreground (Ctrl-C stops).
    #[command(override_usage = "musicfsctl mount [OPTIONS] ORIGIN... MOUNTPOINT")]
    Mount(MountArgs),
    /// Show the supervisor, the workers, the catalog and the scan.
    Status(StatusArgs),
    /// Search the library (query language: doc/SEARCH.md).
    Search(SearchArgs),
    /// Saved searches shown under /.collections/.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// The chunk cache: stats, pins (kept offline-ready), prefetch, clear.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Scan origins again now instead of at their next scan interval, and show what changed.
    Rescan(RescanArgs),
    /// Show how each origin will be reached (address, jump hosts, keys, known_hosts, S3
    /// endpoint and key source), resolved as fetchd resolves it, without connecting.
    Origins(OriginsArgs),
}

#[derive(Debug, Args)]
pub struct OriginsArgs {
    /// Configuration file (TOML) whose origins to show, after the ones given here.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Origins as `musicfsctl mount` takes them.
    #[arg(value_name = "ORIGIN")]
    pub origins: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RescanArgs {
    /// Origins to scan, named as `musicfsctl status` shows them (default: every origin).
    #[arg(value_name = "ORIGIN")]
    pub origins: Vec<String>,
    /// Print JSON: [{"origin","seen","read","removed","problems","unreachable",
    /// "kept_while_empty","millis"}]. Exit status 1 when an origin could not be listed or
    /// listed no files after it had some.
    #[arg(long)]
    pub json: bool,
}

/// PATH is a place in the mount: an absolute path inside the mount point, or a path relative
/// to the mount's root (`"Artist/Album (2001)"`).
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Size, budget, free disk, hit ratio, bytes fetched per origin, pins, staging files,
    /// background fetch.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Keep PATH's tracks in the cache (never evicted) and fetch them all in the background;
    /// shows progress until they are fetched.
    Pin {
        #[arg(value_name = "PATH")]
        path: String,
        /// Return once pinned, without waiting for the fetch.
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop keeping PATH (its chunks may be evicted again).
    Unpin {
        #[arg(value_name = "PATH")]
        path: String,
    },
    /// Fetch PATH's tracks into the cache once, in the background, without pinning them.
    Prefetch {
        #[arg(value_name = "PATH")]
        path: String,
        /// Show progress until they are fetched.
        #[arg(long)]
        wait: bool,
    },
    /// Delete every chunk that is not pinned (reads fetch them again).
    Clear,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query, e.g. `artist:bjork year:1990..1999` (quote it for the shell).
    pub query: String,
    /// At most this many results.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// Print JSON: [{"rank","track","artist","title","path"}].
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Save QUERY as /.collections/NAME/.
    Add { name: String, query: String },
    /// List built-in and saved collections (name, query, kind).
    List,
    /// Remove a saved collection.
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Configuration file (TOML); its `origins` are added to the ones given here.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Origins (music folders, or sftp://user@host/path, s3://bucket/prefix, http(s)://
    /// URLs; their options and credentials go in --config), then the (empty) directory to
    /// mount on.
    #[arg(value_name = "ORIGIN|MOUNTPOINT", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
}

impl MountArgs {
    /// The origins given on the command line and the mount point (the last path).
    pub fn split(&self) -> (&[PathBuf], &PathBuf) {
        let (mountpoint, origins) = self.paths.split_last().expect("clap requires one path");
        (origins, mountpoint)
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the stable JSON format (doc/STATUS-JSON.md) instead of text.
    #[arg(long)]
    pub json: bool,

    /// First wait until fetchd has finished a scan and is idle.
    #[arg(long)]
    pub wait_idle: bool,

    /// With --wait-idle: give up after this many seconds (status then exits 1).
    #[arg(long, value_name = "SECONDS", requires = "wait_idle")]
    pub timeout: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_takes_origins_then_the_mountpoint() {
        let cli = Cli::parse_from(["musicfsctl", "mount", "--state-dir", "/s", "/a", "/b", "/m"]);
        assert_eq!(cli.state_dir, Some(PathBuf::from("/s")));
        let Command::Mount(args) = cli.command else {
            panic!("not mount")
        };
        let (origins, mountpoint) = args.split();
        assert_eq!(origins, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(mountpoint, &PathBuf::from("/m"));
    }

    #[test]
    fn state_dir_may_come_before_the_subcommand() {
        let cli = Cli::parse_from(["musicfsctl", "--state-dir", "/s", "status", "--json"]);
        assert_eq!(cli.state_dir, Some(PathBuf::from("/s")));
        assert!(matches!(
            cli.command,
            Command::Status(StatusArgs { json: true, .. })
        ));
    }

    #[test]
    fn cache_subcommands_parse() {
        let cli = Cli::parse_from(["musicfsctl", "cache", "pin", "--no-wait", "A/B (2001)"]);
        assert!(matches!(
            cli.command,
            Command::Cache(CacheCommand::Pin { ref path, no_wait: true }) if path == "A/B (2001)"
        ));
        let cli = Cli::parse_from(["musicfsctl", "cache", "stats", "--json"]);
        assert!(matches!(
            cli.command,
            Command::Cache(CacheCommand::Stats { json: true })
        ));
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
