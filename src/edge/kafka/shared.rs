//! What the admin endpoints and the KPI task see of the running service: [`Shared`]
//! with the metrics, the processing loop's heartbeat, the owned partitions' stores and
//! readiness, the published counts and the caught-up flag; health and readiness are
//! judged here.
//!
//! The processing loop is the only writer (through the `pub(crate)` methods); readers
//! are the admin server, the KPI task and tests. It holds no Kafka client and never
//! blocks on one: its locks are short and never held across a poll.

use crate::core::kpi::KpiAccumulator;
use crate::core::policy::Policy;
use crate::core::time::Ts;
use crate::edge::kafka::admin::AdminState;
use crate::edge::kafka::metrics::Metrics;
use crate::store::{SledTreeKv, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The processing loop is considered stuck after this long without a heartbeat.
pub const HEARTBEAT_LIMIT: Duration = Duration::from_secs(60);

/// What the admin endpoints see of the running service.
pub struct Shared {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    policy: Policy,
    started: Instant,
    heartbeat_ms: AtomicU64,
    joined: AtomicBool,
    parts: RwLock<BTreeMap<i32, PartView>>,
    changes_published: AtomicU64,
    dead_published: AtomicU64,
    caught_up: AtomicBool,
    caught_up_seen: AtomicU64,
    /// When the oldest undelivered outbox commit was first seen waiting.
    outbox_since: Mutex<Option<Instant>>,
    /// The outbox is stuck after waiting this long (zero: never judged stuck).
    stuck_after: Duration,
}

/// Records acknowledged by the broker so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Status changes.
    pub changes: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

/// An owned partition as the readers see it.
struct PartView {
    store: Store<SledTreeKv>,
    watermark: Option<Ts>,
    ready: bool,
}

impl Shared {
    /// Shared state for a service with these metrics and policy.
    pub fn new(metrics: Arc<Metrics>, policy: Policy) -> Self {
        Shared {
            metrics,
            policy,
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            joined: AtomicBool::new(false),
            parts: RwLock::new(BTreeMap::new()),
            changes_published: AtomicU64::new(0),
            dead_published: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
            caught_up_seen: AtomicU64::new(0),
            outbox_since: Mutex::new(None),
            stuck_after: Duration::ZERO,
        }
    }

    /// Judges the outbox stuck (in [`AdminState::health`]) once its oldest commit has
    /// waited longer than `after` for the broker's acks; zero never does.
    pub fn with_stuck_after(mut self, after: Duration) -> Self {
        self.stuck_after = after;
        self
    }

    /// How long the oldest undelivered outbox commit has waited, if one waits.
    pub fn outbox_waiting(&self) -> Option<Duration> {
        self.outbox_since
            .lock()
            .expect("not poisoned")
            .map(|since| since.elapsed())
    }

    /// Whether every owned partition is read to its end, handed on, committed and
    /// delivered (false while owning none).
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    /// How many times the processing loop found itself caught up so far: with ticks
    /// flowing, `caught_up` is true only between a commit and the next tick, so
    /// "caught up since" is best asked as "did this number grow".
    pub fn caught_up_seen(&self) -> u64 {
        self.caught_up_seen.load(Ordering::Relaxed)
    }

    /// Records acknowledged by the broker so far (re-deliveries count again).
    pub fn published(&self) -> Published {
        Published {
            changes: self.changes_published.load(Ordering::Relaxed),
            dead_letters: self.dead_published.load(Ordering::Relaxed),
        }
    }

    /// How long the processing loop has not reported (it reports at least every
    /// 50 ms while it runs; a restore or a delivery may keep it away longer).
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Partitions assigned and how many of them are ready.
    pub fn partitions(&self) -> (usize, usize) {
        let p = self.parts.read().expect("not poisoned");
        (p.len(), p.values().filter(|v| v.ready).count())
    }

    /// Recomputes the KPI gauges (effective customers and monthly effective churn rate
    /// per dealer) from the committed states of the owned partitions, at the latest
    /// stream time among them. A full scan: it runs off the processing thread.
    pub fn update_kpis(&self) -> Result<(), StoreError> {
        // A snapshot of the handles, so that the scan does not hold the lock the
        // processing thread takes at every commit.
        let parts: Vec<(Option<Ts>, Store<SledTreeKv>)> = self
            .parts
            .read()
            .expect("not poisoned")
            .values()
            .map(|p| (p.watermark, p.store.clone()))
            .collect();
        let Some(at) = parts.iter().filter_map(|(w, _)| *w).max() else {
            return Ok(());
        };
        let mut acc = KpiAccumulator::new(at);
        for (_, store) in &parts {
            store.for_each_customer(|s| acc.add(&s))?;
        }
        self.metrics.set_kpis(&acc.finish());
        Ok(())
    }

    /// The processing loop is alive.
    pub(crate) fn beat(&self) {
        self.heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.update_outbox_gauge();
    }

    /// The oldest undelivered outbox commit has waited since `since` (None: nothing
    /// waits).
    pub(crate) fn set_outbox_oldest(&self, since: Option<Instant>) {
        *self.outbox_since.lock().expect("not poisoned") = since;
        self.update_outbox_gauge();
    }

    fn update_outbox_gauge(&self) {
        let waited = self.outbox_waiting().unwrap_or_default();
        self.metrics.outbox_oldest_seconds.set(waited.as_secs_f64());
    }

    /// The consumer has joined the group (its first assignment came).
    pub(crate) fn set_joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    /// Partition `p` is being taken over: visible, not ready yet.
    pub(crate) fn open_partition(&self, p: i32, store: Store<SledTreeKv>) {
        self.parts.write().expect("not poisoned").insert(
            p,
            PartView {
                store,
                watermark: None,
                ready: false,
            },
        );
    }

    /// Partition `p` is restored and resumed at stream time `watermark`.
    pub(crate) fn partition_ready(&self, p: i32, watermark: Option<Ts>) {
        if let Some(v) = self.parts.write().expect("not poisoned").get_mut(&p) {
            v.ready = true;
            v.watermark = watermark;
        }
    }

    /// Partition `p` committed up to stream time `watermark`.
    pub(crate) fn set_watermark(&self, p: i32, watermark: Option<Ts>) {
        if let Some(v) = self.parts.write().expect("not poisoned").get_mut(&p) {
            v.watermark = watermark;
        }
    }

    /// Partition `p` is given up.
    pub(crate) fn close_partition(&self, p: i32) {
        self.parts.write().expect("not poisoned").remove(&p);
    }

    /// Sets the assigned/ready partition gauges from the views.
    pub(crate) fn update_partition_gauges(&self) {
        let (a, r) = self.partitions();
        self.metrics.partitions_assigned.set(a as i64);
        self.metrics.partitions_ready.set(r as i64);
    }

    /// Counts records the broker acknowledged.
    pub(crate) fn count_published(&self, changes: u64, dead_letters: u64) {
        self.changes_published.fetch_add(changes, Ordering::Relaxed);
        self.dead_published
            .fetch_add(dead_letters, Ordering::Relaxed);
    }

    /// Whether the loop found itself caught up in this round (see [`Shared::caught_up`]).
    pub(crate) fn set_caught_up(&self, caught: bool) {
        self.caught_up.store(caught, Ordering::Relaxed);
        if caught {
            self.caught_up_seen.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.caught_up.set(i64::from(caught));
    }
}

impl AdminState for Shared {
    fn health(&self) -> Result<(), String> {
        let since = self.silent_for();
        if since > HEARTBEAT_LIMIT {
            return Err(format!(
                "the processing loop has not reported for {}s",
                since.as_secs()
            ));
        }
        self.update_outbox_gauge();
        match self.outbox_waiting() {
            Some(w) if !self.stuck_after.is_zero() && w > self.stuck_after => Err(format!(
                "the outbox is stuck: its oldest commit has waited {}s for the broker's acks \
                 (output.stuck_after_ms is {}); see churnwatch_produce_errors_total and the \
                 log for the produce errors",
                w.as_secs(),
                self.stuck_after.as_millis()
            )),
            _ => Ok(()),
        }
    }

    fn readiness(&self) -> Result<(), String> {
        if !self.joined.load(Ordering::Relaxed) {
            return Err("not yet joined the consumer group".into());
        }
        let p = self.parts.read().expect("not poisoned");
        let waiting: Vec<String> = p
            .iter()
            .filter(|(_, v)| !v.ready)
            .map(|(k, _)| k.to_string())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "partitions still restoring: {}",
                waiting.join(", ")
            ))
        }
    }

    fn customer(&self, id: &str) -> Result<Option<serde_json::Value>, String> {
        use crate::core::engine::CustomerSource;
        let p = self.parts.read().expect("not poisoned");
        for v in p.values() {
            if let Some(state) = v.store.load(id).map_err(|e| e.to_string())? {
                return Ok(Some(crate::core::view::customer_json(
                    &state,
                    v.watermark,
                    &self.policy,
                )));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open_sled_db;

    fn shared() -> Shared {
        Shared::new(Arc::new(Metrics::new(10)), Policy::default())
    }

    #[test]
    fn health_fails_when_the_loop_stops_reporting() {
        let mut s = shared();
        s.beat();
        assert!(s.health().is_ok());
        // The loop last reported at start-up, 61 s ago.
        s.started = Instant::now() - HEARTBEAT_LIMIT - Duration::from_secs(1);
        let e = s.health().unwrap_err();
        assert!(e.contains("has not reported for 61s"), "{e}");
        assert!(s.silent_for() > HEARTBEAT_LIMIT);
        s.beat();
        assert!(s.health().is_ok());
        assert!(s.silent_for() < Duration::from_secs(1));
    }

    #[test]
    fn health_fails_while_the_outbox_waits_too_long() {
        let s = shared().with_stuck_after(Duration::from_secs(120));
        s.beat();
        assert!(s.health().is_ok());
        assert_eq!(s.outbox_waiting(), None);
        // A commit waiting for a minute is not stuck yet.
        s.set_outbox_oldest(Some(Instant::now() - Duration::from_secs(60)));
        assert!(s.health().is_ok());
        let w = s.metrics.outbox_oldest_seconds.get();
        assert!((59.0..62.0).contains(&w), "{w}");
        // One waiting for three minutes is.
        s.set_outbox_oldest(Some(Instant::now() - Duration::from_secs(180)));
        let e = s.health().unwrap_err();
        assert!(
            e.contains("outbox is stuck") && e.contains("waited 18"),
            "{e}"
        );
        assert!(s.metrics.outbox_oldest_seconds.get() >= 179.0);
        // Delivered: healthy again, and the gauge is back to 0.
        s.set_outbox_oldest(None);
        assert!(s.health().is_ok());
        assert_eq!(s.metrics.outbox_oldest_seconds.get(), 0.0);
        // Zero switches the judgement off, not the metric.
        let off = shared();
        off.beat();
        off.set_outbox_oldest(Some(Instant::now() - Duration::from_secs(3600)));
        assert!(off.health().is_ok());
        assert!(off.metrics.outbox_oldest_seconds.get() >= 3599.0);
    }

    #[test]
    fn readiness_waits_for_the_group_and_every_restore() {
        let s = shared();
        assert!(s.readiness().unwrap_err().contains("not yet joined"));
        s.set_joined();
        assert!(s.readiness().is_ok(), "joined with no partitions is ready");
        let dir = tempfile::tempdir().unwrap();
        let db = open_sled_db(dir.path()).unwrap();
        let store = Store::with_kv(SledTreeKv::open(&db, "partition-4").unwrap()).unwrap();
        s.open_partition(4, store);
        assert!(s.readiness().unwrap_err().contains("restoring: 4"));
        assert_eq!(s.partitions(), (1, 0));
        s.partition_ready(4, None);
        assert!(s.readiness().is_ok());
        assert_eq!(s.partitions(), (1, 1));
        assert_eq!(s.customer("C1").unwrap(), None);
        s.close_partition(4);
        assert_eq!(s.partitions(), (0, 0));
    }
}
