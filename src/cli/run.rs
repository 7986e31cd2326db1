//! `casegate run [--once]` — the daemon: watches every configured mailbox and Maildir,
//! sends the outbox, and stops cleanly on SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::{self, Options};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Process the mail waiting now in every source, make one outbox pass, and exit
    #[arg(long)]
    pub once: bool,

    /// Seconds to let tasks finish the mail in hand after SIGTERM/Ctrl-C
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub shutdown_timeout: u64,
}

pub fn run(config: Arc<Config>, args: Args) -> anyhow::Result<()> {
    // Two workers: the network tasks need little CPU; the database writer has a thread
    // of its own, outside the runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("casegate-rt")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let options = Options { once: args.once, drain_deadline: Duration::from_secs(args.shutdown_timeout) };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        // Handlers are installed here, before anything starts, so that a SIGTERM arriving
        // early is a clean stop too.
        let signals = Signals::install();
        tokio::spawn(signals.watch(shutdown.clone()));
        daemon::run(config, options, shutdown).await
    });
    // Blocking helpers (a directory listing) end on their own; do not wait long for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// SIGTERM and SIGINT listeners. The first asks for a clean stop; a second one exits at
/// once (which is safe too: nothing is marked processed before its commit).
struct Signals {
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => Signals { streams: Some((term, int)) },
            _ => {
                tracing::warn!("Cannot listen for SIGTERM/SIGINT; stop casegate with SIGKILL");
                Signals { streams: None }
            }
        }
    }

    async fn watch(self, shutdown: CancellationToken) {
        let Some((mut term, mut int)) = self.streams else {
            return;
        };
        for n in 0.. {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if n == 0 {
                tracing::info!(signal = name, "Stop requested");
                shutdown.cancel();
            } else {
                tracing::warn!(signal = name, "Second stop request: exiting now");
                std::process::exit(130);
            }
        }
    }
}
