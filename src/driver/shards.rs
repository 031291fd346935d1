//! The sharded engine: the customers split by id over several engines that run on
//! threads of their own, with one stream time for all of them and their status
//! changes merged into the order one engine would have emitted them in.
//!
//! How the order is kept: stream time depends on the records' times alone, so the
//! coordinator keeps it and tells every shard where it stood at each record. A record
//! goes to its customer's shard, which takes it in at that stream time (a late event
//! is applied there and then); whenever stream time moves, each shard applies what it
//! has due, in [`Due`] order. One engine applies the same items in the same order
//! across all customers (an item never sets a timer before itself), so merging the
//! shards' changes by (record, item) gives one engine's changes, byte for byte, for any
//! number of shards. Records are queued and run in batches ([`Shards::run`]); the
//! shards of one batch run in parallel.

use crate::core::engine::{Counters, CustomerSource, Dirty, Due, Engine, EngineMeta};
use crate::core::event::{Event, Input};
use crate::core::policy::Policy;
use crate::core::state::CustomerState;
use crate::core::status::StatusChange;
use crate::core::time::Ts;
use crate::model::hash::BuildIdHasher;
use std::hash::BuildHasher;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// Work handed to a pool thread.
type Job = Box<dyn FnOnce() + Send>;

/// A pool thread: where its jobs go, and the thread (both taken when dropped).
type Worker = (Option<mpsc::Sender<Job>>, Option<JoinHandle<()>>);

/// Threads that each run the jobs sent to them, in order, until dropped.
struct Pool {
    workers: Vec<Worker>,
}

impl Pool {
    fn new(n: usize) -> Pool {
        let workers = (0..n)
            .map(|i| {
                let (tx, rx) = mpsc::channel::<Job>();
                let handle = std::thread::Builder::new()
                    .name(format!("shard-{}", i + 1))
                    .spawn(move || {
                        for job in rx {
                            job();
                        }
                    })
                    .expect("cannot start a shard thread");
                (Some(tx), Some(handle))
            })
            .collect();
        Pool { workers }
    }

    fn send(&self, worker: usize, job: Job) {
        self.workers[worker]
            .0
            .as_ref()
            .expect("open until dropped")
            .send(job)
            .expect("a shard thread ended early");
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (tx, _) in &mut self.workers {
            tx.take();
        }
        for (_, h) in &mut self.workers {
            if let Some(h) = h.take() {
                let _ = h.join();
            }
        }
    }
}

/// One shard's status changes of a batch, each with its place in one engine's order:
/// the record whose arrival released it, and the item applied (none for a late event
/// applied on arrival).
#[derive(Default)]
struct Run {
    keys: Vec<(u64, Option<Due>)>,
    changes: Vec<StatusChange>,
}

/// Several engines over disjoint customers, driven as one.
pub struct Shards {
    /// The shards' engines (each away on its thread only while a batch runs).
    engines: Vec<Option<Engine>>,
    /// One thread per shard but the first, kept for the life of the shards: a shard
    /// always runs on the same thread, so its customers are allocated and freed there.
    pool: Pool,
    lateness_ms: i64,
    max_seen: Option<Ts>,
    watermark: Option<Ts>,
    /// Totals restored from the store and the ticks since; the shards count from zero.
    base: Counters,
    /// Records taken so far (numbers the records; steps and events refer to them).
    seq: u64,
    /// Each shard's events of this batch, with their record numbers.
    ops: Vec<Vec<(u64, Event)>>,
    /// Where stream time moved in this batch: (record number, new stream time).
    steps: Vec<(u64, Ts)>,
}

