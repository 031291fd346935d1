//! Per-customer rolling state: how an event changes it ([`CustomerState::apply`]) and
//! the figures derived from it (cadence, mileage, spend, tier, lifecycle). What status
//! the state means at an instant lives in [`crate::core::assess`].
//!
//! Nothing here reads a clock or does I/O: every instant is an argument.

use crate::core::event::{ContractAction, ContractType, Event, EventBody, RoType, VisitType};
use crate::core::policy::Policy;
use crate::core::status::{Lifecycle, Status, Tier};
use crate::core::time::Ts;
use crate::model::hash::fnv1a;
use serde::{Deserialize, Serialize};

/// Most distinct visit days kept per customer (older ones still count in totals).
pub const MAX_VISIT_DAYS: usize = 2048;
/// Most vehicles kept per customer.
pub const MAX_VEHICLES: usize = 16;
/// Most contracts kept per customer (the oldest-ended are dropped first).
pub const MAX_CONTRACTS: usize = 32;

/// An odometer reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Odometer {
    /// When it was read.
    pub time: Ts,
    /// Kilometres.
    pub km: f64,
}

/// The last periodic maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Maintenance {
    /// When.
    pub time: Ts,
    /// Odometer then, if known.
    pub km: Option<f64>,
}

/// A repair order's spend, kept while it is inside the value window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Spend {
    /// When.
    pub time: Ts,
    /// Amount in cents.
    pub cents: i64,
}

/// A vehicle of the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vehicle {
    /// Normalised VIN, if known.
    pub vin: Option<String>,
    /// Model, if known.
    pub model: Option<String>,
    /// Purchase date, if known.
    pub purchase_date: Option<Ts>,
    /// Event time of the latest information.
    pub seen: Ts,
}

/// The latest known state of a contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractState {
    /// Contract id.
    pub contract_id: String,
    /// Kind.
    pub contract_type: ContractType,
    /// Latest action.
    pub action: ContractAction,
    /// Start of the current term.
    pub start: Option<Ts>,
    /// End of the current term.
    pub end: Option<Ts>,
    /// Amount in cents.
    pub amount_cents: i64,
    /// Event time of the latest action.
    pub time: Ts,
}

impl ContractState {
    /// Whether the contract runs at `t`.
    pub fn running_at(&self, t: Ts) -> bool {
        matches!(
            self.action,
            ContractAction::Signed | ContractAction::Renewed
        ) && self.start.is_none_or(|s| s <= t)
            && self.end.is_some_and(|e| t < e)
    }

    /// When the contract stopped (or will stop) running.
    pub fn ends_at(&self) -> Option<Ts> {
        match self.action {
            ContractAction::Signed | ContractAction::Renewed => self.end,
            ContractAction::Expired => Some(self.end.map_or(self.time, |e| e.min(self.time))),
            ContractAction::Cancelled => Some(self.end.map_or(self.time, |e| e.min(self.time))),
        }
    }
}

