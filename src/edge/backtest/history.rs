//! What the history itself shows, whatever the policy: every customer's visit instants,
//! dealer, service-region flag and vehicle, gathered once from the accepted input
//! events. The evaluation of warnings ([`super::eval`]) and the KPIs ([`super::kpis`])
//! read it; it is pure data (no I/O, no clock).

use crate::core::event::{Event, EventBody};
use crate::core::time::Ts;
use std::collections::HashMap;

/// One customer's history.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerHistory {
    /// Customer id.
    pub id: String,
    /// Dealer of the customer's latest event (as the engine assigns customers).
    pub dealer_id: String,
    dealer_time: Ts,
    /// Time of the customer's first event of any kind.
    pub first_seen: Ts,
    /// Visit instants (visits and repair orders), ascending and distinct after
    /// [`History::finish`].
    pub visits: Vec<Ts>,
    /// Latest known service-region flag, with the time it was reported.
    pub in_service_region: Option<(Ts, bool)>,
    /// Vehicle model of the latest repair order that named one.
    pub vehicle_model: Option<String>,
    /// Purchase date of the latest repair order that named one.
    pub vehicle_purchase: Option<Ts>,
    vehicle_time: Ts,
}

impl CustomerHistory {
    fn new(id: &str, dealer: &str, t: Ts) -> Self {
        CustomerHistory {
            id: id.to_string(),
            dealer_id: dealer.to_string(),
            dealer_time: Ts(i64::MIN),
            first_seen: t,
            visits: Vec::new(),
            in_service_region: None,
            vehicle_model: None,
            vehicle_purchase: None,
            vehicle_time: Ts(i64::MIN),
        }
    }

    /// The last visit at or before `t`, if any.
    pub fn last_visit_at(&self, t: Ts) -> Option<Ts> {
        let i = self.visits.partition_point(|v| *v <= t);
        i.checked_sub(1).map(|i| self.visits[i])
    }

    /// The first visit strictly after `t`, if any.
    pub fn next_visit_after(&self, t: Ts) -> Option<Ts> {
        let i = self.visits.partition_point(|v| *v <= t);
        self.visits.get(i).copied()
    }

    /// Whether the customer lives outside the dealer's service region (as last
    /// reported; unknown counts as inside, as in the engine).
    pub fn outside_region(&self) -> bool {
        matches!(self.in_service_region, Some((_, false)))
    }
}

/// Every customer's history, in order of first appearance.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// The customers.
    pub customers: Vec<CustomerHistory>,
    index: HashMap<String, usize>,
    /// Earliest event time seen.
    pub first: Option<Ts>,
    /// Latest event time seen.
    pub last: Option<Ts>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Takes one accepted event in (any order; call [`History::finish`] at the end).
    /// True when it is the customer's first.
    pub fn add(&mut self, e: &Event) -> bool {
        let t = e.event_time;
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
        let (i, new) = match self.index.get(e.customer_id.as_str()) {
            Some(i) => (*i, false),
            None => {
                let i = self.customers.len();
                self.customers
                    .push(CustomerHistory::new(&e.customer_id, &e.dealer_id, t));
                self.index.insert(e.customer_id.clone(), i);
                (i, true)
            }
        };
        let c = &mut self.customers[i];
        c.first_seen = c.first_seen.min(t);
        if t >= c.dealer_time {
            c.dealer_time = t;
            c.dealer_id.clone_from(&e.dealer_id);
        }
        if e.is_visit() {
            c.visits.push(t);
        }
        match &e.body {
            EventBody::Visit(v) => {
                if let Some(r) = v.in_service_region {
                    if c.in_service_region.is_none_or(|(at, _)| t >= at) {
                        c.in_service_region = Some((t, r));
                    }
                }
            }
            EventBody::RepairOrder(ro) => {
                if (ro.vehicle_model.is_some() || ro.vehicle_purchase_date.is_some())
                    && t >= c.vehicle_time
                {
                    c.vehicle_time = t;
                    if ro.vehicle_model.is_some() {
                        c.vehicle_model.clone_from(&ro.vehicle_model);
                    }
                    if ro.vehicle_purchase_date.is_some() {
                        c.vehicle_purchase = ro.vehicle_purchase_date;
                    }
                }
            }
            EventBody::Contract(_) => {}
        }
        new
    }

    /// Sorts every customer's visits and drops repeated instants (a duplicate event
    /// never counts twice).
    pub fn finish(&mut self) {
        for c in &mut self.customers {
            c.visits.sort_unstable();
            c.visits.dedup();
        }
    }

    /// The index of a customer in [`History::customers`].
    pub fn index_of(&self, customer_id: &str) -> Option<usize> {
        self.index.get(customer_id).copied()
    }

    /// Number of customers.
    pub fn len(&self) -> usize {
        self.customers.len()
    }

    /// Whether no customer event was seen.
    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{decode_json_line, Input};

    fn event(line: &str) -> Event {
        match decode_json_line(line).unwrap().input {
            Input::Event(e) => e,
            Input::Tick(_) => panic!("tick"),
        }
    }

    #[test]
    fn visits_are_sorted_and_distinct_and_the_latest_dealer_and_region_win() {
        let mut h = History::new();
        assert!(h.add(&event(r#"{"type":"visit","event_id":"b","event_time":"2024-03-01T10:00:00Z","dealer_id":"D2","customer_id":"C","visit_type":"service","in_service_region":false}"#)));
        assert!(!h.add(&event(r#"{"type":"visit","event_id":"a","event_time":"2024-01-01T10:00:00Z","dealer_id":"D1","customer_id":"C","visit_type":"service","in_service_region":true}"#)));
        h.add(&event(r#"{"type":"visit","event_id":"b","event_time":"2024-03-01T10:00:00Z","dealer_id":"D2","customer_id":"C","visit_type":"service"}"#));
        h.add(&event(r#"{"type":"contract","event_id":"k","event_time":"2024-02-01T00:00:00Z","dealer_id":"D1","customer_id":"C","contract_id":"K1","contract_type":"insurance","action":"signed","end_date":"2025-02-01"}"#));
        h.finish();
        let c = &h.customers[h.index_of("C").unwrap()];
        assert_eq!(
            c.visits.len(),
            2,
            "contracts are no visits; duplicates count once"
        );
        assert_eq!(c.dealer_id, "D2");
        assert!(c.outside_region());
        assert_eq!(c.first_seen, Ts::ymd_hms(2024, 1, 1, 10, 0, 0));
        let mid = Ts::ymd_hms(2024, 2, 1, 0, 0, 0);
        assert_eq!(
            c.last_visit_at(mid),
            Some(Ts::ymd_hms(2024, 1, 1, 10, 0, 0))
        );
        assert_eq!(
            c.next_visit_after(mid),
            Some(Ts::ymd_hms(2024, 3, 1, 10, 0, 0))
        );
        assert_eq!(c.next_visit_after(Ts::ymd_hms(2024, 3, 1, 10, 0, 0)), None);
    }
}
