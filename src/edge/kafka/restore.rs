//! Taking partitions over: [`Restorer::register`] shows every newly assigned partition
//! as not ready at once, then [`Restorer::open_all`] resumes each from its local sled
//! tree when that is current with the changelog, starts over when there is no state
//! anywhere, and otherwise clears the tree and restores it from the changelog topic.
//!
//! The restores of one assignment run together: one changelog reader is assigned all
//! the changelog partitions to restore at once (their ends are asked for in one
//! request), and the records it reads are dispatched to a few restore threads (one per
//! core), each decoding and folding the records of its partitions and writing each
//! partition's tree in one batch at the end. The processing thread only reads and
//! dispatches, and every [`KEEP_ALIVE_EVERY`] it calls the caller's keep-alive, which
//! reports the loop alive and serves the group consumer, so that a long restore never
//! holds the group consumer's poll past `max.poll.interval.ms`.
//!
//! Owns the sled database handle and the changelog reader's configuration. Writes the
//! partitions' trees (clear, restore) and their readiness view in [`Shared`]; reads the
//! changelog with a reader of its own, never the group consumer.

use crate::codec::Format;
use crate::core::policy::Policy;
use crate::edge::kafka::config::Config;
use crate::edge::kafka::error::{kafka, ServiceError};
use crate::edge::kafka::partition::{
    changelog_end, has_state, ChangelogFold, FoldError, Partition,
};
use crate::edge::kafka::shared::Shared;
use crate::edge::kafka::topics::restorer_config;
use crate::store::{SledTreeKv, Store, StoreError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, info_span, warn};

/// A restore gives up when nothing more of the changelog arrives for this long
/// before every partition is read to its end.
const STALL_LIMIT: Duration = Duration::from_secs(300);

/// How often a restore calls its keep-alive (the processing loop reports at least
/// this often and serves the group consumer).
pub(crate) const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(100);

/// Changelog records handed to a restore thread at once.
const CHUNK: usize = 512;

/// Chunks waiting for a restore thread before the reader waits for it.
const QUEUED_CHUNKS: usize = 16;

/// Called by a take-over every [`KEEP_ALIVE_EVERY`] while it restores: reports the
/// loop alive and serves the group consumer; an error (a fatal consumer error) ends
/// the take-over.
pub(crate) type KeepAlive<'a> = &'a mut dyn FnMut() -> Result<(), ServiceError>;

/// The name of partition `p`'s tree in the sled database.
pub(crate) fn tree_name(p: i32) -> String {
    format!("partition-{p}")
}

/// A partition registered for a take-over: its tree, not yet read.
pub(crate) struct Registered {
    p: i32,
    store: Store<SledTreeKv>,
}

/// One changelog partition to restore: its tree (cleared) and the offset to read to.
#[derive(Clone)]
struct Job {
    p: i32,
    store: Store<SledTreeKv>,
    end: i64,
}

/// Changelog records on their way to a restore thread: (partition, offset, key,
/// value).
type Chunk = Vec<(i32, i64, Option<Vec<u8>>, Vec<u8>)>;

/// Opens partitions from local state or the changelog.
pub(crate) struct Restorer {
    db: sled::Db,
    reader: ClientConfig,
    changelog_topic: String,
    policy: Policy,
    topics: Vec<String>,
    encoding: Format,
    shared: Arc<Shared>,
    /// How far past the wall clock a record may be dated (none: no bound).
    clock_skew: Option<Duration>,
}

impl Restorer {
    /// A restorer of partitions of `topics` into `db`.
    pub(crate) fn new(
        cfg: &Config,
        db: sled::Db,
        policy: Policy,
        topics: Vec<String>,
        shared: Arc<Shared>,
    ) -> Self {
        Restorer {
            db,
            reader: restorer_config(cfg),
            changelog_topic: cfg.output.changelog_topic.clone(),
            policy,
            topics,
            encoding: cfg.output.format,
            shared,
            clock_skew: match cfg.input.max_clock_skew_minutes {
                0 => None,
                m => Some(Duration::from_secs(m * 60)),
            },
        }
    }

