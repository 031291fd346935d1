//! The sharded engine: the customers split by id over several engines that run on
//! threads of their own, with one stream time for all of them and their status
//! changes merged into the order one engine would have emitted them in.
//!
//! How the order is kept: stream time depends on the records' times alone, so the
//! coordinator keeps it and tells every shard where it stood at each record. A record
//! goes to its customer's shard, which takes it in at that stream time (a late event
//! is applied there and then); whenever stream time moves, each shard applies what it
//! has due, in [`Due`] order. One engine applies the same items in the same order
//! across all customers (an item never sets a timer before itself), so sorting the
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

/// A status change with its place in one engine's order: the record whose arrival
/// released it, and the item applied (none for a late event applied on arrival).
struct Tagged {
    seq: u64,
    due: Option<Due>,
    change: StatusChange,
}

/// Several engines over disjoint customers, driven as one.
pub struct Shards {
    engines: Vec<Engine>,
    lateness_ms: i64,
    max_seen: Option<Ts>,
    watermark: Option<Ts>,
    /// Totals restored from the store and the ticks since; the shards count from zero.
    base: Counters,
    /// Records taken since the last run (the batch's record numbers).
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
            .map(|(m, t)| Engine::restore(policy.clone(), m, t))
            .collect();
        Shards {
            engines,
            lateness_ms: policy.lateness_ms(),
            max_seen: meta.max_seen,
            watermark: meta.watermark,
            base: meta.counters,
            seq: 0,
            ops: vec![Vec::new(); n],
            steps: Vec::new(),
        }
    }

    /// The number of shards.
    pub fn len(&self) -> usize {
        self.engines.len()
    }

    /// Always false: there is at least one shard.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The largest record time taken so far (queued records included).
    pub fn max_seen(&self) -> Option<Ts> {
        self.max_seen
    }

    /// Stream time after the records taken so far.
    pub fn watermark(&self) -> Option<Ts> {
        self.watermark
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

    /// Applies the batch taken since the last run, the shards in parallel (one on
    /// the calling thread), and appends the status changes to `out` in one engine's
    /// order.
    pub fn run<S>(&mut self, src: &S, out: &mut Vec<StatusChange>) -> Result<(), S::Error>
    where
        S: CustomerSource + Sync,
        S::Error: Send,
    {
        if self.steps.is_empty() && self.ops.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let steps = std::mem::take(&mut self.steps);
        let mut ops = std::mem::take(&mut self.ops);
        let results: Vec<Result<Vec<Tagged>, S::Error>> = if self.engines.len() == 1 {
            vec![run_shard(&mut self.engines[0], &mut ops[0], &steps, src)]
        } else {
            std::thread::scope(|scope| {
                let mut engines = self.engines.iter_mut().zip(ops.iter_mut());
                let (first, first_ops) = engines.next().expect("at least one shard");
                let handles: Vec<_> = engines
                    .map(|(engine, ops)| {
                        let steps = &steps;
                        scope.spawn(move || run_shard(engine, ops, steps, src))
                    })
                    .collect();
                let mut results = vec![run_shard(first, first_ops, &steps, src)];
                results.extend(
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
                );
                results
            })
        };
        let mut tagged = Vec::new();
        for r in results {
            let mut t = r?;
            if tagged.is_empty() {
                tagged = t;
            } else {
                tagged.append(&mut t);
            }
        }
        if self.engines.len() > 1 {
            // Keys are unique (each names its customer, and a customer is in one
            // shard), and each shard's run is already in order.
            tagged.sort_by(|a, b| (a.seq, &a.due).cmp(&(b.seq, &b.due)));
        }
        out.extend(tagged.into_iter().map(|t| t.change));
        let mut steps = steps;
        steps.clear();
        self.steps = steps;
        self.ops = ops;
        Ok(())
    }

    /// The totals: what was restored, the ticks since, and every shard's counts.
    pub fn counters(&self) -> Counters {
        let mut c = self.base.clone();
        for e in &self.engines {
            c.add(e.counters());
        }
        c
    }

    /// Timers pending in all shards.
    pub fn timers_pending(&self) -> usize {
        self.engines.iter().map(Engine::timers_pending).sum()
    }

    /// Customers held in memory by all shards.
    pub fn cached_customers(&self) -> usize {
        self.engines.iter().map(Engine::cached_customers).sum()
    }

    /// Customers changed since the last [`Shards::take_dirty_with`], in all shards.
    pub fn dirty_customers(&self) -> usize {
        self.engines.iter().map(Engine::dirty_customers).sum()
    }

    /// A customer's state if its shard holds it in memory.
    pub fn cached(&self, customer_id: &str) -> Option<&CustomerState> {
        self.engines[shard_of(customer_id, self.engines.len())].cached(customer_id)
    }

    /// Drops clean customers from memory until about `keep` remain in all (each
    /// shard keeps its share).
    pub fn evict(&mut self, keep: usize) {
        let n = self.engines.len();
        for e in &mut self.engines {
            e.evict(keep.div_ceil(n));
        }
    }

    /// The meta one engine would persist: stream time, the buffered events of all
    /// shards in the order one engine keeps them, and the totals.
    pub fn meta(&self) -> EngineMeta {
        let mut pending: Vec<Event> = Vec::new();
        for e in &self.engines {
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
        for e in &mut self.engines {
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
) -> Result<Vec<Tagged>, S::Error> {
    let mut tagged = Vec::new();
    let mut buf = Vec::new();
    let mut si = 0;
    for (seq, e) in ops.drain(..) {
        catch_up(engine, steps, &mut si, seq, src, &mut buf, &mut tagged)?;
        engine.arrive(e, src, &mut buf)?;
        tagged.extend(buf.drain(..).map(|change| Tagged {
            seq,
            due: None,
            change,
        }));
    }
    catch_up(engine, steps, &mut si, u64::MAX, src, &mut buf, &mut tagged)?;
    Ok(tagged)
}

/// Moves a shard's stream time through the steps before record `until`, applying
/// due items at the step that released them.
fn catch_up<S: CustomerSource>(
    engine: &mut Engine,
    steps: &[(u64, Ts)],
    si: &mut usize,
    until: u64,
    src: &S,
    buf: &mut Vec<StatusChange>,
    tagged: &mut Vec<Tagged>,
) -> Result<(), S::Error> {
    let end = *si + steps[*si..].partition_point(|s| s.0 < until);
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
        while let Some(item) = engine.step(src, buf)? {
            if buf.is_empty() {
                continue;
            }
            let due = item.into_due();
            tagged.extend(buf.drain(..).map(|change| Tagged {
                seq,
                due: Some(due.clone()),
                change,
            }));
        }
        *si = j + 1;
    }
    if end > 0 && *si <= end {
        engine.set_watermark(steps[end - 1].1);
    }
    *si = end;
    Ok(())
}
