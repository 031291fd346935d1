//! What a customer's state means at an instant: the warning rules (cadence,
//! projected mileage, maintenance plan and warranty coverage, model-based P(alive)),
//! the status they give with its reasons ([`CustomerState::assess`]), model
//! predictions, and when the status can next change without an event
//! ([`CustomerState::next_deadline`]).
//!
//! Pure: every instant is an argument; no clock, no I/O. May use `crate::core` and
//! `crate::model`.

use crate::core::event::{ContractAction, ContractType};
use crate::core::policy::Policy;
use crate::core::state::CustomerState;
use crate::core::status::{Level, Lifecycle, Reason, Status};
use crate::core::time::{Ts, DAY_MS};
use crate::model::visit::VisitScorer;
use serde::{Deserialize, Serialize};

/// What the state means at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The status.
    pub status: Status,
    /// Why.
    pub reasons: Vec<Reason>,
    /// Whole days since the last visit.
    pub days_since_last_visit: i64,
    /// P(alive) when a visit model is loaded.
    pub p_alive: Option<f64>,
}

/// Model-based predictions for a customer at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Predictions {
    /// Probability the customer is still "alive" (will come again).
    pub p_alive: f64,
    /// Expected visits in the next 12 months.
    pub expected_visits_12m: f64,
    /// Predicted customer lifetime value over the policy's horizon (None without a
    /// spend model).
    pub clv: Option<f64>,
}

/// Collects reasons; texts are only formatted when they will be shown.
struct Reasons {
    explain: bool,
    list: Vec<Reason>,
    any: bool,
}

impl Reasons {
    fn add(&mut self, code: &str, text: impl FnOnce() -> String) {
        self.any = true;
        if self.explain {
            self.list.push(Reason {
                code: code.to_string(),
                text: text(),
            });
        }
    }
}

impl CustomerState {
    pub(crate) fn cadence_deadline(&self, policy: &Policy) -> Option<Ts> {
        if self.intervals() < policy.prevent.cadence_min_intervals {
            return None;
        }
        let mean = self.mean_interval_days()?;
        if mean <= 0.0 {
            return None;
        }
        // Overdue once factor × mean has passed since the last visit.
        Some(
            self.last_visit?
                .add_days(policy.prevent.cadence_factor * mean),
        )
    }

    fn mileage_deadline(&self, policy: &Policy) -> Option<Ts> {
        let interval = policy.prevent.maintenance_interval_km;
        if interval <= 0.0 {
            return None;
        }
        let m = self.last_maintenance?;
        let mkm = m.km?;
        let l = self.last_odometer?;
        let kpd = self.km_per_day(policy)?;
        let due_km = mkm + interval;
        if l.km >= due_km {
            return Some(l.time.max(m.time));
        }
        if kpd <= 0.0 {
            return None;
        }
        let days = (due_km - l.km) / kpd;
        if days > 365.0 * 50.0 {
            return None;
        }
        Some(Ts(l.time.add_days(days).0.max(m.time.0)))
    }

    /// Warranty-like items (maintenance plans, extended warranties, the factory warranty)
    /// with the instant they end and a label.
    fn coverage_ends(&self, policy: &Policy) -> Vec<(Ts, &'static str, bool)> {
        let mut out = Vec::new();
        for c in &self.contracts {
            let label = match c.contract_type {
                ContractType::MaintenancePlan => "maintenance plan",
                ContractType::ExtendedWarranty => "extended warranty",
                _ => continue,
            };
            if let Some(end) = c.ends_at() {
                out.push((end, label, c.running_at(Ts(end.0 - 1))));
            }
        }
        if policy.prevent.factory_warranty_months > 0 {
            for v in &self.vehicles {
                if let Some(p) = v.purchase_date {
                    out.push((
                        p.add_months(policy.prevent.factory_warranty_months),
                        "factory warranty",
                        true,
                    ));
                }
            }
        }
        out
    }

    fn covered_at(&self, ty: &str, t: Ts) -> bool {
        self.contracts.iter().any(|c| {
            c.running_at(t)
                && matches!(
                    (ty, c.contract_type),
                    ("maintenance plan", ContractType::MaintenancePlan)
                        | ("extended warranty", ContractType::ExtendedWarranty)
                        | ("factory warranty", ContractType::ExtendedWarranty)
                )
        })
    }

