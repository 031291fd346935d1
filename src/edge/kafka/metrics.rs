//! The service's Prometheus metrics: this module owns the registry, every metric's
//! name, help text, labels and buckets, the population and KPI setters, and the text
//! exposition ([`Metrics::render`]).
//!
//! Label values are bounded: topics, partitions, outcomes, short error codes, levels,
//! lifecycles, tiers, and at most `max_dealers` dealers (plus [`OTHER_DEALER`]). No
//! label ever carries a customer id.
//!
//! Written by the processing loop and the KPI task, read by `/metrics`; it touches
//! nothing else.

use crate::core::kpi::DealerKpi;
use crate::core::status::{Level, Lifecycle, Tier};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use std::collections::BTreeMap;

/// The `dealer` label value that sums the dealers beyond the cap.
pub const OTHER_DEALER: &str = "_other";

/// The `from` label value of a customer's first status.
pub const NO_LEVEL: &str = "none";

/// Per-record processing time buckets: 1 µs to 1 s.
const PROCESSING_BUCKETS: [f64; 19] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Input record to status change buckets: 1 ms to 60 s.
const END_TO_END_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Commit (store flush plus offset commit) buckets: 0.5 ms to 10 s.
const COMMIT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `from`/`to` label value of a level: its wire name, or [`NO_LEVEL`] for a first
/// status.
pub fn level_label(level: Option<Level>) -> &'static str {
    level.map_or(NO_LEVEL, Level::as_str)
}

/// Every metric of the service, registered in one registry.
pub struct Metrics {
    /// The registry holding every metric below.
    pub registry: Registry,
    /// `churnwatch_events_consumed_total{topic,type,outcome}`: records consumed.
    pub events_consumed: IntCounterVec,
    /// `churnwatch_decode_errors_total{reason}`: records that failed decoding, by error
    /// code.
    pub decode_errors: IntCounterVec,
    /// `churnwatch_dead_letters_total{topic}`: records sent to the dead-letter topic.
    pub dead_letters: IntCounterVec,
    /// `churnwatch_processing_seconds`: processing time per record.
    pub processing_seconds: Histogram,
    /// `churnwatch_end_to_end_seconds`: input record timestamp to status change produced.
    pub end_to_end_seconds: Histogram,
    /// `churnwatch_consumer_lag{topic,partition}`: messages behind the high watermark.
    pub consumer_lag: IntGaugeVec,
    /// `churnwatch_status_changes_total{from,to}`: status changes by level.
    pub status_changes: IntCounterVec,
    /// `churnwatch_customers{level}`: customers with a status, by warning level.
    pub customers: IntGaugeVec,
    /// `churnwatch_customers_by_lifecycle{lifecycle}`: customers by lifecycle stage.
    pub customers_by_lifecycle: IntGaugeVec,
    /// `churnwatch_customers_by_tier{tier}`: customers by value tier.
    pub customers_by_tier: IntGaugeVec,
    /// `churnwatch_timers_pending`: customer timers waiting to fire.
    pub timers_pending: IntGauge,
    /// `churnwatch_late_events_total`: events that arrived after stream time passed them.
    pub late_events: IntCounter,
    /// `churnwatch_ticks_consumed_total`: tick records consumed.
    pub ticks_consumed: IntCounter,
    /// `churnwatch_ticks_produced_total`: tick records produced.
    pub ticks_produced: IntCounter,
    /// `churnwatch_commit_seconds`: duration of a commit.
    pub commit_seconds: Histogram,
    /// `churnwatch_store_size_bytes`: on-disk size of the state store.
    pub store_size_bytes: IntGauge,
    /// `churnwatch_partitions_assigned`: input partitions assigned to this instance.
    pub partitions_assigned: IntGauge,
    /// `churnwatch_partitions_ready`: assigned partitions whose state is restored.
    pub partitions_ready: IntGauge,
    /// `churnwatch_outbox_pending`: status changes waiting to be produced.
    pub outbox_pending: IntGauge,
    /// `churnwatch_outbox_oldest_seconds`: how long the oldest undelivered outbox commit
    /// has waited for the broker's acks (0 when the outbox is empty).
    pub outbox_oldest_seconds: Gauge,
    /// `churnwatch_undeliverable_total{kind}`: output records the broker or producer
    /// refused for good (too large, invalid), by kind: `status_change`, `dead_letter`,
    /// `changelog`; each status change or dead letter is replaced by an `undeliverable`
    /// dead letter.
    pub undeliverable: IntCounterVec,
    /// `churnwatch_restores_total`: partition state restores.
    pub restores: IntCounter,
    /// `churnwatch_produce_errors_total`: failed produce attempts.
    pub produce_errors: IntCounter,
    /// `churnwatch_processed_events_total`: customer events processed.
    pub processed_events: IntCounter,
    /// `churnwatch_caught_up`: 1 when every owned partition is read to its end,
    /// handed on, committed and delivered.
    pub caught_up: IntGauge,
    /// `churnwatch_effective_customers{dealer}`: effective customers per dealer.
    pub effective_customers: IntGaugeVec,
    /// `churnwatch_effective_churn_rate{dealer}`: monthly effective-customer churn rate.
    pub effective_churn_rate: GaugeVec,
    max_dealers: usize,
}

