//! File replay: runs recorded events (JSON lines or Avro container files) through the
//! engine, writes status changes and dead letters, and checkpoints into the store.
//!
//! Crash safety: outputs are buffered between commits; a commit first writes and
//! fsyncs the output files, then stores — in one atomic batch — the engine's dirty
//! state, its timers, the input position and the output lengths. On start the outputs
//! are cut back to the committed lengths and reading resumes at the committed
//! position, so a crash at any instant loses nothing and writes nothing twice. Commits
//! happen at fixed record counts, so a resumed run writes the same bytes as an
//! uninterrupted one.

mod commit;
mod lines;
mod output;
mod summary;

pub use summary::ReplaySummary;

use crate::codec::avro::{self, AvroError};
use crate::codec::Format;
use crate::core::event::InvalidEvent;
use crate::core::policy::Policy;
use crate::core::time::Ts;
use crate::driver::{Origin, Outcome, Outputs as Produced, ShardedDriver};
use crate::store::{mark, AnyKv, DirStore, StoreError, StoreOptions};
use commit::Committer;
use output::Outputs;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;
use summary::summary;
use thiserror::Error;

/// How far past the replay's "now" (`--as-of`) a record may be dated: one day, for
/// source systems that write local time as UTC.
pub const CLOCK_SKEW_MS: i64 = 86_400_000;

/// Progress key of the replay source in the store.
pub const SOURCE: &str = "replay";

/// Store key (beside the progress) of the policy and model a replay ran with, as JSON:
/// a store replayed with one policy is never resumed or reported with another.
pub const POLICY_KEY: &str = "replay-policy";

/// Store key of the output files a replay wrote (absolute paths).
pub const OUTPUTS_KEY: &str = "replay-outputs";

/// The output files a replay store's replay wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OutputFiles {
    out: String,
    dead_letter: String,
}

impl OutputFiles {
    fn of(opts: &ReplayOptions) -> OutputFiles {
        let abs = |p: &Path| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        };
        OutputFiles {
            out: abs(&opts.out),
            dead_letter: abs(&opts.dead_letter),
        }
    }
}

/// A policy (with its model) as the store records it.
pub fn policy_record(policy: &Policy) -> String {
    serde_json::to_string(policy).expect("a policy serialises to JSON")
}

/// What differs between two policy records, one `key: a → b` per setting (at most
/// eight, then a count).
pub fn policy_differences(stored: &str, given: &str) -> String {
    use std::collections::BTreeMap;
    fn flatten(prefix: String, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(key, v, out);
                }
            }
            serde_json::Value::Null => {
                out.insert(prefix, "none".into());
            }
            other => {
                out.insert(prefix, other.to_string());
            }
        }
    }
    let parse = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::Null);
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten(String::new(), &parse(stored), &mut a);
    flatten(String::new(), &parse(given), &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or("-".into());
            format!("{k}: {} → {}", show(&a), show(&b))
        })
        .collect();
    let mut text = diffs.iter().take(8).cloned().collect::<Vec<_>>().join("; ");
    if diffs.len() > 8 {
        text.push_str(&format!("; and {} more", diffs.len() - 8));
    }
    text
}

/// What to replay and where.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Input files, in order (`.avro` files are read as Avro containers, anything else
    /// as JSON lines).
    pub inputs: Vec<PathBuf>,
    /// State store directory.
    pub store: PathBuf,
    /// Status-change output file.
    pub out: PathBuf,
    /// Dead-letter file (JSON lines).
    pub dead_letter: PathBuf,
    /// Output format.
    pub format: Format,
    /// Start over: delete the store and truncate the outputs.
    pub fresh: bool,
    /// Commit every this many input records.
    pub commit_every: u64,
    /// Customers kept in memory between commits (see [`ReplayOptions::memory_budget`]).
    pub cache_capacity: usize,
    /// Most changed customers one commit carries: a commit comes early when this many
    /// customers changed since the last one (see [`ReplayOptions::memory_budget`]).
    pub commit_customers: usize,
    /// The store's engine and its share of the memory budget.
    pub store_options: StoreOptions,
    /// After the inputs, advance stream time to this instant (firing due timers).
    pub until: Option<Ts>,
    /// The replay's "now": records dated more than [`CLOCK_SKEW_MS`] after it are
    /// rejected as implausible. None: the wall clock when the replay starts. Either
    /// way it is kept in the progress record, so a resumed replay decides alike.
    pub as_of: Option<Ts>,
    /// Threads: JSON-lines input is decoded on `threads - 1` of them ahead of the
    /// engine shards (the outputs are byte-identical for any count).
    pub threads: usize,
    /// Engine shards: the customers are split over this many engines, which run a
    /// batch of records in parallel (the outputs are byte-identical for any count).
    pub shards: usize,
    /// The churn policy.
    pub policy: Policy,
}

