//! Backtesting: several policies over the same history in one pass, each warning judged
//! against what the history shows afterwards, and the users' KPIs, written as a report.
//!
//! The input files are read and decoded once, in order (as `replay` reads them), on the
//! caller's thread; every record is checked against the time bounds there and handed,
//! in chunks shared by reference, to one in-memory [`Driver`] per policy, each on a
//! thread of its own (a backtest needs no crash safety: nothing is stored on disk).
//! The same thread gathers the [`History`] (visits, dealer, region, vehicle) the
//! evaluation reads. Each engine thread keeps its policy's status changes per customer
//! and takes the monthly segment matrices as stream time passes each month's start,
//! refreshing only the customers its engine changed since the previous one. Then, per
//! policy: [`eval`] (precision, came back, recall, lead time, workload), [`segments`]
//! (segment matrix, lifecycle flows), and with a ground truth [`truth`]; once for all:
//! [`kpis`] — each of these on a thread of its own. [`report`] writes `summary.json`, CSV
//! tables and `report.html`.
//!
//! This edge reads the input files and (in [`report`]) writes the report directory;
//! it imports no other edge.

pub mod eval;
pub mod history;
pub mod kpis;
pub mod report;
pub mod segments;
pub mod svg;
pub mod sweep;
pub mod truth;

use crate::codec::avro::{self, AvroError};
use crate::core::engine::Counters;
use crate::core::event::{decode_json_line, Input, InvalidEvent, Validated};
use crate::core::kpi::{month_of, Month};
use crate::core::policy::Policy;
use crate::core::time::Ts;
use crate::driver::{DeadOutcome, Driver, Origin, Outputs, TimeBounds};
use crate::store::{MemKv, MemStore, StoreError};
use eval::{Change, Evaluation, Window};
use history::History;
use kpis::Kpis;
use segments::{Cell, Flow, MatrixAt};
use serde::Serialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use thiserror::Error;
use truth::{Truth, TruthStats};

/// How far past the backtest's "now" a record may be dated (as in replay): one day.
pub const CLOCK_SKEW_MS: i64 = 86_400_000;

/// Records per chunk handed to the engines.
const CHUNK: usize = 4096;

/// Chunks in flight ahead of the slowest engine.
const IN_FLIGHT: usize = 4;

/// Why a backtest could not run.
#[derive(Debug, Error)]
pub enum BacktestError {
    /// No input file was named.
    #[error("no input files given")]
    NoInputs,
    /// An input or output could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An Avro input could not be read.
    #[error("cannot read Avro input {path}: {source}")]
    Avro {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: AvroError,
    },
    /// The inputs hold no usable customer event (in the window).
    #[error("the input holds no valid customer event{0}; nothing to backtest")]
    Empty(String),
    /// `--from` is not before `--to` (or the end of the history).
    #[error("the window is empty: --from {from} is not before {to}")]
    Window {
        /// The window start.
        from: String,
        /// Its end.
        to: String,
    },
    /// Two policies share a name.
    #[error("two policies are named `{0}`; give each file another name")]
    DuplicateName(String),
    /// A sweep that cannot run.
    #[error("--sweep {0}")]
    Sweep(String),
    /// The ground-truth file is wrong.
    #[error("ground truth {path} line {line}: {reason}")]
    GroundTruth {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The in-memory store failed (not expected).
    #[error("engine store: {0}")]
    Store(#[from] StoreError),
    /// An engine thread ended early.
    #[error("the engine of policy `{0}` stopped unexpectedly")]
    Engine(String),
}

fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BacktestError {
    let path = path.to_path_buf();
    move |source| BacktestError::Io { what, path, source }
}

/// A policy to backtest, with its name in the report.
#[derive(Debug, Clone)]
pub struct NamedPolicy {
    /// Name (a file stem, `default`, or a sweep label).
    pub name: String,
    /// The policy (with its model, if any).
    pub policy: Policy,
}

/// What to backtest.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    /// Input files in order (`.avro` files as Avro containers, others as JSON lines).
    pub inputs: Vec<PathBuf>,
    /// The policies, each run over the same records.
    pub policies: Vec<NamedPolicy>,
    /// Warnings and churns before this instant are not counted (the engines still run
    /// over the earlier history, so their state is warm).
    pub from: Option<Ts>,
    /// Records after this instant are ignored and the history ends here (stream time
    /// is advanced to it). None: the history ends at its newest record.
    pub to: Option<Ts>,
    /// The backtest's "now": records dated more than [`CLOCK_SKEW_MS`] after it are
    /// rejected as implausible, as replay does. None: the wall clock.
    pub as_of: Option<Ts>,
    /// The generator's `ground_truth.csv`, to judge against too.
    pub ground_truth: Option<PathBuf>,
    /// The keys swept, when the policies come from `--sweep` (for the report's charts).
    pub sweep_keys: Vec<String>,
}

impl BacktestOptions {
    /// Options for the given inputs and policies, with no window and no ground truth.
    pub fn new(inputs: Vec<PathBuf>, policies: Vec<NamedPolicy>) -> Self {
        BacktestOptions {
            inputs,
            policies,
            from: None,
            to: None,
            as_of: None,
            ground_truth: None,
            sweep_keys: Vec::new(),
        }
    }
}

/// Progress of the reading pass.
#[derive(Debug, Clone, Copy)]
pub struct BacktestProgress {
    /// Input bytes read.
    pub bytes_done: u64,
    /// Input bytes in all.
    pub bytes_total: u64,
    /// Records read.
    pub records: u64,
}

/// What the input held.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InputTotals {
    /// Records read (lines that are not blank, Avro records).
    pub records: u64,
    /// Customer events handed to the engines.
    pub events: u64,
    /// Tick records handed to the engines.
    pub ticks: u64,
    /// Records that failed decoding or validation.
    pub invalid: u64,
    /// Records outside the plausible time bounds (`implausible_time`).
    pub implausible: u64,
    /// Records after `--to`, ignored.
    pub after_to: u64,
}

