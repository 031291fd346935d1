//! The simulation of one customer's history: regular trips with their repair orders and
//! visits, maintenance by the manufacturer's schedule, recalls, seasonal moves,
//! accidents, major repairs out of warranty and unscheduled visits, and the drift before
//! a drop-out (none before a price shock: that customer leaves after the bill).
//!
//! The drop-out and the choices it depends on (an initial maintenance plan, taking the
//! extended warranty, the major repairs) come drawn from [`super::risk`]; the simulation
//! honours them: a customer who leaves after a price shock signs no maintenance plan.
//!
//! It may touch the customer being simulated, its random stream, the world and the id
//! counters; events go through [`Sim::push`] and contracts through [`super::contract`].

use super::calendar::{
    add_months, date_of, seasonal_factor, spring_festival, DAY_S, LOCAL_OFFSET_S, SEASONAL_MAX,
};
use super::customer::{Counters, Customer, Odo, World};
use super::event::{Body, Ev};
use super::risk::Cause;
use crate::core::event::{ContractType, RoType, VisitType};
use chrono::Datelike;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Range of a major repair's bill in yuan (before the model's price factor).
pub(super) const MAJOR_REPAIR_YUAN: (f64, f64) = (4_000.0, 15_000.0);

/// The simulation of one customer.
pub(super) struct Sim<'a> {
    pub(super) w: &'a World,
    pub(super) rng: ChaCha8Rng,
    pub(super) idx: u32,
    pub(super) out: &'a mut Vec<Ev>,
    pub(super) ctr: &'a mut Counters,
    pub(super) c: Customer,
    pub(super) odo: Odo,
    pub(super) factor: f64,
    /// No visits at or after this second (end of the period or the drop-out).
    pub(super) stop_s: i64,
    pub(super) dropout_s: i64,
    pub(super) warranty_end_day: i32,
    /// Current cadence in days (maintenance schedule included for loyal customers).
    pub(super) eff_cadence: f64,
    pub(super) loyal: bool,
    pub(super) in_region: bool,
    pub(super) last_maint_s: i64,
    pub(super) last_maint_km: f64,
    pub(super) first_maint_done: bool,
    pub(super) recall_done: u32,
    pub(super) ew_offered: bool,
    pub(super) plan_until: i32,
    pub(super) member_until: i32,
    /// Holds a maintenance plan from the purchase or the period start.
    pub(super) initial_plan: bool,
    /// Takes the extended warranty when offered.
    pub(super) takes_extended_warranty: bool,
    /// Days of major repairs out of warranty (emitted when before the drop-out).
    pub(super) major_repairs: Vec<i32>,
}

impl<'a> Sim<'a> {
    pub(super) fn business_time(&mut self, day: i32) -> i64 {
        i64::from(day) * DAY_S + self.rng.gen_range(510..=1050) * 60 - LOCAL_OFFSET_S
    }

    pub(super) fn day(t: i64) -> i32 {
        t.div_euclid(DAY_S) as i32
    }

    pub(super) fn cents(&mut self, lo: f64, hi: f64) -> u32 {
        (self.rng.gen_range(lo..hi) * self.factor * 100.0).round() as u32
    }

    pub(super) fn ro(&mut self, t: i64, ro_type: RoType) {
        let (lo, hi, labor_lo, labor_hi): (f64, f64, f64, f64) = match ro_type {
            RoType::Maintenance => (400.0, 1500.0, 0.2, 0.4),
            RoType::GeneralRepair => (500.0, 5000.0, 0.3, 0.55),
            RoType::Accident => (2000.0, 20000.0, 0.3, 0.5),
            RoType::Warranty => (300.0, 4000.0, 0.3, 0.5),
            RoType::QuickService => (80.0, 600.0, 0.1, 0.4),
            RoType::Recall => (200.0, 1500.0, 0.5, 0.9),
            RoType::Accessories => (200.0, 3000.0, 0.05, 0.2),
        };
        let total = if ro_type == RoType::Accident {
            self.log_uniform_cents(lo, hi)
        } else {
            self.cents(lo, hi)
        };
        self.push_ro(t, ro_type, total, labor_lo, labor_hi);
    }

    /// Heavy-tailed amounts: log-uniform over the range (yuan), in cents.
    fn log_uniform_cents(&mut self, lo: f64, hi: f64) -> u32 {
        let x = self.rng.gen_range(lo.ln()..hi.ln()).exp();
        (x * self.factor * 100.0).round() as u32
    }