impl ReplayOptions {
    /// Options with defaults for the given inputs and outputs.
    pub fn new(inputs: Vec<PathBuf>, store: PathBuf, out: PathBuf) -> Self {
        let dead_letter = default_dead_letter(&out);
        ReplayOptions {
            inputs,
            store,
            out,
            dead_letter,
            format: Format::Json,
            fresh: false,
            commit_every: DEFAULT_COMMIT_EVERY,
            cache_capacity: customers_in(DEFAULT_MEMORY_BUDGET),
            commit_customers: commit_customers_in(DEFAULT_MEMORY_BUDGET),
            store_options: StoreOptions {
                engine: None,
                memory: store_share(DEFAULT_MEMORY_BUDGET),
            },
            until: None,
            as_of: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shards: default_shards(),
            policy: Policy::default(),
        }
    }
}

/// Records between two commits by default. Each commit rewrites every customer changed
/// since the previous one (most of them, with timers), so fewer commits write less:
/// on the 200,000-customer history, 50,000 instead of 200,000 took 1.6× the time for
/// 0.77× the peak memory. A commit holds its customers encoded (not copied) until the
/// writer thread has stored them.
pub const DEFAULT_COMMIT_EVERY: u64 = 200_000;

/// The default memory budget of a replay: 512 MiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 512 << 20;

/// What one cached customer is reckoned to cost in memory for the budget's split
/// (state, hash-map slot, ids). Measured on generated dealer data: ~430 bytes; the
/// reckoning leaves room for customers with longer histories.
pub const BYTES_PER_CACHED_CUSTOMER: u64 = 1024;

/// The customers a budget of `bytes` keeps in memory: half of it.
pub fn customers_in(bytes: u64) -> usize {
    (bytes / 2 / BYTES_PER_CACHED_CUSTOMER).max(1_000) as usize
}

/// What one changed customer is reckoned to cost while its commit is written: the
/// state encoded for the store (~1.3 KB on generated five-year histories), and the
/// store batch's own copy of it, part by part.
pub const BYTES_PER_COMMITTED_CUSTOMER: u64 = 2048;

/// The changed customers one commit may carry within a budget of `bytes`: a quarter
/// of it. The record interval (`commit_every`) still applies; whichever comes first.
pub fn commit_customers_in(bytes: u64) -> usize {
    (bytes / 4 / BYTES_PER_COMMITTED_CUSTOMER).max(1_000) as usize
}

/// The store engine's share of a budget of `bytes`: a quarter (the cache has half and
/// the commit being written the last quarter; the timer index, ~70 bytes a customer,
/// and the decoding buffers come on top).
pub fn store_share(bytes: u64) -> u64 {
    bytes / 4
}

/// Engine shards by default: one per two cores. A replay also keeps a reader, the
/// decoders, the output writer and the store's compaction busy; on the 2-core
/// reference machine two shards were no faster than one (see the README).
pub fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() / 2)
        .max(1)
}

/// Most records applied in one batch (the shards run a batch in parallel, then meet).
pub const MAX_BATCH_RECORDS: u64 = 4096;

impl ReplayOptions {
    /// Records per batch: [`MAX_BATCH_RECORDS`], or fewer when the changed-customer
    /// bound of a commit is smaller (the bound is checked at batch ends, so a commit
    /// overshoots it by what one batch changes). Batches end at fixed record numbers,
    /// so commit points do not depend on the thread count.
    pub fn batch_records(&self) -> u64 {
        MAX_BATCH_RECORDS.min(self.commit_customers as u64).max(1)
    }

    /// Splits a memory budget of `bytes` between the customer cache (half), the store
    /// engine (a quarter: block cache and write buffers) and the commit being written
    /// (a quarter: it bounds the changed customers one commit carries).
    pub fn memory_budget(&mut self, bytes: u64) -> &mut Self {
        self.cache_capacity = customers_in(bytes);
        self.commit_customers = commit_customers_in(bytes);
        self.store_options.memory = store_share(bytes);
        self
    }
}