    /// The status the state means at `t` (None before the first visit).
    pub fn assess(&self, t: Ts, policy: &Policy) -> Option<Assessment> {
        self.evaluate(t, policy, true)
    }

    /// The status at `t` without building reason texts (the per-event fast path).
    pub fn status_at(&self, t: Ts, policy: &Policy) -> Option<Status> {
        self.evaluate(t, policy, false).map(|a| a.status)
    }

    fn evaluate(&self, t: Ts, policy: &Policy, explain: bool) -> Option<Assessment> {
        let last = self.last_visit?;
        let lifecycle = self.lifecycle(t, policy)?;
        let days = (t.0 - last.0).div_euclid(DAY_MS);
        let mut reasons = Reasons {
            explain,
            list: Vec::new(),
            any: false,
        };
        let mut level = match lifecycle {
            Lifecycle::FullyChurned => {
                reasons.add("lifecycle_fully_churned", || {
                    format!(
                        "no visit for {days} days (last {}); more than {} months",
                        last.to_date_string(),
                        policy.lifecycle.fully_churned_months
                    )
                });
                Level::WinBack
            }
            Lifecycle::Churned => {
                reasons.add("lifecycle_churned", || {
                    format!(
                        "no visit for {days} days (last {}); {}-{} months",
                        last.to_date_string(),
                        policy.lifecycle.churned_months,
                        policy.lifecycle.fully_churned_months
                    )
                });
                Level::WinBack
            }
            Lifecycle::QuasiChurned => {
                reasons.add("lifecycle_quasi_churned", || {
                    format!(
                        "no visit for {days} days (last {}); {}-{} months",
                        last.to_date_string(),
                        policy.lifecycle.quasi_churned_months,
                        policy.lifecycle.churned_months
                    )
                });
                Level::Retain
            }
            Lifecycle::Active => Level::Normal,
        };
        let p = &policy.prevent;
        let mut plan_running = false;
        if lifecycle == Lifecycle::Active {
            if let (Some(d), Some(mean)) =
                (self.cadence_deadline(policy), self.mean_interval_days())
            {
                if t >= d {
                    reasons.add("cadence_overdue", || format!(
                        "{days} days since the last visit, more than {} x the usual {:.0} days between visits",
                        p.cadence_factor, mean));
                }
            }
            if let Some(d) = self.mileage_deadline(policy) {
                if t >= d {
                    let proj = self.projected_km(t, policy).unwrap_or(0.0);
                    let since = proj - self.last_maintenance.and_then(|m| m.km).unwrap_or(0.0);
                    reasons.add("maintenance_due_mileage", || format!(
                        "about {since:.0} km driven since the last maintenance (projected); due every {:.0} km",
                        p.maintenance_interval_km));
                }
            }
        }
        for (end, label, _) in self.coverage_ends(policy) {
            let warn_from = end.sub_days(p.contract_warning_days);
            let lapsed_until = end.add_days(p.contract_lapsed_days);
            let renewed = self.covered_at(label, end) || self.covered_at(label, t);
            if t >= warn_from && t < end && !renewed_beyond(self, label, end) {
                if lifecycle == Lifecycle::Active {
                    reasons.add(
                        if label == "factory warranty" {
                            "warranty_ending"
                        } else {
                            "contract_expiring"
                        },
                        || {
                            format!(
                                "{label} ends on {} ({:.0} days)",
                                end.to_date_string(),
                                end.days_since(t)
                            )
                        },
                    );
                }
            } else if t >= end && t < lapsed_until && !renewed {
                if lifecycle == Lifecycle::Active {
                    reasons.add(
                        if label == "factory warranty" {
                            "warranty_ended"
                        } else {
                            "contract_lapsed"
                        },
                        || format!("{label} ended on {} without renewal", end.to_date_string()),
                    );
                }
            } else if label == "maintenance plan" && t < warn_from && self.covered_at(label, t) {
                plan_running = true;
            }
        }
        let p_alive = self.p_alive(t, policy);
        if let Some(pa) = p_alive {
            let x = &policy.prediction;
            if lifecycle == Lifecycle::Active && pa < x.p_alive_prevent_below {
                reasons.add("p_alive_low", || {
                    format!("P(alive) {pa:.2} is below {}", x.p_alive_prevent_below)
                });
            }
            if lifecycle == Lifecycle::Active && x.p_alive_drop_prevent > 0.0 {
                if let Some(before) = self.p_alive_at_change {
                    if before - pa >= x.p_alive_drop_prevent {
                        reasons.add("p_alive_dropped", || {
                            format!(
                                "P(alive) fell from {before:.2} to {pa:.2} since the customer was last normal"
                            )
                        });
                    }
                }
            }
        }
        if level == Level::Normal && reasons.any {
            level = Level::Prevent;
        }
        if let Some(pa) = p_alive {
            let below = policy.prediction.p_alive_retain_below;
            if pa < below && level < Level::Retain {
                level = Level::Retain;
                reasons.add("p_alive_very_low", || {
                    format!("P(alive) {pa:.2} is below {below}")
                });
            }
        }
        if plan_running && p.maintenance_plan_lowers_level && level != Level::Normal {
            level = level.lowered();
            reasons.add("maintenance_plan_active", || {
                "a running prepaid maintenance plan lowers the warning by one level".to_string()
            });
        }
        Some(Assessment {
            status: Status {
                level,
                lifecycle,
                tier: self.tier(policy),
            },
            reasons: reasons.list,
            days_since_last_visit: days,
            p_alive,
        })
    }

