//! What a replay reports: [`ReplaySummary`], built from the engine's counters and the
//! replay's progress record. Pure formatting of numbers; no I/O.

use super::Progress;
use crate::core::engine::{Counters, EngineMeta};
use crate::core::status::{Level, Lifecycle, Tier};
use crate::core::time::Ts;
use serde::Serialize;
use std::collections::BTreeMap;

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

pub(super) fn summary(
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
