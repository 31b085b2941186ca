use std::path::PathBuf;

use clap::Parser;
use musicfs_ipc::config::Config;
use musicfs_ipc::layout::StateDir;
use musicfs_ipc::sandbox::{self, Policy};

/// The MusicFS search worker (started by musicfsctl or systemd).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// State dir (default: $MUSICFS_STATE_DIR, /var/lib/musicfs for root, else $XDG_STATE_HOME/musicfs).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The config file (for `[users]`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    musicfs_ipc::logging::init("indexd");
    let state = StateDir::new(args.state_dir.unwrap_or_else(StateDir::default_root));
    let config = Config::load(args.config.as_deref())?;
    let listener = musicfs_ipc::listen::take_or_bind(&state.socket(musicfs_indexd::SERVICE))?;
    sandbox::enter(Policy::indexd(&state, &config))?;
    musicfs_indexd::run(listener, &state.index())
}
