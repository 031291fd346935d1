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

use crate::codec::avro::{self, AvroError, StatusChangeWriter};
use crate::codec::Format;
use crate::core::engine::{Counters, EngineMeta};
use crate::core::event::{decode_json_line, InvalidEvent};
use crate::core::policy::Policy;
use crate::core::status::{Level, Lifecycle, StatusChange, Tier};
use crate::core::time::Ts;
use crate::driver::{DeadLetter, Driver, Origin, Outcome, Outputs as Produced};
use crate::store::{SledKv, SledStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use thiserror::Error;

/// Progress key of the replay source in the store.
pub const SOURCE: &str = "replay";

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
    /// Customers kept in memory between commits.
    pub cache_capacity: usize,
    /// After the inputs, advance stream time to this instant (firing due timers).
    pub until: Option<Ts>,
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
            commit_every: 200_000,
            cache_capacity: 500_000,
            until: None,
            policy: Policy::default(),
        }
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
    /// `--fresh` was asked to delete a directory that is not a state store.
    #[error("--fresh would delete {0}, but it is not a churnwatch state store (no sled files); pick an empty or new --store directory")]
    NotAStore(PathBuf),
    /// Nothing to read.
    #[error("no input files given; pass --input FILE (JSON lines or .avro)")]
    NoInputs,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ReplayError + 'a {
    move |source| ReplayError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Progress {
    inputs: Vec<String>,
    format: Option<Format>,
    file_index: usize,
    /// Byte offset (JSON lines) or record index (Avro) in the current file.
    position: u64,
    /// 1-based number of the last record read in the current file.
    record_in_file: u64,
    records: u64,
    bad: u64,
    field_issues: u64,
    out_len: u64,
    dead_len: u64,
    finished: bool,
    elapsed_ms: u64,
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

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    /// Input records read (events, ticks and bad records).
    pub records: u64,
    /// Customer events accepted by validation.
    pub events: u64,
    /// Tick records.
    pub ticks: u64,
    /// Records rejected to the dead-letter file.
    pub bad: u64,
    /// Events kept with a bad field dropped (also noted in the dead-letter file).
    pub field_issues: u64,
    /// Duplicate events ignored.
    pub duplicates: u64,
    /// Late events.
    pub late: u64,
    /// Correcting status changes caused by late events.
    pub corrections: u64,
    /// Customers seen.
    pub customers: u64,
    /// Timers fired.
    pub timers_fired: u64,
    /// Status changes written.
    pub status_changes: u64,
    /// Status changes by new level.
    pub changes_by_level: BTreeMap<String, u64>,
    /// Customers by current level.
    pub customers_by_level: BTreeMap<String, u64>,
    /// Customers by current lifecycle stage.
    pub customers_by_lifecycle: BTreeMap<String, u64>,
    /// Customers by current tier.
    pub customers_by_tier: BTreeMap<String, u64>,
    /// Stream time at the end.
    pub stream_time: Option<String>,
    /// Wall-clock seconds spent (over all resumed runs).
    pub elapsed_secs: f64,
    /// Input records (events, ticks and bad records) per second.
    pub events_per_sec: f64,
    /// Whether this run continued an interrupted one.
    pub resumed: bool,
    /// Whether the store already held the finished replay (nothing was done).
    pub already_complete: bool,
    /// State store size on disk.
    pub store_bytes: u64,
}

fn named<const N: usize>(names: [&str; N], values: &[u64; N]) -> BTreeMap<String, u64> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (n.to_string(), *v))
        .collect()
}

fn summary(
    c: &Counters,
    meta: &EngineMeta,
    p: &Progress,
    resumed: bool,
    done: bool,
    store: u64,
) -> ReplaySummary {
    let elapsed = p.elapsed_ms as f64 / 1000.0;
    ReplaySummary {
        records: p.records,
        events: c.events,
        ticks: c.ticks,
        bad: p.bad,
        field_issues: p.field_issues,
        duplicates: c.duplicates,
        late: c.late,
        corrections: c.corrections,
        customers: c.customers,
        timers_fired: c.timers_fired,
        status_changes: c.status_changes,
        changes_by_level: named(Level::ALL.map(Level::as_str), &c.changes_by_level),
        customers_by_level: named(Level::ALL.map(Level::as_str), &c.customers_by_level),
        customers_by_lifecycle: named(
            Lifecycle::ALL.map(Lifecycle::as_str),
            &c.customers_by_lifecycle,
        ),
        customers_by_tier: named(Tier::ALL.map(Tier::as_str), &c.customers_by_tier),
        stream_time: meta.watermark.map(Ts::to_rfc3339),
        elapsed_secs: elapsed,
        events_per_sec: if elapsed > 0.0 {
            p.records as f64 / elapsed
        } else {
            0.0
        },
        resumed,
        already_complete: done,
        store_bytes: store,
    }
}

/// A dead letter as a JSON line of the dead-letter file.
#[derive(Debug, Serialize)]
struct DeadLine<'a> {
    source: &'a str,
    record: i64,
    outcome: &'static str,
    code: &'static str,
    field: Option<&'a str>,
    reason: &'a str,
    raw: std::borrow::Cow<'a, str>,
}