    /// P(alive) at `t`, when a visit model is loaded.
    pub fn p_alive(&self, t: Ts, policy: &Policy) -> Option<f64> {
        let m = policy.model.as_ref()?;
        let (first, last) = (self.first_visit?, self.last_visit?);
        let rfm = m.rfm(first, last, self.visit_day_count, t.max(last));
        Some(VisitScorer::of(m).p_alive(rfm))
    }

    /// The spend the Gamma-Gamma model sees, as `(frequency, mean value)`: the mean of
    /// the per-day summed repair-order spend over the *repeat* visit days (UTC dates
    /// after the first visit's date) that have repair orders, and the number of such
    /// days, which is the frequency the spend model's credibility weighting uses.
    ///
    /// This is `churnwatch fit`'s definition (see `crate::model::fit`), computed over
    /// the repair orders the state keeps: [`CustomerState::recent_spend`], the value
    /// window (`tier.window_months`) ending at the last visit. The state keeps neither
    /// the first date's spend nor a count of dates with repair orders over the whole
    /// history, and adding them would change the store's encoding; so while the
    /// whole history fits in the value window (every repair order is still kept) the
    /// figure is exactly `fit`'s, and beyond it it is the same definition restricted to
    /// the repeat dates in the window (the most recent spend). With no such date the
    /// frequency is 0 and the spend model gives the population mean.
    pub fn repeat_spend(&self) -> (f64, f64) {
        let Some(first) = self.first_visit else {
            return (0.0, 0.0);
        };
        let first_day = first.epoch_day();
        let (mut days, mut total, mut prev) = (0u32, 0i64, None);
        for s in &self.recent_spend {
            let d = s.time.epoch_day();
            if d <= first_day {
                continue;
            }
            if prev != Some(d) {
                days += 1;
                prev = Some(d);
            }
            total = total.saturating_add(s.cents);
        }
        if days == 0 {
            (0.0, 0.0)
        } else {
            (f64::from(days), total as f64 / 100.0 / f64::from(days))
        }
    }

    /// Predicted customer lifetime value at `t` over the policy horizon.
    pub fn clv(&self, t: Ts, policy: &Policy) -> Option<f64> {
        let m = policy.model.as_ref()?;
        let g = m.spend.as_ref()?;
        let (first, last) = (self.first_visit?, self.last_visit?);
        let rfm = m.rfm(first, last, self.visit_day_count, t.max(last));
        let x = &policy.prediction;
        Some(crate::model::gamma_gamma::clv_scored(
            &VisitScorer::of(m),
            g,
            rfm,
            self.repeat_spend(),
            x.clv_horizon_months,
            x.monthly_discount,
            m.time_unit_days,
        ))
    }