/// Registers a clone of `metric` (metrics share their values with their clones) and
/// returns the metric.
fn register<M>(registry: &Registry, metric: M) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are static, valid and distinct");
    metric
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        r,
        IntCounter::new(name, help).expect("valid counter options"),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid gauge options"))
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter options"),
    )
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge options"),
    )
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    register(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
            .expect("valid histogram options"),
    )
}

impl Metrics {
    /// Registers every metric; `max_dealers` caps the dealers reported by name in the KPI
    /// metrics (see [`Metrics::set_kpis`]).
    pub fn new(max_dealers: usize) -> Self {
        let r = Registry::new();
        let m = Metrics {
            events_consumed: counter_vec(
                &r,
                "churnwatch_events_consumed_total",
                "Input records consumed, by topic, record type and outcome.",
                &["topic", "type", "outcome"],
            ),
            decode_errors: counter_vec(
                &r,
                "churnwatch_decode_errors_total",
                "Input records that failed decoding or validation, by error code.",
                &["reason"],
            ),
            dead_letters: counter_vec(
                &r,
                "churnwatch_dead_letters_total",
                "Records sent to the dead-letter topic, by source topic.",
                &["topic"],
            ),
            processing_seconds: histogram(
                &r,
                "churnwatch_processing_seconds",
                "Time to process one input record, in seconds.",
                &PROCESSING_BUCKETS,
            ),
            end_to_end_seconds: histogram(
                &r,
                "churnwatch_end_to_end_seconds",
                "Time from an input record's timestamp to the status change it caused being produced, in seconds.",
                &END_TO_END_BUCKETS,
            ),
            consumer_lag: gauge_vec(
                &r,
                "churnwatch_consumer_lag",
                "Messages between the consumer position and the high watermark, by topic and partition.",
                &["topic", "partition"],
            ),
            status_changes: counter_vec(
                &r,
                "churnwatch_status_changes_total",
                "Status changes produced, by previous and new warning level (none for a first status).",
                &["from", "to"],
            ),
            customers: gauge_vec(
                &r,
                "churnwatch_customers",
                "Customers with a status, by warning level.",
                &["level"],
            ),
            customers_by_lifecycle: gauge_vec(
                &r,
                "churnwatch_customers_by_lifecycle",
                "Customers with a status, by lifecycle stage.",
                &["lifecycle"],
            ),
            customers_by_tier: gauge_vec(
                &r,
                "churnwatch_customers_by_tier",
                "Customers with a status, by value tier.",
                &["tier"],
            ),
            timers_pending: gauge(
                &r,
                "churnwatch_timers_pending",
                "Customer timers waiting to fire.",
            ),
            late_events: counter(
                &r,
                "churnwatch_late_events_total",
                "Events that arrived after stream time had passed them.",
            ),
            ticks_consumed: counter(
                &r,
                "churnwatch_ticks_consumed_total",
                "Tick records consumed.",
            ),
            ticks_produced: counter(
                &r,
                "churnwatch_ticks_produced_total",
                "Tick records produced.",
            ),
            commit_seconds: histogram(
                &r,
                "churnwatch_commit_seconds",
                "Time to commit state and consumer offsets, in seconds.",
                &COMMIT_BUCKETS,
            ),
            store_size_bytes: gauge(
                &r,
                "churnwatch_store_size_bytes",
                "On-disk size of the state store, in bytes.",
            ),
            partitions_assigned: gauge(
                &r,
                "churnwatch_partitions_assigned",
                "Input partitions assigned to this instance.",
            ),
            partitions_ready: gauge(
                &r,
                "churnwatch_partitions_ready",
                "Assigned input partitions whose state is restored.",
            ),
            outbox_pending: gauge(
                &r,
                "churnwatch_outbox_pending",
                "Status changes waiting to be produced.",
            ),
            outbox_oldest_seconds: register(
                &r,
                Gauge::new(
                    "churnwatch_outbox_oldest_seconds",
                    "Seconds the oldest undelivered outbox commit has waited for the broker's acks (0 when the outbox is empty).",
                )
                .expect("valid gauge options"),
            ),
            undeliverable: counter_vec(
                &r,
                "churnwatch_undeliverable_total",
                "Output records refused for good by the broker or producer (too large, invalid), by kind; status changes and dead letters are replaced by an `undeliverable` dead letter.",
                &["kind"],
            ),
            restores: counter(
                &r,
                "churnwatch_restores_total",
                "Partition state restores.",
            ),
            produce_errors: counter(
                &r,
                "churnwatch_produce_errors_total",
                "Failed produce attempts.",
            ),
            processed_events: counter(
                &r,
                "churnwatch_processed_events_total",
                "Customer events processed.",
            ),
            caught_up: gauge(
                &r,
                "churnwatch_caught_up",
                "1 when every owned partition is read to its end, handed on, committed and delivered.",
            ),
            effective_customers: gauge_vec(
                &r,
                "churnwatch_effective_customers",
                "Effective customers per dealer (dealers beyond the cap are summed into dealer=\"_other\").",
                &["dealer"],
            ),
            effective_churn_rate: register(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "churnwatch_effective_churn_rate",
                        "Monthly effective-customer churn rate per dealer for the last complete month (0..1; absent with no cohort).",
                    ),
                    &["dealer"],
                )
                .expect("valid gauge options"),
            ),
            registry: r,
            max_dealers,
        };
        // Series with a known, bounded label set exist from the start at zero, so the
        // first increment shows as a rate.
        for to in Level::ALL {
            for from in std::iter::once(None).chain(Level::ALL.map(Some)) {
                m.status_changes
                    .with_label_values(&[level_label(from), to.as_str()]);
            }
        }
        m.set_population([0; 4], [0; 4], [0; 3]);
        m
    }

    /// The cap on dealers reported by name.
    pub fn max_dealers(&self) -> usize {
        self.max_dealers
    }

    /// Sets the customer counts by level, lifecycle and tier, in the order of
    /// [`Level::ALL`], [`Lifecycle::ALL`] and [`Tier::ALL`].
    pub fn set_population(&self, by_level: [u64; 4], by_lifecycle: [u64; 4], by_tier: [u64; 3]) {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (l, v) in Level::ALL.iter().zip(by_level) {
            self.customers.with_label_values(&[l.as_str()]).set(n(v));
        }
        for (l, v) in Lifecycle::ALL.iter().zip(by_lifecycle) {
            self.customers_by_lifecycle
                .with_label_values(&[l.as_str()])
                .set(n(v));
        }
        for (t, v) in Tier::ALL.iter().zip(by_tier) {
            self.customers_by_tier
                .with_label_values(&[t.as_str()])
                .set(n(v));
        }
    }

    /// Replaces the KPI metrics with `kpis` (dealers absent from it vanish). Beyond
    /// `max_dealers` dealers, the ones with the fewest effective customers (ties: the
    /// greater dealer id) are summed into dealer [`OTHER_DEALER`], whose churn rate is
    /// recomputed from the summed cohort and retained counts. A dealer whose id is
    /// [`OTHER_DEALER`] is always part of that sum. Dealers with an empty cohort have no
    /// churn-rate series.
    pub fn set_kpis(&self, kpis: &BTreeMap<String, DealerKpi>) {
        let mut shown: Vec<(&str, DealerKpi)> =
            kpis.iter().map(|(d, k)| (d.as_str(), *k)).collect();
        if shown.len() > self.max_dealers {
            shown.sort_by(|a, b| {
                b.1.effective_customers
                    .cmp(&a.1.effective_customers)
                    .then_with(|| a.0.cmp(b.0))
            });
            let mut other = DealerKpi::default();
            let mut named = Vec::with_capacity(self.max_dealers + 1);
            for (d, k) in shown {
                if d != OTHER_DEALER && named.len() < self.max_dealers {
                    named.push((d, k));
                } else {
                    other.absorb(&k);
                }
            }
            named.push((OTHER_DEALER, other));
            shown = named;
        }
        self.effective_customers.reset();
        self.effective_churn_rate.reset();
        for (dealer, k) in shown {
            self.effective_customers
                .with_label_values(&[dealer])
                .set(i64::try_from(k.effective_customers).unwrap_or(i64::MAX));
            if let Some(rate) = k.churn_rate() {
                self.effective_churn_rate
                    .with_label_values(&[dealer])
                    .set(rate);
            }
        }
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding the metrics failed");
            out.push_str(&format!("# churnwatch: encoding the metrics failed: {e}\n"));
        }
        out
    }

    /// The content type of [`Metrics::render`]'s output.
    pub fn content_type(&self) -> &'static str {
        prometheus::TEXT_FORMAT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Outcome;

    /// The value of the sample `series` (name with labels) in `text`, if present.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.parse().expect("numeric sample"))
        })
    }

    fn dealer(effective_customers: u64, cohort: u64, retained: u64) -> DealerKpi {
        DealerKpi {
            effective_customers,
            cohort,
            retained,
        }
    }

    const NAMES: [&str; 26] = [
        "churnwatch_events_consumed_total",
        "churnwatch_decode_errors_total",
        "churnwatch_dead_letters_total",
        "churnwatch_processing_seconds",
        "churnwatch_end_to_end_seconds",
        "churnwatch_consumer_lag",
        "churnwatch_status_changes_total",
        "churnwatch_customers",
        "churnwatch_customers_by_lifecycle",
        "churnwatch_customers_by_tier",
        "churnwatch_timers_pending",
        "churnwatch_late_events_total",
        "churnwatch_ticks_consumed_total",
        "churnwatch_ticks_produced_total",
        "churnwatch_commit_seconds",
        "churnwatch_store_size_bytes",
        "churnwatch_partitions_assigned",
        "churnwatch_partitions_ready",
        "churnwatch_outbox_pending",
        "churnwatch_outbox_oldest_seconds",
        "churnwatch_undeliverable_total",
        "churnwatch_restores_total",
        "churnwatch_produce_errors_total",
        "churnwatch_processed_events_total",
        "churnwatch_effective_customers",
        "churnwatch_effective_churn_rate",
    ];

    #[test]
    fn render_has_every_metric_with_help() {
        let m = Metrics::new(10);
        // Vectors without a known label set only appear once used.
        m.events_consumed
            .with_label_values(&["customer-events", "visit", Outcome::Ok.as_str()])
            .inc();
        m.decode_errors.with_label_values(&["missing_field"]).inc();
        m.dead_letters.with_label_values(&["customer-events"]).inc();
        m.consumer_lag
            .with_label_values(&["customer-events", "3"])
            .set(42);
        m.set_kpis(&BTreeMap::from([("D1".to_string(), dealer(3, 4, 1))]));
        m.processing_seconds.observe(2e-6);
        m.processed_events.inc_by(7);
        m.undeliverable.with_label_values(&["status_change"]).inc();
        let text = m.render();
        for name in NAMES {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
        assert!(text.contains("# TYPE churnwatch_processing_seconds histogram"));
        assert!(text.contains("# TYPE churnwatch_late_events_total counter"));
        assert!(text.contains("# TYPE churnwatch_timers_pending gauge"));
        assert_eq!(
            sample(
                &text,
                r#"churnwatch_events_consumed_total{outcome="ok",topic="customer-events",type="visit"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"churnwatch_consumer_lag{partition="3",topic="customer-events"}"#
            ),
            Some(42.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"churnwatch_processing_seconds_bucket{le="0.0000025"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"churnwatch_processing_seconds_bucket{le="0.000001"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "churnwatch_processed_events_total"),
            Some(7.0)
        );
        assert_eq!(m.content_type(), "text/plain; version=0.0.4");
    }

    #[test]
    fn bounded_series_start_at_zero() {
        let m = Metrics::new(10);
        let text = m.render();
        for from in ["none", "normal", "prevent", "retain", "win_back"] {
            for to in ["normal", "prevent", "retain", "win_back"] {
                let s = format!(r#"churnwatch_status_changes_total{{from="{from}",to="{to}"}}"#);
                assert_eq!(sample(&text, &s), Some(0.0), "{s}");
            }
        }
        assert_eq!(
            sample(&text, r#"churnwatch_customers{level="win_back"}"#),
            Some(0.0)
        );
        assert_eq!(sample(&text, "churnwatch_late_events_total"), Some(0.0));
        // Nothing per dealer before the first KPIs.
        assert!(!text.contains("churnwatch_effective_customers{"));
        assert_eq!(level_label(None), "none");
        assert_eq!(level_label(Some(Level::WinBack)), "win_back");
        let outcomes: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(outcomes, ["ok", "duplicate", "late", "invalid", "tick"]);
    }

    #[test]
    fn population_is_set_by_name() {
        let m = Metrics::new(10);
        m.set_population([10, 20, 30, 40], [1, 2, 3, 4], [7, 8, 9]);
        assert_eq!(m.customers.with_label_values(&["prevent"]).get(), 20);
        let text = m.render();
        let want = [
            (r#"churnwatch_customers{level="normal"}"#, 10.0),
            (r#"churnwatch_customers{level="retain"}"#, 30.0),
            (r#"churnwatch_customers{level="win_back"}"#, 40.0),
            (
                r#"churnwatch_customers_by_lifecycle{lifecycle="active"}"#,
                1.0,
            ),
            (
                r#"churnwatch_customers_by_lifecycle{lifecycle="quasi_churned"}"#,
                2.0,
            ),
            (
                r#"churnwatch_customers_by_lifecycle{lifecycle="churned"}"#,
                3.0,
            ),
            (
                r#"churnwatch_customers_by_lifecycle{lifecycle="fully_churned"}"#,
                4.0,
            ),
            (r#"churnwatch_customers_by_tier{tier="diamond"}"#, 7.0),
            (r#"churnwatch_customers_by_tier{tier="gold"}"#, 8.0),
            (r#"churnwatch_customers_by_tier{tier="silver"}"#, 9.0),
        ];
        for (series, v) in want {
            assert_eq!(sample(&text, series), Some(v), "{series}");
        }
        // A second call replaces the values.
        m.set_population([0, 0, 0, 1], [0; 4], [0, 0, 1]);
        assert_eq!(m.customers.with_label_values(&["normal"]).get(), 0);
        assert_eq!(m.customers.with_label_values(&["win_back"]).get(), 1);
    }

    #[test]
    fn kpis_within_the_cap() {
        let m = Metrics::new(3);
        assert_eq!(m.max_dealers(), 3);
        m.set_kpis(&BTreeMap::from([
            ("D1".to_string(), dealer(5, 4, 1)),
            ("D2".to_string(), dealer(2, 0, 0)),
        ]));
        let text = m.render();
        let eff = |d: &str| {
            sample(
                &text,
                &format!(r#"churnwatch_effective_customers{{dealer="{d}"}}"#),
            )
        };
        let rate = |d: &str| {
            sample(
                &text,
                &format!(r#"churnwatch_effective_churn_rate{{dealer="{d}"}}"#),
            )
        };
        assert_eq!(eff("D1"), Some(5.0));
        assert_eq!(rate("D1"), Some(0.75));
        assert_eq!(eff("D2"), Some(2.0));
        assert_eq!(rate("D2"), None);
        assert_eq!(eff(OTHER_DEALER), None);
        // Dealers that disappear vanish.
        m.set_kpis(&BTreeMap::from([("D3".to_string(), dealer(1, 2, 2))]));
        let text = m.render();
        assert!(!text.contains(r#"dealer="D1""#), "{text}");
        assert!(!text.contains(r#"dealer="D2""#), "{text}");
        assert_eq!(
            sample(&text, r#"churnwatch_effective_churn_rate{dealer="D3"}"#),
            Some(0.0)
        );
    }

    #[test]
    fn dealers_beyond_the_cap_are_summed() {
        let kpis = BTreeMap::from([
            ("A".to_string(), dealer(1, 4, 4)),
            ("B".to_string(), dealer(50, 10, 9)),
            ("C".to_string(), dealer(30, 0, 0)),
            ("D".to_string(), dealer(2, 6, 0)),
            ("E".to_string(), dealer(1, 0, 0)),
        ]);
        let m = Metrics::new(2);
        m.set_kpis(&kpis);
        let text = m.render();
        let eff = |d: &str| {
            sample(
                &text,
                &format!(r#"churnwatch_effective_customers{{dealer="{d}"}}"#),
            )
        };
        let rate = |d: &str| {
            sample(
                &text,
                &format!(r#"churnwatch_effective_churn_rate{{dealer="{d}"}}"#),
            )
        };
        assert_eq!(eff("B"), Some(50.0));
        assert_eq!(rate("B"), Some(1.0 - 9.0 / 10.0));
        assert_eq!(eff("C"), Some(30.0));
        assert_eq!(rate("C"), None);
        for d in ["A", "D", "E"] {
            assert_eq!(eff(d), None, "{d}");
        }
        // A + D + E: 4 effective, cohort 10, retained 4.
        assert_eq!(eff(OTHER_DEALER), Some(4.0));
        assert_eq!(rate(OTHER_DEALER), Some(1.0 - 4.0 / 10.0));
        assert_eq!(text.matches("churnwatch_effective_customers{").count(), 3);

        // A and E tie on effective customers: A sorts first and keeps its name.
        let m = Metrics::new(4);
        m.set_kpis(&kpis);
        let text = m.render();
        let eff = |d: &str| {
            sample(
                &text,
                &format!(r#"churnwatch_effective_customers{{dealer="{d}"}}"#),
            )
        };
        assert_eq!(eff("A"), Some(1.0));
        assert_eq!(eff("E"), None);
        assert_eq!(eff(OTHER_DEALER), Some(1.0));
        assert!(!text.contains(r#"churnwatch_effective_churn_rate{dealer="_other"}"#));

        // With no room at all, everything is summed; a dealer named `_other` joins it.
        let m = Metrics::new(0);
        m.set_kpis(&BTreeMap::from([
            ("A".to_string(), dealer(1, 2, 1)),
            (OTHER_DEALER.to_string(), dealer(3, 2, 2)),
        ]));
        let text = m.render();
        assert_eq!(text.matches("churnwatch_effective_customers{").count(), 1);
        assert_eq!(
            sample(&text, r#"churnwatch_effective_customers{dealer="_other"}"#),
            Some(4.0)
        );
        assert_eq!(
            sample(&text, r#"churnwatch_effective_churn_rate{dealer="_other"}"#),
            Some(0.25)
        );
    }
}