// One sink per replay; its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Sink {
    Json(BufWriter<File>),
    Avro(StatusChangeWriter<BufWriter<File>>),
}

struct Outputs {
    out_path: PathBuf,
    dead_path: PathBuf,
    out: Sink,
    dead: BufWriter<File>,
    changes: Vec<StatusChange>,
}

/// Flushes a buffered file, fsyncs it and returns its length.
fn sync_file(w: &mut BufWriter<File>, path: &Path) -> Result<u64, ReplayError> {
    w.flush().map_err(io("cannot write", path))?;
    let f = w.get_mut();
    f.sync_data().map_err(io("cannot sync", path))?;
    f.stream_position()
        .map_err(io("cannot read position of", path))
}

impl Outputs {
    fn open(opts: &ReplayOptions, p: &Progress) -> Result<Outputs, ReplayError> {
        let open = |path: &Path, len: u64| -> Result<BufWriter<File>, ReplayError> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io("cannot create directory for", path))?;
            }
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(io("cannot open output", path))?;
            f.set_len(len).map_err(io("cannot cut back output", path))?;
            f.seek(SeekFrom::End(0))
                .map_err(io("cannot seek output", path))?;
            Ok(BufWriter::with_capacity(1 << 20, f))
        };
        let w = open(&opts.out, p.out_len)?;
        let avro_err = |source| ReplayError::Avro {
            path: opts.out.clone(),
            source,
        };
        let out = match opts.format {
            Format::Json => Sink::Json(w),
            Format::Avro if p.out_len == 0 => {
                Sink::Avro(StatusChangeWriter::new(w).map_err(avro_err)?)
            }
            Format::Avro => Sink::Avro(StatusChangeWriter::resume(w)),
        };
        Ok(Outputs {
            out_path: opts.out.clone(),
            dead_path: opts.dead_letter.clone(),
            out,
            dead: open(&opts.dead_letter, p.dead_len)?,
            changes: Vec::new(),
        })
    }

    fn dead(&mut self, d: &DeadLetter) -> Result<(), ReplayError> {
        let line = DeadLine {
            source: &d.source,
            record: d.position,
            outcome: d.outcome.as_str(),
            code: d.code,
            field: d.field.as_deref(),
            reason: &d.reason,
            raw: String::from_utf8_lossy(&d.raw),
        };
        serde_json::to_writer(&mut self.dead, &line)
            .map_err(std::io::Error::from)
            .and_then(|_| self.dead.write_all(b"\n"))
            .map_err(io("cannot write dead letters to", &self.dead_path))
    }

    /// Writes the buffered changes, flushes and fsyncs both files; returns their lengths.
    fn sync(&mut self) -> Result<(u64, u64), ReplayError> {
        let out_len = match &mut self.out {
            Sink::Json(w) => {
                for c in &self.changes {
                    serde_json::to_writer(&mut *w, c)
                        .map_err(std::io::Error::from)
                        .and_then(|_| w.write_all(b"\n"))
                        .map_err(io("cannot write status changes to", &self.out_path))?;
                }
                sync_file(w, &self.out_path)?
            }
            Sink::Avro(w) => {
                let avro_err = |source| ReplayError::Avro {
                    path: self.out_path.clone(),
                    source,
                };
                w.write_block(&self.changes).map_err(avro_err)?;
                w.flush().map_err(avro_err)?;
                let mut f = w.get_ref().get_ref();
                f.sync_data().map_err(io("cannot sync", &self.out_path))?;
                f.stream_position()
                    .map_err(io("cannot read position of", &self.out_path))?
            }
        };
        self.changes.clear();
        let dead_len = sync_file(&mut self.dead, &self.dead_path)?;
        Ok((out_len, dead_len))
    }
}

/// Deletes a store directory for `--fresh`, refusing anything that is not one (a
/// mistyped `--store /home/me` must not delete a home directory).
fn remove_store(dir: &Path) -> Result<(), ReplayError> {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io("cannot read store directory", dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let is_store = entries.iter().any(|n| n == "conf")
        && entries
            .iter()
            .all(|n| matches!(n.as_str(), "conf" | "db" | "blobs") || n.starts_with("snap."));
    if !entries.is_empty() && !is_store {
        return Err(ReplayError::NotAStore(dir.to_path_buf()));
    }
    std::fs::remove_dir_all(dir).map_err(io("cannot remove store", dir))
}

/// The replay's state between records: the driver, the output files and the
/// progress record committed with the engine's state.
struct Run<'a> {
    opts: &'a ReplayOptions,
    driver: Driver<SledKv>,
    outs: Outputs,
    produced: Produced,
    p: Progress,
    started: Instant,
    elapsed_before: u64,
}

