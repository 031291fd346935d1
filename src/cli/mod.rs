//! The command line's definitions and dispatch: the clap types of every subcommand and
//! flag, the routing of a parsed [`Cli`] to the subcommand's glue, and the small helpers
//! they share (loading a policy and model, parsing an instant).
//!
//! Each subcommand's glue is a submodule: [`generate`] and [`demo`] (feature
//! `generator`), [`replay`] (also `inspect`), [`backtest`], [`fit`] and [`service`] (`run`); [`progress`]
//! draws progress. The glue only maps arguments to library calls and prints results; it
//! may touch stdout, stderr and the files the user names, and calls the library for all
//! else.

mod backtest;
#[cfg(feature = "generator")]
mod demo;
mod fit;
#[cfg(feature = "generator")]
mod generate;
mod progress;
mod replay;
mod service;

use anyhow::Result;
use churnwatch::codec::Format;
use churnwatch::core::policy::Policy;
use churnwatch::core::time::Ts;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

/// Target of the command line's log lines: the crate's name, as when all of them came
/// from `main.rs` (log filters and readers of the JSON logs see the same target).
const LOG_TARGET: &str = "churnwatch";

/// The parsed command line.
#[derive(Parser)]
#[command(
    name = "churnwatch",
    version,
    about = "Churn early warning for automotive after-sales"
)]
pub struct Cli {
    /// Log filter (e.g. `info`, `churnwatch=debug`); also RUST_LOG.
    #[arg(long, global = true, env = "CHURNWATCH_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a realistic synthetic service history (JSON lines) with ground truth.
    #[cfg(feature = "generator")]
    Generate(GenerateArgs),
    /// Run recorded events through the engine; write status changes and dead letters.
    Replay(ReplayArgs),
    /// Show a customer's stored state and current status as JSON.
    Inspect(InspectArgs),
    /// Run one or more policies over the same history in one pass and judge every
    /// warning against what the history shows afterwards; writes a report directory
    /// (summary.json, CSV tables, report.html) and prints a comparison table.
    Backtest(BacktestArgs),
    /// Run the Kafka service: consume the input topics, keep per-partition state in
    /// sled, publish status changes, serve /metrics, /healthz, /readyz, /customers/{id}.
    Run(RunArgs),
    /// Generate a small history in a temporary directory, replay it and show results
    /// (with --kafka: through the live Kafka path on an in-process mock cluster).
    #[cfg(feature = "generator")]
    Demo(DemoArgs),
    /// Fit the visit (BG/NBD or MBG/NBD) and spend (Gamma-Gamma) models on history and
    /// write the parameter file `replay --model` loads.
    #[command(after_help = FIT_WINDOWS)]
    Fit(FitArgs),
    /// Print the effective churn policy (defaults, or a file's values) as TOML.
    Policy {
        /// Policy file to check and print.
        #[arg(long, env = "CHURNWATCH_POLICY")]
        policy: Option<PathBuf>,
    },
}

// The argument structs carry no doc comment of their own: the subcommand's help text is
// the doc comment of its `Command` variant.

#[cfg(feature = "generator")]
#[derive(clap::Args)]
struct GenerateArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 10_000)]
    customers: u64,
    /// Number of dealers.
    #[arg(long, default_value_t = 20)]
    dealers: u32,
    /// Years of history.
    #[arg(long, default_value_t = 5)]
    years: u32,
    /// Random seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// First day of the history (YYYY-MM-DD).
    #[arg(long, default_value = "2021-01-01")]
    start: String,
    /// Share of dirty records (duplicates, bad VINs/phones, missing fields, malformed lines).
    #[arg(long, default_value_t = 0.01)]
    dirty_rate: f64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct BacktestArgs {
    /// Input files in order: JSON lines, or Avro container files ending in `.avro`.
    #[arg(long = "input", required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// Policy file (TOML), repeatable: each runs over the same records and is named
    /// by its file stem. Without one the default policy runs.
    #[arg(long = "policy")]
    policies: Vec<PathBuf>,
    /// Model parameter file from `churnwatch fit`, for every policy.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Count warnings and churns from this date (YYYY-MM-DD or RFC 3339); the earlier
    /// history still warms the engines up.
    #[arg(long)]
    from: Option<String>,
    /// Ignore records after this date; the history ends here.
    #[arg(long)]
    to: Option<String>,
    /// The backtest's "now" (default: the wall clock): records dated more than a day
    /// after it are rejected as implausible, as in replay.
    #[arg(long)]
    as_of: Option<String>,
    /// Vary one numeric policy key over values, e.g.
    /// `--sweep prevent.cadence_factor=1.25,1.5,2.0` (at most twice: every pair of
    /// values runs). Applies to the one --policy given, or the default.
    #[arg(long = "sweep", value_name = "KEY=V1,V2,...")]
    sweeps: Vec<String>,
    /// The generator's ground_truth.csv: also judge detection delay after the latent
    /// drop-out and false alarms per 1,000 active customer-years.
    #[arg(long)]
    ground_truth: Option<PathBuf>,
    /// Report directory (created): summary.json, CSV tables, report.html.
    #[arg(long)]
    report: PathBuf,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// State store directory of a replay.
    #[arg(long)]
    store: PathBuf,
    /// Customer id.
    #[arg(long)]
    customer: String,
    /// Policy file (TOML) to compute the current status with; without it (and without
    /// --model) the policy the store was replayed with applies.
    #[arg(long, env = "CHURNWATCH_POLICY")]
    policy: Option<PathBuf>,
    /// Model parameter file from `churnwatch fit`.
    #[arg(long, env = "CHURNWATCH_MODEL")]
    model: Option<PathBuf>,
}