    /// The sled database holding every partition's tree.
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Opens the trees of partitions `parts` and shows every one of them in [`Shared`]
    /// as not ready, before any is read: readiness cannot pass between two of them.
    pub(crate) fn register(&self, parts: &[i32]) -> Result<Vec<Registered>, ServiceError> {
        let mut out = Vec::with_capacity(parts.len());
        for &p in parts {
            let store = Store::with_kv(SledTreeKv::open(&self.db, &tree_name(p))?)?;
            self.shared.open_partition(p, store.clone());
            out.push(Registered { p, store });
        }
        Ok(out)
    }

    /// Opens registered partitions: each from local state when it is current, else
    /// from nothing when the changelog is empty, else restored from the changelog; the
    /// restores all at once (see the module doc), calling `keep_alive` every
    /// [`KEEP_ALIVE_EVERY`]. The partitions stay not ready in [`Shared`]; the caller
    /// marks them ready once it has resumed them. Returned in the order given.
    pub(crate) fn open_all(
        &self,
        parts: Vec<Registered>,
        keep_alive: KeepAlive<'_>,
    ) -> Result<Vec<Partition>, ServiceError> {
        if parts.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let reader: BaseConsumer = self
            .reader
            .create()
            .map_err(kafka("creating the changelog reader"))?;
        let ids: Vec<i32> = parts.iter().map(|r| r.p).collect();
        let ends = self.changelog_ends(&reader, &ids)?;
        info!(
            partitions = ids.len(),
            seconds = started.elapsed().as_secs_f64(),
            "changelog ends read"
        );
        let mut jobs = Vec::new();
        for r in &parts {
            let _span = info_span!("partition", partition = r.p).entered();
            let hw = ends[&r.p];
            let local = has_state(&r.store)?;
            let local_end = changelog_end(&r.store)?;
            if local && hw <= local_end {
                info!(changelog_end = local_end, "resuming from local state");
            } else if hw == 0 {
                if local {
                    warn!("local state exists but the changelog is empty; starting over");
                    r.store.clear()?;
                }
                info!("no state anywhere; starting from the beginning");
            } else {
                info!(
                    changelog_high_watermark = hw,
                    local_end, "restoring from the changelog"
                );
                r.store.clear()?;
                jobs.push(Job {
                    p: r.p,
                    store: r.store.clone(),
                    end: hw,
                });
            }
        }
        if !jobs.is_empty() {
            self.restore(&reader, &jobs, keep_alive)?;
        }
        drop(reader);
        let opening = Instant::now();
        let mut out = Vec::with_capacity(parts.len());
        for r in parts {
            let mut part = Partition::open(
                r.p,
                r.store,
                self.policy.clone(),
                &self.topics,
                self.encoding,
            )?;
            part.set_clock_skew(self.clock_skew);
            out.push(part);
        }
        info!(
            partitions = out.len(),
            restored = jobs.len(),
            open_seconds = opening.elapsed().as_secs_f64(),
            seconds = started.elapsed().as_secs_f64(),
            "partitions taken over"
        );
        Ok(out)
    }