impl Run<'_> {
    /// Hands one record to the driver and moves its outputs to the files' buffers.
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
        let h = self
            .driver
            .handle(record, origin, raw, &mut self.produced)?;
        if h.outcome == Outcome::Invalid {
            self.p.bad += 1;
        }
        self.p.field_issues += h.fields_dropped as u64;
        self.collect()
    }

    fn collect(&mut self) -> Result<(), ReplayError> {
        for d in self.produced.dead.drain(..) {
            self.outs.dead(&d)?;
        }
        self.outs.changes.append(&mut self.produced.changes);
        Ok(())
    }

    /// Writes and fsyncs the outputs, then commits state and progress (with the
    /// outputs' lengths) in one batch.
    fn commit(&mut self) -> Result<(), ReplayError> {
        let (o, d) = self.outs.sync()?;
        self.p.out_len = o;
        self.p.dead_len = d;
        self.p.elapsed_ms = self.elapsed_before + self.started.elapsed().as_millis() as u64;
        let p = &self.p;
        self.driver.commit(self.opts.cache_capacity, |_, batch| {
            batch.progress(SOURCE, p)?;
            Ok(())
        })?;
        Ok(())
    }

    /// Commits when the record count reaches a commit point.
    fn maybe_commit(
        &mut self,
        progress: &mut dyn FnMut(ReplayProgress),
        bytes_done: u64,
        bytes_total: u64,
    ) -> Result<(), ReplayError> {
        if self.p.records % self.opts.commit_every == 0 {
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
    let store = SledStore::open(&opts.store)?;
    let stored: Option<Progress> = store.load_progress(SOURCE)?;
    let resumed = stored.is_some();
    let p = stored.unwrap_or_else(|| Progress {
        inputs: names.clone(),
        format: Some(opts.format),
        ..Progress::default()
    });
    if p.inputs != names || p.format != Some(opts.format) {
        return Err(ReplayError::Mismatch {
            store: opts.store.clone(),
            stored: format!("{:?} as {:?}", p.inputs, p.format),
            given: format!("{names:?} as {:?}", opts.format),
        });
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
    let driver = Driver::open(store, opts.policy.clone())?;
    let outs = Outputs::open(opts, &p)?;
    let mut run = Run {
        opts,
        driver,
        outs,
        produced: Produced::default(),
        elapsed_before: p.elapsed_ms,
        p,
        started: Instant::now(),
    };
    let bytes_total: u64 = sizes.iter().sum();

    while run.p.file_index < opts.inputs.len() {
        let path = &opts.inputs[run.p.file_index];
        let source = names[run.p.file_index].as_str();
        let done_before: u64 = sizes[..run.p.file_index].iter().sum();
        let is_avro = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("avro"));
        let file = File::open(path).map_err(io("cannot open input", path))?;
        if is_avro {
            let records =
                avro::read_container(BufReader::new(file)).map_err(|source| ReplayError::Avro {
                    path: path.clone(),
                    source,
                })?;
            for (i, r) in records.enumerate() {
                if (i as u64) < run.p.position {
                    continue;
                }
                run.p.position = i as u64 + 1;
                run.handle(source, r, b"<avro record>")?;
                run.maybe_commit(progress, done_before, bytes_total)?;
            }
        } else {
            let mut reader = BufReader::with_capacity(1 << 20, file);
            reader
                .seek(SeekFrom::Start(run.p.position))
                .map_err(io("cannot seek input", path))?;
            let mut buf = Vec::with_capacity(1024);
            loop {
                buf.clear();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .map_err(io("cannot read input", path))?;
                if n == 0 {
                    break;
                }
                run.p.position += n as u64;
                let text = String::from_utf8_lossy(&buf);
                let line = text.trim();
                if line.is_empty() {
                    continue;
                }
                let v = if std::str::from_utf8(&buf).is_err() {
                    Err(InvalidEvent::Malformed("line is not valid UTF-8".into()))
                } else {
                    decode_json_line(line)
                };
                run.handle(source, v, line.as_bytes())?;
                let done = done_before + run.p.position;
                run.maybe_commit(progress, done, bytes_total)?;
            }
        }
        run.p.file_index += 1;
        run.p.position = 0;
        run.p.record_in_file = 0;
    }
    if let Some(until) = opts.until {
        run.driver.advance_to(until, &mut run.produced)?;
    }
    run.driver.finish(&mut run.produced)?;
    run.collect()?;
    run.p.finished = true;
    run.commit()?;
    progress(ReplayProgress {
        bytes_done: bytes_total,
        bytes_total,
        records: run.p.records,
    });
    let meta = run.driver.engine().meta();
    Ok(summary(
        &meta.counters,
        &meta,
        &run.p,
        resumed,
        false,
        run.driver.store().size_on_disk(),
    ))
}

/// A customer's stored state and current status, as JSON.
pub fn inspect(
    store_dir: &Path,
    customer_id: &str,
    policy: &Policy,
) -> Result<Option<serde_json::Value>, StoreError> {
    use crate::core::engine::CustomerSource;
    let store = SledStore::open_existing(store_dir)?;
    let Some(state) = store.load(customer_id)? else {
        return Ok(None);
    };
    let meta = store.load_meta()?.unwrap_or_default();
    Ok(Some(crate::core::view::customer_json(
        &state,
        meta.watermark,
        policy,
    )))
}
