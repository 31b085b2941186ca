use std::path::PathBuf;

use clap::Parser;
use musicfs_ipc::sandbox::{self, Policy};
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
            let state = layout::StateDir::new(&args.state_dir);
            let listener = musicfs_ipc::listen::take_or_bind(&state.socket(layout::FETCHD))?;
            let mut origins = args.origins;
            origins.extend(config.origins.iter().map(PathBuf::from));
            sandbox::enter(Policy::fetchd(&state, &origins, &config))?;
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
