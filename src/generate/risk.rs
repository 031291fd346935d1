//! The latent drop-out risk of a customer, shaped by what the seed documents report
//! (the 4S survey in `docs/domain.md`): churn rises with vehicle age and jumps when the
//! factory warranty ends, dealers differ in service quality, customers outside the
//! dealer's service region leave more often, a large repair bill without a maintenance
//! plan drives customers away, and segments differ.
//!
//! A customer's drop-out is the first event of a hazard process over days, from the day
//! after its first visit to the end of the period:
//!
//! `h(t) = h0 × age(t) × dealer × region × segment`
//!
//! - `age(t)`: [`AGE_BASE`] + [`AGE_SLOPE`] per year of vehicle age, multiplied by
//!   [`WARRANTY_JUMP`] once the [`WARRANTY_MONTHS`] factory warranty has ended (and by
//!   [`WARRANTY_FIRST_YEAR`] more in the first year after it);
//! - `dealer`: the dealer's service quality, evenly spread over [`DEALER_RISK`] and
//!   shuffled over the dealers;
//! - `region`: [`OUT_OF_REGION`] for customers outside the dealer's service region;
//! - `segment`: [`segment_multiplier`] (fleets and quarterly customers stay, yearly
//!   private customers leave);
//! - `h0` is set so that the population's share of drop-outs over the period, price
//!   shocks included, is about `dropout_rate` ([`NORMALISER`]).
//!
//! Besides, out of warranty a customer meets major repairs (a Poisson process of
//! [`MAJOR_REPAIR_PER_YEAR`]); one without a maintenance plan or extended warranty takes
//! such a bill as a price shock with probability [`price_sensitivity`] and does not come
//! back after it. The earlier of the two is the drop-out; its [`Cause`] is the dominant
//! driver at that day.
//!
//! Every draw comes from the customer's own risk stream of the seed (apart from the main
//! stream of its simulation), so the result is deterministic. Touches the world (dealer
//! multipliers, period) and the calendar; writes nothing.

use super::calendar::add_months;
use super::customer::World;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Length of the factory warranty in months.
pub(super) const WARRANTY_MONTHS: u32 = 36;
/// Age multiplier of a new car.
pub(super) const AGE_BASE: f64 = 0.45;
/// Added to the age multiplier per year of vehicle age.
pub(super) const AGE_SLOPE: f64 = 0.1;
/// Factor on the age multiplier once the factory warranty has ended.
pub(super) const WARRANTY_JUMP: f64 = 2.2;
/// Further factor in the first year after the warranty end ("warranty expired").
pub(super) const WARRANTY_FIRST_YEAR: f64 = 1.3;
/// Range of the dealers' multipliers (best, worst).
pub(super) const DEALER_RISK: (f64, f64) = (0.5, 1.8);
/// Multiplier of customers outside the dealer's service region.
pub(super) const OUT_OF_REGION: f64 = 2.3;
/// Major repairs per year out of warranty (the bills that may shock).
pub(super) const MAJOR_REPAIR_PER_YEAR: f64 = 0.12;
/// Divides the hazard so that, price shocks included, about `dropout_rate` of the
/// customers drop out (measured on the default configuration: 10,000 customers, 5 years).
pub(super) const NORMALISER: f64 = 1.75;
/// A driver is named as the cause only when its multiplier is at least this.
const CAUSE_THRESHOLD: f64 = 1.3;
/// The risk streams are apart from the customers' simulation streams (`index + 1`).
const RISK_STREAM: u64 = 1 << 62;
/// Steps of the hazard integration, in days.
const STEP_DAYS: i32 = 30;

/// The dominant driver of a drop-out, written to the ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Cause {
    /// Out of warranty: the warranty-end jump was the largest multiplier.
    WarrantyEnd,
    /// The dealer's poor service quality was.
    DealerQuality,
    /// Living outside the dealer's service region was.
    OutOfRegion,
    /// The customer's segment was.
    Segment,
    /// A major repair bill without a maintenance plan or extended warranty.
    PriceShock,
    /// No driver stood out.
    Baseline,
}

impl Cause {
    /// Every cause, in the order of the ground truth's documentation.
    #[cfg(test)]
    pub(super) const ALL: [Cause; 6] = [
        Cause::WarrantyEnd,
        Cause::DealerQuality,
        Cause::OutOfRegion,
        Cause::Segment,
        Cause::PriceShock,
        Cause::Baseline,
    ];

    /// The name in the ground truth's `cause` column.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Cause::WarrantyEnd => "warranty_end",
            Cause::DealerQuality => "dealer_quality",
            Cause::OutOfRegion => "out_of_region",
            Cause::Segment => "segment",
            Cause::PriceShock => "price_shock",
            Cause::Baseline => "baseline",
        }
    }
}