/// `<out>.dead.jsonl` beside the output.
pub fn default_dead_letter(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".dead.jsonl");
    PathBuf::from(s)
}

/// A replay that cannot proceed.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An Avro file is unusable as a whole.
    #[error("Avro input {path}: {source}")]
    Avro {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: AvroError,
    },
    /// The store belongs to a replay of other inputs or another output format.
    #[error("the store at {store} holds a replay of {stored}, not of {given}; pass --fresh to start over or use another --store")]
    Mismatch {
        /// The store directory.
        store: PathBuf,
        /// What the store was used for.
        stored: String,
        /// What was asked now.
        given: String,
    },
    /// The store was replayed with another policy or model.
    #[error("the store at {store} was replayed with another policy or model ({differences}, the store's → this run's); replay it with the same --policy and --model, or pass --fresh to replay with these, or use another --store")]
    PolicyMismatch {
        /// The store directory.
        store: PathBuf,
        /// The settings that differ.
        differences: String,
    },
    /// The store's replay wrote other output files.
    #[error("the store at {store} holds a replay that wrote {stored}, not {given} (which do not hold what it committed); pass --out (and --dead-letter) as before, or --fresh to write the new files")]
    OutputsMismatch {
        /// The store directory.
        store: PathBuf,
        /// The files the store's replay wrote.
        stored: String,
        /// The files asked for now.
        given: String,
    },
    /// `--fresh` was asked to delete a directory that is not a state store.
    #[error("--fresh would delete {0}, but it is not a churnwatch state store (no sled files); pick an empty or new --store directory")]
    NotAStore(PathBuf),
    /// Nothing to read.
    #[error("no input files given; pass --input FILE (JSON lines or .avro)")]
    NoInputs,
    /// An output file is shorter than the store committed it.
    #[error("{path} holds {len} bytes but the store committed {committed}: the file was cut or replaced after the replay wrote it, or it is not this replay's output; rebuild it with `replay --fresh`")]
    OutputShort {
        /// The output file.
        path: PathBuf,
        /// Its length now.
        len: u64,
        /// The length the store committed.
        committed: u64,
    },
}

pub(crate) fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ReplayError + 'a {
    move |source| ReplayError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    inputs: Vec<String>,
    format: Option<Format>,
    file_index: usize,
    /// Byte offset (JSON lines) or record index (Avro) in the current file.
    position: u64,
    /// 1-based number of the last record read in the current file: the line number
    /// in a JSON-lines file (blank lines count, so dead letters name real lines), the
    /// record index in an Avro file.
    record_in_file: u64,
    records: u64,
    bad: u64,
    field_issues: u64,
    out_len: u64,
    dead_len: u64,
    finished: bool,
    elapsed_ms: u64,
    /// The replay's "now" (ms), fixed when it started.
    as_of_ms: i64,
}

/// Progress of a running replay, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct ReplayProgress {
    /// Input bytes consumed (Avro files count as whole files once done).
    pub bytes_done: u64,
    /// Input bytes in all.
    pub bytes_total: u64,
    /// Records read so far.
    pub records: u64,
}

/// Deletes a store directory for `--fresh`, refusing anything that is not one (a
/// mistyped `--store /home/me` must not delete a home directory).
fn remove_store(dir: &Path) -> Result<(), ReplayError> {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io("cannot read store directory", dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // A damaged store may have lost `conf`; its snapshot or commit mark still tell it.
    // sled: conf, db, blobs, snap.*; fjall: version, keyspaces, lock, <n>.jnl.
    let is_store = entries.iter().any(|n| {
        matches!(
            n.as_str(),
            "conf" | "version" | "keyspaces" | mark::MARK_FILE
        ) || n.starts_with("snap.")
    }) && entries.iter().all(|n| {
        matches!(
            n.as_str(),
            "conf" | "db" | "blobs" | "version" | "keyspaces" | "lock" | mark::MARK_FILE
        ) || n.starts_with("snap.")
            || n.strip_suffix(".jnl")
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
    });
    if !entries.is_empty() && !is_store {
        return Err(ReplayError::NotAStore(dir.to_path_buf()));
    }
    std::fs::remove_dir_all(dir).map_err(io("cannot remove store", dir))
}

/// The replay's state between records: the driver, the outputs since the last
/// commit, the committer writing commits on its own thread and the progress record
/// committed with the engine's state.
struct Run<'a> {
    opts: &'a ReplayOptions,
    driver: ShardedDriver<AnyKv>,
    committer: Committer,
    produced: Produced,
    changes: Vec<crate::core::status::StatusChange>,
    dead: Vec<crate::driver::DeadLetter>,
    p: Progress,
    started: Instant,
    elapsed_before: u64,
    /// The policy record and the output files, stored with every commit.
    policy_record: String,
    files: OutputFiles,
}

