//! Progress of long-running commands: a bar with counts and rate when stderr is a
//! terminal, log lines (at most one every few seconds) otherwise, so that `--json` on
//! stdout stays machine-readable either way.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The bar: what, how far, how fast, how long still.
const BAR: &str = "{msg:>20} [{bar:30}] {pos}/{len} mails, {per_sec}, {eta} left";

/// How often a progress line is logged when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One step's progress at a time.
pub struct Progress {
    terminal: bool,
    step: Mutex<Option<Step>>,
}

struct Step {
    what: String,
    total: u64,
    done: u64,
    started: Instant,
    logged: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar when stderr is a terminal, log lines otherwise.
    pub fn new() -> Progress {
        Progress { terminal: std::io::stderr().is_terminal(), step: Mutex::new(None) }
    }

    fn with_step(&self, f: impl FnOnce(&mut Option<Step>)) {
        f(&mut self.step.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl crate::reconcile::Progress for Progress {
    fn start(&self, what: &str, total: u64) {
        let bar = self.terminal.then(|| {
            let bar = ProgressBar::new(total);
            // A constant template, checked by a test.
            let style = ProgressStyle::with_template(BAR).expect("constant template").progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(what.to_string());
            bar
        });
        let now = Instant::now();
        self.with_step(|s| {
            *s = Some(Step { what: what.to_string(), total, done: 0, started: now, logged: now, bar });
        });
    }

    fn advance(&self, mails: u64) {
        self.with_step(|s| {
            let Some(step) = s else { return };
            step.done += mails;
            match &step.bar {
                Some(bar) => bar.inc(mails),
                None if step.logged.elapsed() >= LOG_EVERY => {
                    step.logged = Instant::now();
                    let rate = step.done as f64 / step.started.elapsed().as_secs_f64().max(0.001);
                    tracing::info!(step = %step.what, done = step.done, total = step.total, per_sec = rate as u64, "Progress");
                }
                None => {}
            }
        });
    }

    fn finish(&self) {
        self.with_step(|s| {
            if let Some(step) = s.take() {
                if let Some(bar) = step.bar {
                    bar.finish_and_clear();
                }
                let ms = step.started.elapsed().as_millis() as u64;
                tracing::info!(step = %step.what, mails = step.done, ms, "Looked through");
            }
        });
    }
}

/// The data lifecycle's long commands (`purge`, `erase`) report through the same bar.
impl crate::lifecycle::Progress for Progress {
    fn start(&self, what: &str, total: u64) {
        crate::reconcile::Progress::start(self, what, total);
    }

    fn advance(&self, n: u64) {
        crate::reconcile::Progress::advance(self, n);
    }

    fn finish(&self) {
        crate::reconcile::Progress::finish(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_template_parses() {
        assert!(ProgressStyle::with_template(BAR).is_ok());
    }
}
