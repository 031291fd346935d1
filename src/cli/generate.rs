//! `churnwatch generate`: maps the flags to a [`GenConfig`], runs the library's
//! generator with a progress bar and prints what was written. Also the generator call
//! the demos share.
//!
//! May touch stdout, stderr (progress) and the output directory, through the library.

use super::progress::Progress;
use super::{parse_instant, GenerateArgs};
use anyhow::{Context, Result};
use churnwatch::generate::{GenConfig, GenProgress, GenSummary};
use std::path::Path;

/// Runs `churnwatch generate`.
pub fn run(a: GenerateArgs) -> Result<()> {
    let cfg = GenConfig {
        customers: a.customers,
        dealers: a.dealers,
        years: a.years,
        seed: a.seed,
        start: parse_instant(&a.start, "--start")?,
        dirty_rate: a.dirty_rate,
        ..GenConfig::default()
    };
    let s = run_generate(&cfg, &a.out)?;
    println!(
        "generated {} events ({} lines, {} dirty) for {} customers ({} drop-outs), {} to {}",
        s.events,
        s.lines,
        s.dirty_lines,
        s.customers,
        s.dropouts,
        s.start.to_date_string(),
        s.end.to_date_string()
    );
    for f in &s.files {
        println!("  {}", f.display());
    }
    Ok(())
}

/// Generates `cfg` into `out` with progress on stderr.
pub fn run_generate(cfg: &GenConfig, out: &Path) -> Result<GenSummary> {
    let mut p = Progress::new("generating", cfg.customers);
    let s =
        churnwatch::generate::generate(cfg, out, &mut |g: GenProgress| p.set(g.done, g.total, ""))
            .with_context(|| format!("generating into {}", out.display()))?;
    p.finish();
    Ok(s)
}