impl Run<'_> {
    /// Hands one record to the driver and keeps its outputs for the next commit.
    fn handle(
        &mut self,
        source: &str,
        record: Result<crate::core::event::Validated, InvalidEvent>,
        raw: &[u8],
    ) -> Result<(), ReplayError> {
        self.p.records += 1;
        self.p.record_in_file += 1;
        let origin = Origin {
            source,
            partition: None,
            position: self.p.record_in_file as i64,
        };
        let h = self.driver.handle(record, origin, raw, &mut self.produced);
        if h.outcome == Outcome::Invalid {
            self.p.bad += 1;
        }
        self.p.field_issues += h.fields_dropped as u64;
        self.collect();
        Ok(())
    }

    fn collect(&mut self) {
        self.dead.append(&mut self.produced.dead);
        self.changes.append(&mut self.produced.changes);
    }

    /// Hands the outputs kept so far to the writer thread, and keeps the customers in
    /// memory near the cache capacity between commits: once the commit in flight is
    /// written, a cache grown past the capacity by customers read back from the store
    /// is cut to seven eighths of it (dirty customers stay).
    fn hand_over(&mut self) -> Result<(), ReplayError> {
        let changes = std::mem::take(&mut self.changes);
        let dead = std::mem::take(&mut self.dead);
        self.committer.outputs(changes, dead)?;
        let cap = self.opts.cache_capacity;
        if self.driver.shards().cached_customers() > cap {
            if let Some((o, d)) = self.committer.poll()? {
                self.p.out_len = o;
                self.p.dead_len = d;
            }
            if !self.committer.in_flight() {
                self.driver.evict(cap - cap / 8);
            }
        }
        Ok(())
    }

    /// Hands a commit to the writer: the outputs since the last one, then state and
    /// progress (with the outputs' lengths) in one batch. Waits for the previous
    /// commit first, and only then lets customers out of memory (see the `commit`
    /// module).
    fn commit(&mut self) -> Result<(), ReplayError> {
        self.driver.run(&mut self.produced)?;
        self.collect();
        self.hand_over()?;
        self.settle()?;
        self.driver.evict(self.opts.cache_capacity);
        self.p.elapsed_ms = self.elapsed_before + self.started.elapsed().as_millis() as u64;
        let mut batch = self.driver.detach_commit()?;
        batch.progress(POLICY_KEY, &self.policy_record)?;
        batch.progress(OUTPUTS_KEY, &self.files)?;
        self.committer.commit(batch, self.p.clone())
    }

    /// Waits for the commit in flight to be written.
    fn settle(&mut self) -> Result<(), ReplayError> {
        if let Some((o, d)) = self.committer.wait()? {
            self.p.out_len = o;
            self.p.dead_len = d;
        }
        Ok(())
    }

    /// Applies the batch of records taken when the record count reaches a batch end
    /// ([`ReplayOptions::batch_records`]); commits when it reaches a commit point, or
    /// at a batch end once the changed customers fill the commit's share of the memory
    /// budget. All of it depends on the records alone, so a resumed replay commits
    /// where an uninterrupted one does, whatever the thread count.
    fn maybe_commit(
        &mut self,
        progress: &mut dyn FnMut(ReplayProgress),
        bytes_done: u64,
        bytes_total: u64,
    ) -> Result<(), ReplayError> {
        let at_commit_point = self.p.records % self.opts.commit_every == 0;
        if !at_commit_point && self.p.records % self.opts.batch_records() != 0 {
            return Ok(());
        }
        self.driver.run(&mut self.produced)?;
        self.collect();
        if at_commit_point || self.driver.shards().dirty_customers() >= self.opts.commit_customers {
            self.commit()?;
            progress(ReplayProgress {
                bytes_done,
                bytes_total,
                records: self.p.records,
            });
        }
        Ok(())
    }
}