/// Everything churnwatch knows about one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerState {
    /// Customer id.
    pub customer_id: String,
    /// Dealer of the latest event.
    pub dealer_id: String,
    /// Event time of the event that set `dealer_id`.
    pub dealer_time: Ts,
    /// First visit (visits and repair orders).
    pub first_visit: Option<Ts>,
    /// Last visit.
    pub last_visit: Option<Ts>,
    /// Distinct visit days (days since the epoch), ascending; at most [`MAX_VISIT_DAYS`].
    pub visit_days: Vec<i32>,
    /// Number of distinct visit days over the whole history.
    pub visit_day_count: u32,
    /// Repair-order spend inside the value window ending at the last visit, ascending.
    pub recent_spend: Vec<Spend>,
    /// Lifetime spend in cents.
    pub lifetime_spend_cents: i64,
    /// Lifetime repair orders.
    pub ro_count: u32,
    /// Repair orders by type, indexed by [`RoType::index`].
    pub ro_mix: [u32; 7],
    /// Earliest odometer reading.
    pub first_odometer: Option<Odometer>,
    /// Latest odometer reading.
    pub last_odometer: Option<Odometer>,
    /// Latest periodic maintenance.
    pub last_maintenance: Option<Maintenance>,
    /// Vehicles.
    pub vehicles: Vec<Vehicle>,
    /// Contracts.
    pub contracts: Vec<ContractState>,
    /// Latest known service-region flag and when it was reported.
    pub in_service_region: Option<(Ts, bool)>,
    /// Dealer events attended.
    pub event_participations: u32,
    /// Hashes of applied event ids, ascending (duplicates are no-ops).
    pub applied: Vec<u64>,
    /// Status last published (or silently recorded for a new customer).
    pub status: Option<Status>,
    /// When `status` took effect.
    pub status_since: Option<Ts>,
    /// When the last status change was published (the minimum dwell counts from here;
    /// a new customer's silently recorded first status does not count).
    pub last_change: Option<Ts>,
    /// When this customer's status can next change without an event (its timer).
    pub next_deadline: Option<Ts>,
    /// P(alive) when the customer was last found `normal` (first sight or a change to
    /// normal): the reference of the P(alive)-drop rule.
    pub p_alive_at_change: Option<f64>,
}

fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

impl CustomerState {
    /// An empty state for a customer never seen.
    pub fn new(customer_id: &str, dealer_id: &str) -> Self {
        CustomerState {
            customer_id: customer_id.to_string(),
            dealer_id: dealer_id.to_string(),
            dealer_time: Ts(i64::MIN),
            first_visit: None,
            last_visit: None,
            visit_days: Vec::new(),
            visit_day_count: 0,
            recent_spend: Vec::new(),
            lifetime_spend_cents: 0,
            ro_count: 0,
            ro_mix: [0; 7],
            first_odometer: None,
            last_odometer: None,
            last_maintenance: None,
            vehicles: Vec::new(),
            contracts: Vec::new(),
            in_service_region: None,
            event_participations: 0,
            applied: Vec::new(),
            status: None,
            status_since: None,
            last_change: None,
            next_deadline: None,
            p_alive_at_change: None,
        }
    }

    /// Whether an event with this id was already applied.
    pub fn has_applied(&self, event_id: &str) -> bool {
        self.applied.binary_search(&fnv1a(event_id)).is_ok()
    }

