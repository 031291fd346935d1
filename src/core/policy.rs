//! The churn policy: every threshold the engine uses, loaded from a TOML file.
//!
//! Defaults follow the domain definitions (`shared/docs/domain.md`); a policy file only
//! needs the keys it changes. Unknown keys are rejected so a typo never silently falls
//! back to a default. `churnwatch policy` prints the effective policy as TOML.

use crate::core::time::Ts;
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// Lifecycle boundaries, in calendar months since the last visit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecyclePolicy {
    /// From this many months without a visit a customer is `quasi_churned` (准流失). Default 6.
    pub quasi_churned_months: u32,
    /// From this many months a customer is `churned` (流失). Default 12.
    pub churned_months: u32,
    /// From this many months a customer is `fully_churned` (彻底流失). Default 24.
    pub fully_churned_months: u32,
}

impl Default for LifecyclePolicy {
    fn default() -> Self {
        Self {
            quasi_churned_months: 6,
            churned_months: 12,
            fully_churned_months: 24,
        }
    }
}

/// When an active customer is raised to `prevent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreventPolicy {
    /// Overdue when the time since the last visit exceeds this multiple of the
    /// customer's mean interval between visits. Default 1.5.
    pub cadence_factor: f64,
    /// Cadence is only judged with at least this many intervals (visits − 1). Default 2.
    pub cadence_min_intervals: u32,
    /// Maintenance is due every this many km; the odometer is projected from the
    /// customer's km/day. 0 disables the mileage rule. Default 10000.
    pub maintenance_interval_km: f64,
    /// km/day is only estimated from readings at least this many days apart. Default 30.
    pub min_odometer_span_days: f64,
    /// A maintenance plan or (extended/factory) warranty ending within this many days
    /// raises `prevent`. Default 60.
    pub contract_warning_days: f64,
    /// …and so does one that ended, without renewal, within this many days. Default 180.
    pub contract_lapsed_days: f64,
    /// The factory warranty lasts this many months from the purchase date; its end is
    /// treated like an ending warranty. 0 disables. Default 36.
    pub factory_warranty_months: u32,
    /// A running prepaid maintenance plan (not itself about to end) lowers the level by
    /// one. Default true.
    pub maintenance_plan_lowers_level: bool,
}

impl Default for PreventPolicy {
    fn default() -> Self {
        Self {
            cadence_factor: 1.5,
            cadence_min_intervals: 2,
            maintenance_interval_km: 10_000.0,
            min_odometer_span_days: 30.0,
            contract_warning_days: 60.0,
            contract_lapsed_days: 180.0,
            factory_warranty_months: 36,
            maintenance_plan_lowers_level: true,
        }
    }
}

/// Value tier cut-offs. Value is measured over the `window_months` ending at the last
/// visit, so a churned customer keeps the tier they had while they came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierPolicy {
    /// Length of the value window in months. Default 12.
    pub window_months: u32,
    /// Diamond from this spend in the window. Default 8000.
    pub diamond_spend: f64,
    /// …or from this many visit days in the window… Default 4.
    pub diamond_visits: u32,
    /// …together with at least this average repair-order value. Default 1000.
    pub diamond_avg_ro: f64,
    /// Gold from this spend in the window. Default 3000.
    pub gold_spend: f64,
    /// …or from this many visit days in the window… Default 2.
    pub gold_visits: u32,
    /// …together with at least this average repair-order value. Default 400.
    pub gold_avg_ro: f64,
}

impl Default for TierPolicy {
    fn default() -> Self {
        Self {
            window_months: 12,
            diamond_spend: 8000.0,
            diamond_visits: 4,
            diamond_avg_ro: 1000.0,
            gold_spend: 3000.0,
            gold_visits: 2,
            gold_avg_ro: 400.0,
        }
    }
}

/// Stream-time behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamPolicy {
    /// Stream time trails the largest event time seen by this many minutes; events
    /// older than stream time are late. Status changes are decided when stream time
    /// passes an event, so this is also the delay (in event time) before a change is
    /// emitted. Default 120.
    pub allowed_lateness_minutes: u64,
    /// A customer's status does not change again within this many hours of its last
    /// change (late-event corrections excepted). Default 24.
    pub min_dwell_hours: u64,
    /// Records (events and ticks) dated before this day are rejected as implausible
    /// (`implausible_time`): pre-epoch and far-past times are data errors, and a dealer
    /// management system has no service history older than this. Default
    /// `1990-01-01`.
    pub earliest_event_date: String,
    /// A record more than this many days ahead of the newest record time seen so far
    /// is rejected as implausible (`implausible_time`), so one mistyped year cannot
    /// move stream time past every customer's timers. A whole customer base does not
    /// fall silent for a quarter, so a legitimate stream never jumps that far; raise it
    /// for sparse test streams. 0 turns the check off. Default 90.
    pub max_event_jump_days: u64,
}