/// One policy's results.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyResult {
    /// Name.
    pub name: String,
    /// The policy as TOML.
    pub policy_toml: String,
    /// Status changes the engine emitted (whole history).
    pub status_changes: u64,
    /// Events the engine found duplicate.
    pub duplicates: u64,
    /// Events applied late.
    pub late: u64,
    /// Records this policy's engine rejected although the reading pass took them (its
    /// `[stream]` time bounds are stricter than the first policy's); 0 normally.
    pub rejected: u64,
    /// Warnings judged on the history.
    pub evaluation: Evaluation,
    /// The segment matrix at the end of the history.
    pub segment_matrix: Vec<Cell>,
    /// The segment matrix per dealer and for all at the start of every month of the
    /// window (taken as stream time passed the month's first instant).
    pub segment_matrix_monthly: Vec<MatrixAt>,
    /// Lifecycle flows per month inside the window.
    pub lifecycle_flows: Vec<Flow>,
    /// Against the ground truth, when given.
    pub ground_truth: Option<Vec<TruthStats>>,
}

/// A finished backtest.
#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    /// The input files.
    pub inputs: Vec<String>,
    /// What they held.
    pub totals: InputTotals,
    /// Customers with at least one event.
    pub customers: u64,
    /// The first event time (RFC 3339).
    pub history_start: String,
    /// The end of the history (RFC 3339): `--to`, or the newest record.
    pub history_end: String,
    /// The window start (RFC 3339), if any.
    pub window_from: Option<String>,
    /// The swept keys, if the policies come from a sweep.
    pub sweep_keys: Vec<String>,
    /// Per policy, in the order given.
    pub policies: Vec<PolicyResult>,
    /// The KPIs that do not depend on the policy.
    pub kpis: Kpis,
}

/// Records handed to the engines, with the customers first seen in them.
struct Chunk {
    records: Vec<Validated>,
    new_customers: Vec<String>,
}

/// Per-policy output of an engine thread.
struct EngineRun {
    /// Every customer's status changes, in the order customers first appeared (the
    /// order of [`History::customers`]), each sorted by time.
    changes: Vec<Vec<Change>>,
    emitted: u64,
    matrices: Vec<MatrixAt>,
    rejected: u64,
    /// The segment matrix at the end of the history.
    segment_matrix: Vec<Cell>,
    counters: Counters,
}