    /// The changelog's end offset for each of `parts`, asked for in one request
    /// (a partition the answer leaves out is asked for on its own).
    fn changelog_ends(
        &self,
        c: &BaseConsumer,
        parts: &[i32],
    ) -> Result<HashMap<i32, i64>, ServiceError> {
        let topic = &self.changelog_topic;
        let mut tpl = TopicPartitionList::new();
        for &p in parts {
            // A "time" of END asks for the latest offset.
            tpl.add_partition_offset(topic, p, Offset::End)
                .map_err(kafka("listing the changelog partitions"))?;
        }
        let mut ends = HashMap::new();
        match c.offsets_for_times(tpl, Duration::from_secs(30)) {
            Ok(got) => {
                for e in got.elements() {
                    if let (Offset::Offset(n), Ok(())) = (e.offset(), e.error()) {
                        ends.insert(e.partition(), n);
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot read the changelog's ends at once; asking per partition")
            }
        }
        for &p in parts {
            if let std::collections::hash_map::Entry::Vacant(v) = ends.entry(p) {
                let (_, hi) = c
                    .fetch_watermarks(topic, p, Duration::from_secs(30))
                    .map_err(kafka(format!(
                        "reading the end of changelog topic `{topic}` partition {p}"
                    )))?;
                v.insert(hi);
            }
        }
        Ok(ends)
    }

    /// Restores `jobs` together: one reader over all their changelog partitions, the
    /// records folded by one restore thread per core.
    fn restore(
        &self,
        reader: &BaseConsumer,
        jobs: &[Job],
        keep_alive: KeepAlive<'_>,
    ) -> Result<(), ServiceError> {
        let started = Instant::now();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, jobs.len());
        let mut tpl = TopicPartitionList::new();
        for j in jobs {
            tpl.add_partition_offset(&self.changelog_topic, j.p, Offset::Beginning)
                .map_err(kafka("assigning the changelog"))?;
        }
        reader
            .assign(&tpl)
            .map_err(kafka("assigning the changelog"))?;
        let topic = self.changelog_topic.as_str();
        // Set once every partition is read to its end: only then do the restore threads
        // write (a partial fold written would pass for a complete restore).
        let complete = &AtomicBool::new(false);
        let (records, customers) = std::thread::scope(|scope| {
            let mut senders = Vec::with_capacity(threads);
            let mut handles = Vec::with_capacity(threads);
            for t in 0..threads {
                let (tx, rx) = sync_channel::<Chunk>(QUEUED_CHUNKS);
                let mine: Vec<Job> = jobs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % threads == t)
                    .map(|(_, j)| j.clone())
                    .collect();
                let ps: Vec<i32> = mine.iter().map(|j| j.p).collect();
                let handle = std::thread::Builder::new()
                    .name(format!("churnwatch-restore-{t}"))
                    .spawn_scoped(scope, move || fold_and_write(topic, mine, rx, complete))
                    .map_err(ServiceError::Thread)?;
                handles.push((ps, handle));
                senders.push(tx);
            }
            let read = self.read(reader, jobs, &senders, keep_alive);
            if matches!(read, Ok(Some(_))) {
                complete.store(true, Ordering::Release);
            }
            drop(senders);
            // The restore threads finish their folds and writes; the loop stays alive.
            let mut alive = Ok(());
            while alive.is_ok() && !handles.iter().all(|(_, h)| h.is_finished()) {
                alive = keep_alive();
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut customers = 0;
            let mut first_error = None;
            for (ps, h) in handles {
                match h.join() {
                    Ok(Ok(n)) => customers += n,
                    Ok(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                    Err(_) => {
                        first_error.get_or_insert(ServiceError::RestorePanicked { partitions: ps });
                    }
                }
            }
            // A restore thread's error says why the reading stopped early.
            if let Some(e) = first_error {
                return Err(e);
            }
            let records = read?.unwrap_or_default();
            alive?;
            Ok((records, customers))
        })?;
        self.shared.metrics.restores.inc_by(jobs.len() as u64);
        info!(
            partitions = jobs.len(),
            threads,
            records,
            customers,
            seconds = started.elapsed().as_secs_f64(),
            "restored from the changelog"
        );
        Ok(())
    }

    /// Reads every job's changelog partition from its beginning to its end and hands
    /// the records to the restore threads (job `i` to thread `i % threads`). Returns
    /// the records read, or None when a restore thread stopped (on an error it
    /// reports) before the end.
    fn read(
        &self,
        c: &BaseConsumer,
        jobs: &[Job],
        senders: &[SyncSender<Chunk>],
        keep_alive: KeepAlive<'_>,
    ) -> Result<Option<u64>, ServiceError> {
        let threads = senders.len();
        // Partition -> (job index, end, last offset read).
        let mut state: HashMap<i32, (usize, i64, i64)> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.p, (i, j.end, -1)))
            .collect();
        let mut remaining = jobs.iter().filter(|j| j.end > 0).count();
        let mut chunks: Vec<Chunk> = vec![Vec::with_capacity(CHUNK); threads];
        let mut records = 0u64;
        let mut alive_at = Instant::now();
        let mut progress_at = Instant::now();
        let send = |t: usize, chunk: &mut Chunk| -> bool {
            senders[t].send(std::mem::take(chunk)).is_ok()
        };
        while remaining > 0 {
            if alive_at.elapsed() >= KEEP_ALIVE_EVERY {
                keep_alive()?;
                alive_at = Instant::now();
            }
            match c.poll(KEEP_ALIVE_EVERY) {
                Some(Ok(m)) => {
                    let Some((i, end, last)) = state.get_mut(&m.partition()) else {
                        continue;
                    };
                    let off = m.offset();
                    if off <= *last || off >= *end {
                        continue;
                    }
                    *last = off;
                    progress_at = Instant::now();
                    records += 1;
                    let t = *i % threads;
                    if let Some(v) = m.payload() {
                        chunks[t].push((
                            m.partition(),
                            off,
                            m.key().map(<[u8]>::to_vec),
                            v.to_vec(),
                        ));
                    }
                    if off + 1 >= *end {
                        remaining -= 1;
                    }
                    if chunks[t].len() >= CHUNK && !send(t, &mut chunks[t]) {
                        // The thread stopped on an error; it reports it.
                        return Ok(None);
                    }
                }
                Some(Err(e)) => return Err(kafka("reading the changelog")(e)),
                None if progress_at.elapsed() > STALL_LIMIT => {
                    let (p, (_, end, at)) = state
                        .iter()
                        .find(|(_, (_, end, last))| last + 1 < *end)
                        .expect("a partition is not read to its end");
                    return Err(ServiceError::ChangelogStalled {
                        topic: self.changelog_topic.clone(),
                        partition: *p,
                        at: *at,
                        end: *end,
                        waited: STALL_LIMIT,
                    });
                }
                None => {}
            }
        }
        for (t, chunk) in chunks.iter_mut().enumerate() {
            if !chunk.is_empty() && !send(t, chunk) {
                return Ok(None);
            }
        }
        Ok(Some(records))
    }
}