impl Shards {
    /// `n` shards resumed from what one engine (or shards) persisted: the meta and
    /// the timer index. Buffered events and timers go to their customers' shards.
    pub fn restore(policy: Policy, meta: EngineMeta, timers: Vec<(Ts, String)>, n: usize) -> Self {
        let n = n.max(1);
        let mut metas: Vec<EngineMeta> = (0..n)
            .map(|_| EngineMeta {
                max_seen: meta.max_seen,
                watermark: meta.watermark,
                pending: Vec::new(),
                counters: Counters::default(),
            })
            .collect();
        for e in meta.pending {
            metas[shard_of(&e.customer_id, n)].pending.push(e);
        }
        let mut shard_timers: Vec<Vec<(Ts, String)>> = vec![Vec::new(); n];
        for (t, id) in timers {
            shard_timers[shard_of(&id, n)].push((t, id));
        }
        let engines = metas
            .into_iter()
            .zip(shard_timers)
            .map(|(m, t)| Some(Engine::restore(policy.clone(), m, t)))
            .collect();
        Shards {
            engines,
            pool: Pool::new(n - 1),
            lateness_ms: policy.lateness_ms(),
            max_seen: meta.max_seen,
            watermark: meta.watermark,
            base: meta.counters,
            seq: 0,
            ops: vec![Vec::new(); n],
            steps: Vec::new(),
        }
    }

    /// The largest record time taken so far (queued records included).
    pub fn max_seen(&self) -> Option<Ts> {
        self.max_seen
    }

    /// Takes one record into the batch; nothing is applied before [`Shards::run`].
    pub fn push(&mut self, input: Input) {
        self.seq += 1;
        match input {
            Input::Tick(t) => {
                self.base.ticks += 1;
                self.observe(t);
            }
            Input::Event(e) => {
                let t = e.event_time;
                let i = shard_of(&e.customer_id, self.engines.len());
                self.ops[i].push((self.seq, e));
                self.observe(t);
            }
        }
    }

    /// End of input: stream time jumps to the largest time seen (applied by the next
    /// [`Shards::run`]).
    pub fn flush(&mut self) {
        self.seq += 1;
        if let Some(m) = self.max_seen {
            if self.watermark.is_none_or(|w| w < m) {
                self.watermark = Some(m);
                self.steps.push((self.seq, m));
            }
        }
    }

    fn observe(&mut self, t: Ts) {
        if self.max_seen.is_none_or(|m| t > m) {
            self.max_seen = Some(t);
            let w = Ts(t.0.saturating_sub(self.lateness_ms));
            if self.watermark.is_none_or(|old| w > old) {
                self.watermark = Some(w);
                self.steps.push((self.seq, w));
            }
        }
    }