/// A customer's place in the segment matrix as of the last snapshot: dealer (an index
/// into [`Snapshots::dealers`]), cell ([`segments::cell_index`]) and value.
#[derive(Clone, Copy)]
struct Placed {
    dealer: u32,
    cell: u8,
    value: f64,
}

/// The monthly segment matrices, kept up to date from the customers the engine changed
/// since the last snapshot rather than by looking up every customer every month.
struct Snapshots {
    /// Per customer (in order of first appearance): where it stood at the last
    /// snapshot; None while its engine holds no status for it.
    placed: Vec<Option<Placed>>,
    /// Customer id → index in `placed`.
    index: HashMap<String, usize>,
    /// Dealer ids seen, and their indices.
    dealers: Vec<String>,
    dealer_index: HashMap<String, u32>,
    next_month: Option<Month>,
    matrices: Vec<MatrixAt>,
}

impl Snapshots {
    fn new() -> Self {
        Snapshots {
            placed: Vec::new(),
            index: HashMap::new(),
            dealers: Vec::new(),
            dealer_index: HashMap::new(),
            next_month: None,
            matrices: Vec::new(),
        }
    }

    /// Takes in customers first seen in a chunk (before its records reach the engine).
    fn add_customers(&mut self, ids: &[String]) {
        for id in ids {
            self.index.insert(id.clone(), self.placed.len());
            self.placed.push(None);
        }
    }

    /// Takes the segment matrix each time stream time passes the start of a month:
    /// per dealer (in dealer id order) and for all, every customer the engine holds a
    /// status for counted in order of first appearance — as [`segments::matrix_at`]
    /// counts them, so the sums are the same to the last bit.
    fn snap(&mut self, driver: &mut Driver<MemKv>) {
        let Some(w) = driver.engine().watermark() else {
            return;
        };
        let Some(mut m) = self.next_month else {
            self.next_month = Some(month_of(w).offset(1));
            return;
        };
        if w < m.start() {
            return;
        }
        let Snapshots {
            placed,
            index,
            dealers,
            dealer_index,
            ..
        } = self;
        driver.take_changed(|s| {
            let Some(&i) = index.get(s.customer_id.as_str()) else {
                debug_assert!(false, "the engine holds a customer never read");
                return;
            };
            placed[i] = s.status.map(|status| {
                let dealer = match dealer_index.get(s.dealer_id.as_str()) {
                    Some(&d) => d,
                    None => {
                        let d = dealers.len() as u32;
                        dealers.push(s.dealer_id.clone());
                        dealer_index.insert(s.dealer_id.clone(), d);
                        d
                    }
                };
                Placed {
                    dealer,
                    cell: segments::cell_index(&status) as u8,
                    value: s.window_spend(),
                }
            });
        });
        let mut by = vec![([0u64; 9], [0f64; 9]); dealers.len()];
        let mut all = ([0u64; 9], [0f64; 9]);
        for p in placed.iter().flatten() {
            let (i, d) = (usize::from(p.cell), &mut by[p.dealer as usize]);
            d.0[i] += 1;
            d.1[i] += p.value;
            all.0[i] += 1;
            all.1[i] += p.value;
        }
        let label = month_of(w).to_string();
        let mut order: Vec<usize> = (0..dealers.len())
            .filter(|&d| by[d].0.iter().any(|&n| n > 0))
            .collect();
        order.sort_unstable_by(|&a, &b| dealers[a].cmp(&dealers[b]));
        for d in order {
            self.matrices.push(MatrixAt {
                month: label.clone(),
                dealer: self.dealers[d].clone(),
                customers: by[d].0,
                value: by[d].1,
            });
        }
        self.matrices.push(MatrixAt {
            month: label,
            dealer: kpis::ALL_DEALERS.to_string(),
            customers: all.0,
            value: all.1,
        });
        if cfg!(debug_assertions) {
            self.check_against_every_customer(driver, w);
        }
        while m.start() <= w {
            m = m.offset(1);
        }
        self.next_month = Some(m);
    }