impl Default for StreamPolicy {
    fn default() -> Self {
        Self {
            allowed_lateness_minutes: 120,
            min_dwell_hours: 24,
            earliest_event_date: "1990-01-01".into(),
            max_event_jump_days: 90,
        }
    }
}

/// Rules driven by the predictive models (P(alive), expected visits, CLV). They apply
/// only when a model parameter file (`churnwatch fit`) is loaded; every threshold set
/// to 0 is off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictionPolicy {
    /// An active customer whose P(alive) falls below this is raised to `prevent`.
    /// Default 0 (off).
    pub p_alive_prevent_below: f64,
    /// A customer whose P(alive) falls below this is raised to at least `retain`.
    /// Default 0 (off).
    pub p_alive_retain_below: f64,
    /// An active customer whose P(alive) dropped by at least this much since they were
    /// last `normal` (first sight or their last change to normal) is raised to
    /// `prevent`. Default 0 (off).
    pub p_alive_drop_prevent: f64,
    /// Horizon of the predicted customer lifetime value, in months. Default 36.
    pub clv_horizon_months: u32,
    /// Monthly discount rate of the CLV. Default 0.01.
    pub monthly_discount: f64,
    /// Tier by historical value + predicted CLV (evaluated at the last visit) instead of
    /// by the value window. Needs a spend model. Default false.
    pub tier_by_clv: bool,
    /// With `tier_by_clv`: diamond from this value. Default 30000.
    pub diamond_value: f64,
    /// With `tier_by_clv`: gold from this value. Default 10000.
    pub gold_value: f64,
}

impl Default for PredictionPolicy {
    fn default() -> Self {
        Self {
            p_alive_prevent_below: 0.0,
            p_alive_retain_below: 0.0,
            p_alive_drop_prevent: 0.0,
            clv_horizon_months: 36,
            monthly_discount: 0.01,
            tier_by_clv: false,
            diamond_value: 30_000.0,
            gold_value: 10_000.0,
        }
    }
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Lifecycle boundaries.
    pub lifecycle: LifecyclePolicy,
    /// Prevent-level rules.
    pub prevent: PreventPolicy,
    /// Value tiers.
    pub tier: TierPolicy,
    /// Stream time.
    pub stream: StreamPolicy,
    /// Rules driven by the predictive models.
    pub prediction: PredictionPolicy,
    /// The fitted models (loaded from the file `churnwatch fit` writes, not from the
    /// policy TOML).
    #[serde(skip)]
    pub model: Option<crate::model::params::ModelParams>,
}

/// A policy file that cannot be used.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is wrong (syntax, unknown key, wrong type).
    #[error("policy file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said, with line and key.
        message: String,
    },
    /// Values that parse but contradict each other.
    #[error("policy is inconsistent: {0}")]
    Inconsistent(String),
}