    /// A major general repair out of warranty (engine, gearbox, suspension): a large bill.
    pub(super) fn major_repair(&mut self, t: i64) {
        let total = self.log_uniform_cents(MAJOR_REPAIR_YUAN.0, MAJOR_REPAIR_YUAN.1);
        self.push_ro(t, RoType::GeneralRepair, total, 0.25, 0.45);
    }

    fn push_ro(&mut self, t: i64, ro_type: RoType, total: u32, labor_lo: f64, labor_hi: f64) {
        let labor_cents =
            (f64::from(total) * self.rng.gen_range(labor_lo..labor_hi)).round() as u32;
        let km = self.odo.km_at(t).round() as u32;
        self.push(
            t,
            Body::Ro {
                ro_type,
                km,
                labor_cents,
                parts_cents: total - labor_cents,
            },
        );
    }

    pub(super) fn visit(&mut self, t: i64, visit_type: VisitType) {
        let region = if self.rng.gen_bool(0.03) {
            0
        } else if self.in_region {
            2
        } else {
            1
        };
        self.push(t, Body::Visit { visit_type, region });
    }

    /// Days from `t` until maintenance is due by the manufacturer's schedule (first
    /// service at 5,000 km or 6 months, then every 10,000 km or 12 months).
    pub(super) fn maint_due_in(&self, t: i64) -> f64 {
        let (km_step, months_days, since) = if self.first_maint_done {
            (10_000.0, 365.0, self.last_maint_s)
        } else {
            (5_000.0, 182.0, self.odo.purchase_s)
        };
        let by_time = months_days - (t - since) as f64 / DAY_S as f64;
        let by_km = self.odo.days_until(t, self.last_maint_km + km_step);
        by_time.min(by_km).max(0.0)
    }

    pub(super) fn maint_due_now(&self, t: i64) -> bool {
        let km = self.odo.km_at(t);
        let days = (t - if self.first_maint_done {
            self.last_maint_s
        } else {
            self.odo.purchase_s
        }) as f64
            / DAY_S as f64;
        if self.first_maint_done {
            km - self.last_maint_km >= 8_000.0 || days >= 300.0
        } else {
            km >= 4_000.0 || days >= 150.0
        }
    }

    /// One regular trip to the dealer: a check-in, repair orders, perhaps a contract.
    pub(super) fn trip(&mut self, t: i64) {
        let day = Self::day(t);
        let age_years = f64::from(day - self.c.purchase_day) / 365.0;
        let under_warranty = day < self.warranty_end_day;
        let mut ros: [Option<RoType>; 3] = [None; 3];
        let maintenance = self.maint_due_now(t);
        if maintenance {
            ros[0] = Some(RoType::Maintenance);
            self.last_maint_s = t;
            self.last_maint_km = self.odo.km_at(t);
            self.first_maint_done = true;
            if self.rng.gen_bool(0.12) {
                ros[1] = Some(match self.rng.gen_range(0..10) {
                    0..=3 => RoType::QuickService,
                    4..=6 => RoType::Accessories,
                    _ => RoType::GeneralRepair,
                });
            } else if under_warranty && self.rng.gen_bool(0.04) {
                ros[1] = Some(RoType::Warranty);
            }
        } else {
            let month = date_of(day).month();
            let quick = if matches!(month, 6..=8) { 48.0 } else { 30.0 };
            let weights = [
                (
                    Some(RoType::GeneralRepair),
                    22.0 * (1.0 + 0.12 * age_years.max(0.0)),
                ),
                (Some(RoType::QuickService), quick),
                (Some(RoType::Accessories), 8.0),
                (
                    Some(RoType::Warranty),
                    if under_warranty { 12.0 } else { 0.0 },
                ),
                (None, 28.0),
            ];
            let total: f64 = weights.iter().map(|w| w.1).sum();
            let mut x = self.rng.gen_range(0.0..total);
            for (ty, wgt) in weights {
                if x < wgt {
                    ros[0] = ty;
                    break;
                }
                x -= wgt;
            }
        }
        // Recall campaigns of the model: done at the first trip after the letter, mostly.
        let w = self.w;
        let campaigns = &w.recalls[usize::from(self.c.model)];
        for (i, &c) in campaigns.iter().enumerate() {
            let bit = 1u32 << i.min(31);
            if self.recall_done & bit == 0
                && self.c.purchase_day < c
                && (c..c + 365).contains(&day)
                && self.rng.gen_bool(0.65)
            {
                self.recall_done |= bit;
                if let Some(slot) = ros.iter_mut().find(|r| r.is_none()) {
                    *slot = Some(RoType::Recall);
                }
            }
        }
        if ros[0].is_none() && ros[1].is_none() && ros[2].is_none() {
            let vt = if self.rng.gen_bool(0.25) {
                VisitType::Inspection
            } else {
                VisitType::Service
            };
            self.visit(t, vt);
        } else {
            if self.rng.gen_bool(0.5) {
                self.visit(t, VisitType::Service);
            }
            let mut at = t;
            for ty in ros.into_iter().flatten() {
                at += self.rng.gen_range(3..=25) * 60;
                self.ro(at, ty);
            }
        }
        // Trips only happen before the drop-out, so contracts are never signed after it.
        let sign_at = t + self.rng.gen_range(20..=90) * 60;
        if under_warranty && !self.ew_offered && self.warranty_end_day - day <= 120 {
            self.ew_offered = true;
            if self.takes_extended_warranty {
                let months = [12, 24, 36][self.rng.gen_range(0..3)];
                let end = add_months(self.warranty_end_day, months);
                self.contract_chain(
                    ContractType::ExtendedWarranty,
                    Some(sign_at),
                    (self.warranty_end_day, end),
                    months,
                    0.1,
                );
            }
        } else if maintenance
            && self.plan_until <= day
            && self.c.cause != Some(Cause::PriceShock)
            && self.rng.gen_bool(0.05)
        {
            let months = if self.rng.gen_bool(0.5) { 12 } else { 24 };
            self.plan_until = self.contract_chain(
                ContractType::MaintenancePlan,
                Some(sign_at),
                (day, add_months(day, months)),
                months,
                0.35,
            );
        } else if self.member_until <= day && self.rng.gen_bool(0.02) {
            self.member_until = self.contract_chain(
                ContractType::Membership,
                Some(sign_at),
                (day, add_months(day, 12)),
                12,
                0.5,
            );
        }
    }