    /// Debug builds: the last snapshot equals the matrices of every customer looked up
    /// in the engine (what a snapshot was before it followed the changed customers).
    fn check_against_every_customer(&self, driver: &Driver<MemKv>, w: Ts) {
        let mut ids = vec![""; self.placed.len()];
        for (id, &i) in &self.index {
            ids[i] = id;
        }
        let engine = driver.engine();
        let full = segments::matrix_at(
            &month_of(w).to_string(),
            ids.iter().filter_map(|id| {
                let s = engine.cached(id)?;
                Some((s.dealer_id.as_str(), s.status?, s.window_spend()))
            }),
        );
        let last = &self.matrices[self.matrices.len() - full.len()..];
        assert!(
            last == full.as_slice(),
            "incremental segment snapshot differs"
        );
    }
}

fn run_engine(
    policy: Policy,
    latest: Option<Ts>,
    to: Option<Ts>,
    rx: Receiver<Arc<Chunk>>,
) -> Result<EngineRun, StoreError> {
    let mut driver = Driver::open(MemStore::in_memory(), policy)?;
    driver.set_latest(latest);
    let mut out = Outputs::default();
    let mut changes: Vec<Vec<Change>> = Vec::new();
    let mut emitted = 0u64;
    let origin = Origin {
        source: "backtest",
        partition: None,
        position: 0,
    };
    let mut rejected = 0u64;
    let mut snaps = Snapshots::new();
    let mut take = |out: &mut Outputs, snaps: &Snapshots| {
        rejected += out
            .dead
            .drain(..)
            .filter(|d| d.outcome == DeadOutcome::Rejected)
            .count() as u64;
        for c in out.changes.drain(..) {
            emitted += 1;
            let Ok(at) = Ts::parse_rfc3339(&c.event_time) else {
                continue;
            };
            let Some(&i) = snaps.index.get(c.customer_id.as_str()) else {
                continue;
            };
            if changes.len() <= i {
                changes.resize_with(i + 1, Vec::new);
            }
            changes[i].push(Change {
                at,
                from: c.previous_level,
                to: c.level,
                from_lifecycle: c.previous_lifecycle,
                to_lifecycle: c.lifecycle,
            });
        }
    };
    for chunk in rx {
        // Customers the engine has not seen yet are not in its cache: a snapshot
        // inside the chunk has no status for them.
        snaps.add_customers(&chunk.new_customers);
        for v in &chunk.records {
            driver.handle(Ok(v.clone()), origin, b"", &mut out)?;
            snaps.snap(&mut driver);
        }
        take(&mut out, &snaps);
    }
    if let Some(to) = to {
        driver.advance_to(to, &mut out)?;
    }
    driver.finish(&mut out)?;
    snaps.snap(&mut driver);
    take(&mut out, &snaps);
    changes.resize_with(snaps.placed.len(), Vec::new);
    for ch in &mut changes {
        // Emitted in time order, but a late event's correction may interleave.
        ch.sort_by_key(|c| c.at);
    }
    // The final matrix, and the engine dropped here, on this thread.
    let engine = driver.engine();
    let mut ids = vec![""; snaps.placed.len()];
    for (id, &i) in &snaps.index {
        ids[i] = id;
    }
    let segment_matrix = segments::matrix(ids.iter().filter_map(|id| {
        let s = engine.cached(id)?;
        Some((s.status?, s.window_spend()))
    }));
    Ok(EngineRun {
        changes,
        emitted,
        matrices: snaps.matrices,
        rejected,
        segment_matrix,
        counters: engine.counters().clone(),
    })
}

fn wall_clock() -> Ts {
    Ts(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64))
}