    /// The model-based predictions at `t` (None without a model or a visit).
    pub fn predictions(&self, t: Ts, policy: &Policy) -> Option<Predictions> {
        let m = policy.model.as_ref()?;
        let (first, last) = (self.first_visit?, self.last_visit?);
        let rfm = m.rfm(first, last, self.visit_day_count, t.max(last));
        let visits = VisitScorer::of(m);
        Some(Predictions {
            p_alive: visits.p_alive(rfm),
            expected_visits_12m: visits.expected_visits(rfm, 365.0 / m.time_unit_days),
            clv: self.clv(t, policy),
        })
    }

    /// The first instant after `t` at which P(alive) is below `threshold` (it only
    /// falls while no visit comes), found by bisection to the minute.
    fn p_alive_crossing(&self, t: Ts, threshold: f64, policy: &Policy) -> Option<Ts> {
        if threshold <= 0.0 {
            return None;
        }
        let below = |at: Ts| self.p_alive(at, policy).is_some_and(|p| p < threshold);
        if below(t) {
            return None;
        }
        let mut lo = t;
        let mut step = 30.0;
        let mut hi = t.add_days(step);
        while !below(hi) {
            if step > 365.0 * 100.0 {
                return None;
            }
            lo = hi;
            step *= 2.0;
            hi = t.add_days(step);
        }
        while hi.0 - lo.0 > 60_000 {
            let mid = Ts(lo.0 + (hi.0 - lo.0) / 2);
            if below(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }

    /// The first instant after `t` at which [`assess`](Self::assess) can give a different
    /// result without a new event (None if it never can).
    pub fn next_deadline(&self, t: Ts, policy: &Policy) -> Option<Ts> {
        let last = self.last_visit?;
        let l = &policy.lifecycle;
        let p = &policy.prevent;
        let mut cands = vec![
            last.add_months(l.quasi_churned_months),
            last.add_months(l.churned_months),
            last.add_months(l.fully_churned_months),
        ];
        cands.extend(self.cadence_deadline(policy));
        cands.extend(self.mileage_deadline(policy));
        for (end, _, _) in self.coverage_ends(policy) {
            cands.push(end.sub_days(p.contract_warning_days));
            cands.push(end);
            cands.push(end.add_days(p.contract_lapsed_days));
        }
        for c in &self.contracts {
            if let Some(s) = c.start {
                cands.push(s);
            }
        }
        if policy.model.is_some() {
            let x = &policy.prediction;
            let mut thresholds = vec![x.p_alive_prevent_below, x.p_alive_retain_below];
            if let Some(before) = self
                .p_alive_at_change
                .filter(|_| x.p_alive_drop_prevent > 0.0)
            {
                thresholds.push(before - x.p_alive_drop_prevent);
            }
            for th in thresholds {
                cands.extend(self.p_alive_crossing(t, th, policy));
            }
        }
        cands.into_iter().filter(|c| *c > t).min()
    }
}

/// Whether a coverage of this kind runs past `end` (a renewal signed before the end).
fn renewed_beyond(s: &CustomerState, label: &str, end: Ts) -> bool {
    s.contracts.iter().any(|c| {
        matches!(
            (label, c.contract_type),
            ("maintenance plan", ContractType::MaintenancePlan)
                | ("extended warranty", ContractType::ExtendedWarranty)
                | ("factory warranty", ContractType::ExtendedWarranty)
        ) && matches!(c.action, ContractAction::Signed | ContractAction::Renewed)
            && c.end.is_some_and(|e| e > end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{decode_json_line, Event, Input};
    use crate::model::params::{BgParams, GgParams, ModelParams, VisitModel};

    fn ev(json: &str) -> Event {
        match decode_json_line(json).unwrap().input {
            Input::Event(e) => e,
            _ => panic!("not an event"),
        }
    }

    fn ro(id: &str, t: &str, amount: f64) -> Event {
        ev(&format!(
            r#"{{"type":"repair_order","event_id":"{id}","event_time":"{t}","dealer_id":"D","customer_id":"C","ro_number":"{id}","ro_type":"general_repair","total_amount":{amount}}}"#
        ))
    }

    fn visit(id: &str, t: &str) -> Event {
        ev(&format!(
            r#"{{"type":"visit","event_id":"{id}","event_time":"{t}","dealer_id":"D","customer_id":"C","visit_type":"service"}}"#
        ))
    }

    #[test]
    fn repeat_spend_is_fits_per_day_mean_over_repeat_days() {
        let p = Policy::default();
        let mut s = CustomerState::new("C", "D");
        assert_eq!(s.repeat_spend(), (0.0, 0.0));
        s.apply(&ro("1", "2024-01-05T09:00:00Z", 400.0), &p);
        // Only the first date: no repeat spend yet.
        assert_eq!(s.repeat_spend(), (0.0, 0.0));
        s.apply(&ro("2", "2024-03-10T09:00:00Z", 30.0), &p);
        s.apply(&ro("3", "2024-03-10T16:00:00Z", 20.0), &p);
        s.apply(&visit("4", "2024-04-01T10:00:00Z"), &p);
        s.apply(&ro("5", "2024-06-01T10:00:00Z", 70.0), &p);
        // Repeat dates with repair orders: 03-10 (30 + 20) and 06-01 (70); the visit
        // without a repair order and the first date's 400 do not count.
        assert_eq!(s.repeat_spend(), (2.0, 60.0));
        // A late repair order before the first: the old first date becomes a repeat.
        s.apply(&ro("6", "2023-12-20T09:00:00Z", 1000.0), &p);
        assert_eq!(s.repeat_spend(), (3.0, (400.0 + 50.0 + 70.0) / 3.0));
        // Thirteen months on: only the repeat dates inside the value window remain.
        s.apply(&ro("7", "2025-01-10T09:00:00Z", 90.0), &p);
        // (03-10, 06-01 and 2025-01-10; the window starts 2024-01-10.)
        assert_eq!(s.repeat_spend(), (3.0, (50.0 + 70.0 + 90.0) / 3.0));
    }

    #[test]
    fn clv_uses_the_repeat_spend_and_any_visit_model() {
        let spend = GgParams {
            p: 6.0,
            q: 4.0,
            v: 300.0,
        };
        let visit = BgParams {
            r: 0.9,
            alpha: 12.0,
            a: 0.4,
            b: 2.5,
        };
        let mut s = CustomerState::new("C", "D");
        let mut p = Policy::default();
        for (i, (t, a)) in [
            ("2024-01-05T09:00:00Z", 400.0),
            ("2024-07-10T09:00:00Z", 50.0),
            ("2025-01-02T09:00:00Z", 70.0),
        ]
        .into_iter()
        .enumerate()
        {
            s.apply(&ro(&i.to_string(), t, a), &p);
        }
        let now = Ts::ymd_hms(2025, 3, 1, 0, 0, 0);
        for (model, k) in [(VisitModel::MbgNbd, None), (VisitModel::MbgCnbdK, Some(3))] {
            let m = ModelParams {
                model,
                time_unit_days: 7.0,
                visit,
                erlang_k: k,
                spend: Some(spend),
                calibration_end: "2024-01-01".into(),
                customers: 1,
                log_likelihood: -1.0,
            };
            p.model = Some(m.clone());
            let rfm = m.rfm(
                s.first_visit.unwrap(),
                s.last_visit.unwrap(),
                s.visit_day_count,
                now,
            );
            let scorer = VisitScorer::of(&m);
            let want = crate::model::gamma_gamma::clv_scored(
                &scorer,
                &spend,
                rfm,
                (2.0, 60.0),
                p.prediction.clv_horizon_months,
                p.prediction.monthly_discount,
                7.0,
            );
            let got = s.clv(now, &p).unwrap();
            assert_eq!(got, want, "{model:?}");
            let pred = s.predictions(now, &p).unwrap();
            assert_eq!(pred.p_alive, scorer.p_alive(rfm));
            assert_eq!(
                pred.expected_visits_12m,
                scorer.expected_visits(rfm, 365.0 / 7.0)
            );
        }
        // The two models score the same customer differently.
        let clvs: Vec<f64> = [VisitModel::MbgNbd, VisitModel::MbgCnbdK]
            .iter()
            .map(|&model| {
                p.model.as_mut().unwrap().model = model;
                p.model.as_mut().unwrap().erlang_k = (model == VisitModel::MbgCnbdK).then_some(3);
                s.clv(now, &p).unwrap()
            })
            .collect();
        assert_ne!(clvs[0], clvs[1]);
    }
}
