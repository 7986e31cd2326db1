//! The `casegate` binary: parse the command line, set up logging, run, and map errors to
//! exit codes (0 success, 1 runtime failure, 2 usage or configuration error).

use clap::Parser;
use tracing_subscriber::EnvFilter;

use casegate::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => cli.command.default_log_level(),
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{level},casegate={level}")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    if let Err(err) = cli::run(cli) {
        eprintln!("casegate: {err:#}");
        std::process::exit(cli::exit_code(&err));
    }
}
