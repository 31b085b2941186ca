use std::path::PathBuf;

use clap::Parser;
use musicfs_ipc::{config::Config, layout};

/// musicfs-fetchd: origins, chunk cache and catalog for a MusicFS mount.
#[derive(Parser)]
struct Args {
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Local folders holding music (added to the config's origins).
    origins: Vec<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    musicfs_ipc::logging::init("fetchd");
    let result = Config::load(args.config.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let socket = layout::StateDir::new(&args.state_dir).socket(layout::FETCHD);
            let listener = musicfs_ipc::listen::take_or_bind(&socket)?;
            let mut origins = args.origins;
            origins.extend(config.origins.iter().map(PathBuf::from));
            let opts = musicfs_fetchd::Options {
                state_dir: args.state_dir,
                origins,
                config,
            };
            musicfs_fetchd::run(opts, listener)
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("musicfs-fetchd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
