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
    if let Some(helper) = musicfs_fetchd::outside::helper_if_asked() {
        return helper;
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
            musicfs_fetchd::outside::start(&origins, config.users.fetchd.as_deref())?;
            sandbox::enter(Policy::fetchd(&state, &origins, &config))?;
            let opts = musicfs_fetchd::Options {
                state_dir: args.state_dir,
                origins,
                config,
            };
            let admin = sockets.pop().expect("two sockets");
            musicfs_fetchd::run(opts, sockets.remove(0), (admin, admins))
        });
    musicfs_fetchd::exit_code(result)
}