/// Runs a replay; resumes from the store unless `fresh`.
pub fn replay(
    opts: &ReplayOptions,
    progress: &mut dyn FnMut(ReplayProgress),
) -> Result<ReplaySummary, ReplayError> {
    if opts.inputs.is_empty() {
        return Err(ReplayError::NoInputs);
    }
    let mut sizes = Vec::with_capacity(opts.inputs.len());
    for p in &opts.inputs {
        let m = std::fs::metadata(p).map_err(io("cannot read input", p))?;
        sizes.push(m.len());
    }
    let names: Vec<String> = opts
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if opts.fresh && opts.store.exists() {
        remove_store(&opts.store)?;
    }
    let store = DirStore::open_dir(&opts.store, opts.store_options)?;
    let stored: Option<Progress> = store.load_progress(SOURCE)?;
    let resumed = stored.is_some();
    let p = stored.unwrap_or_else(|| Progress {
        inputs: names.clone(),
        format: Some(opts.format),
        as_of_ms: opts.as_of.map_or_else(wall_clock_ms, |t| t.0),
        ..Progress::default()
    });
    if p.inputs != names || p.format != Some(opts.format) {
        return Err(ReplayError::Mismatch {
            store: opts.store.clone(),
            stored: format!("{:?} as {:?}", p.inputs, p.format),
            given: format!("{names:?} as {:?}", opts.format),
        });
    }
    check_store(&opts.store, &store, (p.records, p.finished))?;
    let policy_record = policy_record(&opts.policy);
    // Stores from before these records were kept hold neither; they cannot be checked.
    if let Some(stored) = store.load_progress::<String>(POLICY_KEY)? {
        if stored != policy_record {
            return Err(ReplayError::PolicyMismatch {
                store: opts.store.clone(),
                differences: policy_differences(&stored, &policy_record),
            });
        }
    }
    let files = OutputFiles::of(opts);
    if let Some(stored) = store.load_progress::<OutputFiles>(OUTPUTS_KEY)? {
        // Files elsewhere are taken for the store's only when they hold exactly what
        // it committed (a store moved or copied together with its outputs).
        let is_copy = |path: &Path, committed: u64| {
            std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == committed)
        };
        if stored != files
            && !(is_copy(&opts.out, p.out_len) && is_copy(&opts.dead_letter, p.dead_len))
        {
            return Err(ReplayError::OutputsMismatch {
                store: opts.store.clone(),
                stored: format!("{} and {}", stored.out, stored.dead_letter),
                given: format!("{} and {}", files.out, files.dead_letter),
            });
        }
    }
    for (path, committed) in [(&opts.out, p.out_len), (&opts.dead_letter, p.dead_len)] {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if len < committed {
            return Err(ReplayError::OutputShort {
                path: path.clone(),
                len,
                committed,
            });
        }
    }
    if p.finished {
        let meta = store.load_meta()?.unwrap_or_default();
        return Ok(summary(
            &meta.counters,
            &meta,
            &p,
            resumed,
            true,
            store.size_on_disk(),
        ));
    }
    let mut driver = ShardedDriver::open(store, opts.policy.clone(), opts.shards.max(1))?;
    driver.set_latest(Some(Ts(p.as_of_ms.saturating_add(CLOCK_SKEW_MS))));
    let outs = Outputs::open(opts, &p)?;
    let committer = Committer::start(outs, driver.store().clone(), opts.store.clone())?;
    let mut run = Run {
        opts,
        driver,
        committer,
        produced: Produced::default(),
        changes: Vec::new(),
        dead: Vec::new(),
        elapsed_before: p.elapsed_ms,
        p,
        started: Instant::now(),
        policy_record,
        files,
    };
    let bytes_total: u64 = sizes.iter().sum();

    while run.p.file_index < opts.inputs.len() {
        let path = &opts.inputs[run.p.file_index];
        let source = names[run.p.file_index].as_str();
        let done_before: u64 = sizes[..run.p.file_index].iter().sum();
        let is_avro = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("avro"));
        if is_avro {
            let file = File::open(path).map_err(io("cannot open input", path))?;
            let avro_err = |source| ReplayError::Avro {
                path: path.clone(),
                source,
            };
            let mut records = avro::read_container(BufReader::new(file)).map_err(avro_err)?;
            // A damaged block is one item (one dead letter), so positions stay exact.
            for (i, r) in records.by_ref().enumerate() {
                if (i as u64) < run.p.position {
                    continue;
                }
                run.p.position = i as u64 + 1;
                let raw: &[u8] = match r {
                    Err(InvalidEvent::DamagedBlock(_)) => b"<damaged avro block>",
                    _ => b"<avro record>",
                };
                run.handle(source, r, raw)?;
                run.maybe_commit(progress, done_before, bytes_total)?;
                if run.p.records % lines::CHUNK_LINES as u64 == 0 {
                    run.hand_over()?;
                }
            }
            // An I/O error ends the records early; it must not pass for the end.
            if let Some(e) = records.take_error() {
                return Err(avro_err(e));
            }
        } else {
            let start = run.p.position;
            lines::for_each_chunk(path, start, opts.threads, |chunk| {
                let lines::Chunk { buf, lines } = chunk;
                for line in lines {
                    run.p.position += line.len;
                    let Some(d) = line.record else {
                        // Not a record, but a line: dead letters name line numbers.
                        run.p.record_in_file += 1;
                        continue;
                    };
                    run.handle(source, d.result, d.raw.bytes(&buf))?;
                    let done = done_before + run.p.position;
                    run.maybe_commit(progress, done, bytes_total)?;
                }
                run.hand_over()
            })?;
        }
        run.p.file_index += 1;
        run.p.position = 0;
        run.p.record_in_file = 0;
    }
    if let Some(until) = opts.until {
        run.driver.advance_to(until);
    }
    run.driver.finish();
    run.driver.run(&mut run.produced)?;
    run.collect();
    run.p.finished = true;
    run.commit()?;
    run.settle()?;
    progress(ReplayProgress {
        bytes_done: bytes_total,
        bytes_total,
        records: run.p.records,
    });
    let meta = run.driver.meta();
    Ok(summary(
        &meta.counters,
        &meta,
        &run.p,
        resumed,
        false,
        run.driver.store().size_on_disk(),
    ))
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Checks a replay store for lost writes: progress without the engine state committed
/// with it, or progress behind the commit mark (sled dropped acknowledged commits
/// while recovering damaged files; see [`mark`]).
fn check_store(
    dir: &Path,
    store: &DirStore,
    (records, finished): (u64, bool),
) -> Result<(), StoreError> {
    store.check_committed(SOURCE, &dir.display().to_string())?;
    match mark::read(dir) {
        Some(m) if m.is_ahead_of(records, finished) => Err(StoreError::damaged(
            dir,
            format!(
                "it holds the replay up to record {records}{} but had committed up to record {}{}, so it lost commits (if you restored an older copy of the store on purpose, delete {} to resume from it)",
                if finished { " (finished)" } else { "" },
                m.position,
                if m.finished { " (finished)" } else { "" },
                mark::path(dir).display()
            ),
        )),
        _ => Ok(()),
    }
}

