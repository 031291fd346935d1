//! The churn engine: stream time, the pending-event buffer, the timer index, the
//! customer-state cache and status-change emission.
//!
//! The engine is pure: it reads no clock and does no I/O. Time comes from the records
//! (event times and tick records); customer state it does not hold in memory is asked
//! of a [`CustomerSource`] (the store in production, a map in tests), and what it
//! changed is handed back through [`Engine::take_dirty`] for the caller to persist.
//!
//! Semantics:
//! - *Stream time* (the watermark) is the largest record time seen minus the allowed
//!   lateness. Events newer than stream time wait in a buffer; when stream time passes
//!   them they are applied in event-time order (ties by event id, then customer id), interleaved with due
//!   timers. So the same events in any arrival order within the lateness give the same
//!   states and the same status changes.
//! - Every customer has at most one timer: the next instant their status can change
//!   without an event. Timers fire when stream time reaches them, at their own instant.
//! - A *late* event (not newer than stream time) is applied at once; if the status it
//!   implies now differs from the one published, a correcting change is emitted at the
//!   current stream time.

use crate::core::event::{Event, Input};
use crate::core::policy::Policy;
use crate::core::state::CustomerState;
use crate::core::status::{
    change_id, recommended_actions, Level, Lifecycle, Reason, Status, StatusChange, Trigger,
};
use crate::core::time::Ts;
use crate::model::hash::BuildIdHasher;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Where the engine gets customer state it does not hold in memory.
pub trait CustomerSource {
    /// The error loading can fail with.
    type Error;
    /// The stored state of a customer, if any.
    fn load(&self, customer_id: &str) -> Result<Option<CustomerState>, Self::Error>;
}

/// A source that knows no customers: for engines that keep everything in memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSource;

impl CustomerSource for NoSource {
    type Error = std::convert::Infallible;
    fn load(&self, _: &str) -> Result<Option<CustomerState>, Self::Error> {
        Ok(None)
    }
}

/// Running totals, persisted with the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Customer events received (including duplicates and late ones).
    pub events: u64,
    /// Tick records received.
    pub ticks: u64,
    /// Events ignored because their event id was already applied.
    pub duplicates: u64,
    /// Events that arrived after stream time had passed them.
    pub late: u64,
    /// Timers fired.
    pub timers_fired: u64,
    /// Status changes emitted.
    pub status_changes: u64,
    /// Status changes by new level ([`Level::ALL`] order).
    pub changes_by_level: [u64; 4],
    /// Correcting changes caused by late events.
    pub corrections: u64,
    /// Customers with a status, by level.
    pub customers_by_level: [u64; 4],
    /// Customers with a status, by lifecycle ([`Lifecycle::ALL`] order).
    pub customers_by_lifecycle: [u64; 4],
    /// Customers with a status, by tier ([`crate::core::status::Tier::ALL`] order).
    pub customers_by_tier: [u64; 3],
    /// Customers ever seen.
    pub customers: u64,
}

impl Counters {
    /// Adds another engine's totals to these (the totals of a sharded engine are the
    /// sums of its shards').
    pub fn add(&mut self, o: &Counters) {
        // Wrapping: a shard's population gauges count from zero, so one that only saw
        // a customer leave a level holds "minus one" until added to the others.
        let sum = |a: &mut [u64], b: &[u64]| {
            a.iter_mut()
                .zip(b)
                .for_each(|(a, b)| *a = a.wrapping_add(*b))
        };
        self.events += o.events;
        self.ticks += o.ticks;
        self.duplicates += o.duplicates;
        self.late += o.late;
        self.timers_fired += o.timers_fired;
        self.status_changes += o.status_changes;
        sum(&mut self.changes_by_level, &o.changes_by_level);
        self.corrections += o.corrections;
        sum(&mut self.customers_by_level, &o.customers_by_level);
        sum(&mut self.customers_by_lifecycle, &o.customers_by_lifecycle);
        sum(&mut self.customers_by_tier, &o.customers_by_tier);
        self.customers += o.customers;
    }

    fn count_status(&mut self, s: &Status, delta: i64) {
        let add = |v: &mut u64| *v = v.wrapping_add_signed(delta);
        add(&mut self.customers_by_level[s.level as usize]);
        add(&mut self.customers_by_lifecycle[s.lifecycle as usize]);
        add(&mut self.customers_by_tier[s.tier as usize]);
    }
}

