//! Synthetic after-sales service histories: the workload behind `churnwatch generate`.
//!
//! This module owns the deterministic generator of realistic dealer data: customers of
//! car dealers (4S stores) with a vehicle, a visit cadence, a mileage, repair orders,
//! dealer visits and contracts, some of whom drift away and stop coming (the latent
//! drop-out recorded in the ground truth). It writes two files into an output directory:
//!
//! - [`EVENTS_FILE`] (`events.jsonl`): one input record per line, in the exact shapes that
//!   [`crate::core::event::decode_json_line`] validates, in event-time order except for the
//!   configured disorder, late deliveries and dirty records, ending with a `tick` record at
//!   the end of the period;
//! - [`GROUND_TRUTH_FILE`] (`ground_truth.csv`): one row per customer with the segment,
//!   the visit cadence, the latent drop-out date and its cause.
//!
//! The drop-out risk carries the seed documents' patterns (module `risk`): rising with
//! vehicle age and jumping when the factory warranty ends, differing by dealer service
//! quality, higher outside the dealer's service region, after a large repair bill without
//! a maintenance plan, and by segment.
//!
//! The same [`GenConfig`] always produces byte-identical files: every customer draws from
//! its own ChaCha stream of the seed, nothing iterates a hash map, and amounts are written
//! with fixed decimals. The module does no terminal output (progress goes through a
//! callback) and reads no clock or environment.
//!
//! Memory is bounded by one compact record (about 44 bytes) per event plus one per
//! customer; lines are rendered one at a time straight into a buffered writer.
//!
//! The generator sits outside the core: it only reads the core's input vocabulary
//! (event kinds, [`Ts`](crate::core::time::Ts), the default stream policy) and is built
//! with the cargo feature `generator` (on by default). This file owns the entry point
//! [`generate`], the output file names and the rate-limited progress; the parts are:
//!
//! - `config`: [`GenConfig`], its validation, [`GenProgress`], [`GenSummary`],
//!   [`GenerateError`];
//! - `catalogue`, `calendar`: brands and models; days, months, the Spring Festival;
//! - `customer`, `risk`, `sim`, `contract`: the population, the latent drop-out risk and
//!   the simulation of one customer;
//! - `event`: the compact event model and the dirty-data injection;
//! - `ids`, `format`, `render`: VINs, phones and ids; fixed-format writers; JSON lines;
//! - `plan`: all customers and events of a run and the writers of both files.

mod calendar;
mod catalogue;
mod config;
mod contract;
mod customer;
mod event;
mod format;
mod ids;
mod plan;
mod render;
mod risk;
mod sim;
#[cfg(test)]
mod tests;

pub use config::{
    GenConfig, GenProgress, GenSummary, GenerateError, MAX_CUSTOMERS, MAX_DEALERS, MAX_YEARS,
};

use plan::Plan;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Name of the event file written into the output directory.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Name of the ground-truth file written into the output directory.
pub const GROUND_TRUTH_FILE: &str = "ground_truth.csv";
/// Header line of the ground-truth file.
/// `cause` names the dominant driver of the drop-out (empty without one): `warranty_end`,
/// `dealer_quality`, `out_of_region`, `segment`, `price_shock` or `baseline`.
pub const GROUND_TRUTH_HEADER: &str =
    "customer_id,dealer_id,segment,cadence_days,dropout_date,cause";

/// Generates the synthetic history described by `cfg` into `out_dir` (created if missing)
/// and returns what was written. `progress` is called at most about every 1% of the work.
pub fn generate(
    cfg: &GenConfig,
    out_dir: &Path,
    progress: &mut dyn FnMut(GenProgress),
) -> Result<GenSummary, GenerateError> {
    cfg.validate()?;
    std::fs::create_dir_all(out_dir).map_err(|source| GenerateError::CreateDir {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut prog = Progress::new(progress, cfg.customers.saturating_mul(2));
    let plan = Plan::build(cfg, &mut prog);
    let events_path = out_dir.join(EVENTS_FILE);
    write_file(&events_path, |w| plan.write_events(w, None, &mut prog))?;
    let truth_path = out_dir.join(GROUND_TRUTH_FILE);
    write_file(&truth_path, |w| plan.write_ground_truth(w))?;
    prog.finish();
    Ok(plan.summary(vec![events_path, truth_path]))
}

fn write_file(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), GenerateError> {
    let err = |source| GenerateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(err)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    body(&mut w).map_err(err)?;
    w.flush().map_err(err)
}

/// Rate-limited progress reporting (about 100 calls per run).
struct Progress<'a> {
    cb: &'a mut dyn FnMut(GenProgress),
    total: u64,
    step: u64,
    next: u64,
    last: u64,
}

impl<'a> Progress<'a> {
    fn new(cb: &'a mut dyn FnMut(GenProgress), total: u64) -> Self {
        let step = (total / 100).max(1);
        Progress {
            cb,
            total,
            step,
            next: step,
            last: 0,
        }
    }

    fn update(&mut self, done: u64) {
        let done = done.min(self.total);
        if done >= self.next && done < self.total {
            (self.cb)(GenProgress {
                done,
                total: self.total,
            });
            self.last = done;
            self.next = (done / self.step + 1) * self.step;
        }
    }

    fn finish(&mut self) {
        if self.last != self.total {
            self.last = self.total;
            (self.cb)(GenProgress {
                done: self.total,
                total: self.total,
            });
        }
    }
}
