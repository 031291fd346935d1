//! The customer population: the [`World`] shared by all customers (period, dealers with
//! their service quality, recall campaigns), a [`Customer`] with its vehicle, cadence and
//! latent drop-out, the odometer and [`new_customer`], which draws a customer from its
//! own random stream, draws its drop-out from [`super::risk`] and runs its simulation.
//!
//! It may touch the catalogue, the calendar, the VIN helpers, the risk model and the
//! simulation; it writes nothing.

use super::calendar::{add_months, date_of, DAY_S};
use super::catalogue::{BRANDS, MODELS};
use super::config::GenConfig;
use super::event::Ev;
use super::ids::{make_vin, MOBILE_PREFIXES};
use super::risk::{self, Cause, Risk};
use super::sim::Sim;
use chrono::Datelike;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A generated customer: what the lines need to be rendered and the ground truth row.
#[derive(Debug, Clone)]
pub(super) struct Customer {
    pub(super) dealer: u32,
    pub(super) model: u8,
    pub(super) fleet: bool,
    /// 0 quarterly, 1 half-yearly, 2 yearly.
    pub(super) class: u8,
    pub(super) cadence_days: u32,
    pub(super) purchase_day: i32,
    /// 11-digit mobile, 0 when the customer left none.
    pub(super) phone: u64,
    pub(super) vin: [u8; 17],
    /// First day without visits (midnight UTC), if the customer drops out.
    pub(super) dropout_day: Option<i32>,
    /// The dominant driver of the drop-out, when there is one.
    pub(super) cause: Option<Cause>,
}

impl Customer {
    pub(super) fn segment(&self) -> &'static str {
        match (self.fleet, self.class) {
            (false, 0) => "private_quarterly",
            (false, 1) => "private_half_yearly",
            (false, _) => "private_yearly",
            (true, 0) => "fleet_quarterly",
            (true, 1) => "fleet_half_yearly",
            (true, _) => "fleet_yearly",
        }
    }
}

/// Global id counters, advanced in customer order so ids are deterministic.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) ro: u32,
    pub(super) visit: u32,
    pub(super) contract_event: u32,
    pub(super) contract: u32,
    pub(super) events: u64,
    pub(super) duplicates: u64,
    pub(super) corrupted: u64,
}

/// Everything shared by all customers: the period, dealers and recall campaigns.
pub(super) struct World {
    pub(super) cfg: GenConfig,
    /// Whole second at or before the start; event times are stored relative to it.
    pub(super) base_s: i64,
    /// First whole second inside the period.
    pub(super) first_s: i64,
    /// First whole second at or after the end (events must be strictly before).
    pub(super) end_s: i64,
    pub(super) start_day: i32,
    pub(super) end_day: i32,
    pub(super) dealer_cum: Vec<f64>,
    pub(super) dealer_brand: Vec<u8>,
    /// Each dealer's drop-out risk multiplier (its service quality: lower is better).
    pub(super) dealer_risk: Vec<f64>,
    /// Recall campaign start days per model.
    pub(super) recalls: Vec<Vec<i32>>,
}

impl World {
    pub(super) fn new(cfg: &GenConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let start_ms = cfg.start.0;
        let end_ms = cfg.end().0;
        let base_s = start_ms.div_euclid(1000);
        let first_s = base_s + i64::from(start_ms.rem_euclid(1000) != 0);
        let end_s = end_ms.div_euclid(1000) + i64::from(end_ms.rem_euclid(1000) != 0);
        let start_day = base_s.div_euclid(DAY_S) as i32;
        let end_day = (end_s - 1).div_euclid(DAY_S) as i32 + 1;
        let mut dealer_cum = Vec::with_capacity(cfg.dealers as usize);
        let mut dealer_brand = Vec::with_capacity(cfg.dealers as usize);
        let mut acc = 0.0;
        for _ in 0..cfg.dealers {
            // Dealers differ in size by a factor of up to ~6.
            acc += rng.gen_range(0.3..1.8);
            dealer_cum.push(acc);
            dealer_brand.push(rng.gen_range(0..BRANDS.len() as u8));
        }
        let recalls = MODELS
            .iter()
            .map(|_| {
                let mut days = Vec::new();
                let mut y = start_day;
                while y < end_day {
                    if rng.gen_bool(0.12) {
                        days.push(rng.gen_range(y..(y + 365).min(end_day)));
                    }
                    y += 365;
                }
                days
            })
            .collect();
        let dealer_risk = risk::dealer_multipliers(&mut rng, cfg.dealers as usize);
        World {
            cfg: cfg.clone(),
            base_s,
            first_s,
            end_s,
            start_day,
            end_day,
            dealer_cum,
            dealer_brand,
            dealer_risk,
            recalls,
        }
    }
}

/// A customer's odometer: a per-year km/day rate, so readings grow monotonically with
/// some year-to-year variation.
pub(super) struct Odo {
    pub(super) purchase_s: i64,
    pub(super) rate: [f64; ODO_YEARS],
    pub(super) cum: [f64; ODO_YEARS],
}

pub(super) const ODO_YEARS: usize = 48;

impl Odo {
    pub(super) fn new(rng: &mut ChaCha8Rng, purchase_s: i64, km_per_day: f64) -> Odo {
        let mut rate = [0.0; ODO_YEARS];
        let mut cum = [0.0; ODO_YEARS];
        for y in 0..ODO_YEARS {
            rate[y] = km_per_day * rng.gen_range(0.8..1.2);
            if y > 0 {
                cum[y] = cum[y - 1] + rate[y - 1] * 365.0;
            }
        }
        Odo {
            purchase_s,
            rate,
            cum,
        }
    }

