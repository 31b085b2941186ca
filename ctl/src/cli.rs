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

    /// Music folders, then the (empty) directory to mount on.
    #[arg(value_name = "PATH", required = true, num_args = 1..)]
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
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