/// What the risk of a customer depends on.
pub(super) struct Traits {
    pub(super) dealer: usize,
    pub(super) in_region: bool,
    pub(super) fleet: bool,
    /// 0 quarterly, 1 half-yearly, 2 yearly.
    pub(super) class: u8,
    pub(super) purchase_day: i32,
    pub(super) new_buyer: bool,
    /// The first visit in the period (drop-outs come after it).
    pub(super) first_day: i32,
}

/// A customer's drawn risk: the drop-out and what the simulation must honour for it.
#[derive(Debug)]
pub(super) struct Risk {
    /// First day without visits and its cause.
    pub(super) dropout: Option<(i32, Cause)>,
    /// Holds a maintenance plan from the purchase (new buyers) or the period start.
    pub(super) initial_plan: bool,
    /// Takes the extended warranty when offered (or holds one, out of warranty at start).
    pub(super) takes_extended_warranty: bool,
    /// Days of the major repairs out of warranty (those before the drop-out happen).
    pub(super) major_repairs: Vec<i32>,
}

/// The dealers' multipliers: evenly spread over [`DEALER_RISK`], shuffled.
pub(super) fn dealer_multipliers(rng: &mut ChaCha8Rng, dealers: usize) -> Vec<f64> {
    if dealers <= 1 {
        return vec![1.0; dealers];
    }
    let (lo, hi) = DEALER_RISK;
    let mut m: Vec<f64> = (0..dealers)
        .map(|i| lo + (hi - lo) * i as f64 / (dealers - 1) as f64)
        .collect();
    for i in (1..dealers).rev() {
        m.swap(i, rng.gen_range(0..=i));
    }
    m
}

/// The segment's multiplier: fleets and quarterly customers are the stickiest, yearly
/// private customers (the least engaged, the lowest value) leave most.
pub(super) fn segment_multiplier(fleet: bool, class: u8) -> f64 {
    match (fleet, class) {
        (true, _) => 0.7,
        (false, 0) => 0.8,
        (false, 1) => 1.0,
        (false, _) => 1.4,
    }
}

/// Probability that a major repair bill without a plan drives the customer away.
pub(super) fn price_sensitivity(fleet: bool) -> f64 {
    if fleet {
        0.2
    } else {
        0.45
    }
}

/// The age-and-warranty multiplier at `day`, and the warranty part of it (1 under
/// warranty).
fn age_multiplier(purchase_day: i32, warranty_end: i32, day: f64) -> (f64, f64) {
    let age = ((day - f64::from(purchase_day)) / 365.25).max(0.0);
    let warranty = if day < f64::from(warranty_end) {
        1.0
    } else if day < f64::from(warranty_end) + 365.0 {
        WARRANTY_JUMP * WARRANTY_FIRST_YEAR
    } else {
        WARRANTY_JUMP
    };
    ((AGE_BASE + AGE_SLOPE * age) * warranty, warranty)
}

/// Steps `[a, b)` of the integration over `[from, to)`, split at the warranty end and one
/// year after it, with the age multiplier at each step's middle.
fn steps(
    purchase_day: i32,
    warranty_end: i32,
    from: i32,
    to: i32,
) -> impl Iterator<Item = (i32, i32, f64)> {
    let cuts = [warranty_end, warranty_end + 365];
    let mut a = from;
    std::iter::from_fn(move || {
        if a >= to {
            return None;
        }
        let mut b = (a + STEP_DAYS).min(to);
        for c in cuts {
            if a < c && c < b {
                b = c;
            }
        }
        let mid = (f64::from(a) + f64::from(b)) / 2.0;
        let m = age_multiplier(purchase_day, warranty_end, mid).0;
        let step = (a, b, m);
        a = b;
        Some(step)
    })
}

