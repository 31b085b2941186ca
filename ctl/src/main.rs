use std::process::ExitCode;

use clap::Parser;
use musicfs_ctl::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only the supervisor logs; status output stays free of client-side RPC noise.
    if matches!(cli.command, Command::Mount(_)) {
        musicfs_ipc::logging::init("ctl");
    }
    match musicfs_ctl::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("musicfsctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
