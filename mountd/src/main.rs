//! `musicfs-mountd`: mounts the MusicFS library served by fetchd. Logic lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use musicfs_ipc::layout::StateDir;

/// Mount the MusicFS library (served by musicfs-fetchd) read-only at MOUNTPOINT.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// State dir holding fetchd's socket [default: $MUSICFS_STATE_DIR, else the user's or system's]
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// How long to wait for fetchd, at start-up and on each call, before giving up
    #[arg(long, default_value_t = 30)]
    retry_seconds: u64,
    mountpoint: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    musicfs_ipc::memory::keep_large_buffers();
    musicfs_ipc::logging::init("mountd");
    if let Err(err) = musicfs_ipc::sandbox::enter(musicfs_ipc::sandbox::Policy::mountd()) {
        eprintln!("musicfs-mountd: {err}");
        return ExitCode::FAILURE;
    }
    let opts = musicfs_mountd::Options {
        state_dir: args.state_dir.unwrap_or_else(StateDir::default_root),
        mountpoint: args.mountpoint,
        retry_for: Duration::from_secs(args.retry_seconds),
    };
    match musicfs_mountd::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("musicfs-mountd: {err:#}");
            ExitCode::FAILURE
        }
    }
}