#[cfg(feature = "generator")]
#[derive(clap::Args)]
struct DemoArgs {
    /// Run the live path: produce the history to an in-process Kafka mock cluster,
    /// run the service on it and read the status changes back.
    #[arg(long)]
    kafka: bool,
    /// Customers in the demo history (with --kafka at most 500, to keep the live run
    /// short).
    #[arg(long, default_value_t = 2_000)]
    customers: u64,
    /// Keep the files here instead of a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// How `fit` cuts the history (shown under `churnwatch fit --help`).
const FIT_WINDOWS: &str =
    "Windows (whole UTC days, the convention of Fader, Hardie & Lee 2005 and \
of the Python package lifetimes): a visit or repair order counts on its UTC date, several on \
one date are one transaction. Calibration: the dates up to and including --calibration-end; \
per customer x = distinct dates after the first, t_x = last - first, T = --calibration-end - \
first (in the time unit). Holdout: the dates after --calibration-end up to and including \
--holdout-end, predicted for (--holdout-end - --calibration-end) days. Spend: the mean \
repair-order total of the repeat dates (the first transaction left out). Leaving out \
--holdout-end does not change the fit.";

#[derive(clap::Args)]
struct FitArgs {
    /// Input files (JSON lines).
    #[arg(long = "input", required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// Last day of the calibration period (YYYY-MM-DD, included): visits dated up to and
    /// including it fit the models.
    #[arg(long)]
    calibration_end: String,
    /// Last day of a holdout period after the calibration end (YYYY-MM-DD, included), to
    /// compare predicted with actual visits.
    #[arg(long)]
    holdout_end: Option<String>,
    /// Visit model.
    #[arg(long, value_enum, default_value_t = ModelArg::MbgNbd)]
    model: ModelArg,
    /// Time unit of the model.
    #[arg(long, value_enum, default_value_t = UnitArg::Weeks)]
    time_unit: UnitArg,
    /// Where to write the parameter file (TOML).
    #[arg(long, default_value = "model.toml")]
    out: PathBuf,
    /// Also write the whole report as JSON here.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelArg {
    /// BG/NBD (Fader, Hardie & Lee 2005).
    BgNbd,
    /// MBG/NBD (Batislam et al. 2007): single-visit customers can be inactive too.
    MbgNbd,
    /// MBG/CNBD-k (Reutterer, Platzer & Schröder 2021): MBG/NBD with Erlang-k gaps
    /// between visits, for regular visitors; k (1-12) is chosen by the likelihood.
    MbgCnbdK,
}

#[derive(Clone, Copy, ValueEnum)]
enum UnitArg {
    Days,
    Weeks,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Config file (TOML); see deploy/churnwatch.toml. CHURNWATCH__SECTION__KEY
    /// environment variables override it, and --set flags override both.
    #[arg(long, env = "CHURNWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Override one config key, e.g. `--set state.commit_interval_ms=500` or
    /// `--set kafka.properties.sasl.mechanism=PLAIN` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Shorthand for `--set kafka.bootstrap_servers=...`.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Shorthand for `--set state.dir=...`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Shorthand for `--set admin.listen=...`.
    #[arg(long)]
    admin_listen: Option<String>,
    /// Print the effective config (defaults, file, environment, flags) and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Input files in order: JSON lines, or Avro container files ending in `.avro`.
    #[arg(long = "input", required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// State store directory (created if missing; a replay resumes from it).
    #[arg(long)]
    store: PathBuf,
    /// Status-change output file.
    #[arg(long)]
    out: PathBuf,
    /// Dead-letter file (default: `<out>.dead.jsonl`).
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    /// Output format.
    #[arg(long, default_value = "json")]
    format: Format,
    /// Start over: delete the store and truncate the outputs.
    #[arg(long)]
    fresh: bool,
    /// Policy file (TOML); defaults apply otherwise.
    #[arg(long, env = "CHURNWATCH_POLICY")]
    policy: Option<PathBuf>,
    /// Model parameter file from `churnwatch fit`: adds P(alive), expected visits and
    /// CLV to status changes and enables the policy's [prediction] rules.
    #[arg(long, env = "CHURNWATCH_MODEL")]
    model: Option<PathBuf>,
    /// After the inputs, advance stream time to this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// The replay's "now" (YYYY-MM-DD or RFC 3339; default: the wall clock when the
    /// replay starts): records dated more than a day after it are rejected as
    /// implausible (dead letter `implausible_time`). Set it to replay a history that
    /// reaches beyond today (a generated future period).
    #[arg(long)]
    as_of: Option<String>,
    /// Commit state, progress and outputs every this many records, or sooner when the
    /// changed customers fill a quarter of the memory budget (each commit is written
    /// on a thread of its own while the replay goes on).
    #[arg(long, default_value_t = churnwatch::edge::replay::DEFAULT_COMMIT_EVERY)]
    commit_every: u64,
    /// Memory budget in MiB: half for customers kept in memory, a quarter for the
    /// store engine's caches and write buffers, a quarter for the commit being
    /// written (the timer index comes on top). Peak memory stays near it whatever the
    /// number of customers.
    #[arg(long, default_value_t = 512)]
    memory_mib: u64,
    /// Customers kept in memory (default: from --memory-mib, 512 per MiB).
    #[arg(long)]
    cache_capacity: Option<usize>,
    /// Threads (default: the cores available): JSON-lines input is decoded on all but
    /// one, ahead of the engine shards. The outputs are byte-identical for any count.
    #[arg(long)]
    threads: Option<usize>,
    /// Engine shards (default: one per two cores): the customers are split over this
    /// many engines that run side by side. The outputs are byte-identical for any
    /// count.
    #[arg(long)]
    shards: Option<usize>,
    /// Engine of a new store: `fjall` (LSM; bounded memory, the default) or `sled`.
    /// An existing store keeps its engine; naming another one is an error.
    #[arg(long)]
    store_engine: Option<churnwatch::store::StoreEngine>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

/// Runs the parsed subcommand.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        #[cfg(feature = "generator")]
        Command::Generate(a) => generate::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Inspect(a) => replay::inspect(a),
        Command::Backtest(a) => backtest::run(a),
        #[cfg(feature = "generator")]
        Command::Demo(a) if a.kafka => demo::kafka(a.customers, a.dir),
        #[cfg(feature = "generator")]
        Command::Demo(a) => demo::file(a.customers, a.dir),
        Command::Run(a) => service::run(a),
        Command::Fit(a) => fit::run(a),
        Command::Policy { policy } => {
            print!("{}", load_policy(policy.as_deref())?.to_toml());
            Ok(())
        }
    }
}

/// The policy in `path`, or the defaults.
fn load_policy(path: Option<&Path>) -> Result<Policy> {
    match path {
        Some(p) => Ok(Policy::load(p)?),
        None => Ok(Policy::default()),
    }
}

/// The policy in `policy` (or the defaults) with the model parameters in `model`.
fn load_policy_and_model(policy: Option<&Path>, model: Option<&Path>) -> Result<Policy> {
    let mut p = load_policy(policy)?;
    if let Some(m) = model {
        p.model = Some(churnwatch::model::params::ModelParams::load(m)?);
    }
    Ok(p)
}

/// A date (YYYY-MM-DD) or an RFC 3339 instant; the error names the flag `what`.
fn parse_instant(s: &str, what: &str) -> Result<Ts> {
    Ts::parse_date(s)
        .or_else(|_| Ts::parse_rfc3339(s))
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))
}