/// The engine's own persisted state (besides customers and timers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineMeta {
    /// Largest record time seen.
    pub max_seen: Option<Ts>,
    /// Stream time.
    pub watermark: Option<Ts>,
    /// Events waiting for stream time to pass them.
    pub pending: Vec<Event>,
    /// Totals.
    pub counters: Counters,
}

struct Entry {
    /// The customer id, shared with the cache key and the timer index (one copy).
    id: Arc<str>,
    state: CustomerState,
    dirty: bool,
    persisted_deadline: Option<Ts>,
}

/// What changed since the last [`Engine::take_dirty`], to persist atomically.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Changed customer states.
    pub customers: Vec<CustomerState>,
    /// Timer entries to delete.
    pub timers_removed: Vec<(Ts, String)>,
    /// Timer entries to add.
    pub timers_added: Vec<(Ts, String)>,
    /// The engine meta to store.
    pub meta: EngineMeta,
}

/// What the engine did with a record on arrival (the driver turns it into the
/// record's outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A tick: stream time advanced (or not) and due timers fired.
    Tick,
    /// An event accepted: buffered until stream time passes it, then applied. (If it
    /// proves a duplicate only when applied, that is counted in
    /// [`Counters::duplicates`].)
    Accepted,
    /// An event not newer than stream time, applied at once (with a correcting change
    /// when the status it implies differs from the one published).
    Late,
    /// An event whose id is already waiting or already applied: a no-op.
    Duplicate,
}

/// An item [`Engine::step`] applied: a buffered event or a timer.
#[derive(Debug)]
// Handed back by value once per item; boxing the event would allocate for each.
#[allow(clippy::large_enum_variant)]
pub enum Stepped {
    /// A buffered event, applied when stream time passed it.
    Event(Event),
    /// A customer's timer, fired at its instant.
    Timer(Ts, Arc<str>),
}

impl Stepped {
    /// The item's place in the order [`Engine::step`] applies items in.
    pub fn into_due(self) -> Due {
        match self {
            Stepped::Event(e) => Due {
                at: e.event_time,
                timer: false,
                key: e.event_id,
                customer: e.customer_id,
            },
            Stepped::Timer(at, customer) => Due {
                at,
                timer: true,
                key: customer.to_string(),
                customer: String::new(),
            },
        }
    }
}

/// The order in which stream time releases items: by instant, then events before
/// timers, then events by (event id, customer id) and timers by customer id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// The item's instant.
    pub at: Ts,
    /// A timer (after the events of the same instant).
    pub timer: bool,
    /// The event id, or the timer's customer id.
    pub key: String,
    /// The event's customer id (empty for a timer).
    pub customer: String,
}

/// The churn engine.
pub struct Engine {
    policy: Policy,
    max_seen: Option<Ts>,
    watermark: Option<Ts>,
    /// By event time; at one instant, sorted by (event id, customer) descending, so
    /// the next to apply is the last. Two customers' events that share an id and an
    /// instant are both kept (a duplicate is the same id for the same customer).
    pending: BTreeMap<Ts, Vec<Event>>,
    /// Events in `pending`.
    pending_len: usize,
    timers: BTreeSet<TimerKey>,
    cache: HashMap<Arc<str>, Box<Entry>, BuildIdHasher>,
    /// Cached customers changed since the last [`Engine::take_dirty`], in the order
    /// they changed (a commit visits these, not the whole cache).
    dirty: Vec<Arc<str>>,
    counters: Counters,
}

impl Engine {
    /// A fresh engine.
    pub fn new(policy: Policy) -> Self {
        Self::restore(policy, EngineMeta::default(), Vec::new())
    }

    /// An engine resumed from persisted meta and timer entries.
    pub fn restore(policy: Policy, meta: EngineMeta, timers: Vec<(Ts, String)>) -> Self {
        let mut engine = Engine {
            policy,
            max_seen: meta.max_seen,
            watermark: meta.watermark,
            pending: BTreeMap::new(),
            pending_len: 0,
            timers: timers
                .into_iter()
                .map(|(t, id)| TimerKey::new(t, Arc::from(id)))
                .collect(),
            cache: HashMap::default(),
            dirty: Vec::new(),
            counters: meta.counters,
        };
        for e in meta.pending {
            engine.buffer(e);
        }
        engine
    }