    /// Applies an event. Returns false (and changes nothing) for an event id already
    /// applied. Every update is order-independent (min/max by event time, sums, sets),
    /// so a late event lands in the same state as an on-time one.
    pub fn apply(&mut self, e: &Event, policy: &Policy) -> bool {
        let h = fnv1a(&e.event_id);
        match self.applied.binary_search(&h) {
            Ok(_) => return false,
            Err(i) => self.applied.insert(i, h),
        }
        let t = e.event_time;
        if (t, e.dealer_id.as_str()) >= (self.dealer_time, self.dealer_id.as_str()) {
            self.dealer_time = t;
            self.dealer_id.clone_from(&e.dealer_id);
        }
        match &e.body {
            EventBody::RepairOrder(ro) => {
                self.record_visit(t, policy);
                let c = cents(ro.total_amount);
                self.lifetime_spend_cents = self.lifetime_spend_cents.saturating_add(c);
                self.ro_count += 1;
                self.ro_mix[ro.ro_type.index()] += 1;
                let s = Spend { time: t, cents: c };
                let i = self.recent_spend.partition_point(|x| *x < s);
                self.recent_spend.insert(i, s);
                self.prune_spend(policy);
                if let Some(km) = ro.mileage_km {
                    let r = Odometer { time: t, km };
                    let earlier = |a: &Odometer, b: &Odometer| (a.time, a.km) < (b.time, b.km);
                    if self.first_odometer.is_none_or(|f| earlier(&r, &f)) {
                        self.first_odometer = Some(r);
                    }
                    if self.last_odometer.is_none_or(|l| earlier(&l, &r)) {
                        self.last_odometer = Some(r);
                    }
                }
                if ro.ro_type == RoType::Maintenance {
                    let m = Maintenance {
                        time: t,
                        km: ro.mileage_km,
                    };
                    let later = match self.last_maintenance {
                        None => true,
                        Some(old) => {
                            (m.time, m.km.unwrap_or(-1.0)) > (old.time, old.km.unwrap_or(-1.0))
                        }
                    };
                    if later {
                        self.last_maintenance = Some(m);
                    }
                }
                if ro.vin.is_some()
                    || ro.vehicle_model.is_some()
                    || ro.vehicle_purchase_date.is_some()
                {
                    self.upsert_vehicle(
                        ro.vin.as_deref(),
                        ro.vehicle_model.as_deref(),
                        ro.vehicle_purchase_date,
                        t,
                    );
                }
            }
            EventBody::Visit(v) => {
                self.record_visit(t, policy);
                if v.visit_type == VisitType::Event {
                    self.event_participations += 1;
                }
                if let Some(flag) = v.in_service_region {
                    if self
                        .in_service_region
                        .is_none_or(|(at, old)| (t, flag) > (at, old))
                    {
                        self.in_service_region = Some((t, flag));
                    }
                }
            }
            EventBody::Contract(c) => {
                let new = ContractState {
                    contract_id: c.contract_id.clone(),
                    contract_type: c.contract_type,
                    action: c.action,
                    start: c.start_date,
                    end: c.end_date,
                    amount_cents: c.amount.map(cents).unwrap_or(0),
                    time: t,
                };
                match self
                    .contracts
                    .iter_mut()
                    .find(|k| k.contract_id == c.contract_id)
                {
                    Some(old) => {
                        if (new.time, new.action) > (old.time, old.action) {
                            // A closing action without dates keeps the term it closes.
                            let (start, end) = (old.start, old.end);
                            *old = new;
                            if old.start.is_none() {
                                old.start = start;
                            }
                            if old.end.is_none() {
                                old.end = end;
                            }
                        }
                    }
                    None => {
                        // One at a time: most customers hold one or two contracts,
                        // and a cached customer's spare capacity is memory wasted.
                        self.contracts.reserve_exact(1);
                        self.contracts.push(new);
                        self.contracts
                            .sort_by(|a, b| a.contract_id.cmp(&b.contract_id));
                        if self.contracts.len() > MAX_CONTRACTS {
                            let oldest = self
                                .contracts
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, k)| (k.ends_at(), k.contract_id.clone()))
                                .map(|(i, _)| i)
                                .unwrap_or(0);
                            self.contracts.remove(oldest);
                        }
                    }
                }
            }
        }
        true
    }

    fn record_visit(&mut self, t: Ts, policy: &Policy) {
        self.first_visit = Some(self.first_visit.map_or(t, |f| f.min(t)));
        let newer = self.last_visit.is_none_or(|l| t > l);
        self.last_visit = Some(self.last_visit.map_or(t, |l| l.max(t)));
        let day = t.epoch_day();
        if let Err(i) = self.visit_days.binary_search(&day) {
            self.visit_days.insert(i, day);
            self.visit_day_count += 1;
            if self.visit_days.len() > MAX_VISIT_DAYS {
                self.visit_days.remove(0);
            }
        }
        if newer {
            self.prune_spend(policy);
        }
    }

    fn window_start(&self, policy: &Policy) -> Option<Ts> {
        let last = self.last_visit?;
        // The Ts one window before the last visit: add_months on the reverse is not
        // available, so step back month by month from the last visit's calendar.
        Some(sub_months(last, policy.tier.window_months))
    }

    fn prune_spend(&mut self, policy: &Policy) {
        if let Some(start) = self.window_start(policy) {
            let keep_from = self.recent_spend.partition_point(|s| s.time <= start);
            if keep_from > 0 {
                self.recent_spend.drain(..keep_from);
            }
        }
    }

    fn upsert_vehicle(
        &mut self,
        vin: Option<&str>,
        model: Option<&str>,
        purchase: Option<Ts>,
        t: Ts,
    ) {
        let only = self.vehicles.len() == 1;
        let idx = self
            .vehicles
            .iter()
            .position(|v| match (vin, v.vin.as_deref()) {
                (Some(a), Some(b)) => a == b,
                (Some(_), None) => v.model.as_deref() == model,
                (None, _) => v.model.as_deref() == model || only,
            });
        let slot = idx.map(|i| &mut self.vehicles[i]);
        match slot {
            Some(v) => {
                if t >= v.seen {
                    v.seen = t;
                    if vin.is_some() {
                        v.vin = vin.map(str::to_string);
                    }
                    if model.is_some() {
                        v.model = model.map(str::to_string);
                    }
                    if purchase.is_some() {
                        v.purchase_date = purchase;
                    }
                } else {
                    v.vin = v.vin.take().or(vin.map(str::to_string));
                    v.model = v.model.take().or(model.map(str::to_string));
                    v.purchase_date = v.purchase_date.or(purchase);
                }
            }
            None => {
                // Most customers have one vehicle; no spare capacity in the cache.
                self.vehicles.reserve_exact(1);
                self.vehicles.push(Vehicle {
                    vin: vin.map(str::to_string),
                    model: model.map(str::to_string),
                    purchase_date: purchase,
                    seen: t,
                });
                self.vehicles
                    .sort_by(|a, b| (&a.vin, &a.model).cmp(&(&b.vin, &b.model)));
                if self.vehicles.len() > MAX_VEHICLES {
                    let i = self
                        .vehicles
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, v)| v.seen)
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    self.vehicles.remove(i);
                }
            }
        }
    }

    /// Lifetime number of intervals between distinct visit days.
    pub fn intervals(&self) -> u32 {
        self.visit_day_count.saturating_sub(1)
    }

    /// Mean days between visits (None with fewer than one interval).
    pub fn mean_interval_days(&self) -> Option<f64> {
        let (f, l) = (self.first_visit?, self.last_visit?);
        let n = self.intervals();
        (n > 0).then(|| l.days_since(f) / f64::from(n))
    }

    /// Kilometres per day from the first and last odometer readings, when they are far
    /// enough apart.
    pub fn km_per_day(&self, policy: &Policy) -> Option<f64> {
        let (f, l) = (self.first_odometer?, self.last_odometer?);
        let span = l.time.days_since(f.time);
        (span >= policy.prevent.min_odometer_span_days && l.km >= f.km)
            .then(|| (l.km - f.km) / span)
    }

    /// Projected odometer at `t`.
    pub fn projected_km(&self, t: Ts, policy: &Policy) -> Option<f64> {
        let l = self.last_odometer?;
        let kpd = self.km_per_day(policy)?;
        Some(l.km + kpd * t.days_since(l.time).max(0.0))
    }

    /// Distinct visit days in the value window ending at the last visit.
    pub fn window_visits(&self, policy: &Policy) -> u32 {
        let Some(start) = self.window_start(policy) else {
            return 0;
        };
        let start_day = start.epoch_day();
        let i = self.visit_days.partition_point(|d| *d <= start_day);
        (self.visit_days.len() - i) as u32
    }

    /// Spend (currency units) in the value window ending at the last visit.
    pub fn window_spend(&self) -> f64 {
        self.recent_spend
            .iter()
            .fold(0i64, |a, s| a.saturating_add(s.cents)) as f64
            / 100.0
    }

    /// Average repair-order value over the lifetime.
    pub fn avg_ro_value(&self) -> f64 {
        if self.ro_count == 0 {
            0.0
        } else {
            self.lifetime_spend_cents as f64 / 100.0 / f64::from(self.ro_count)
        }
    }

    /// Value tier from the value window.
    pub fn tier(&self, policy: &Policy) -> Tier {
        let x = &policy.prediction;
        if x.tier_by_clv {
            if let (Some(last), true) = (
                self.last_visit,
                policy.model.as_ref().is_some_and(|m| m.spend.is_some()),
            ) {
                let value = self.lifetime_spend_cents as f64 / 100.0
                    + self.clv(last, policy).unwrap_or(0.0);
                return if value >= x.diamond_value {
                    Tier::Diamond
                } else if value >= x.gold_value {
                    Tier::Gold
                } else {
                    Tier::Silver
                };
            }
        }
        let t = &policy.tier;
        let (spend, visits, avg) = (
            self.window_spend(),
            self.window_visits(policy),
            self.avg_ro_value(),
        );
        if spend >= t.diamond_spend || (visits >= t.diamond_visits && avg >= t.diamond_avg_ro) {
            Tier::Diamond
        } else if spend >= t.gold_spend || (visits >= t.gold_visits && avg >= t.gold_avg_ro) {
            Tier::Gold
        } else {
            Tier::Silver
        }
    }

    /// Lifecycle at `t`.
    pub fn lifecycle(&self, t: Ts, policy: &Policy) -> Option<Lifecycle> {
        let last = self.last_visit?;
        let l = &policy.lifecycle;
        Some(if t >= last.add_months(l.fully_churned_months) {
            Lifecycle::FullyChurned
        } else if t >= last.add_months(l.churned_months) {
            Lifecycle::Churned
        } else if t >= last.add_months(l.quasi_churned_months) {
            Lifecycle::QuasiChurned
        } else {
            Lifecycle::Active
        })
    }

    /// Whether the customer is an effective customer (有效客户) at `t`: visited within
    /// the last 12 months and lives in the service region (unknown counts as inside), or
    /// lives outside but visited on more than one day in those 12 months.
    pub fn is_effective(&self, t: Ts) -> bool {
        let Some(last) = self.last_visit else {
            return false;
        };
        if last > t || t >= last.add_months(12) {
            return false;
        }
        match self.in_service_region {
            Some((_, false)) => {
                let from = sub_months(t, 12).epoch_day();
                let to = t.epoch_day();
                self.visit_days
                    .iter()
                    .filter(|d| **d > from && **d <= to)
                    .count()
                    > 1
            }
            _ => true,
        }
    }
}