    /// Applies the batch taken since the last run, the shards in parallel (the first
    /// on the calling thread, each other on its own), and appends the status changes
    /// to `out` in one engine's order.
    pub fn run<S>(&mut self, src: &S, out: &mut Vec<StatusChange>) -> Result<(), S::Error>
    where
        S: CustomerSource + Clone + Send + Sync + 'static,
        S::Error: Send + 'static,
    {
        if self.steps.is_empty() && self.ops.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let steps = std::mem::take(&mut self.steps);
        let n = self.engines.len();
        if n == 1 {
            // One shard: its changes are already in order; no tags needed.
            let engine = self.engines[0].as_mut().expect("home between runs");
            let r = run_shard(engine, &mut self.ops[0], &steps, src, Some(out));
            self.steps = steps;
            self.steps.clear();
            return r.map(drop);
        }
        let steps = Arc::new(steps);
        let (done_tx, done_rx) = mpsc::channel();
        for i in 1..n {
            let mut engine = self.engines[i].take().expect("home between runs");
            let mut ops = std::mem::take(&mut self.ops[i]);
            let (steps, src, done) = (steps.clone(), src.clone(), done_tx.clone());
            self.pool.send(
                i - 1,
                Box::new(move || {
                    let r = run_shard(&mut engine, &mut ops, &steps, &src, None);
                    // The receiver waits for every shard; it is gone only on a panic.
                    let _ = done.send((i, engine, ops, r));
                }),
            );
        }
        drop(done_tx);
        let engine = self.engines[0].as_mut().expect("home between runs");
        let first = run_shard(engine, &mut self.ops[0], &steps, src, None);
        let mut runs: Vec<Run> = Vec::with_capacity(n);
        let mut failed = None;
        match first {
            Ok(t) => runs.push(t),
            Err(e) => failed = Some(e),
        }
        for _ in 1..n {
            let (i, engine, ops, r) = done_rx
                .recv()
                .expect("a shard's thread panicked while running a batch");
            self.engines[i] = Some(engine);
            self.ops[i] = ops;
            match r {
                Ok(t) => runs.push(t),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        self.steps = Arc::try_unwrap(steps).unwrap_or_default();
        self.steps.clear();
        if let Some(e) = failed {
            return Err(e);
        }
        // Each shard's run is in order and keys are unique (each names its customer,
        // and a customer is in one shard): merge by taking the smallest head each time.
        out.reserve(runs.iter().map(|r| r.changes.len()).sum());
        let mut at = vec![0usize; runs.len()];
        let mut changes: Vec<_> = runs
            .iter_mut()
            .map(|r| std::mem::take(&mut r.changes).into_iter())
            .collect();
        loop {
            let mut best: Option<(usize, &(u64, Option<Due>))> = None;
            for (i, r) in runs.iter().enumerate() {
                if let Some(k) = r.keys.get(at[i]) {
                    if best.is_none_or(|(_, b)| k < b) {
                        best = Some((i, k));
                    }
                }
            }
            let Some((i, _)) = best else { break };
            at[i] += 1;
            out.push(changes[i].next().expect("one change per key"));
        }
        Ok(())
    }

    fn engines(&self) -> impl Iterator<Item = &Engine> {
        self.engines.iter().flatten()
    }

    /// The totals: what was restored, the ticks since, and every shard's counts.
    pub fn counters(&self) -> Counters {
        let mut c = self.base.clone();
        for e in self.engines() {
            c.add(e.counters());
        }
        c
    }

    /// Timers pending in all shards.
    pub fn timers_pending(&self) -> usize {
        self.engines().map(Engine::timers_pending).sum()
    }

    /// Customers held in memory by all shards.
    pub fn cached_customers(&self) -> usize {
        self.engines().map(Engine::cached_customers).sum()
    }

    /// Customers changed since the last [`Shards::take_dirty_with`], in all shards.
    pub fn dirty_customers(&self) -> usize {
        self.engines().map(Engine::dirty_customers).sum()
    }

    /// A customer's state if its shard holds it in memory.
    pub fn cached(&self, customer_id: &str) -> Option<&CustomerState> {
        self.engines[shard_of(customer_id, self.engines.len())]
            .as_ref()
            .expect("home between runs")
            .cached(customer_id)
    }

    /// Drops clean customers from memory until about `keep` remain in all (each
    /// shard keeps its share).
    pub fn evict(&mut self, keep: usize) {
        let n = self.engines.len();
        for e in self.engines.iter_mut().flatten() {
            e.evict(keep.div_ceil(n));
        }
    }

    /// The meta one engine would persist: stream time, the buffered events of all
    /// shards in the order one engine keeps them, and the totals.
    pub fn meta(&self) -> EngineMeta {
        let mut pending: Vec<Event> = Vec::new();
        for e in self.engines() {
            pending.extend(e.meta().pending);
        }
        if self.engines.len() > 1 {
            pending.sort_by(|a, b| {
                (a.event_time, &a.event_id, &a.customer_id).cmp(&(
                    b.event_time,
                    &b.event_id,
                    &b.customer_id,
                ))
            });
        }
        EngineMeta {
            max_seen: self.max_seen,
            watermark: self.watermark,
            pending,
            counters: self.counters(),
        }
    }

    /// Like [`Engine::take_dirty_with`] over every shard: each changed customer goes
    /// to `each`, and the timer changes and the meta come back as one.
    pub fn take_dirty_with<E>(
        &mut self,
        mut each: impl FnMut(&CustomerState) -> Result<(), E>,
    ) -> Result<Dirty, E> {
        let mut d = Dirty::default();
        for e in self.engines.iter_mut().flatten() {
            let mut part = e.take_dirty_with(&mut each)?;
            d.timers_removed.append(&mut part.timers_removed);
            d.timers_added.append(&mut part.timers_added);
        }
        d.meta = self.meta();
        Ok(d)
    }
}

/// The shard of a customer among `n`: a fixed hash of the id, the same on every run
/// and machine.
pub fn shard_of(customer_id: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (BuildIdHasher::default().hash_one(customer_id) % n as u64) as usize
}

/// Runs one shard's part of a batch: its events at their records, and at every record
/// that moved stream time, whatever became due (skipping stretches where nothing
/// is).
fn run_shard<S: CustomerSource>(
    engine: &mut Engine,
    ops: &mut Vec<(u64, Event)>,
    steps: &[(u64, Ts)],
    src: &S,
    mut direct: Option<&mut Vec<StatusChange>>,
) -> Result<Run, S::Error> {
    let mut run = Run::default();
    let mut si = 0;
    for (seq, e) in ops.drain(..) {
        let sink = match direct.as_deref_mut() {
            Some(out) => Sink::Direct(out),
            None => Sink::Tagged(&mut run),
        };
        catch_up(engine, steps, &mut si, seq, src, sink)?;
        match direct.as_deref_mut() {
            Some(out) => {
                engine.arrive(e, src, out)?;
            }
            None => {
                let before = run.changes.len();
                engine.arrive(e, src, &mut run.changes)?;
                for _ in before..run.changes.len() {
                    run.keys.push((seq, None));
                }
            }
        }
    }
    let sink = match direct {
        Some(out) => Sink::Direct(out),
        None => Sink::Tagged(&mut run),
    };
    catch_up(engine, steps, &mut si, u64::MAX, src, sink)?;
    Ok(run)
}

/// Where a shard's changes go: straight out when it is the only shard, else into its
/// run, with their keys, for the merge.
enum Sink<'a> {
    Direct(&'a mut Vec<StatusChange>),
    Tagged(&'a mut Run),
}

/// Moves a shard's stream time through the steps before record `until`, applying
/// due items at the step that released them.
fn catch_up<S: CustomerSource>(
    engine: &mut Engine,
    steps: &[(u64, Ts)],
    si: &mut usize,
    until: u64,
    src: &S,
    sink: Sink<'_>,
) -> Result<(), S::Error> {
    let end = *si + steps[*si..].partition_point(|s| s.0 < until);
    let (out, mut keys) = match sink {
        Sink::Direct(out) => (out, None),
        Sink::Tagged(run) => (&mut run.changes, Some(&mut run.keys)),
    };
    while *si < end {
        let Some(next) = engine.next_due_at() else {
            break;
        };
        // The first step at which stream time reaches the next item.
        let j = *si + steps[*si..end].partition_point(|s| s.1 < next);
        if j == end {
            break;
        }
        let (seq, w) = steps[j];
        engine.set_watermark(w);
        loop {
            let before = out.len();
            let Some(item) = engine.step(src, out)? else {
                break;
            };
            if let Some(keys) = keys.as_deref_mut() {
                if out.len() > before {
                    let due = item.into_due();
                    for _ in before..out.len() {
                        keys.push((seq, Some(due.clone())));
                    }
                }
            }
        }
        *si = j + 1;
    }
    if end > 0 && *si <= end {
        engine.set_watermark(steps[end - 1].1);
    }
    *si = end;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_spread_evenly_over_shards() {
        for n in [2usize, 3, 8] {
            let mut counts = vec![0usize; n];
            for c in 0..20_000 {
                counts[shard_of(&format!("C{c:08}"), n)] += 1;
                counts[shard_of(&format!("C{c}"), n)] += 1;
            }
            let even = 40_000 / n;
            for (i, k) in counts.iter().enumerate() {
                assert!(
                    k.abs_diff(even) < even / 20,
                    "{n} shards: shard {i} has {k}"
                );
            }
        }
    }
}