impl Policy {
    /// Reads a policy file; keys not given keep their defaults.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::from_toml(&text).map_err(|e| match e {
            PolicyError::Parse { message, .. } => PolicyError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses policy TOML text.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: "<text>".into(),
            message: e.to_string(),
        })?;
        p.check()?;
        Ok(p)
    }

    /// The policy as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("policy serialises")
    }

    /// Checks that the values make sense together.
    pub fn check(&self) -> Result<(), PolicyError> {
        let l = &self.lifecycle;
        if !(0 < l.quasi_churned_months
            && l.quasi_churned_months < l.churned_months
            && l.churned_months < l.fully_churned_months)
        {
            return Err(PolicyError::Inconsistent(format!(
                "lifecycle months must increase: quasi_churned_months ({}) < churned_months ({}) < fully_churned_months ({})",
                l.quasi_churned_months, l.churned_months, l.fully_churned_months
            )));
        }
        self.earliest_event_time()
            .map_err(PolicyError::Inconsistent)?;
        let p = &self.prevent;
        if p.cadence_factor <= 1.0 || !p.cadence_factor.is_finite() {
            return Err(PolicyError::Inconsistent(format!(
                "prevent.cadence_factor must be > 1 (got {})",
                p.cadence_factor
            )));
        }
        for (name, v) in [
            ("prevent.maintenance_interval_km", p.maintenance_interval_km),
            ("prevent.min_odometer_span_days", p.min_odometer_span_days),
            ("prevent.contract_warning_days", p.contract_warning_days),
            ("prevent.contract_lapsed_days", p.contract_lapsed_days),
            ("tier.diamond_spend", self.tier.diamond_spend),
            ("tier.gold_spend", self.tier.gold_spend),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(PolicyError::Inconsistent(format!(
                    "{name} must be a non-negative number (got {v})"
                )));
            }
        }
        if p.min_odometer_span_days < 1.0 {
            return Err(PolicyError::Inconsistent(
                "prevent.min_odometer_span_days must be at least 1".into(),
            ));
        }
        let x = &self.prediction;
        for (name, v) in [
            ("prediction.p_alive_prevent_below", x.p_alive_prevent_below),
            ("prediction.p_alive_retain_below", x.p_alive_retain_below),
            ("prediction.p_alive_drop_prevent", x.p_alive_drop_prevent),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(PolicyError::Inconsistent(format!(
                    "{name} is a probability and must be within 0..1 (got {v})"
                )));
            }
        }
        if !(0.0..1.0).contains(&x.monthly_discount) {
            return Err(PolicyError::Inconsistent(format!(
                "prediction.monthly_discount must be within 0..1 (got {})",
                x.monthly_discount
            )));
        }
        if x.gold_value > x.diamond_value {
            return Err(PolicyError::Inconsistent(
                "prediction.gold_value must not exceed prediction.diamond_value".into(),
            ));
        }
        let t = &self.tier;
        if t.window_months == 0 {
            return Err(PolicyError::Inconsistent(
                "tier.window_months must be at least 1".into(),
            ));
        }
        if t.gold_spend > t.diamond_spend {
            return Err(PolicyError::Inconsistent(format!(
                "tier.gold_spend ({}) must not exceed tier.diamond_spend ({})",
                t.gold_spend, t.diamond_spend
            )));
        }
        Ok(())
    }

    /// Allowed lateness in milliseconds.
    pub fn lateness_ms(&self) -> i64 {
        self.stream.allowed_lateness_minutes as i64 * 60_000
    }

    /// The earliest plausible record time ([`StreamPolicy::earliest_event_date`]).
    pub fn earliest_event_time(&self) -> Result<Ts, String> {
        Ts::parse_date(&self.stream.earliest_event_date).map_err(|e| {
            format!(
                "stream.earliest_event_date `{}` is not a date (YYYY-MM-DD): {e}",
                self.stream.earliest_event_date
            )
        })
    }

    /// Minimum dwell in milliseconds.
    pub fn dwell_ms(&self) -> i64 {
        self.stream.min_dwell_hours as i64 * 3_600_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_domain() {
        let p = Policy::default();
        assert_eq!(p.lifecycle.quasi_churned_months, 6);
        assert_eq!(p.lifecycle.churned_months, 12);
        assert_eq!(p.lifecycle.fully_churned_months, 24);
        assert_eq!(p.prevent.cadence_factor, 1.5);
        p.check().unwrap();
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let p = Policy::from_toml("[lifecycle]\nchurned_months = 18\n").unwrap();
        assert_eq!(p.lifecycle.churned_months, 18);
        assert_eq!(p.lifecycle.quasi_churned_months, 6);
    }

    #[test]
    fn unknown_keys_rejected() {
        let e = Policy::from_toml("[lifecycle]\nchurn_months = 18\n").unwrap_err();
        assert!(e.to_string().contains("churn_months"), "{e}");
        let e = Policy::from_toml("[lifecycl]\n").unwrap_err();
        assert!(e.to_string().contains("lifecycl"), "{e}");
    }

    #[test]
    fn inconsistent_rejected() {
        let e = Policy::from_toml("[lifecycle]\nchurned_months = 3\n").unwrap_err();
        assert!(e.to_string().contains("must increase"), "{e}");
    }

    #[test]
    fn shipped_example_is_the_default() {
        let p = Policy::from_toml(include_str!("../../deploy/policy.toml")).unwrap();
        assert_eq!(p, Policy::default());
    }

    #[test]
    fn round_trips() {
        let p = Policy::default();
        assert_eq!(Policy::from_toml(&p.to_toml()).unwrap(), p);
    }
}