    /// Moves a regular trip for the season: away from the Spring Festival week, partly
    /// into the pre-festival rush, and some September trips into the summer.
    pub(super) fn seasonal_day(&mut self, day: i32, earliest: i32) -> i32 {
        let d = date_of(day);
        let festival = spring_festival(d.year());
        let off = day - festival;
        let moved = if (-1..7).contains(&off) {
            if self.rng.gen_bool(0.85) {
                let before = festival - self.rng.gen_range(2..16);
                if before >= earliest {
                    before
                } else {
                    festival + 7 + self.rng.gen_range(0..7)
                }
            } else {
                day
            }
        } else if (7..28).contains(&off) && self.rng.gen_bool(0.3) {
            festival - self.rng.gen_range(2..21)
        } else if d.month() == 9 && d.day() <= 21 && self.rng.gen_bool(0.25) {
            day - self.rng.gen_range(10..30)
        } else {
            day
        };
        if moved >= earliest {
            moved
        } else {
            day
        }
    }

    /// Days of a Poisson process with `rate` events per year over `[from, to)`.
    pub(super) fn poisson_days(&mut self, rate: f64, from: i32, to: i32) -> Vec<i32> {
        let mut days = Vec::new();
        if rate <= 0.0 || from >= to {
            return days;
        }
        let mean = 365.0 / rate;
        let mut d = f64::from(from);
        loop {
            let u: f64 = self.rng.gen();
            d += -mean * (1.0 - u).ln();
            if d >= f64::from(to) {
                return days;
            }
            days.push(d as i32);
        }
    }

