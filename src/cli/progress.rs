//! Progress of a long subcommand on stderr: a bar on a terminal, a log line every 10%
//! otherwise.
//!
//! Owns the terminal presentation of progress only; it may touch stderr (through
//! `indicatif` or `tracing`) and nothing else.

use super::LOG_TARGET;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A progress reporter: a bar on a terminal, a log line every 10% otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    last_decile: u64,
}

impl Progress {
    /// A reporter for `what` (e.g. `"replaying"`) out of `total` units.
    pub fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:10} [{bar:40}] {percent:>3}% {elapsed_precise} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_message(what);
            b
        });
        Progress {
            bar,
            what,
            last_decile: 0,
        }
    }

    /// Reports `done` of `total` units; `detail` follows the percentage in log lines.
    pub fn set(&mut self, done: u64, total: u64, detail: &str) {
        match &self.bar {
            Some(b) => {
                b.set_length(total.max(1));
                b.set_position(done);
            }
            None => {
                let decile = (done * 10).checked_div(total).unwrap_or(10);
                if decile > self.last_decile {
                    self.last_decile = decile;
                    tracing::info!(
                        target: LOG_TARGET,
                        percent = decile * 10,
                        "{} {}% {detail}",
                        self.what,
                        decile * 10
                    );
                }
            }
        }
    }

    /// Clears the bar, if there is one.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