    pub(super) fn year(&self, t: i64) -> (usize, f64) {
        let d = ((t - self.purchase_s) as f64 / DAY_S as f64).max(0.0);
        (((d / 365.0) as usize).min(ODO_YEARS - 1), d)
    }

    pub(super) fn km_at(&self, t: i64) -> f64 {
        let (y, d) = self.year(t);
        self.cum[y] + self.rate[y] * (d - 365.0 * y as f64)
    }

    /// Days from `t` until the odometer reads `km`.
    pub(super) fn days_until(&self, t: i64, km: f64) -> f64 {
        let now = self.km_at(t);
        if now >= km {
            0.0
        } else {
            (km - now) / self.rate[self.year(t).0]
        }
    }
}

pub(super) fn new_customer(w: &World, idx: u32, out: &mut Vec<Ev>, ctr: &mut Counters) -> Customer {
    let cfg = &w.cfg;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(u64::from(idx) + 1);
    let total = w.dealer_cum.last().copied().unwrap_or(1.0);
    let x = rng.gen_range(0.0..total);
    let dealer = w
        .dealer_cum
        .partition_point(|c| *c <= x)
        .min(w.dealer_cum.len() - 1);
    let brand = w.dealer_brand[dealer];
    let weight_sum: u32 = MODELS
        .iter()
        .filter(|m| m.brand == brand)
        .map(|m| m.weight)
        .sum();
    let mut pick = rng.gen_range(0..weight_sum);
    let mut model = 0;
    for (i, m) in MODELS.iter().enumerate().filter(|(_, m)| m.brand == brand) {
        if pick < m.weight {
            model = i;
            break;
        }
        pick -= m.weight;
    }
    let fleet = rng.gen_bool(0.08);
    let km_per_day = if fleet {
        rng.gen_range(100.0..250.0)
    } else {
        rng.gen_range(20.0..60.0)
    };
    let class: u8 = {
        let u = rng.gen_range(0..100);
        let (q, h) = if fleet { (60, 95) } else { (20, 70) };
        if u < q {
            0
        } else if u < h {
            1
        } else {
            2
        }
    };
    let nominal: f64 = [91.0, 182.0, 365.0][usize::from(class)] * rng.gen_range(0.85..1.15);
    let loyal = rng.gen_bool(0.8);
    let in_region = rng.gen_bool(0.85);
    let phone = if rng.gen_bool(0.8) {
        MOBILE_PREFIXES[rng.gen_range(0..MOBILE_PREFIXES.len())] * 100_000_000
            + rng.gen_range(0..100_000_000)
    } else {
        0
    };
    let new_buyer = rng.gen_bool(0.45) && w.end_day - 60 > w.start_day;
    let purchase_day = if new_buyer {
        rng.gen_range(w.start_day..w.end_day - 60)
    } else {
        rng.gen_range(w.start_day - 8 * 365..w.start_day - 30)
    };
    let vin = make_vin(
        &mut rng,
        BRANDS[usize::from(brand)].wmi,
        date_of(purchase_day).year(),
    );
    let purchase_s = i64::from(purchase_day) * DAY_S;
    let odo = Odo::new(&mut rng, purchase_s, km_per_day);
    let maint = (10_000.0 / odo.rate[odo.year(i64::from(w.start_day) * DAY_S).0]).min(365.0);
    let eff_cadence = if loyal {
        nominal.min(maint * rng.gen_range(0.9..1.0))
    } else {
        nominal
    };
    // An existing customer's first trip falls within one cadence of the start; a new
    // buyer's first visit is the purchase. Drop-outs happen after that first visit.
    let first_day = if new_buyer {
        purchase_day
    } else {
        let span = eff_cadence.min(f64::from(w.end_day - w.start_day));
        w.start_day + rng.gen_range(0.0..span) as i32
    };
    let risk = Risk::draw(
        w,
        idx,
        risk::Traits {
            dealer,
            in_region,
            fleet,
            class,
            purchase_day,
            new_buyer,
            first_day,
        },
    );
    let dropout_day = risk.dropout.map(|d| d.0);
    let cause = risk.dropout.map(|d| d.1);
    let dropout_s = dropout_day.map_or(i64::MAX, |d| i64::from(d) * DAY_S);
    let mut sim = Sim {
        w,
        idx,
        out,
        ctr,
        c: Customer {
            dealer: dealer as u32,
            model: model as u8,
            fleet,
            class,
            cadence_days: 0,
            purchase_day,
            phone,
            vin,
            dropout_day,
            cause,
        },
        odo,
        factor: MODELS[model].factor,
        stop_s: dropout_s.min(w.end_s),
        dropout_s,
        warranty_end_day: add_months(purchase_day, risk::WARRANTY_MONTHS),
        eff_cadence,
        loyal,
        in_region,
        last_maint_s: purchase_s,
        last_maint_km: 0.0,
        first_maint_done: !new_buyer,
        recall_done: 0,
        ew_offered: false,
        plan_until: i32::MIN,
        member_until: i32::MIN,
        initial_plan: risk.initial_plan,
        takes_extended_warranty: risk.takes_extended_warranty,
        major_repairs: risk.major_repairs,
        rng,
    };
    sim.c.cadence_days = sim.eff_cadence.round() as u32;
    if !new_buyer {
        // The last maintenance before the period began.
        let back = maint * sim.rng.gen_range(0.2..1.0);
        let t = i64::from(w.start_day) * DAY_S - (back * DAY_S as f64) as i64;
        sim.last_maint_s = t.max(purchase_s);
        sim.last_maint_km = sim.odo.km_at(sim.last_maint_s);
    }
    sim.run(new_buyer, first_day)
}