/// A customer's stored state and current status, as JSON, and a note when the
/// status was computed with another policy than the store's.
#[derive(Debug)]
pub struct Inspected {
    /// The customer's state and status.
    pub json: serde_json::Value,
    /// Set when `policy` was given and differs from the one the store was replayed
    /// with: what differs.
    pub note: Option<String>,
}

/// A customer's stored state and current status: computed with `policy` when given,
/// else with the policy the store was replayed with (the default policy for a store
/// that does not record one).
pub fn inspect(
    store_dir: &Path,
    customer_id: &str,
    policy: Option<&Policy>,
) -> Result<Option<Inspected>, StoreError> {
    use crate::core::engine::CustomerSource;
    let store = DirStore::open_existing_dir(store_dir, StoreOptions::default())?;
    let p: Option<Progress> = store.load_progress(SOURCE)?;
    let position = p.as_ref().map_or((0, false), |p| (p.records, p.finished));
    check_store(store_dir, &store, position)?;
    let Some(state) = store.load(customer_id)? else {
        return Ok(None);
    };
    let stored: Option<String> = store.load_progress(POLICY_KEY)?;
    let stored_policy: Option<Policy> = stored
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| StoreError::corrupt(POLICY_KEY.as_bytes(), e))?;
    let (policy, note) = match (policy, &stored) {
        (Some(given), Some(s)) if policy_record(given) != *s => (
            given.clone(),
            Some(format!(
                "the current status below uses the policy given, not the one the store was replayed with ({}, the store's → given); the published status is the store's",
                policy_differences(s, &policy_record(given))
            )),
        ),
        (Some(given), _) => (given.clone(), None),
        (None, _) => (stored_policy.unwrap_or_default(), None),
    };
    let meta = store.load_meta()?.unwrap_or_default();
    Ok(Some(Inspected {
        json: crate::core::view::customer_json(&state, meta.watermark, &policy),
        note,
    }))
}