    pub(super) fn run(mut self, new_buyer: bool, first_trip_day: i32) -> Customer {
        let w = self.w;
        let stop_day = Self::day(self.stop_s - 1) + 1;
        let first_day;
        if new_buyer {
            // Bought the car here during the period: showroom visit, contracts, first
            // accessories, then the first service after ~5,000 km or 6 months.
            let day = self.c.purchase_day;
            first_day = day;
            let t = self.business_time(day);
            self.visit(t, VisitType::Showroom);
            if self.rng.gen_bool(0.3) {
                let at = t + self.rng.gen_range(30..=120) * 60;
                self.ro(at, RoType::Accessories);
            }
            let sign = t + self.rng.gen_range(20..=90) * 60;
            if self.rng.gen_bool(0.75) {
                self.contract_chain(
                    ContractType::Insurance,
                    Some(sign),
                    (day, add_months(day, 12)),
                    12,
                    0.82,
                );
            }
            if self.initial_plan {
                let months = if self.rng.gen_bool(0.5) { 12 } else { 24 };
                self.plan_until = self.contract_chain(
                    ContractType::MaintenancePlan,
                    Some(sign + 300),
                    (day, add_months(day, months)),
                    months,
                    0.35,
                );
            }
            if self.rng.gen_bool(0.15) {
                self.member_until = self.contract_chain(
                    ContractType::Membership,
                    Some(sign + 600),
                    (day, add_months(day, 12)),
                    12,
                    0.5,
                );
            }
        } else {
            first_day = w.start_day;
            self.existing_contracts();
        }
        // Regular trips.
        let mut t = if new_buyer {
            let due = self.maint_due_in(self.odo.purchase_s) * self.rng.gen_range(0.9..1.1);
            let day = self.c.purchase_day + (due as i32).max(30);
            self.business_time(day)
        } else {
            self.business_time(first_trip_day)
        };
        let abrupt = self.c.cause == Some(Cause::PriceShock);
        let drift_days = if self.dropout_s < i64::MAX && !abrupt && self.rng.gen_bool(0.5) {
            self.rng.gen_range(180.0..540.0)
        } else {
            0.0
        };
        let mut gap_day = if self.dropout_s == i64::MAX && self.rng.gen_bool(0.1) {
            self.rng.gen_range(first_day..w.end_day.max(first_day + 1))
        } else {
            i32::MAX
        };
        while t < self.stop_s {
            self.trip(t);
            let mut iv = self.eff_cadence * self.rng.gen_range(0.8..1.25);
            if self.loyal {
                iv = iv.min(self.maint_due_in(t) * self.rng.gen_range(0.92..1.05));
            }
            if drift_days > 0.0 {
                let drift_from = self.dropout_s as f64 - drift_days * DAY_S as f64;
                let p = ((t as f64 - drift_from) / (drift_days * DAY_S as f64)).clamp(0.0, 1.0);
                iv *= 1.0 + 1.5 * p;
            }
            let day = Self::day(t);
            if gap_day < day + iv as i32 {
                // A busy spell: one long gap, then back to the usual rhythm.
                iv *= self.rng.gen_range(2.0..3.0);
                gap_day = i32::MAX;
            }
            let earliest = day + 14;
            let next = self.seasonal_day(day + (iv as i32).max(14), earliest);
            t = self.business_time(next);
        }
        // Accidents (only the repairs that come back to the dealer) and unscheduled visits.
        let accident_rate = if self.c.fleet { 0.15 } else { 0.05 };
        for day in self.poisson_days(accident_rate, first_day, stop_day) {
            let t = self.business_time(day);
            if t < self.stop_s {
                if self.rng.gen_bool(0.6) {
                    self.visit(t, VisitType::Service);
                }
                let at = t + self.rng.gen_range(10..=40) * 60;
                self.ro(at, RoType::Accident);
            }
        }
        // Major repairs out of warranty; after a price shock the customer does not return.
        for day in std::mem::take(&mut self.major_repairs) {
            let t = self.business_time(day);
            if t < self.stop_s {
                if self.rng.gen_bool(0.7) {
                    self.visit(t, VisitType::Service);
                }
                let at = t + self.rng.gen_range(10..=40) * 60;
                self.major_repair(at);
            }
        }
        let event_rate = 0.15
            * [1.6, 1.0, 0.6][usize::from(self.c.class)]
            * if self.in_region { 1.0 } else { 0.4 };
        for (rate, kind) in [
            (0.12, VisitType::Showroom),
            (event_rate, VisitType::Event),
            (0.25, VisitType::Inspection),
        ] {
            for day in self.poisson_days(rate * SEASONAL_MAX, first_day, stop_day) {
                let mut accept = seasonal_factor(day) / SEASONAL_MAX;
                if kind == VisitType::Inspection && day - self.c.purchase_day < 6 * 365 {
                    // Cars under six years old rarely need an inspection.
                    accept *= 0.15;
                }
                let t = self.business_time(day);
                if t < self.stop_s && self.rng.gen_bool(accept.min(1.0)) {
                    self.visit(t, kind);
                }
            }
        }
        // Summer quick services (air conditioning, tyres) between regular trips.
        for day in self.poisson_days(0.6, first_day, stop_day) {
            if matches!(date_of(day).month(), 6..=8) {
                let t = self.business_time(day);
                if t < self.stop_s {
                    self.ro(t, RoType::QuickService);
                }
            }
        }
        self.c
    }
}
