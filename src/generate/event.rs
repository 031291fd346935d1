//! The compact event model, one [`Ev`] per written line, and the dirty-data injection:
//! [`Sim::push`] decides for each event its presentation (phone and VIN forms), its
//! delivery (on time, disordered, late) and whether it is corrupted or re-sent.
//!
//! It may touch the simulation of the customer that pushes the event (its random stream,
//! the id counters and the event list); rendering the corruptions is [`super::render`]'s.

use super::calendar::DAY_S;
use super::sim::Sim;
use crate::core::event::{ContractAction, ContractType, RoType, VisitType};
use rand::Rng;

/// Kind of dirty record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Dirty {
    Clean,
    /// The exact line re-sent a few minutes later.
    Duplicate,
    /// A VIN with the wrong length or with I/O/Q.
    BadVin,
    /// A phone number that cannot be normalised.
    BadPhone,
    /// A required field left out.
    MissingField,
    /// Truncated JSON.
    Malformed,
    /// A negative amount.
    NegativeAmount,
    /// An RO type the contract does not know.
    UnknownRoType,
    /// An event time that is not RFC 3339.
    BadTimestamp,
}

pub(super) const RO_DIRT: [Dirty; 8] = [
    Dirty::Duplicate,
    Dirty::BadVin,
    Dirty::BadPhone,
    Dirty::MissingField,
    Dirty::Malformed,
    Dirty::NegativeAmount,
    Dirty::UnknownRoType,
    Dirty::BadTimestamp,
];
pub(super) const VISIT_DIRT: [Dirty; 5] = [
    Dirty::Duplicate,
    Dirty::BadPhone,
    Dirty::MissingField,
    Dirty::Malformed,
    Dirty::BadTimestamp,
];
pub(super) const CONTRACT_DIRT: [Dirty; 6] = [
    Dirty::Duplicate,
    Dirty::BadPhone,
    Dirty::MissingField,
    Dirty::Malformed,
    Dirty::NegativeAmount,
    Dirty::BadTimestamp,
];

/// How an event reaches the stream relative to its event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    OnTime,
    /// Delayed by up to `max_disorder_minutes`.
    Disordered,
    /// Delivered 1–10 days late.
    Late,
}

/// Type-specific part of a generated event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Body {
    Ro {
        ro_type: RoType,
        km: u32,
        labor_cents: u32,
        parts_cents: u32,
    },
    Visit {
        visit_type: VisitType,
        /// 0 = field absent, 1 = false, 2 = true.
        region: u8,
    },
    Contract {
        contract_type: ContractType,
        action: ContractAction,
        contract: u32,
        start_day: i32,
        end_day: i32,
        amount_cents: u32,
    },
}

/// One generated line. Times are seconds after the period's base second.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ev {
    /// When it is delivered (sort key of the file).
    pub(super) deliver: u32,
    /// Event time.
    pub(super) time: u32,
    /// Index of the customer.
    pub(super) cust: u32,
    /// Per-type serial: the number in `ro-<n>`, `v-<n>`, `k-<n>`.
    pub(super) serial: u32,
    pub(super) body: Body,
    /// 0 = no phone, 1..=5 = one of the free-form phone formats.
    pub(super) phone_fmt: u8,
    /// 0 = canonical VIN, 1 = lower case, 2 = with spaces, 3 = absent.
    pub(super) vin_fmt: u8,
    pub(super) dirty: Dirty,
    /// Chooses the variant of a corruption.
    pub(super) dirty_var: u8,
    pub(super) delivery: Delivery,
}

/// What a written line is: lets the tests check every line against its intent.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LineTag {
    pub(super) dirty: Dirty,
    pub(super) delivery: Delivery,
    pub(super) tick: bool,
}

impl Sim<'_> {
    /// Adds an event at `t` (Unix seconds) if it falls inside the period, deciding its
    /// presentation, delivery and dirtiness.
    pub(super) fn push(&mut self, t: i64, body: Body) {
        if t < self.w.first_s || t >= self.w.end_s {
            return;
        }
        let w = self.w;
        let cfg = &w.cfg;
        let serial = match body {
            Body::Ro { .. } => {
                self.ctr.ro += 1;
                self.ctr.ro
            }
            Body::Visit { .. } => {
                self.ctr.visit += 1;
                self.ctr.visit
            }
            Body::Contract { .. } => {
                self.ctr.contract_event += 1;
                self.ctr.contract_event
            }
        };
        let phone_fmt = if self.c.phone != 0 && self.rng.gen_bool(0.7) {
            match self.rng.gen_range(0..20) {
                0..=7 => 1,
                8..=12 => 2,
                13..=16 => 3,
                17..=18 => 4,
                _ => 5,
            }
        } else {
            0
        };
        let vin_fmt = match self.rng.gen_range(0..100) {
            0..=85 => 0,
            86..=91 => 1,
            92..=96 => 2,
            _ => 3,
        };
        let time = (t - self.w.base_s) as u32;
        let u: f64 = self.rng.gen();
        let (delivery, deliver) = if u < cfg.late_rate {
            let delay = self.rng.gen_range(DAY_S..=10 * DAY_S) as u32;
            (Delivery::Late, time + delay)
        } else if u < cfg.late_rate + cfg.disorder_rate {
            let max = cfg.max_disorder_minutes * 60;
            (Delivery::Disordered, time + self.rng.gen_range(1..=max))
        } else {
            (Delivery::OnTime, time)
        };
        let mut dirty = Dirty::Clean;
        if self.rng.gen_bool(cfg.dirty_rate) {
            let kinds: &[Dirty] = match body {
                Body::Ro { .. } => &RO_DIRT,
                Body::Visit { .. } => &VISIT_DIRT,
                Body::Contract { .. } => &CONTRACT_DIRT,
            };
            dirty = kinds[self.rng.gen_range(0..kinds.len())];
        }
        let dirty_var = self.rng.gen();
        let ev = Ev {
            deliver,
            time,
            cust: self.idx,
            serial,
            body,
            phone_fmt,
            vin_fmt,
            dirty: if dirty == Dirty::Duplicate {
                Dirty::Clean
            } else {
                dirty
            },
            dirty_var,
            delivery,
        };
        self.ctr.events += 1;
        self.out.push(ev);
        match dirty {
            Dirty::Clean => {}
            Dirty::Duplicate => {
                // Re-sent a few minutes after the original, never beyond the disorder
                // bound (unless the original itself was late).
                let max = cfg.max_disorder_minutes.min(10) * 60;
                let resend = if max == 0 {
                    ev.deliver
                } else {
                    ev.deliver + self.rng.gen_range(60.min(max)..=max)
                };
                let deliver = if delivery == Delivery::Late {
                    resend
                } else {
                    resend.min(time + cfg.max_disorder_minutes * 60)
                };
                self.ctr.duplicates += 1;
                self.out.push(Ev {
                    deliver,
                    dirty: Dirty::Duplicate,
                    ..ev
                });
            }
            _ => self.ctr.corrupted += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stays_compact() {
        assert!(
            std::mem::size_of::<Ev>() <= 48,
            "{}",
            std::mem::size_of::<Ev>()
        );
    }
}