/// A restore thread: decodes and folds the records of its `jobs`' partitions as they
/// come, then, if the reading is `complete`, writes each partition's tree in one batch
/// (else it writes nothing: the trees stay cleared and the next take-over restores
/// them again). Returns the customers restored.
fn fold_and_write(
    topic: &str,
    jobs: Vec<Job>,
    rx: Receiver<Chunk>,
    complete: &AtomicBool,
) -> Result<usize, ServiceError> {
    let mut folds: HashMap<i32, ChangelogFold> = jobs
        .iter()
        .map(|j| (j.p, ChangelogFold::default()))
        .collect();
    let error = |p: i32, e: FoldError| match e {
        FoldError::Record { offset, source } => ServiceError::ChangelogRecord {
            topic: topic.to_string(),
            partition: p,
            offset,
            reason: match source {
                StoreError::Corrupt { reason, .. } => reason,
                other => other.to_string(),
            },
        },
        FoldError::Store(e) => ServiceError::Store(e),
    };
    for chunk in rx {
        for (p, offset, key, value) in chunk {
            folds
                .get_mut(&p)
                .expect("a job's partition")
                .push(key.as_deref(), value, offset)
                .map_err(|e| error(p, e))?;
        }
    }
    if !complete.load(Ordering::Acquire) {
        return Ok(0);
    }
    let mut customers = 0;
    for j in jobs {
        let fold = folds.remove(&j.p).expect("a job's partition");
        let records = fold.records();
        let n = fold.write(&j.store, j.end).map_err(|e| error(j.p, e))?;
        info!(
            partition = j.p,
            records,
            customers = n,
            "partition restored"
        );
        customers += n;
    }
    Ok(customers)
}