/// `t` minus calendar months (day clamped like [`Ts::add_months`]).
pub fn sub_months(t: Ts, months: u32) -> Ts {
    let dt = t.to_datetime();
    dt.checked_sub_months(chrono::Months::new(months))
        .map(|d| Ts(d.timestamp_millis()))
        .unwrap_or(Ts(i64::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::decode_json_line;

    fn ev(json: &str) -> Event {
        match decode_json_line(json).unwrap().input {
            crate::core::event::Input::Event(e) => e,
            _ => panic!("not an event"),
        }
    }

    fn visit(id: &str, t: &str, region: bool) -> Event {
        ev(&format!(
            r#"{{"type":"visit","event_id":"{id}","event_time":"{t}","dealer_id":"D","customer_id":"C","visit_type":"service","in_service_region":{region}}}"#
        ))
    }

    fn ro(id: &str, t: &str, amount: f64) -> Event {
        ev(&format!(
            r#"{{"type":"repair_order","event_id":"{id}","event_time":"{t}","dealer_id":"D","customer_id":"C","ro_number":"{id}","ro_type":"general_repair","total_amount":{amount}}}"#
        ))
    }

    #[test]
    fn effective_customer_definition() {
        let p = Policy::default();
        let mut s = CustomerState::new("C", "D");
        s.apply(&visit("a", "2024-03-01T10:00:00Z", true), &p);
        assert!(s.is_effective(Ts::ymd_hms(2025, 2, 28, 0, 0, 0)));
        assert!(!s.is_effective(Ts::ymd_hms(2025, 3, 1, 10, 0, 0)));
        // Outside the region: needs more than one visit in the 12 months.
        let mut o = CustomerState::new("C", "D");
        o.apply(&visit("a", "2024-03-01T10:00:00Z", false), &p);
        assert!(!o.is_effective(Ts::ymd_hms(2024, 6, 1, 0, 0, 0)));
        o.apply(&visit("b", "2024-05-01T10:00:00Z", false), &p);
        assert!(o.is_effective(Ts::ymd_hms(2024, 6, 1, 0, 0, 0)));
        // Same day twice is one visit day.
        let mut d = CustomerState::new("C", "D");
        d.apply(&visit("a", "2024-03-01T10:00:00Z", false), &p);
        d.apply(&ro("r", "2024-03-01T15:00:00Z", 100.0), &p);
        assert_eq!(d.visit_day_count, 1);
        assert!(!d.is_effective(Ts::ymd_hms(2024, 6, 1, 0, 0, 0)));
    }

    #[test]
    fn tiers_use_the_window_ending_at_the_last_visit() {
        let p = Policy::default();
        let mut s = CustomerState::new("C", "D");
        s.apply(&ro("a", "2022-01-10T10:00:00Z", 9000.0), &p);
        assert_eq!(s.tier(&p), Tier::Diamond);
        // A visit 13 months later pushes the big repair out of the window.
        s.apply(&ro("b", "2023-02-10T10:00:00Z", 300.0), &p);
        assert_eq!(s.window_spend(), 300.0);
        assert_eq!(s.window_visits(&p), 1);
        // Average repair order is lifetime: (9000 + 300) / 2 = 4650 but one visit day.
        assert_eq!(s.tier(&p), Tier::Silver);
        s.apply(&ro("c", "2023-03-10T10:00:00Z", 2800.0), &p);
        assert_eq!(s.tier(&p), Tier::Gold);
        // Applying the old repair again (duplicate) changes nothing.
        assert!(!s.apply(&ro("a", "2022-01-10T10:00:00Z", 9000.0), &p));
        assert_eq!(s.lifetime_spend_cents, 1_210_000);
    }

    #[test]
    fn cadence_needs_two_intervals() {
        let p = Policy::default();
        let mut s = CustomerState::new("C", "D");
        s.apply(&visit("a", "2024-01-01T00:00:00Z", true), &p);
        s.apply(&visit("b", "2024-03-01T00:00:00Z", true), &p);
        assert_eq!(s.cadence_deadline(&p), None);
        s.apply(&visit("c", "2024-05-01T00:00:00Z", true), &p);
        let mean = s.mean_interval_days().unwrap();
        assert!((mean - 60.5).abs() < 1e-9, "{mean}");
        assert_eq!(
            s.cadence_deadline(&p),
            Some(Ts::ymd_hms(2024, 5, 1, 0, 0, 0).add_days(1.5 * 60.5))
        );
    }

    #[test]
    fn contract_states_follow_the_latest_action() {
        let p = Policy::default();
        let mut s = CustomerState::new("C", "D");
        let k = |id: &str, t: &str, action: &str| {
            ev(&format!(
                r#"{{"type":"contract","event_id":"{id}","event_time":"{t}","dealer_id":"D","customer_id":"C","contract_id":"K","contract_type":"maintenance_plan","action":"{action}","start_date":"2024-01-01","end_date":"2025-01-01"}}"#
            ))
        };
        s.apply(&k("1", "2024-01-01T00:00:00Z", "signed"), &p);
        assert!(s.contracts[0].running_at(Ts::ymd_hms(2024, 6, 1, 0, 0, 0)));
        s.apply(&k("2", "2024-06-01T00:00:00Z", "cancelled"), &p);
        assert!(!s.contracts[0].running_at(Ts::ymd_hms(2024, 7, 1, 0, 0, 0)));
        assert_eq!(
            s.contracts[0].ends_at(),
            Some(Ts::ymd_hms(2024, 6, 1, 0, 0, 0))
        );
        // An older event arriving late does not undo the cancellation.
        s.apply(&k("0", "2023-12-31T00:00:00Z", "signed"), &p);
        assert_eq!(s.contracts[0].action, ContractAction::Cancelled);
    }
}
