use std::path::PathBuf;

use clap::Parser;
use musicfs_ipc::peer::AdminPolicy;
use musicfs_ipc::sandbox::{self, Policy};
use musicfs_ipc::{config::Config, layout};

/// musicfs-fetchd: origins, chunk cache and catalog for a MusicFS mount.
#[derive(Parser)]
struct Args {
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folders or URLs holding music (added to the config's origins).
    origins: Vec<String>,
}

fn main() -> std::process::ExitCode {
    use musicfs_fetchd::outside;
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == outside::HELPER_ARG)
    {
        return outside::helper_main();
    }
    let args = Args::parse();
    musicfs_ipc::memory::keep_large_buffers();
    musicfs_ipc::logging::init("fetchd");
    let result = Config::load(args.config.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let state = layout::StateDir::new(&args.state_dir);
            let (data, admin) = (
                state.socket(layout::FETCHD),
                state.socket(layout::FETCHD_ADMIN),
            );
            let mut sockets = musicfs_ipc::listen::take_or_bind_named(&[
                (layout::FETCHD, &data),
                (layout::FETCHD_ADMIN, &admin),
            ])?;
            let admins =
                AdminPolicy::new(config.admin_group.as_deref()).map_err(anyhow::Error::msg)?;
            let origins = config.origins_with(&args.origins);
            outside::start_helper(outside::commands(&origins), config.users.fetchd.as_deref())?;
            sandbox::enter(Policy::fetchd(&state, &origins, &config))?;
            let opts = musicfs_fetchd::Options {
                state_dir: args.state_dir,
                origins,
                config,
            };
            let admin = sockets.pop().expect("two sockets");
            musicfs_fetchd::run(opts, sockets.remove(0), (admin, admins))
        });
    match result {
        Ok(()) if musicfs_fetchd::restart::requested() => {
            std::process::ExitCode::from(musicfs_fetchd::restart::EXIT_RESTART)
        }
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("musicfs-fetchd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