/// Runs the backtest: reads the inputs once, runs every policy, judges and computes.
pub fn run(
    opts: &BacktestOptions,
    progress: &mut dyn FnMut(BacktestProgress),
) -> Result<Backtest, BacktestError> {
    if opts.inputs.is_empty() {
        return Err(BacktestError::NoInputs);
    }
    let default_policy;
    let policies: &[NamedPolicy] = if opts.policies.is_empty() {
        default_policy = [NamedPolicy {
            name: "default".into(),
            policy: Policy::default(),
        }];
        &default_policy
    } else {
        &opts.policies
    };
    for (i, p) in policies.iter().enumerate() {
        if policies[..i].iter().any(|q| q.name == p.name) {
            return Err(BacktestError::DuplicateName(p.name.clone()));
        }
    }
    if let (Some(f), Some(t)) = (opts.from, opts.to) {
        if f >= t {
            return Err(BacktestError::Window {
                from: f.to_rfc3339(),
                to: format!("--to {}", t.to_rfc3339()),
            });
        }
    }
    let truth = match &opts.ground_truth {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(io("cannot read", path))?;
            Some(
                Truth::parse(&text).map_err(|(line, reason)| BacktestError::GroundTruth {
                    path: path.clone(),
                    line,
                    reason,
                })?,
            )
        }
        None => None,
    };
    let mut bytes_total = 0;
    for p in &opts.inputs {
        bytes_total += std::fs::metadata(p)
            .map_err(io("cannot read input", p))?
            .len();
    }
    let latest = Some(Ts(opts
        .as_of
        .unwrap_or_else(wall_clock)
        .0
        .saturating_add(CLOCK_SKEW_MS)));
    let mut bounds = TimeBounds::from_policy(&policies[0].policy);
    bounds.latest = latest;

    // One engine thread per policy, fed the same chunks.
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for p in policies {
        let (tx, rx) = sync_channel::<Arc<Chunk>>(IN_FLIGHT);
        let policy = p.policy.clone();
        let to = opts.to;
        let h = std::thread::Builder::new()
            .name(format!("backtest-{}", handles.len() + 1))
            .spawn(move || run_engine(policy, latest, to, rx))
            .map_err(io(
                "cannot start a thread for",
                std::path::Path::new(&p.name),
            ))?;
        senders.push(tx);
        handles.push(h);
    }

    let mut reader = Reader {
        history: History::new(),
        totals: InputTotals::default(),
        bounds,
        newest: None,
        to: opts.to,
        chunk: Vec::with_capacity(CHUNK),
        new_customers: Vec::new(),
        senders,
    };
    let mut bytes_done = 0u64;
    let read = (|| {
        for path in &opts.inputs {
            let is_avro = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("avro"));
            if is_avro {
                let file = File::open(path).map_err(io("cannot open input", path))?;
                let avro_err = |source| BacktestError::Avro {
                    path: path.clone(),
                    source,
                };
                let mut records = avro::read_container(BufReader::new(file)).map_err(avro_err)?;
                for r in records.by_ref() {
                    reader.take(r);
                    if reader.totals.records % CHUNK as u64 == 0 {
                        progress(BacktestProgress {
                            bytes_done,
                            bytes_total,
                            records: reader.totals.records,
                        });
                    }
                }
                if let Some(e) = records.take_error() {
                    return Err(avro_err(e));
                }
                bytes_done += std::fs::metadata(path).map_or(0, |m| m.len());
            } else {
                let file = File::open(path).map_err(io("cannot open input", path))?;
                let mut r = BufReader::with_capacity(1 << 20, file);
                let mut buf = Vec::with_capacity(1024);
                loop {
                    buf.clear();
                    let n = r
                        .read_until(b'\n', &mut buf)
                        .map_err(io("cannot read input", path))?;
                    if n == 0 {
                        break;
                    }
                    bytes_done += n as u64;
                    let rec = match std::str::from_utf8(&buf) {
                        Ok(text) if text.trim().is_empty() => continue,
                        Ok(text) => decode_json_line(text.trim()),
                        Err(_) => Err(InvalidEvent::Malformed("line is not valid UTF-8".into())),
                    };
                    reader.take(rec);
                    if reader.totals.records % (CHUNK as u64 * 4) == 0 {
                        progress(BacktestProgress {
                            bytes_done,
                            bytes_total,
                            records: reader.totals.records,
                        });
                    }
                }
            }
        }
        Ok(())
    })();
    reader.flush();
    let Reader {
        mut history,
        totals,
        newest,
        senders,
        ..
    } = reader;
    // Closing the channels ends the engines' input.
    drop(senders);
    let mut runs = Vec::new();
    for (h, p) in handles.into_iter().zip(policies) {
        match h.join() {
            Ok(r) => runs.push(r),
            Err(_) => return Err(BacktestError::Engine(p.name.clone())),
        }
    }
    read?;
    progress(BacktestProgress {
        bytes_done: bytes_total,
        bytes_total,
        records: totals.records,
    });
    let runs = runs.into_iter().collect::<Result<Vec<_>, _>>()?;
    history.finish();
    let (Some(first), Some(newest)) = (history.first, newest) else {
        return Err(BacktestError::Empty(String::new()));
    };
    let end = opts.to.unwrap_or(newest);
    let window = Window {
        from: opts.from,
        end,
    };
    if let Some(f) = opts.from {
        if f >= end {
            return Err(BacktestError::Window {
                from: f.to_rfc3339(),
                to: format!("the end of the history, {}", end.to_rfc3339()),
            });
        }
    }

    // The judging of each policy and the KPIs are independent: each on a thread.
    let (results, kpis) = std::thread::scope(|s| {
        let history = &history;
        let truth = truth.as_ref();
        let kpis = s.spawn(move || kpis::compute(history, opts.from, end));
        let judged: Vec<_> = policies
            .iter()
            .zip(runs)
            .map(|(p, run)| s.spawn(move || judge_policy(p, run, history, window, truth)))
            .collect();
        let results: Vec<PolicyResult> = judged
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        let kpis = kpis.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (results, kpis)
    });
    Ok(Backtest {
        inputs: opts
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        totals,
        customers: history.len() as u64,
        history_start: first.to_rfc3339(),
        history_end: end.to_rfc3339(),
        window_from: opts.from.map(|f| f.to_rfc3339()),
        sweep_keys: opts.sweep_keys.clone(),
        policies: results,
        kpis,
    })
}

