//! The `casegate` binary: parse the command line, set up logging, run, and map errors to
//! exit codes (0 success, 1 runtime failure, 2 usage or configuration error).

use clap::Parser;
use tracing_subscriber::EnvFilter;

use casegate::cli::{self, Cli};
use casegate::config::LogFormat;

fn main() {
    let cli = Cli::parse();
    // The configuration says how to log; a configuration that cannot be read is reported
    // (in text) by `cli::run`, which maps it to exit code 2.
    let config = cli::load_config(&cli);
    let format = config.as_ref().map_or(LogFormat::Text, |c| c.log.format);
    let level = match cli.verbose {
        0 => cli.command.default_log_level(),
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("{level},casegate={level}")));
    // async-imap logs every command it sends at trace level, sign-in included (with its
    // password or token): never, whatever RUST_LOG asks for.
    let filter = filter.add_directive("async_imap::imap_stream=off".parse().expect("a valid static directive"));
    // Colours only for a person at a terminal; files, pipes and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    // Log lines are written by a thread of their own, so the database writer never waits
    // for a write to stderr (a daemon logs a line or more for every mail). Never lossy: a
    // full queue makes the logging thread wait rather than drop what happened to a mail.
    let (stderr, flush_logs) =
        tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(stderr);
    match format {
        LogFormat::Text => logs.with_ansi(ansi).init(),
        // One JSON object per event, its fields beside the message (not nested), so that
        // `jq .outcome` or a log shipper finds them where the text shows them.
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }

    let result = cli::run(cli, config);
    // Every log line is out before the final word and the exit.
    drop(flush_logs);
    if let Err(err) = result {
        eprintln!("casegate: {err:#}");
        std::process::exit(cli::exit_code(&err));
    }
}