impl Risk {
    /// Draws the risk of customer `idx` from its own stream.
    pub(super) fn draw(w: &World, idx: u32, t: Traits) -> Risk {
        let cfg = &w.cfg;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(RISK_STREAM | (u64::from(idx) + 1));
        let warranty_end = add_months(t.purchase_day, WARRANTY_MONTHS);
        let initial_plan = rng.gen_bool(if t.new_buyer { 0.2 } else { 0.1 });
        let out_at_start = !t.new_buyer && warranty_end <= w.start_day;
        let takes_extended_warranty = rng.gen_bool(if out_at_start { 0.15 } else { 0.3 });
        let (from, to) = (t.first_day + 1, w.end_day);

        let dealer = w.dealer_risk[t.dealer];
        let region = if t.in_region { 1.0 } else { OUT_OF_REGION };
        let segment = segment_multiplier(t.fleet, t.class);
        let mut hazard = None;
        if from < to && cfg.dropout_rate > 0.0 {
            let years = f64::from(w.end_day - w.start_day) / 365.25;
            let rate = cfg.dropout_rate.min(0.999_999);
            let h0 = -(1.0 - rate).ln() / (years * NORMALISER) * dealer * region * segment;
            let per_day = h0 / 365.25;
            let total: f64 = steps(t.purchase_day, warranty_end, from, to)
                .map(|(a, b, m)| m * f64::from(b - a))
                .sum::<f64>()
                * per_day;
            let p = 1.0 - (-total).exp();
            let (u, v): (f64, f64) = (rng.gen(), rng.gen());
            if u < p {
                // The first event of the process, given that it comes before `to`.
                let target = -(1.0 - v * p).ln();
                let mut acc = 0.0;
                let mut day = to - 1;
                for (a, b, m) in steps(t.purchase_day, warranty_end, from, to) {
                    let step = m * per_day * f64::from(b - a);
                    if acc + step >= target {
                        let frac = ((target - acc) / step).clamp(0.0, 1.0);
                        day = a + (frac * f64::from(b - a)) as i32;
                        break;
                    }
                    acc += step;
                }
                let day = day.clamp(from, to - 1);
                let warranty = age_multiplier(t.purchase_day, warranty_end, f64::from(day)).1;
                let cause = [
                    (Cause::WarrantyEnd, warranty),
                    (Cause::DealerQuality, dealer),
                    (Cause::OutOfRegion, region),
                    (Cause::Segment, segment),
                ]
                .into_iter()
                .fold((Cause::Baseline, CAUSE_THRESHOLD), |best, c| {
                    if c.1 >= best.1 {
                        c
                    } else {
                        best
                    }
                })
                .0;
                hazard = Some((day, cause));
            }
        }

        // Major repairs out of warranty; the first one that shocks ends the history.
        let mut major_repairs = Vec::new();
        let mut shock = None;
        let exposed = !initial_plan && !takes_extended_warranty && cfg.dropout_rate > 0.0;
        let mut d = f64::from(from.max(warranty_end));
        let mean = 365.0 / MAJOR_REPAIR_PER_YEAR;
        loop {
            // Starts at or after `from`, so an empty range draws once and stops.
            let u: f64 = rng.gen();
            d += -mean * (1.0 - u).ln();
            if d >= f64::from(to) {
                break;
            }
            let day = d as i32;
            major_repairs.push(day);
            if shock.is_none()
                && exposed
                && day + 1 < to
                && rng.gen_bool(price_sensitivity(t.fleet))
            {
                shock = Some((day + 1, Cause::PriceShock));
            }
        }
        let dropout = match (hazard, shock) {
            (Some(h), Some(s)) => Some(if s.0 < h.0 { s } else { h }),
            (h, s) => h.or(s),
        };
        Risk {
            dropout,
            initial_plan,
            takes_extended_warranty,
            major_repairs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dealer_multipliers_span_the_range_and_are_a_permutation() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let m = dealer_multipliers(&mut rng, 9);
        let mut sorted = m.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(sorted.first(), Some(&DEALER_RISK.0));
        assert!((sorted[8] - DEALER_RISK.1).abs() < 1e-12);
        assert_ne!(m, sorted, "shuffled");
        assert_eq!(dealer_multipliers(&mut rng, 1), vec![1.0]);
    }

    #[test]
    fn age_multiplier_rises_and_jumps_at_the_warranty_end() {
        let (p, we) = (0, 3 * 365 + 1);
        let at = |y: f64| age_multiplier(p, we, y * 365.25).0;
        assert!(at(0.5) < at(1.5) && at(1.5) < at(2.9));
        assert!(at(3.1) > 2.0 * at(2.9), "the jump");
        assert!(
            at(4.5) < at(3.5),
            "the first year after the warranty is the worst"
        );
        assert!(at(8.0) > at(4.5), "rising again with age");
    }

    #[test]
    fn steps_cover_the_range_and_split_at_the_warranty() {
        let s: Vec<_> = steps(0, 100, 50, 500).collect();
        assert_eq!(s.first().unwrap().0, 50);
        assert_eq!(s.last().unwrap().1, 500);
        assert!(s.windows(2).all(|w| w[0].1 == w[1].0));
        assert!(s.iter().any(|x| x.1 == 100) && s.iter().any(|x| x.1 == 465));
        assert!(s.iter().all(|x| x.1 - x.0 <= STEP_DAYS));
    }
}
