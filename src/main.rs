//! The `churnwatch` command line: a thin layer over the library.

use anyhow::{bail, Context, Result};
use churnwatch::codec::Format;
use churnwatch::core::policy::Policy;
use churnwatch::core::time::Ts;
use churnwatch::edge::kafka::config::Config as ServiceConfig;
use churnwatch::edge::replay::{self, ReplayOptions, ReplayProgress, ReplaySummary};
use churnwatch::generate::{self, GenConfig, GenProgress};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "churnwatch",
    version,
    about = "Churn early warning for automotive after-sales"
)]
struct Cli {
    /// Log filter (e.g. `info`, `churnwatch=debug`); also RUST_LOG.
    #[arg(long, global = true, env = "CHURNWATCH_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a realistic synthetic service history (JSON lines) with ground truth.
    Generate {
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
    },
    /// Run recorded events through the engine; write status changes and dead letters.
    Replay(ReplayArgs),
    /// Show a customer's stored state and current status as JSON.
    Inspect {
        /// State store directory of a replay.
        #[arg(long)]
        store: PathBuf,
        /// Customer id.
        #[arg(long)]
        customer: String,
        /// Policy file (TOML); defaults apply otherwise.
        #[arg(long, env = "CHURNWATCH_POLICY")]
        policy: Option<PathBuf>,
        /// Model parameter file from `churnwatch fit`.
        #[arg(long, env = "CHURNWATCH_MODEL")]
        model: Option<PathBuf>,
    },
    /// Run the Kafka service: consume the input topics, keep per-partition state in
    /// sled, publish status changes, serve /metrics, /healthz, /readyz, /customers/{id}.
    Run(RunArgs),
    /// Generate a small history in a temporary directory, replay it and show results
    /// (with --kafka: through the live Kafka path on an in-process mock cluster).
    Demo {
        /// Run the live path: produce the history to an in-process Kafka mock cluster,
        /// run the service on it and read the status changes back.
        #[arg(long)]
        kafka: bool,
        /// Customers in the demo history.
        #[arg(long, default_value_t = 2_000)]
        customers: u64,
        /// Keep the files here instead of a temporary directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Fit the visit (BG/NBD or MBG/NBD) and spend (Gamma-Gamma) models on history and
    /// write the parameter file `replay --model` loads.
    Fit {
        /// Input files (JSON lines).
        #[arg(long = "input", required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        /// End of the calibration period (YYYY-MM-DD or RFC 3339): visits up to here fit the models.
        #[arg(long)]
        calibration_end: String,
        /// End of a holdout period after the calibration end, to compare predicted with actual visits.
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
    },
    /// Print the effective churn policy (defaults, or a file's values) as TOML.
    Policy {
        /// Policy file to check and print.
        #[arg(long, env = "CHURNWATCH_POLICY")]
        policy: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelArg {
    /// BG/NBD (Fader, Hardie & Lee 2005).
    BgNbd,
    /// MBG/NBD (Batislam et al. 2007): single-visit customers can be inactive too.
    MbgNbd,
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
    /// Commit state, progress and outputs every this many records.
    #[arg(long, default_value_t = 200_000)]
    commit_every: u64,
    /// Customers kept in memory.
    #[arg(long, default_value_t = 500_000)]
    cache_capacity: usize,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    if let Err(e) = run(cli) {
        eprintln!("error: {}", render(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, skipping a cause whose text the message already holds
/// (the library's errors name their cause in their own message).
fn render(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let m = c.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cause = c.source();
    }
    out
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.compact().init();
    } else {
        builder.json().init();
    }
}

fn load_policy(path: Option<&Path>) -> Result<Policy> {
    match path {
        Some(p) => Ok(Policy::load(p)?),
        None => Ok(Policy::default()),
    }
}

fn load_policy_and_model(policy: Option<&Path>, model: Option<&Path>) -> Result<Policy> {
    let mut p = load_policy(policy)?;
    if let Some(m) = model {
        p.model = Some(churnwatch::model::params::ModelParams::load(m)?);
    }
    Ok(p)
}

fn parse_instant(s: &str, what: &str) -> Result<Ts> {
    Ts::parse_date(s)
        .or_else(|_| Ts::parse_rfc3339(s))
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// A progress reporter: a bar on a terminal, a log line every 10% otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    last_decile: u64,
}

impl Progress {
    fn new(what: &'static str, total: u64) -> Self {
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

    fn set(&mut self, done: u64, total: u64, detail: &str) {
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
                        percent = decile * 10,
                        "{} {}% {detail}",
                        self.what,
                        decile * 10
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate {
            customers,
            dealers,
            years,
            seed,
            start,
            dirty_rate,
            out,
        } => {
            let cfg = GenConfig {
                customers,
                dealers,
                years,
                seed,
                start: parse_instant(&start, "--start")?,
                dirty_rate,
                ..GenConfig::default()
            };
            let s = run_generate(&cfg, &out)?;
            println!(
                "generated {} events ({} lines, {} dirty) for {} customers ({} drop-outs), {} to {}",
                s.events, s.lines, s.dirty_lines, s.customers, s.dropouts,
                s.start.to_date_string(), s.end.to_date_string()
            );
            for f in &s.files {
                println!("  {}", f.display());
            }
            Ok(())
        }
        Command::Replay(a) => {
            let mut opts = ReplayOptions::new(a.inputs, a.store, a.out);
            if let Some(d) = a.dead_letter {
                opts.dead_letter = d;
            }
            opts.format = a.format;
            opts.fresh = a.fresh;
            if a.commit_every == 0 {
                bail!("--commit-every must be at least 1");
            }
            opts.commit_every = a.commit_every;
            opts.cache_capacity = a.cache_capacity;
            opts.policy = load_policy_and_model(a.policy.as_deref(), a.model.as_deref())?;
            opts.until = a
                .until
                .as_deref()
                .map(|u| parse_instant(u, "--until"))
                .transpose()?;
            opts.as_of = a
                .as_of
                .as_deref()
                .map(|u| parse_instant(u, "--as-of"))
                .transpose()?;
            let s = run_replay(&opts)?;
            print_summary(&s, &opts);
            if let Some(path) = a.summary_json {
                std::fs::write(&path, serde_json::to_vec_pretty(&s)?)
                    .with_context(|| format!("cannot write summary to {}", path.display()))?;
            }
            Ok(())
        }
        Command::Inspect {
            store,
            customer,
            policy,
            model,
        } => {
            let policy = load_policy_and_model(policy.as_deref(), model.as_deref())?;
            match replay::inspect(&store, &customer, &policy)? {
                Some(v) => {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(())
                }
                None => bail!(
                    "customer `{customer}` is not in the store at {}",
                    store.display()
                ),
            }
        }
        Command::Demo {
            customers,
            dir,
            kafka: false,
        } => demo(customers, dir),
        Command::Demo {
            customers,
            dir,
            kafka: true,
        } => demo_kafka(customers, dir),
        Command::Run(a) => run_service(a),
        Command::Fit {
            inputs,
            calibration_end,
            holdout_end,
            model,
            time_unit,
            out,
            report_json,
        } => {
            let opts = churnwatch::model::fit::FitOptions {
                inputs,
                calibration_end: parse_instant(&calibration_end, "--calibration-end")?,
                holdout_end: holdout_end
                    .as_deref()
                    .map(|h| parse_instant(h, "--holdout-end"))
                    .transpose()?,
                model: match model {
                    ModelArg::BgNbd => churnwatch::model::params::VisitModel::BgNbd,
                    ModelArg::MbgNbd => churnwatch::model::params::VisitModel::MbgNbd,
                },
                time_unit_days: match time_unit {
                    UnitArg::Days => 1.0,
                    UnitArg::Weeks => 7.0,
                },
            };
            tracing::info!("reading and fitting; this takes a while on large histories");
            let r = churnwatch::model::fit::fit(&opts)?;
            print_fit(&r);
            r.params.save(&out)?;
            println!("parameters written to {}", out.display());
            if let Some(path) = report_json {
                std::fs::write(&path, serde_json::to_vec_pretty(&r)?)
                    .with_context(|| format!("cannot write report to {}", path.display()))?;
            }
            Ok(())
        }
        Command::Policy { policy } => {
            print!("{}", load_policy(policy.as_deref())?.to_toml());
            Ok(())
        }
    }
}

fn run_generate(cfg: &GenConfig, out: &Path) -> Result<generate::GenSummary> {
    let mut p = Progress::new("generating", cfg.customers);
    let s = generate::generate(cfg, out, &mut |g: GenProgress| p.set(g.done, g.total, ""))
        .with_context(|| format!("generating into {}", out.display()))?;
    p.finish();
    Ok(s)
}

fn run_replay(opts: &ReplayOptions) -> Result<ReplaySummary> {
    let mut p = Progress::new("replaying", 1);
    let s = replay::replay(opts, &mut |r: ReplayProgress| {
        p.set(r.bytes_done, r.bytes_total, "of the input")
    })?;
    p.finish();
    Ok(s)
}

fn print_summary(s: &ReplaySummary, opts: &ReplayOptions) {
    if s.already_complete {
        println!(
            "this replay was already complete in {}; pass --fresh to run it again",
            opts.store.display()
        );
    } else if s.resumed {
        println!(
            "resumed an interrupted replay from {}",
            opts.store.display()
        );
    }
    println!(
        "records      {:>12}  ({} events, {} ticks)",
        s.records, s.events, s.ticks
    );
    println!(
        "bad          {:>12}  rejected to {}",
        s.bad,
        opts.dead_letter.display()
    );
    println!(
        "field issues {:>12}  (bad VIN/phone dropped, event kept)",
        s.field_issues
    );
    println!("duplicates   {:>12}", s.duplicates);
    println!(
        "late         {:>12}  ({} corrections)",
        s.late, s.corrections
    );
    println!("customers    {:>12}", s.customers);
    println!("timers fired {:>12}", s.timers_fired);
    println!(
        "changes      {:>12}  written to {}",
        s.status_changes,
        opts.out.display()
    );
    for (k, v) in &s.changes_by_level {
        println!("  to {k:<10}{v:>12}");
    }
    println!(
        "customers now by level:     {}",
        fmt_map(&s.customers_by_level)
    );
    println!(
        "customers now by lifecycle: {}",
        fmt_map(&s.customers_by_lifecycle)
    );
    println!(
        "customers now by tier:      {}",
        fmt_map(&s.customers_by_tier)
    );
    println!("stream time  {}", s.stream_time.as_deref().unwrap_or("-"));
    println!(
        "elapsed      {:>12.2} s  ({:.0} events/s)",
        s.elapsed_secs, s.events_per_sec
    );
    println!("store        {:>12} bytes", s.store_bytes);
}

fn print_fit(r: &churnwatch::model::fit::FitReport) {
    println!(
        "read {} lines ({} visits, {} skipped, {} duplicates) in {:.2} s",
        r.read.lines, r.read.visits, r.read.skipped, r.read.duplicates, r.read_secs
    );
    println!(
        "customers {}  distinct (x, t_x, T) patterns {}",
        r.customers, r.patterns
    );
    let v = &r.visit;
    let se = |i: usize| v.std_errors.get(i).copied().unwrap_or(f64::NAN);
    println!(
        "visit model {:?} (time unit {} days): log-likelihood {:.4}, {} iterations, converged {}",
        r.params.model, r.params.time_unit_days, v.log_likelihood, v.iterations, v.converged
    );
    for (i, (name, value)) in [
        ("r", v.params.r),
        ("alpha", v.params.alpha),
        ("a", v.params.a),
        ("b", v.params.b),
    ]
    .into_iter()
    .enumerate()
    {
        println!("  {name:<6} {value:>12.6}  (s.e. {:.6})", se(i));
    }
    match &r.spend {
        Some(g) => {
            println!(
                "spend model Gamma-Gamma: log-likelihood {:.4}, converged {}",
                g.log_likelihood, g.converged
            );
            for (i, (name, value)) in [("p", g.params.p), ("q", g.params.q), ("v", g.params.v)]
                .into_iter()
                .enumerate()
            {
                println!(
                    "  {name:<6} {value:>12.6}  (s.e. {:.6})",
                    g.std_errors.get(i).copied().unwrap_or(f64::NAN)
                );
            }
        }
        None => println!("spend model: not fitted (fewer than 10 repeat customers with amounts)"),
    }
    if !r.holdout.is_empty() {
        println!("holdout check: mean visits per customer in the holdout period");
        println!(
            "  {:>16} {:>10} {:>10} {:>10}",
            "calib. repeats", "customers", "predicted", "actual"
        );
        for h in &r.holdout {
            println!(
                "  {:>16} {:>10} {:>10.3} {:>10.3}",
                h.calibration_repeat_visits, h.customers, h.predicted, h.actual
            );
        }
    }
    println!("fit took {:.2} s", r.fit_secs);
}

fn fmt_map(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn demo(customers: u64, dir: Option<PathBuf>) -> Result<()> {
    let tmp;
    let tmp_used = dir.is_none();
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    let cfg = GenConfig {
        customers,
        dealers: 5,
        years: 5,
        seed: 7,
        ..GenConfig::default()
    };
    println!(
        "== generating {customers} customers x 5 years into {}",
        dir.display()
    );
    let g = run_generate(&cfg, &dir.join("history"))?;
    println!(
        "   {} events, {} dirty lines, {} latent drop-outs",
        g.events, g.dirty_lines, g.dropouts
    );
    let mut opts = ReplayOptions::new(
        g.files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
            .cloned()
            .collect(),
        dir.join("store"),
        dir.join("status_changes.jsonl"),
    );
    opts.fresh = true;
    println!("== replaying through the churn engine");
    let s = run_replay(&opts)?;
    print_summary(&s, &opts);
    println!("== a few status changes");
    let f = std::fs::File::open(&opts.out)?;
    let mut shown = std::collections::BTreeSet::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        let v: serde_json::Value = serde_json::from_str(&line)?;
        let key = format!("{}{}", v["level"], v["trigger"]);
        if shown.insert(key) {
            println!("{line}");
        }
        if shown.len() >= 6 {
            break;
        }
    }
    if tmp_used {
        println!("== the files above are temporary; pass --dir DIR to keep them and then try");
        println!(
            "   churnwatch inspect --store DIR/store --customer <customer_id from the output>"
        );
    } else {
        println!(
            "== try: churnwatch inspect --store {} --customer <customer_id from the output>",
            opts.store.display()
        );
    }
    Ok(())
}

fn service_config(a: &RunArgs) -> Result<ServiceConfig> {
    let mut sets = a.sets.clone();
    if let Some(b) = &a.bootstrap_servers {
        sets.push(format!("kafka.bootstrap_servers={b}"));
    }
    if let Some(d) = &a.state_dir {
        sets.push(format!("state.dir={}", d.display()));
    }
    if let Some(l) = &a.admin_listen {
        sets.push(format!("admin.listen={l}"));
    }
    Ok(ServiceConfig::load(
        a.config.as_deref(),
        std::env::vars(),
        &sets,
    )?)
}

fn run_service(a: RunArgs) -> Result<()> {
    let cfg = service_config(&a)?;
    if a.print_config {
        print!("{}", cfg.redacted().to_toml());
        return Ok(());
    }
    let policy = load_policy_and_model(cfg.policy.as_deref(), cfg.model.as_deref())?;
    let drain = std::time::Duration::from_millis(cfg.shutdown.drain_timeout_ms);
    let running = churnwatch::edge::kafka::start(cfg, policy)?;
    running
        .handle()
        .spawn(on_signals(running.shutdown_token(), drain));
    let summary = running.wait()?;
    tracing::info!(processed = summary.processed, "stopped");
    Ok(())
}

/// First SIGTERM/SIGINT: drain (bounded); a second one, or a drain past its bound,
/// exits at once.
async fn on_signals(token: tokio_util::sync::CancellationToken, drain: std::time::Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!(
        drain_ms = drain.as_millis() as u64,
        "signal received: draining; a second signal exits at once"
    );
    token.cancel();
    tokio::select! {
        _ = term.recv() => tracing::warn!("second signal: exiting without finishing the drain"),
        _ = int.recv() => tracing::warn!("second signal: exiting without finishing the drain"),
        _ = tokio::time::sleep(drain + std::time::Duration::from_secs(5)) => {
            tracing::error!("the drain took longer than its bound; exiting");
        }
    }
    std::process::exit(130);
}

fn demo_kafka(customers: u64, dir: Option<PathBuf>) -> Result<()> {
    use churnwatch::edge::kafka::io::{backfill_jsonl, mock_cluster, read_topic};
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    // History up to today, so that the live ticks (wall-clock time) continue it.
    let today = chrono::Utc::now().date_naive();
    let gen = GenConfig {
        customers: customers.min(500),
        dealers: 5,
        years: 3,
        seed: 7,
        start: Ts::from_date(today - chrono::Months::new(36)),
        ..GenConfig::default()
    };
    println!(
        "== generating {} customers x 3 years into {}",
        gen.customers,
        dir.display()
    );
    let g = run_generate(&gen, &dir.join("history"))?;
    let events = g
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .context("the generator wrote no JSON-lines file")?
        .clone();
    let mut cfg = ServiceConfig::default();
    let partitions = 6;
    cfg.output.create_topics = false;
    cfg.state.dir = dir.join("service-state");
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.ticks.interval_ms = 1000;
    cfg.metrics.kpi_interval_ms = 1000;
    let cluster = mock_cluster(&cfg, partitions)?;
    cfg.kafka.bootstrap_servers = cluster.bootstrap_servers();
    println!(
        "== in-process Kafka mock cluster at {} ({partitions} partitions per topic)",
        cfg.kafka.bootstrap_servers
    );
    let b = backfill_jsonl(&cfg, &events, partitions)?;
    println!(
        "   produced {} lines as {} records (keyed by customer_id) to {}, {}, {}",
        b.lines,
        b.records,
        cfg.input.repair_orders.topic,
        cfg.input.visits.topic,
        cfg.input.contracts.topic
    );
    let client = {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &cfg.kafka.bootstrap_servers);
        c
    };
    let status_topic = cfg.output.status_topic.clone();
    let dead_topic = cfg.output.dead_letter_topic.clone();
    let running = churnwatch::edge::kafka::start(cfg, Policy::default())?;
    println!(
        "== churnwatch run: admin on http://{}/metrics",
        running.admin_addr
    );
    let started = std::time::Instant::now();
    let shared = running.shared.clone();
    // Everything produced so far is read, handed on, committed and delivered once the
    // loop has found itself caught up (live ticks keep arriving after that).
    // Then one more round after the tick producer has written a tick into every
    // partition, so that stream time reaches the wall clock.
    let wait_caught_up = |since: u64| -> Result<()> {
        while shared.caught_up_seen() == since {
            std::thread::sleep(std::time::Duration::from_millis(50));
            if started.elapsed() > std::time::Duration::from_secs(300) {
                bail!(
                    "the service processed only {} of {} records in 300 s",
                    shared.metrics.processed_events.get(),
                    b.records
                );
            }
        }
        Ok(())
    };
    wait_caught_up(0)?;
    while shared.metrics.ticks_produced.get() < 3 * partitions as u64 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    wait_caught_up(shared.caught_up_seen())?;
    let secs = started.elapsed().as_secs_f64();
    let body = shared.metrics.render();
    let summary = running.stop()?;
    let published = shared.published();
    println!(
        "   processed {} records in {secs:.1} s ({} of them live ticks at wall-clock time); drained and stopped",
        summary.processed,
        shared.metrics.ticks_consumed.get() - b.ticks * 3 * partitions as u64
    );
    let wait = std::time::Duration::from_secs(60);
    let changes = read_topic(&client, &status_topic, wait, |m| {
        m.len() as u64 >= published.changes
    })?;
    let dead = read_topic(&client, &dead_topic, wait, |m| {
        m.len() as u64 >= published.dead_letters
    })?;
    let mut by_level = std::collections::BTreeMap::new();
    let mut shown = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for m in &changes {
        use rdkafka::Message;
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default())?;
        let level = v["level"].as_str().unwrap_or("?").to_string();
        *by_level.entry(level.clone()).or_insert(0u64) += 1;
        if shown.insert(format!("{level}{}", v["trigger"])) && samples.len() < 4 {
            samples.push(v.to_string());
        }
    }
    println!(
        "== topic {status_topic}: {} status changes by new level {by_level:?}",
        changes.len()
    );
    for s in samples {
        println!("   {s}");
    }
    println!("== topic {dead_topic}: {} dead letters", dead.len());
    println!("== a few metrics from /metrics");
    for line in body.lines().filter(|l| {
        l.starts_with("churnwatch_customers{")
            || l.starts_with("churnwatch_processed_events_total")
            || l.starts_with("churnwatch_end_to_end_seconds_count")
    }) {
        println!("   {line}");
    }
    drop(cluster);
    Ok(())
}