    /// Buffers an event until stream time passes it; false when the same event (id,
    /// customer, instant) is already waiting.
    fn buffer(&mut self, e: Event) -> bool {
        let at = self
            .pending
            .entry(e.event_time)
            .or_insert_with(|| Vec::with_capacity(1));
        // The bucket is sorted descending, so each element is compared the other way
        // round: the new event's key against the element's.
        match at.binary_search_by(|x| pending_key(&e).cmp(&pending_key(x))) {
            Ok(_) => false,
            Err(i) => {
                at.insert(i, e);
                self.pending_len += 1;
                true
            }
        }
    }

    /// The next buffered event due at or before `w`, taken out of the buffer.
    fn next_due(&mut self, w: Ts) -> Option<Event> {
        let mut first = self.pending.first_entry().filter(|f| *f.key() <= w)?;
        let e = first.get_mut().pop().expect("no empty instant is kept");
        if first.get().is_empty() {
            first.remove();
        }
        self.pending_len -= 1;
        Some(e)
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Current stream time.
    pub fn watermark(&self) -> Option<Ts> {
        self.watermark
    }

    /// The largest record time seen so far.
    pub fn max_seen(&self) -> Option<Ts> {
        self.max_seen
    }

    /// Totals so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Timers pending.
    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    /// Events buffered until stream time passes them.
    pub fn pending_events(&self) -> usize {
        self.pending_len
    }

    /// Customers held in memory.
    pub fn cached_customers(&self) -> usize {
        self.cache.len()
    }

    /// Customers changed since the last [`Engine::take_dirty`]: what the next commit
    /// writes. Depends only on the records since that commit (never on what the cache
    /// let go), so a commit triggered by it falls on the same record on every run.
    pub fn dirty_customers(&self) -> usize {
        self.dirty.len()
    }

    /// A customer's state if held in memory.
    pub fn cached(&self, customer_id: &str) -> Option<&CustomerState> {
        self.cache.get(customer_id).map(|e| &e.state)
    }

    /// Feeds one record; status changes are appended to `out`. Returns what became
    /// of the record on arrival.
    pub fn process<S: CustomerSource>(
        &mut self,
        input: Input,
        src: &S,
        out: &mut Vec<StatusChange>,
    ) -> Result<Arrival, S::Error> {
        let arrival = match input {
            Input::Tick(t) => {
                self.counters.ticks += 1;
                self.observe(t);
                Arrival::Tick
            }
            Input::Event(e) => {
                let t = e.event_time;
                let arrival = self.arrive(e, src, out)?;
                // A late event is not newer than stream time, so this moves nothing.
                self.observe(t);
                arrival
            }
        };
        self.advance(src, out)?;
        Ok(arrival)
    }

    /// Takes one event in without moving stream time: a late one (not newer than
    /// stream time) is applied at once, any other is buffered until stream time
    /// passes it. [`Engine::process`] is this, then stream time, then
    /// [`Engine::step`] until nothing is due; a sharded driver calls the parts itself
    /// (see [`Engine::set_watermark`]).
    pub fn arrive<S: CustomerSource>(
        &mut self,
        e: Event,
        src: &S,
        out: &mut Vec<StatusChange>,
    ) -> Result<Arrival, S::Error> {
        self.counters.events += 1;
        if self.watermark.is_some_and(|w| e.event_time <= w) {
            self.counters.late += 1;
            return Ok(if self.on_late(e, src, out)? {
                Arrival::Late
            } else {
                Arrival::Duplicate
            });
        }
        Ok(if self.buffer(e) {
            Arrival::Accepted
        } else {
            self.counters.duplicates += 1;
            Arrival::Duplicate
        })
    }

    /// End of input: stream time jumps to the largest time seen (no more lateness to
    /// wait for), releasing every buffered event and due timer.
    pub fn flush<S: CustomerSource>(
        &mut self,
        src: &S,
        out: &mut Vec<StatusChange>,
    ) -> Result<(), S::Error> {
        if let Some(m) = self.max_seen {
            if self.watermark.is_none_or(|w| w < m) {
                self.watermark = Some(m);
            }
        }
        self.advance(src, out)
    }

    fn observe(&mut self, t: Ts) {
        if self.max_seen.is_none_or(|m| t > m) {
            self.max_seen = Some(t);
            let w = Ts(t.0.saturating_sub(self.policy.lateness_ms()));
            if self.watermark.is_none_or(|old| w > old) {
                self.watermark = Some(w);
            }
        }
    }

    /// Sets stream time from outside, for an engine that holds one shard of the
    /// customers while a driver keeps stream time for all of them (it never moves
    /// backwards). Nothing is applied until [`Engine::step`].
    pub fn set_watermark(&mut self, w: Ts) {
        if self.watermark.is_none_or(|old| w > old) {
            self.watermark = Some(w);
        }
    }

    /// The instant of the next buffered event or timer, due or not.
    pub fn next_due_at(&self) -> Option<Ts> {
        let ev = self.pending.keys().next().copied();
        let tm = self.timers.first().map(|k| k.at);
        match (ev, tm) {
            (Some(e), Some(t)) => Some(e.min(t)),
            (e, t) => e.or(t),
        }
    }

    fn advance<S: CustomerSource>(
        &mut self,
        src: &S,
        out: &mut Vec<StatusChange>,
    ) -> Result<(), S::Error> {
        while self.step(src, out)?.is_some() {}
        Ok(())
    }

    /// Applies the next buffered event or timer that stream time has passed, if any,
    /// and hands it back. Items come in [`Due`] order: by instant, events before
    /// timers, events by (event id, customer), timers by customer. An item never sets
    /// a timer before itself, so one engine's items are ascending, and merging
    /// several shards' items by that order gives one engine's sequence.
    pub fn step<S: CustomerSource>(
        &mut self,
        src: &S,
        out: &mut Vec<StatusChange>,
    ) -> Result<Option<Stepped>, S::Error> {
        let Some(w) = self.watermark else {
            return Ok(None);
        };
        let ev = self.pending.keys().next().filter(|t| **t <= w).copied();
        let tm = self.timers.first().filter(|k| k.at <= w).map(|k| k.at);
        match (ev, tm) {
            (None, None) => Ok(None),
            (Some(e), t) if t.is_none_or(|t| e <= t) => {
                let event = self.next_due(w).expect("peeked");
                self.on_event(&event, src, out)?;
                Ok(Some(Stepped::Event(event)))
            }
            _ => {
                let TimerKey {
                    at, id: customer, ..
                } = self.timers.pop_first().expect("peeked");
                self.on_timer(at, &customer, src, out)?;
                Ok(Some(Stepped::Timer(at, customer)))
            }
        }
    }

    fn on_event<S: CustomerSource>(
        &mut self,
        e: &Event,
        src: &S,
        out: &mut Vec<StatusChange>,
    ) -> Result<(), S::Error> {
        if !self.apply(e, src)? {
            return Ok(());
        }
        let extra = if e.is_visit() {
            Extra::Visited(e)
        } else {
            Extra::None
        };
        self.evaluate(&e.customer_id, e.event_time, Trigger::Event, extra, out);
        Ok(())
    }

    /// Applies an event to its customer's state (loaded or created); false when the
    /// customer had already applied it (a duplicate, counted).
    fn apply<S: CustomerSource>(&mut self, e: &Event, src: &S) -> Result<bool, S::Error> {
        let entry = entry(&mut self.cache, &mut self.counters, &mut self.dirty, e, src)?;
        if !entry.state.apply(e, &self.policy) {
            self.counters.duplicates += 1;
            return Ok(false);
        }
        mark_dirty(entry, &mut self.dirty);
        Ok(true)
    }

    /// Applies a late event; false when it was a duplicate.
    fn on_late<S: CustomerSource>(
        &mut self,
        e: Event,
        src: &S,
        out: &mut Vec<StatusChange>,
    ) -> Result<bool, S::Error> {
        let w = self.watermark.expect("late implies a watermark");
        if !self.apply(&e, src)? {
            return Ok(false);
        }
        self.evaluate(&e.customer_id, w, Trigger::Event, Extra::Late(&e, w), out);
        Ok(true)
    }

    fn on_timer<S: CustomerSource>(
        &mut self,
        at: Ts,
        customer: &str,
        src: &S,
        out: &mut Vec<StatusChange>,
    ) -> Result<(), S::Error> {
        if !self.cache.contains_key(customer) {
            match src.load(customer)? {
                Some(state) => {
                    let id: Arc<str> = Arc::from(customer);
                    self.cache.insert(
                        id.clone(),
                        Box::new(Entry {
                            id,
                            persisted_deadline: state.next_deadline,
                            state,
                            dirty: false,
                        }),
                    );
                }
                None => return Ok(()),
            }
        }
        let entry = self.cache.get_mut(customer).expect("present");
        if entry.state.next_deadline != Some(at) {
            return Ok(()); // stale entry
        }
        // The timer entry is consumed; evaluate() sets the next one.
        entry.state.next_deadline = None;
        mark_dirty(entry, &mut self.dirty);
        self.counters.timers_fired += 1;
        self.evaluate(customer, at, Trigger::Timer, Extra::None, out);
        Ok(())
    }

    /// Re-assesses a cached customer at `t`, emits a change if the status differs, and
    /// re-arms the customer's timer.
    fn evaluate(
        &mut self,
        customer: &str,
        t: Ts,
        trigger: Trigger,
        extra: Extra<'_>,
        out: &mut Vec<StatusChange>,
    ) {
        let correction = matches!(extra, Extra::Late(..));
        let dwell = self.policy.dwell_ms();
        let entry = self
            .cache
            .get_mut(customer)
            .expect("cached before evaluate");
        let state = &mut entry.state;
        let Some(status) = state.status_at(t, &self.policy) else {
            set_deadline(&mut self.timers, &entry.id, state, None);
            return;
        };
        let mut extra_deadline = None;
        match state.status {
            None if status.level == Level::Normal => {
                state.p_alive_at_change = state.p_alive(t, &self.policy);
                state.status = Some(status);
                state.status_since = Some(t);
                self.counters.count_status(&status, 1);
            }
            Some(prev) if prev == status => {}
            prev => {
                let dwell_until = state.last_change.map(|c| Ts(c.0.saturating_add(dwell)));
                if let Some(until) = dwell_until.filter(|u| !correction && t < *u) {
                    extra_deadline = Some(until);
                } else {
                    let a = state.assess(t, &self.policy).expect("assessed above");
                    let pred = state.predictions(t, &self.policy);
                    let from = prev.unwrap_or(Status {
                        level: Level::Normal,
                        lifecycle: Lifecycle::Active,
                        tier: a.status.tier,
                    });
                    let mut reasons = a.reasons.clone();
                    if let Some(x) = extra.reason() {
                        reasons.push(x);
                    }
                    let last = state.last_visit.expect("assessed implies a visit");
                    out.push(StatusChange {
                        event_id: change_id(customer, t, &from, &a.status, trigger),
                        customer_id: customer.to_string(),
                        dealer_id: state.dealer_id.clone(),
                        event_time: t.to_rfc3339(),
                        trigger,
                        previous_level: from.level,
                        level: a.status.level,
                        previous_lifecycle: from.lifecycle,
                        lifecycle: a.status.lifecycle,
                        tier: a.status.tier,
                        previous_cell: from.cell(),
                        cell: a.status.cell(),
                        days_since_last_visit: a.days_since_last_visit,
                        last_visit_date: last.to_date_string(),
                        recommended_actions: recommended_actions(&a.status, &reasons),
                        reasons,
                        p_alive: pred.map(|p| p.p_alive),
                        expected_visits_12m: pred.map(|p| p.expected_visits_12m),
                        clv: pred.and_then(|p| p.clv),
                    });
                    if a.status.level == Level::Normal {
                        // The P(alive)-drop rule measures from the last time the
                        // customer was fine; moving the reference on every change would
                        // make the rule switch itself off and flap.
                        state.p_alive_at_change = pred.map(|p| p.p_alive);
                    }
                    if let Some(p) = prev {
                        self.counters.count_status(&p, -1);
                    }
                    self.counters.count_status(&a.status, 1);
                    self.counters.status_changes += 1;
                    self.counters.changes_by_level[a.status.level as usize] += 1;
                    if correction {
                        self.counters.corrections += 1;
                    }
                    state.status = Some(a.status);
                    state.status_since = Some(t);
                    state.last_change = Some(t);
                }
            }
        }
        let next = match (state.next_deadline(t, &self.policy), extra_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        set_deadline(&mut self.timers, &entry.id, state, next);
        mark_dirty(entry, &mut self.dirty);
    }

    /// Everything changed since the last call, for one atomic store batch; marks the
    /// cache clean.
    pub fn take_dirty(&mut self) -> Dirty {
        let mut customers = Vec::new();
        let mut d = self
            .take_dirty_with(|s| {
                customers.push(s.clone());
                Ok::<_, std::convert::Infallible>(())
            })
            .unwrap_or_else(|never| match never {});
        d.customers = customers;
        d
    }

    /// Like [`Engine::take_dirty`], but hands each changed customer state to `each`
    /// (to encode it where it lies, without a copy) instead of returning it: the
    /// result's `customers` is empty. On an error from `each` the cache stays dirty.
    pub fn take_dirty_with<E>(
        &mut self,
        mut each: impl FnMut(&CustomerState) -> Result<(), E>,
    ) -> Result<Dirty, E> {
        for id in &self.dirty {
            each(&self.cache[id].state)?;
        }
        let mut d = Dirty::default();
        for id in std::mem::take(&mut self.dirty) {
            let e = self
                .cache
                .get_mut(&id)
                .expect("dirty customers stay cached");
            if e.persisted_deadline != e.state.next_deadline {
                if let Some(old) = e.persisted_deadline {
                    d.timers_removed.push((old, id.to_string()));
                }
                if let Some(new) = e.state.next_deadline {
                    d.timers_added.push((new, id.to_string()));
                }
                e.persisted_deadline = e.state.next_deadline;
            }
            e.dirty = false;
        }
        d.meta = self.meta();
        Ok(d)
    }

    /// Hands every customer changed since the last call (or the last
    /// [`Engine::take_dirty`]) to `each`, once, in the order they changed, and marks
    /// them clean. For an engine that is never committed (the backtest follows this way
    /// whose status may have moved): it skips a commit's timer bookkeeping, so do not mix
    /// it with commits.
    pub fn take_changed(&mut self, mut each: impl FnMut(&CustomerState)) {
        for id in self.dirty.drain(..) {
            let e = self
                .cache
                .get_mut(&id)
                .expect("dirty customers stay cached");
            e.dirty = false;
            each(&e.state);
        }
    }

    /// The engine meta as it stands.
    pub fn meta(&self) -> EngineMeta {
        EngineMeta {
            max_seen: self.max_seen,
            watermark: self.watermark,
            pending: self
                .pending
                .values()
                .flat_map(|at| at.iter().rev().cloned())
                .collect(),
            counters: self.counters.clone(),
        }
    }

    /// Drops clean customers from memory until at most `keep` remain (dirty ones stay
    /// until the next commit). The ones kept are those whose timers come soonest:
    /// stream time reaches them first, so they are the likeliest to be needed again
    /// before the others (a customer without a timer goes first). Which customers are
    /// held never changes a result, only how often the source is read.
    pub fn evict(&mut self, keep: usize) {
        if self.cache.len() <= keep {
            return;
        }
        let excess = self.cache.len() - keep;
        let far = |e: &Entry| e.state.next_deadline.unwrap_or(Ts(i64::MAX));
        let mut deadlines: Vec<Ts> = self
            .cache
            .values()
            .filter(|e| !e.dirty)
            .map(|e| far(e))
            .collect();
        if deadlines.len() <= excess {
            self.cache.retain(|_, e| e.dirty);
            return;
        }
        // The `excess` latest deadlines go: all later than the cut, and as many at
        // the cut as are still needed.
        let at = deadlines.len() - excess;
        let cut = *deadlines.select_nth_unstable(at).1;
        let later = deadlines[at + 1..].iter().filter(|d| **d > cut).count();
        let mut at_cut = excess - later;
        self.cache.retain(|_, e| {
            if e.dirty {
                return true;
            }
            let d = far(e);
            if d > cut {
                false
            } else if d == cut && at_cut > 0 {
                at_cut -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// The customer's cached entry, loaded from the source or created on first sight.
fn entry<'a, S: CustomerSource>(
    cache: &'a mut HashMap<Arc<str>, Box<Entry>, BuildIdHasher>,
    counters: &mut Counters,
    dirty: &mut Vec<Arc<str>>,
    e: &Event,
    src: &S,
) -> Result<&'a mut Entry, S::Error> {
    if !cache.contains_key(e.customer_id.as_str()) {
        let id: Arc<str> = Arc::from(e.customer_id.as_str());
        let entry = match src.load(&e.customer_id)? {
            Some(state) => Entry {
                id: id.clone(),
                persisted_deadline: state.next_deadline,
                state,
                dirty: false,
            },
            None => {
                counters.customers += 1;
                dirty.push(id.clone());
                Entry {
                    id: id.clone(),
                    state: CustomerState::new(&e.customer_id, &e.dealer_id),
                    dirty: true,
                    persisted_deadline: None,
                }
            }
        };
        cache.insert(id, Box::new(entry));
    }
    Ok(cache.get_mut(e.customer_id.as_str()).expect("inserted"))
}

/// What caused an evaluation besides the state itself; its reason text is only built
/// when a change is emitted.
enum Extra<'a> {
    None,
    /// A visit or repair order.
    Visited(&'a Event),
    /// A late event, applied at this stream time.
    Late(&'a Event, Ts),
}

impl Extra<'_> {
    fn reason(&self) -> Option<Reason> {
        match self {
            Extra::None => None,
            Extra::Visited(e) => Some(Reason {
                code: "visited".into(),
                text: format!(
                    "{} on {}",
                    if e.type_name() == "repair_order" {
                        "repair order"
                    } else {
                        "visit"
                    },
                    e.event_time.to_date_string()
                ),
            }),
            Extra::Late(e, w) => Some(Reason {
                code: "late_event".into(),
                text: format!(
                    "{} of {} arrived after stream time {}; status recomputed",
                    e.type_name(),
                    e.event_time.to_rfc3339(),
                    w.to_rfc3339()
                ),
            }),
        }
    }
}

/// The order of buffered events at one instant.
fn pending_key(e: &Event) -> (&str, &str) {
    (&e.event_id, &e.customer_id)
}

/// Marks a cached customer changed, counting it once until the next commit.
fn mark_dirty(entry: &mut Entry, dirty: &mut Vec<Arc<str>>) {
    if !entry.dirty {
        entry.dirty = true;
        dirty.push(entry.id.clone());
    }
}

fn set_deadline(
    timers: &mut BTreeSet<TimerKey>,
    id: &Arc<str>,
    state: &mut CustomerState,
    next: Option<Ts>,
) {
    if state.next_deadline == next {
        // A customer's timer leaves the index only when it fires, and firing clears
        // `next_deadline`; so an unchanged deadline is still in the index.
        debug_assert!(next.is_none_or(|n| timers.contains(&TimerKey::new(n, id.clone()))));
        return;
    }
    if let Some(old) = state.next_deadline {
        timers.remove(&TimerKey::new(old, id.clone()));
    }
    if let Some(n) = next {
        timers.insert(TimerKey::new(n, id.clone()));
    }
    state.next_deadline = next;
}

/// A customer's timer in the index: ordered exactly as the pair (instant, customer
/// id), but the id's first 16 bytes are kept inline (big-endian, zero-padded) and
/// compared first, so that most comparisons in an index of millions of timers do not
/// follow the pointer to the id.
#[derive(Debug, Clone)]
struct TimerKey {
    at: Ts,
    head: u128,
    id: Arc<str>,
}

impl TimerKey {
    fn new(at: Ts, id: Arc<str>) -> TimerKey {
        let mut b = [0u8; 16];
        let n = id.len().min(16);
        b[..n].copy_from_slice(&id.as_bytes()[..n]);
        TimerKey {
            at,
            head: u128::from_be_bytes(b),
            id,
        }
    }
}

impl PartialEq for TimerKey {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.head == other.head && self.id == other.id
    }
}

impl Eq for TimerKey {}

impl PartialOrd for TimerKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimerKey {
    /// Equal heads leave the order to the whole ids; different heads order as the ids
    /// do: at the first differing byte both are real bytes, or one is the padding of
    /// a shorter id, which is then the smaller one (a real zero byte there gives equal
    /// heads, decided by the ids).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at
            .cmp(&other.at)
            .then(self.head.cmp(&other.head))
            .then_with(|| self.id.cmp(&other.id))
    }
}

#[cfg(test)]
mod tests;