fn judge_policy(
    p: &NamedPolicy,
    run: EngineRun,
    history: &History,
    window: Window,
    truth: Option<&Truth>,
) -> PolicyResult {
    let mut changes = run.changes;
    changes.resize_with(history.len(), Vec::new);
    let evaluation = eval::evaluate(history, &changes, window);
    let first_month = window.from.map(|f| month_of(f).to_string());
    let segment_matrix_monthly = run
        .matrices
        .into_iter()
        .filter(|m| first_month.as_ref().is_none_or(|f| m.month >= *f))
        .collect();
    let lifecycle_flows = segments::flows(&changes, window);
    let ground_truth = truth.map(|t| truth::judge(t, history, &changes, window));
    PolicyResult {
        name: p.name.clone(),
        policy_toml: p.policy.to_toml(),
        status_changes: run.emitted,
        duplicates: run.counters.duplicates,
        late: run.counters.late,
        rejected: run.rejected,
        evaluation,
        segment_matrix: run.segment_matrix,
        segment_matrix_monthly,
        lifecycle_flows,
        ground_truth,
    }
}

/// The reading pass: checks records, gathers the history, hands chunks out.
struct Reader {
    history: History,
    totals: InputTotals,
    bounds: TimeBounds,
    newest: Option<Ts>,
    to: Option<Ts>,
    chunk: Vec<Validated>,
    new_customers: Vec<String>,
    senders: Vec<std::sync::mpsc::SyncSender<Arc<Chunk>>>,
}

impl Reader {
    fn take(&mut self, rec: Result<Validated, InvalidEvent>) {
        self.totals.records += 1;
        let v = match rec {
            Ok(v) => v,
            Err(_) => {
                self.totals.invalid += 1;
                return;
            }
        };
        let t = v.input.time();
        if self.to.is_some_and(|to| t > to) {
            self.totals.after_to += 1;
            return;
        }
        if self.bounds.check(t, self.newest).is_some() {
            self.totals.implausible += 1;
            return;
        }
        self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
        match &v.input {
            Input::Event(e) => {
                self.totals.events += 1;
                if self.history.add(e) {
                    self.new_customers.push(e.customer_id.clone());
                }
            }
            Input::Tick(_) => self.totals.ticks += 1,
        }
        self.chunk.push(v);
        if self.chunk.len() >= CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let chunk = Arc::new(Chunk {
            records: std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK)),
            new_customers: std::mem::take(&mut self.new_customers),
        });
        // A closed channel means its engine failed; its error comes out at the join.
        self.senders.retain(|tx| tx.send(chunk.clone()).is_ok());
    }
}
