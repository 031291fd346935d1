//! Synthetic after-sales service histories: the workload behind `churnwatch generate`.
//!
//! This module owns the deterministic generator of realistic dealer data: customers of
//! car dealers (4S stores) with a vehicle, a visit cadence, a mileage, repair orders,
//! dealer visits and contracts, some of whom drift away and stop coming (the latent
//! drop-out recorded in the ground truth). It writes two files into an output directory:
//!
//! - [`EVENTS_FILE`] (`events.jsonl`): one input record per line, in the exact shapes that
//!   [`crate::core::event::decode_json_line`] validates, in event-time order except for the
//!   configured disorder, late deliveries and dirty records, ending with a `tick` record at
//!   the end of the period;
//! - [`GROUND_TRUTH_FILE`] (`ground_truth.csv`): one row per customer with the segment,
//!   the visit cadence and the latent drop-out date.
//!
//! The same [`GenConfig`] always produces byte-identical files: every customer draws from
//! its own ChaCha stream of the seed, nothing iterates a hash map, and amounts are written
//! with fixed decimals. The module does no terminal output (progress goes through a
//! callback) and reads no clock or environment.
//!
//! Memory is bounded by one compact record (about 44 bytes) per event plus one per
//! customer; lines are rendered one at a time straight into a buffered writer.

use crate::core::event::{ContractAction, ContractType, RoType, VisitType};
use crate::core::policy::StreamPolicy;
use crate::core::time::Ts;
use chrono::{Datelike, Months, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Name of the event file written into the output directory.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Name of the ground-truth file written into the output directory.
pub const GROUND_TRUTH_FILE: &str = "ground_truth.csv";
/// Header line of the ground-truth file.
pub const GROUND_TRUTH_HEADER: &str = "customer_id,dealer_id,segment,cadence_days,dropout_date";
/// Most customers one run may generate (each costs about 1 KB of memory while generating).
pub const MAX_CUSTOMERS: u64 = 10_000_000;
/// Most dealers one run may generate (dealer ids run from `D0001` to `D9999`).
pub const MAX_DEALERS: u32 = 9_999;
/// Longest period in years.
pub const MAX_YEARS: u32 = 30;

/// What to generate. Build it with `GenConfig { customers: …, ..GenConfig::default() }`.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    /// Number of customers (1..=[`MAX_CUSTOMERS`]).
    pub customers: u64,
    /// Number of dealers (1..=[`MAX_DEALERS`]); dealer ids are `D0001`, `D0002`, ….
    pub dealers: u32,
    /// Length of the period in years (1..=[`MAX_YEARS`]).
    pub years: u32,
    /// Seed of the random streams; the same config gives byte-identical files.
    pub seed: u64,
    /// Start of the period. Default 2021-01-01T00:00:00Z.
    pub start: Ts,
    /// Share of lines that are dirty (duplicates, bad VIN or phone, missing field,
    /// truncated JSON, negative amount, unknown RO type, bad timestamp). Default 0.01.
    pub dirty_rate: f64,
    /// Share of customers with a latent drop-out time inside the period. Default 0.35.
    pub dropout_rate: f64,
    /// Share of events delivered out of order, by up to `max_disorder_minutes`.
    /// Default 0.02.
    pub disorder_rate: f64,
    /// Largest delay of a disordered event (and of a re-sent duplicate), in minutes; at
    /// most the engine's default allowed lateness (120). Default 60.
    pub max_disorder_minutes: u32,
    /// Share of events delivered 1–10 days late. Default 0.0005.
    pub late_rate: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            customers: 10_000,
            dealers: 20,
            years: 5,
            seed: 1,
            start: Ts::ymd_hms(2021, 1, 1, 0, 0, 0),
            dirty_rate: 0.01,
            dropout_rate: 0.35,
            disorder_rate: 0.02,
            max_disorder_minutes: 60,
            late_rate: 0.0005,
        }
    }
}

impl GenConfig {
    /// End of the period: `start` plus `years` calendar years (the time of the final tick).
    pub fn end(&self) -> Ts {
        self.start.add_months(self.years.saturating_mul(12))
    }

    /// Checks the configuration; the error says which value is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), GenerateError> {
        let bad = |m: String| Err(GenerateError::InvalidConfig(m));
        if self.customers == 0 {
            return bad("customers must be at least 1 (got 0)".into());
        }
        if self.customers > MAX_CUSTOMERS {
            return bad(format!(
                "customers must be at most {MAX_CUSTOMERS} (got {}); generate several \
                 directories with different seeds instead",
                self.customers
            ));
        }
        if self.dealers == 0 || self.dealers > MAX_DEALERS {
            return bad(format!(
                "dealers must be between 1 and {MAX_DEALERS} (got {})",
                self.dealers
            ));
        }
        if self.years == 0 || self.years > MAX_YEARS {
            return bad(format!(
                "years must be between 1 and {MAX_YEARS} (got {})",
                self.years
            ));
        }
        for (name, v) in [
            ("dirty_rate", self.dirty_rate),
            ("dropout_rate", self.dropout_rate),
            ("disorder_rate", self.disorder_rate),
            ("late_rate", self.late_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} must be a share between 0 and 1 (got {v})"));
            }
        }
        if self.disorder_rate + self.late_rate > 1.0 {
            return bad(format!(
                "disorder_rate + late_rate must not exceed 1 (got {} + {})",
                self.disorder_rate, self.late_rate
            ));
        }
        let lateness = StreamPolicy::default().allowed_lateness_minutes;
        if u64::from(self.max_disorder_minutes) > lateness {
            return bad(format!(
                "max_disorder_minutes must be at most {lateness}, the engine's default allowed \
                 lateness (got {}); use late_rate for events that arrive later than that",
                self.max_disorder_minutes
            ));
        }
        if self.disorder_rate > 0.0 && self.max_disorder_minutes == 0 {
            return bad(format!(
                "disorder_rate is {} but max_disorder_minutes is 0; set max_disorder_minutes to \
                 at least 1 or disorder_rate to 0",
                self.disorder_rate
            ));
        }
        let (lo, hi) = (
            Ts::ymd_hms(1990, 1, 1, 0, 0, 0),
            Ts::ymd_hms(2100, 1, 1, 0, 0, 0),
        );
        if self.start < lo || self.end() > hi {
            return bad(format!(
                "the period {} .. {} must lie between {} and {}; choose another start or fewer years",
                self.start,
                self.end(),
                lo,
                hi
            ));
        }
        Ok(())
    }
}

/// Progress of a [`generate`] run, reported through its callback at most about every 1%
/// of the work. The work is measured in customer units: the first `total / 2` units are
/// the customers simulated, the second half the events written (scaled to customers).
/// The last report has `done == total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenProgress {
    /// Units done.
    pub done: u64,
    /// Units in the whole run (twice the number of customers).
    pub total: u64,
}

/// What a [`generate`] run wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct GenSummary {
    /// Distinct customer events generated (each with its own event id), including those
    /// that were written corrupted.
    pub events: u64,
    /// Lines written to the event file: the events, the re-sent duplicates and the final
    /// tick.
    pub lines: u64,
    /// Dirty lines among them: re-sent duplicates plus corrupted events.
    pub dirty_lines: u64,
    /// Customers generated (rows of the ground truth).
    pub customers: u64,
    /// Customers with a latent drop-out date.
    pub dropouts: u64,
    /// Files written: the event file, then the ground truth.
    pub files: Vec<PathBuf>,
    /// Start of the period.
    pub start: Ts,
    /// End of the period (the time of the final tick).
    pub end: Ts,
}

/// Why [`generate`] failed.
#[derive(Debug, Error)]
pub enum GenerateError {
    /// A configuration value is out of range; the message names it.
    #[error("invalid generator configuration: {0}")]
    InvalidConfig(String),
    /// The output directory could not be created.
    #[error("cannot create output directory {}: {source}; check the path and its permissions", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An output file could not be created or written.
    #[error("cannot write {}: {source}; check free disk space and permissions", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Generates the synthetic history described by `cfg` into `out_dir` (created if missing)
/// and returns what was written. `progress` is called at most about every 1% of the work.
pub fn generate(
    cfg: &GenConfig,
    out_dir: &Path,
    progress: &mut dyn FnMut(GenProgress),
) -> Result<GenSummary, GenerateError> {
    cfg.validate()?;
    std::fs::create_dir_all(out_dir).map_err(|source| GenerateError::CreateDir {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut prog = Progress::new(progress, cfg.customers.saturating_mul(2));
    let plan = Plan::build(cfg, &mut prog);
    let events_path = out_dir.join(EVENTS_FILE);
    write_file(&events_path, |w| plan.write_events(w, None, &mut prog))?;
    let truth_path = out_dir.join(GROUND_TRUTH_FILE);
    write_file(&truth_path, |w| plan.write_ground_truth(w))?;
    prog.finish();
    Ok(plan.summary(vec![events_path, truth_path]))
}

fn write_file(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), GenerateError> {
    let err = |source| GenerateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(err)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    body(&mut w).map_err(err)?;
    w.flush().map_err(err)
}

/// Rate-limited progress reporting (about 100 calls per run).
struct Progress<'a> {
    cb: &'a mut dyn FnMut(GenProgress),
    total: u64,
    step: u64,
    next: u64,
    last: u64,
}

impl<'a> Progress<'a> {
    fn new(cb: &'a mut dyn FnMut(GenProgress), total: u64) -> Self {
        let step = (total / 100).max(1);
        Progress {
            cb,
            total,
            step,
            next: step,
            last: 0,
        }
    }

    fn update(&mut self, done: u64) {
        let done = done.min(self.total);
        if done >= self.next && done < self.total {
            (self.cb)(GenProgress {
                done,
                total: self.total,
            });
            self.last = done;
            self.next = (done / self.step + 1) * self.step;
        }
    }

    fn finish(&mut self) {
        if self.last != self.total {
            self.last = self.total;
            (self.cb)(GenProgress {
                done: self.total,
                total: self.total,
            });
        }
    }
}

// ---------------------------------------------------------------------------------------
// Catalogue: brands (one per dealer) and vehicle models.

/// A brand sold by a dealer, with the world manufacturer identifier of its VINs.
struct Brand {
    wmi: &'static str,
}

const BRANDS: [Brand; 6] = [
    Brand { wmi: "LSV" }, // SAIC Volkswagen
    Brand { wmi: "LVG" }, // GAC Toyota
    Brand { wmi: "LHG" }, // GAC Honda
    Brand { wmi: "LGB" }, // Dongfeng Nissan
    Brand { wmi: "LSG" }, // SAIC-GM Buick
    Brand { wmi: "LBV" }, // BMW Brilliance
];

/// A vehicle model: its brand, a price factor applied to amounts and a popularity weight.
struct Model {
    name: &'static str,
    brand: u8,
    factor: f64,
    weight: u32,
}

const MODELS: [Model; 13] = [
    Model {
        name: "Lavida",
        brand: 0,
        factor: 0.9,
        weight: 5,
    },
    Model {
        name: "Passat",
        brand: 0,
        factor: 1.15,
        weight: 3,
    },
    Model {
        name: "Tiguan L",
        brand: 0,
        factor: 1.2,
        weight: 2,
    },
    Model {
        name: "Corolla",
        brand: 1,
        factor: 0.95,
        weight: 4,
    },
    Model {
        name: "Camry",
        brand: 1,
        factor: 1.15,
        weight: 3,
    },
    Model {
        name: "RAV4",
        brand: 1,
        factor: 1.1,
        weight: 3,
    },
    Model {
        name: "Civic",
        brand: 2,
        factor: 0.95,
        weight: 3,
    },
    Model {
        name: "Accord",
        brand: 2,
        factor: 1.15,
        weight: 3,
    },
    Model {
        name: "Sylphy",
        brand: 3,
        factor: 0.85,
        weight: 5,
    },
    Model {
        name: "X-Trail",
        brand: 3,
        factor: 1.05,
        weight: 3,
    },
    Model {
        name: "GL8",
        brand: 4,
        factor: 1.3,
        weight: 1,
    },
    Model {
        name: "3 Series",
        brand: 5,
        factor: 1.7,
        weight: 3,
    },
    Model {
        name: "X3",
        brand: 5,
        factor: 1.8,
        weight: 2,
    },
];

/// Mobile prefixes of the Chinese carriers.
const MOBILE_PREFIXES: [u64; 29] = [
    130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 155, 156, 157, 158, 159, 166, 177,
    180, 181, 182, 183, 185, 186, 187, 188, 189, 199,
];

/// Letters and digits a VIN may contain (no I, O, Q).
const VIN_CHARS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
/// Model-year codes (position 10 of a VIN), a 30-year cycle starting in 1980.
const VIN_YEARS: &[u8] = b"ABCDEFGHJKLMNPRSTVWXY123456789";

/// Spring Festival (Chinese New Year's Day) dates. Other years fall back to 5 February,
/// which is close enough for the seasonality of synthetic data.
const SPRING_FESTIVAL: [(i32, u32, u32); 26] = [
    (2015, 2, 19),
    (2016, 2, 8),
    (2017, 1, 28),
    (2018, 2, 16),
    (2019, 2, 5),
    (2020, 1, 25),
    (2021, 2, 12),
    (2022, 2, 1),
    (2023, 1, 22),
    (2024, 2, 10),
    (2025, 1, 29),
    (2026, 2, 17),
    (2027, 2, 6),
    (2028, 1, 26),
    (2029, 2, 13),
    (2030, 2, 3),
    (2031, 1, 23),
    (2032, 2, 11),
    (2033, 1, 31),
    (2034, 2, 19),
    (2035, 2, 8),
    (2036, 1, 28),
    (2037, 2, 15),
    (2038, 2, 4),
    (2039, 1, 24),
    (2040, 2, 12),
];

// ---------------------------------------------------------------------------------------
// Calendar helpers over whole days since the Unix epoch (UTC) and Unix seconds.

const DAY_S: i64 = 86_400;
/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i32 = 719_163;
/// China Standard Time is UTC+8; dealers open 08:30–17:30 local time.
const LOCAL_OFFSET_S: i64 = 8 * 3600;

fn date_of(day: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(day + UNIX_EPOCH_FROM_CE).unwrap_or_default()
}

fn day_of(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - UNIX_EPOCH_FROM_CE
}

fn add_months(day: i32, months: u32) -> i32 {
    date_of(day)
        .checked_add_months(Months::new(months))
        .map_or(day + months as i32 * 30, day_of)
}

fn sub_months(day: i32, months: u32) -> i32 {
    date_of(day)
        .checked_sub_months(Months::new(months))
        .map_or(day - months as i32 * 30, day_of)
}

fn spring_festival(year: i32) -> i32 {
    let (m, d) = SPRING_FESTIVAL
        .iter()
        .find(|(y, _, _)| *y == year)
        .map_or((2, 5), |(_, m, d)| (*m, *d));
    NaiveDate::from_ymd_opt(year, m, d).map_or(0, day_of)
}

/// Relative demand for unscheduled dealer visits on a day: a pre-festival rush, almost
/// nothing in the holiday week, a summer peak.
fn seasonal_factor(day: i32) -> f64 {
    let d = date_of(day);
    let off = day - spring_festival(d.year());
    if (-1..7).contains(&off) {
        0.15
    } else if (-21..-1).contains(&off) {
        1.4
    } else if matches!(d.month(), 7 | 8) {
        1.3
    } else {
        1.0
    }
}

const SEASONAL_MAX: f64 = 1.4;

// ---------------------------------------------------------------------------------------
// The compact event model: one `Ev` per line, rendered only when written.

/// Kind of dirty record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dirty {
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

const RO_DIRT: [Dirty; 8] = [
    Dirty::Duplicate,
    Dirty::BadVin,
    Dirty::BadPhone,
    Dirty::MissingField,
    Dirty::Malformed,
    Dirty::NegativeAmount,
    Dirty::UnknownRoType,
    Dirty::BadTimestamp,
];
const VISIT_DIRT: [Dirty; 5] = [
    Dirty::Duplicate,
    Dirty::BadPhone,
    Dirty::MissingField,
    Dirty::Malformed,
    Dirty::BadTimestamp,
];
const CONTRACT_DIRT: [Dirty; 6] = [
    Dirty::Duplicate,
    Dirty::BadPhone,
    Dirty::MissingField,
    Dirty::Malformed,
    Dirty::NegativeAmount,
    Dirty::BadTimestamp,
];

/// How an event reaches the stream relative to its event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    OnTime,
    /// Delayed by up to `max_disorder_minutes`.
    Disordered,
    /// Delivered 1–10 days late.
    Late,
}

/// Type-specific part of a generated event.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Body {
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
struct Ev {
    /// When it is delivered (sort key of the file).
    deliver: u32,
    /// Event time.
    time: u32,
    /// Index of the customer.
    cust: u32,
    /// Per-type serial: the number in `ro-<n>`, `v-<n>`, `k-<n>`.
    serial: u32,
    body: Body,
    /// 0 = no phone, 1..=5 = one of the free-form phone formats.
    phone_fmt: u8,
    /// 0 = canonical VIN, 1 = lower case, 2 = with spaces, 3 = absent.
    vin_fmt: u8,
    dirty: Dirty,
    /// Chooses the variant of a corruption.
    dirty_var: u8,
    delivery: Delivery,
}

/// A generated customer: what the lines need to be rendered and the ground truth row.
#[derive(Debug, Clone)]
struct Customer {
    dealer: u32,
    model: u8,
    fleet: bool,
    /// 0 quarterly, 1 half-yearly, 2 yearly.
    class: u8,
    cadence_days: u32,
    purchase_day: i32,
    /// 11-digit mobile, 0 when the customer left none.
    phone: u64,
    vin: [u8; 17],
    /// First day without visits (midnight UTC), if the customer drops out.
    dropout_day: Option<i32>,
}

impl Customer {
    fn segment(&self) -> &'static str {
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
struct Counters {
    ro: u32,
    visit: u32,
    contract_event: u32,
    contract: u32,
    events: u64,
    duplicates: u64,
    corrupted: u64,
}

/// Everything shared by all customers: the period, dealers and recall campaigns.
struct World {
    cfg: GenConfig,
    /// Whole second at or before the start; event times are stored relative to it.
    base_s: i64,
    /// First whole second inside the period.
    first_s: i64,
    /// First whole second at or after the end (events must be strictly before).
    end_s: i64,
    start_day: i32,
    end_day: i32,
    dealer_cum: Vec<f64>,
    dealer_brand: Vec<u8>,
    /// Recall campaign start days per model.
    recalls: Vec<Vec<i32>>,
}

impl World {
    fn new(cfg: &GenConfig) -> World {
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
        World {
            cfg: cfg.clone(),
            base_s,
            first_s,
            end_s,
            start_day,
            end_day,
            dealer_cum,
            dealer_brand,
            recalls,
        }
    }
}

/// A customer's odometer: a per-year km/day rate, so readings grow monotonically with
/// some year-to-year variation.
struct Odo {
    purchase_s: i64,
    rate: [f64; ODO_YEARS],
    cum: [f64; ODO_YEARS],
}

const ODO_YEARS: usize = 48;

impl Odo {
    fn new(rng: &mut ChaCha8Rng, purchase_s: i64, km_per_day: f64) -> Odo {
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

    fn year(&self, t: i64) -> (usize, f64) {
        let d = ((t - self.purchase_s) as f64 / DAY_S as f64).max(0.0);
        (((d / 365.0) as usize).min(ODO_YEARS - 1), d)
    }

    fn km_at(&self, t: i64) -> f64 {
        let (y, d) = self.year(t);
        self.cum[y] + self.rate[y] * (d - 365.0 * y as f64)
    }

    /// Days from `t` until the odometer reads `km`.
    fn days_until(&self, t: i64, km: f64) -> f64 {
        let now = self.km_at(t);
        if now >= km {
            0.0
        } else {
            (km - now) / self.rate[self.year(t).0]
        }
    }
}

/// The simulation of one customer.
struct Sim<'a> {
    w: &'a World,
    rng: ChaCha8Rng,
    idx: u32,
    out: &'a mut Vec<Ev>,
    ctr: &'a mut Counters,
    c: Customer,
    odo: Odo,
    factor: f64,
    /// No visits at or after this second (end of the period or the drop-out).
    stop_s: i64,
    dropout_s: i64,
    warranty_end_day: i32,
    /// Current cadence in days (maintenance schedule included for loyal customers).
    eff_cadence: f64,
    loyal: bool,
    in_region: bool,
    last_maint_s: i64,
    last_maint_km: f64,
    first_maint_done: bool,
    recall_done: u32,
    ew_offered: bool,
    plan_until: i32,
    member_until: i32,
}

impl<'a> Sim<'a> {
    fn business_time(&mut self, day: i32) -> i64 {
        i64::from(day) * DAY_S + self.rng.gen_range(510..=1050) * 60 - LOCAL_OFFSET_S
    }

    fn day(t: i64) -> i32 {
        t.div_euclid(DAY_S) as i32
    }

    fn cents(&mut self, lo: f64, hi: f64) -> u32 {
        (self.rng.gen_range(lo..hi) * self.factor * 100.0).round() as u32
    }

    /// Adds an event at `t` (Unix seconds) if it falls inside the period, deciding its
    /// presentation, delivery and dirtiness.
    fn push(&mut self, t: i64, body: Body) {
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

    fn ro(&mut self, t: i64, ro_type: RoType) {
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
            // Accident repairs are heavy-tailed: log-uniform over the range.
            let x = self.rng.gen_range(lo.ln()..hi.ln()).exp();
            (x * self.factor * 100.0).round() as u32
        } else {
            self.cents(lo, hi)
        };
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

    fn visit(&mut self, t: i64, visit_type: VisitType) {
        let region = if self.rng.gen_bool(0.03) {
            0
        } else if self.in_region {
            2
        } else {
            1
        };
        self.push(t, Body::Visit { visit_type, region });
    }

    fn contract_amount(&mut self, ty: ContractType) -> u32 {
        let yuan = match ty {
            ContractType::MaintenancePlan => self.rng.gen_range(1200.0..4800.0) * self.factor,
            ContractType::ExtendedWarranty => self.rng.gen_range(1800.0..6000.0) * self.factor,
            ContractType::Insurance => self.rng.gen_range(3000.0..7500.0) * self.factor,
            ContractType::Membership => {
                [0.0, 0.0, 0.0, 199.0, 299.0, 499.0][self.rng.gen_range(0..6)]
            }
        };
        yuan.round() as u32 * 100
    }

    /// A contract from signing (if `signed_at` is given) through renewals to its expiry or
    /// cancellation. Returns the day it stops running.
    fn contract_chain(
        &mut self,
        ty: ContractType,
        signed_at: Option<i64>,
        first_term: (i32, i32),
        months: u32,
        renew_p: f64,
    ) -> i32 {
        self.ctr.contract += 1;
        let contract = self.ctr.contract;
        let mut amount_cents = self.contract_amount(ty);
        let (mut start_day, mut end_day) = first_term;
        let ev = |sim: &mut Sim, t: i64, action, s, e, a| {
            sim.push(
                t,
                Body::Contract {
                    contract_type: ty,
                    action,
                    contract,
                    start_day: s,
                    end_day: e,
                    amount_cents: a,
                },
            );
        };
        let mut after = i64::MIN;
        if let Some(t) = signed_at {
            ev(
                self,
                t,
                ContractAction::Signed,
                start_day,
                end_day,
                amount_cents,
            );
            after = t;
        }
        let cancel_p = match ty {
            ContractType::MaintenancePlan => 0.04,
            ContractType::ExtendedWarranty => 0.02,
            ContractType::Insurance => 0.02,
            ContractType::Membership => 0.05,
        };
        loop {
            let term_start = i64::from(start_day) * DAY_S;
            let term_end = i64::from(end_day) * DAY_S;
            if term_start >= self.w.end_s {
                return end_day;
            }
            // Customers who leave during a prepaid term often ask for a refund.
            let prepaid = matches!(ty, ContractType::MaintenancePlan | ContractType::Membership);
            let leaves = prepaid && self.dropout_s < term_end;
            let p = if leaves { 0.3 } else { cancel_p };
            if self.rng.gen_bool(p) {
                let from =
                    term_start
                        .max(after + DAY_S)
                        .max(if leaves { self.dropout_s } else { 0 });
                if from < term_end {
                    let day = Self::day(self.rng.gen_range(from..term_end));
                    let t = self.business_time(day).max(after + 60);
                    ev(
                        self,
                        t,
                        ContractAction::Cancelled,
                        start_day,
                        end_day,
                        amount_cents,
                    );
                    return day;
                }
            }
            let renew_day = end_day - self.rng.gen_range(1..=30);
            let renew_at = self.business_time(renew_day).max(after + 60);
            if renew_at < self.dropout_s && renew_at < self.w.end_s && self.rng.gen_bool(renew_p) {
                start_day = end_day;
                end_day = add_months(start_day, months);
                amount_cents = (f64::from(amount_cents) * self.rng.gen_range(0.95..1.1) / 100.0)
                    .round() as u32
                    * 100;
                ev(
                    self,
                    renew_at,
                    ContractAction::Renewed,
                    start_day,
                    end_day,
                    amount_cents,
                );
                after = renew_at;
                continue;
            }
            // The dealer system closes expired contracts in a morning batch.
            let t = term_end + self.rng.gen_range(3600..4 * 3600);
            ev(
                self,
                t,
                ContractAction::Expired,
                start_day,
                end_day,
                amount_cents,
            );
            return end_day;
        }
    }

    /// Days from `t` until maintenance is due by the manufacturer's schedule (first
    /// service at 5,000 km or 6 months, then every 10,000 km or 12 months).
    fn maint_due_in(&self, t: i64) -> f64 {
        let (km_step, months_days, since) = if self.first_maint_done {
            (10_000.0, 365.0, self.last_maint_s)
        } else {
            (5_000.0, 182.0, self.odo.purchase_s)
        };
        let by_time = months_days - (t - since) as f64 / DAY_S as f64;
        let by_km = self.odo.days_until(t, self.last_maint_km + km_step);
        by_time.min(by_km).max(0.0)
    }

    fn maint_due_now(&self, t: i64) -> bool {
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
    fn trip(&mut self, t: i64) {
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
            if self.rng.gen_bool(0.3) {
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
        } else if maintenance && self.plan_until <= day && self.rng.gen_bool(0.05) {
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
    fn seasonal_day(&mut self, day: i32, earliest: i32) -> i32 {
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
    fn poisson_days(&mut self, rate: f64, from: i32, to: i32) -> Vec<i32> {
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

    fn run(mut self, new_buyer: bool, first_trip_day: i32) -> Customer {
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
            if self.rng.gen_bool(0.2) {
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
        let drift_days = if self.dropout_s < i64::MAX && self.rng.gen_bool(0.5) {
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

    /// Contracts an existing customer already holds when the period starts.
    fn existing_contracts(&mut self) {
        let w = self.w;
        let p = self.c.purchase_day;
        if self.rng.gen_bool(0.55) {
            // Insured through the dealer; the policy renews on the purchase anniversary.
            let mut k = 1;
            while add_months(p, 12 * k) <= w.start_day {
                k += 1;
            }
            let term = (add_months(p, 12 * (k - 1)), add_months(p, 12 * k));
            self.contract_chain(ContractType::Insurance, None, term, 12, 0.82);
        }
        if self.rng.gen_bool(0.1) {
            let months = if self.rng.gen_bool(0.5) { 12 } else { 24 };
            let end = w.start_day + self.rng.gen_range(30..(30 * months as i32));
            self.plan_until = self.contract_chain(
                ContractType::MaintenancePlan,
                None,
                (sub_months(end, months), end),
                months,
                0.35,
            );
        }
        if self.rng.gen_bool(0.12) {
            let end = w.start_day + self.rng.gen_range(1..366);
            self.member_until = self.contract_chain(
                ContractType::Membership,
                None,
                (sub_months(end, 12), end),
                12,
                0.5,
            );
        }
        if self.warranty_end_day <= w.start_day {
            self.ew_offered = true;
            if self.rng.gen_bool(0.15) {
                let months = [24, 36][self.rng.gen_range(0..2)];
                let end = add_months(self.warranty_end_day, months);
                if end > w.start_day {
                    self.contract_chain(
                        ContractType::ExtendedWarranty,
                        None,
                        (self.warranty_end_day, end),
                        months,
                        0.1,
                    );
                }
            }
        }
    }
}

/// A VIN with the brand's WMI, a model-year code, a valid check digit (position 9).
fn make_vin(rng: &mut ChaCha8Rng, wmi: &str, year: i32) -> [u8; 17] {
    let mut v = [b'0'; 17];
    v[..3].copy_from_slice(wmi.as_bytes());
    for c in v.iter_mut().take(8).skip(3) {
        *c = VIN_CHARS[rng.gen_range(0..VIN_CHARS.len())];
    }
    v[9] = VIN_YEARS[(year - 1980).rem_euclid(30) as usize];
    v[10] = VIN_CHARS[rng.gen_range(0..23)];
    for c in v.iter_mut().skip(11) {
        *c = b'0' + rng.gen_range(0..10u8);
    }
    v[8] = vin_check_digit(&v);
    v
}

/// The check digit of a VIN (position 9): transliterated characters weighted, mod 11.
fn vin_check_digit(v: &[u8; 17]) -> u8 {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let value = |c: u8| -> u32 {
        match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'H' => u32::from(c - b'A') + 1,
            b'J'..=b'N' => u32::from(c - b'J') + 1,
            b'P' => 7,
            b'R' => 9,
            b'S'..=b'Z' => u32::from(c - b'S') + 2,
            _ => 0,
        }
    };
    let sum: u32 = v.iter().zip(WEIGHTS).map(|(c, w)| value(*c) * w).sum();
    match sum % 11 {
        10 => b'X',
        d => b'0' + d as u8,
    }
}

fn new_customer(w: &World, idx: u32, out: &mut Vec<Ev>, ctr: &mut Counters) -> Customer {
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
    let dropout_day = (rng.gen_bool(cfg.dropout_rate) && first_day + 1 < w.end_day)
        .then(|| rng.gen_range(first_day + 1..w.end_day));
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
        },
        odo,
        factor: MODELS[model].factor,
        stop_s: dropout_s.min(w.end_s),
        dropout_s,
        warranty_end_day: add_months(purchase_day, 36),
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

/// All generated customers and events, events sorted by delivery.
struct Plan {
    world: World,
    customers: Vec<Customer>,
    events: Vec<Ev>,
    ctr: Counters,
}

/// What a written line is: lets the tests check every line against its intent.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineTag {
    dirty: Dirty,
    delivery: Delivery,
    tick: bool,
}

impl Plan {
    fn build(cfg: &GenConfig, prog: &mut Progress) -> Plan {
        let world = World::new(cfg);
        let mut ctr = Counters::default();
        let mut events = Vec::with_capacity((cfg.customers as usize).saturating_mul(22));
        let mut customers = Vec::with_capacity(cfg.customers as usize);
        for i in 0..cfg.customers {
            customers.push(new_customer(&world, i as u32, &mut events, &mut ctr));
            prog.update(i + 1);
        }
        // Stable: events delivered at the same second keep their generation order, so a
        // duplicate always follows its original.
        events.sort_by_key(|e| e.deliver);
        Plan {
            world,
            customers,
            events,
            ctr,
        }
    }

    fn summary(&self, files: Vec<PathBuf>) -> GenSummary {
        let cfg = &self.world.cfg;
        GenSummary {
            events: self.ctr.events,
            lines: self.events.len() as u64 + 1,
            dirty_lines: self.ctr.duplicates + self.ctr.corrupted,
            customers: self.customers.len() as u64,
            dropouts: self
                .customers
                .iter()
                .filter(|c| c.dropout_day.is_some())
                .count() as u64,
            files,
            start: cfg.start,
            end: cfg.end(),
        }
    }

    fn write_events<W: Write>(
        &self,
        w: &mut W,
        mut tags: Option<&mut Vec<LineTag>>,
        prog: &mut Progress,
    ) -> io::Result<()> {
        let mut line = String::with_capacity(512);
        let n = self.events.len() as u64;
        let customers = self.customers.len() as u64;
        for (j, ev) in self.events.iter().enumerate() {
            line.clear();
            self.render(&mut line, ev);
            line.push('\n');
            w.write_all(line.as_bytes())?;
            if let Some(t) = tags.as_deref_mut() {
                t.push(LineTag {
                    dirty: ev.dirty,
                    delivery: ev.delivery,
                    tick: false,
                });
            }
            prog.update(customers + (j as u64 + 1) * customers / n.max(1));
        }
        line.clear();
        line.push_str("{\"type\":\"tick\",\"event_time\":\"");
        push_ts(&mut line, self.world.cfg.end().0);
        line.push_str("\"}\n");
        w.write_all(line.as_bytes())?;
        if let Some(t) = tags {
            t.push(LineTag {
                dirty: Dirty::Clean,
                delivery: Delivery::OnTime,
                tick: true,
            });
        }
        Ok(())
    }

    fn write_ground_truth<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let mut line = String::with_capacity(96);
        w.write_all(GROUND_TRUTH_HEADER.as_bytes())?;
        w.write_all(b"\n")?;
        for (i, c) in self.customers.iter().enumerate() {
            line.clear();
            push_customer_id(&mut line, i as u32);
            line.push(',');
            push_dealer_id(&mut line, c.dealer);
            line.push(',');
            line.push_str(c.segment());
            line.push(',');
            push_uint(&mut line, u64::from(c.cadence_days), 1);
            line.push(',');
            if let Some(d) = c.dropout_day {
                push_date(&mut line, d);
            }
            line.push('\n');
            w.write_all(line.as_bytes())?;
        }
        Ok(())
    }

    /// Renders one event as a JSON object (no newline), corrupted as its `dirty` says.
    fn render(&self, buf: &mut String, ev: &Ev) {
        let c = &self.customers[ev.cust as usize];
        let dirty = ev.dirty;
        let var = ev.dirty_var;
        let missing = if dirty == Dirty::MissingField {
            match var % 5 {
                0..=2 => "customer_id",
                3 => "dealer_id",
                _ => match ev.body {
                    Body::Ro { .. } => "ro_number",
                    Body::Visit { .. } => "visit_type",
                    Body::Contract { .. } => "contract_id",
                },
            }
        } else {
            ""
        };
        let mut o = Obj::new(buf);
        let (ty, prefix) = match ev.body {
            Body::Ro { .. } => ("repair_order", "ro-"),
            Body::Visit { .. } => ("visit", "v-"),
            Body::Contract { .. } => ("contract", "k-"),
        };
        o.string("type", ty);
        o.key("event_id");
        o.buf.push('"');
        o.buf.push_str(prefix);
        push_uint(o.buf, u64::from(ev.serial), 1);
        o.buf.push('"');
        let secs = self.world.base_s + i64::from(ev.time);
        o.key("event_time");
        o.buf.push('"');
        if dirty == Dirty::BadTimestamp {
            push_bad_ts(o.buf, secs, var);
        } else {
            push_ts(o.buf, secs * 1000);
        }
        o.buf.push('"');
        if missing != "dealer_id" {
            o.key("dealer_id");
            o.buf.push('"');
            push_dealer_id(o.buf, c.dealer);
            o.buf.push('"');
        }
        if missing != "customer_id" {
            o.key("customer_id");
            o.buf.push('"');
            push_customer_id(o.buf, ev.cust);
            o.buf.push('"');
        }
        if dirty == Dirty::BadPhone {
            o.key("phone");
            o.buf.push('"');
            push_bad_phone(
                o.buf,
                if c.phone == 0 {
                    13_800_138_000
                } else {
                    c.phone
                },
                var,
            );
            o.buf.push('"');
        } else if ev.phone_fmt != 0 {
            o.key("phone");
            o.buf.push('"');
            push_phone(o.buf, c.phone, ev.phone_fmt);
            o.buf.push('"');
        }
        match ev.body {
            Body::Ro {
                ro_type,
                km,
                labor_cents,
                parts_cents,
            } => {
                if dirty == Dirty::BadVin {
                    o.key("vin");
                    o.buf.push('"');
                    push_bad_vin(o.buf, &c.vin, var);
                    o.buf.push('"');
                } else if ev.vin_fmt != 3 {
                    o.key("vin");
                    o.buf.push('"');
                    push_vin(o.buf, &c.vin, ev.vin_fmt);
                    o.buf.push('"');
                }
                o.string("vehicle_model", MODELS[usize::from(c.model)].name);
                o.key("vehicle_purchase_date");
                o.buf.push('"');
                push_date(o.buf, c.purchase_day);
                o.buf.push('"');
                if missing != "ro_number" {
                    o.key("ro_number");
                    o.buf.push_str("\"RO");
                    push_uint(o.buf, u64::from(c.dealer) + 1, 4);
                    o.buf.push('-');
                    push_uint(o.buf, u64::from(ev.serial), 8);
                    o.buf.push('"');
                }
                if dirty == Dirty::UnknownRoType {
                    const UNKNOWN: [&str; 5] =
                        ["oil_change", "maintainance", "PDI", "body_paint", "tyre"];
                    o.string("ro_type", UNKNOWN[usize::from(var) % UNKNOWN.len()]);
                } else {
                    o.string("ro_type", ro_type.as_str());
                }
                o.key("mileage_km");
                push_uint(o.buf, u64::from(km), 1);
                let total = i64::from(labor_cents) + i64::from(parts_cents);
                let (mut l, mut p, mut t) = (i64::from(labor_cents), i64::from(parts_cents), total);
                if dirty == Dirty::NegativeAmount {
                    match var % 3 {
                        0 => t = -t.max(100),
                        1 => l = -l.max(100),
                        _ => p = -p.max(100),
                    }
                }
                o.key("labor_amount");
                push_cents(o.buf, l);
                o.key("parts_amount");
                push_cents(o.buf, p);
                o.key("total_amount");
                push_cents(o.buf, t);
            }
            Body::Visit { visit_type, region } => {
                if missing != "visit_type" {
                    o.string("visit_type", visit_type.as_str());
                }
                if region != 0 {
                    o.key("in_service_region");
                    o.buf.push_str(if region == 2 { "true" } else { "false" });
                }
            }
            Body::Contract {
                contract_type,
                action,
                contract,
                start_day,
                end_day,
                amount_cents,
            } => {
                if missing != "contract_id" {
                    o.key("contract_id");
                    o.buf.push('"');
                    o.buf.push_str(match contract_type {
                        ContractType::MaintenancePlan => "MP-",
                        ContractType::ExtendedWarranty => "EW-",
                        ContractType::Insurance => "INS-",
                        ContractType::Membership => "MB-",
                    });
                    push_uint(o.buf, u64::from(contract), 8);
                    o.buf.push('"');
                }
                o.string("contract_type", contract_type.as_str());
                o.string("action", action.as_str());
                o.key("start_date");
                o.buf.push('"');
                push_date(o.buf, start_day);
                o.buf.push('"');
                o.key("end_date");
                o.buf.push('"');
                push_date(o.buf, end_day);
                o.buf.push('"');
                o.key("amount");
                let a = i64::from(amount_cents);
                push_cents(
                    o.buf,
                    if dirty == Dirty::NegativeAmount {
                        -a.max(100)
                    } else {
                        a
                    },
                );
            }
        }
        o.buf.push('}');
        if dirty == Dirty::Malformed {
            // Cut somewhere between 30% and 90% of the line: never a complete object.
            let len = buf.len();
            let cut = len * (30 + usize::from(var) * 60 / 255) / 100;
            buf.truncate(cut.clamp(1, len - 2));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rendering helpers: all output is ASCII, so nothing needs JSON escaping.

/// A JSON object being written field by field.
struct Obj<'a> {
    buf: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(buf: &'a mut String) -> Self {
        Obj { buf, first: true }
    }

    fn key(&mut self, k: &str) {
        self.buf.push(if self.first { '{' } else { ',' });
        self.first = false;
        self.buf.push('"');
        self.buf.push_str(k);
        self.buf.push_str("\":");
    }

    fn string(&mut self, k: &str, v: &str) {
        self.key(k);
        self.buf.push('"');
        self.buf.push_str(v);
        self.buf.push('"');
    }
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_uint(buf: &mut String, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in (digits.len() - i)..width {
        buf.push('0');
    }
    for d in &digits[i..] {
        buf.push(char::from(*d));
    }
}

/// Appends an amount in cents as a number with exactly two decimals.
fn push_cents(buf: &mut String, cents: i64) {
    if cents < 0 {
        buf.push('-');
    }
    let c = cents.unsigned_abs();
    push_uint(buf, c / 100, 1);
    buf.push('.');
    push_uint(buf, c % 100, 2);
}

fn push_date(buf: &mut String, day: i32) {
    let d = date_of(day);
    push_uint(buf, d.year().max(0) as u64, 4);
    buf.push('-');
    push_uint(buf, u64::from(d.month()), 2);
    buf.push('-');
    push_uint(buf, u64::from(d.day()), 2);
}

/// Appends an instant like [`Ts::to_rfc3339`]: UTC `Z`, milliseconds only when needed.
fn push_ts(buf: &mut String, ms: i64) {
    let secs = ms.div_euclid(1000);
    push_date(buf, secs.div_euclid(DAY_S) as i32);
    let sod = secs.rem_euclid(DAY_S) as u64;
    buf.push('T');
    push_uint(buf, sod / 3600, 2);
    buf.push(':');
    push_uint(buf, sod / 60 % 60, 2);
    buf.push(':');
    push_uint(buf, sod % 60, 2);
    let frac = ms.rem_euclid(1000) as u64;
    if frac != 0 {
        buf.push('.');
        push_uint(buf, frac, 3);
    }
    buf.push('Z');
}

/// Timestamps as broken source systems send them; none is RFC 3339.
fn push_bad_ts(buf: &mut String, secs: i64, var: u8) {
    let day = secs.div_euclid(DAY_S) as i32;
    let sod = secs.rem_euclid(DAY_S) as u64;
    let d = date_of(day);
    let (y, m, dd) = (
        d.year().max(0) as u64,
        u64::from(d.month()),
        u64::from(d.day()),
    );
    let (h, mi, s) = (sod / 3600, sod / 60 % 60, sod % 60);
    match var % 5 {
        0 => {
            // 2023/05/06 10:31:00
            push_uint(buf, y, 4);
            buf.push('/');
            push_uint(buf, m, 2);
            buf.push('/');
            push_uint(buf, dd, 2);
            buf.push(' ');
            push_uint(buf, h, 2);
            buf.push(':');
            push_uint(buf, mi, 2);
            buf.push(':');
            push_uint(buf, s, 2);
        }
        1 => {
            // 06-05-2023 10:31
            push_uint(buf, dd, 2);
            buf.push('-');
            push_uint(buf, m, 2);
            buf.push('-');
            push_uint(buf, y, 4);
            buf.push(' ');
            push_uint(buf, h, 2);
            buf.push(':');
            push_uint(buf, mi, 2);
        }
        2 => {
            // No offset: local time of the dealer system.
            let mut full = String::new();
            push_ts(&mut full, (secs + LOCAL_OFFSET_S) * 1000);
            full.pop();
            buf.push_str(&full);
        }
        3 => push_uint(buf, secs.max(0) as u64, 1),
        _ => {
            // Hour 24+ from a system that counts hours past midnight of the previous day.
            push_date(buf, day);
            buf.push('T');
            push_uint(buf, h + 24, 2);
            buf.push(':');
            push_uint(buf, mi, 2);
            buf.push_str(":00Z");
        }
    }
}

fn push_customer_id(buf: &mut String, idx: u32) {
    buf.push('C');
    push_uint(buf, u64::from(idx) + 1, 8);
}

fn push_dealer_id(buf: &mut String, idx: u32) {
    buf.push('D');
    push_uint(buf, u64::from(idx) + 1, 4);
}

/// Appends an 11-digit mobile in one of the free forms of dealer systems.
fn push_phone(buf: &mut String, phone: u64, fmt: u8) {
    let (a, b, c) = (phone / 100_000_000, phone / 10_000 % 10_000, phone % 10_000);
    match fmt {
        1 => push_uint(buf, phone, 11),
        2 => {
            push_uint(buf, a, 3);
            buf.push('-');
            push_uint(buf, b, 4);
            buf.push('-');
            push_uint(buf, c, 4);
        }
        3 => {
            buf.push_str("+86 ");
            push_uint(buf, a, 3);
            buf.push(' ');
            push_uint(buf, b, 4);
            buf.push(' ');
            push_uint(buf, c, 4);
        }
        4 => {
            push_uint(buf, a, 3);
            buf.push(' ');
            push_uint(buf, b, 4);
            buf.push(' ');
            push_uint(buf, c, 4);
        }
        _ => {
            buf.push_str("0086-");
            push_uint(buf, phone, 11);
        }
    }
}

/// Phone numbers that cannot be normalised: a digit short, a letter O typed for a zero,
/// an impossible mobile prefix, a service short code.
fn push_bad_phone(buf: &mut String, phone: u64, var: u8) {
    match var % 4 {
        0 => {
            push_uint(buf, phone / 100_000_000, 3);
            buf.push('-');
            push_uint(buf, phone / 10_000 % 10_000, 4);
            buf.push('-');
            push_uint(buf, phone % 10_000 / 10, 3);
        }
        1 => {
            let mut s = String::new();
            push_uint(&mut s, phone, 11);
            buf.push_str(&s[..3]);
            buf.push('O');
            buf.push_str(&s[4..]);
        }
        2 => {
            buf.push_str("+86 2");
            push_uint(buf, phone / 100_000_000 % 100, 2);
            buf.push(' ');
            push_uint(buf, phone / 10_000 % 10_000, 4);
            buf.push(' ');
            push_uint(buf, phone % 10_000, 4);
        }
        _ => buf.push_str("110"),
    }
}

fn push_vin(buf: &mut String, vin: &[u8; 17], fmt: u8) {
    for (i, c) in vin.iter().enumerate() {
        if fmt == 2 && (i == 3 || i == 9) {
            buf.push(' ');
        }
        let ch = char::from(*c);
        buf.push(if fmt == 1 {
            ch.to_ascii_lowercase()
        } else {
            ch
        });
    }
}

/// VINs that fail ISO 3779: one character short, one too many, or an I, O or Q typed in.
fn push_bad_vin(buf: &mut String, vin: &[u8; 17], var: u8) {
    let s: String = vin.iter().map(|c| char::from(*c)).collect();
    match var % 5 {
        0 => buf.push_str(&s[..16]),
        1 => {
            buf.push_str(&s);
            buf.push('7');
        }
        v => {
            let pos = 3 + usize::from(var / 5) % 14;
            let bad = [b'O', b'I', b'Q'][usize::from(v - 2)];
            for (i, c) in vin.iter().enumerate() {
                buf.push(char::from(if i == pos { bad } else { *c }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{decode_json_line, EventBody, Input, InvalidEvent};
    use std::collections::{BTreeMap, BTreeSet};

    fn small(seed: u64) -> GenConfig {
        GenConfig {
            customers: 300,
            dealers: 7,
            years: 3,
            seed,
            ..GenConfig::default()
        }
    }

    /// Builds a plan and renders it in memory, with a tag per line.
    fn render(cfg: &GenConfig) -> (Plan, Vec<String>, Vec<LineTag>) {
        cfg.validate().unwrap();
        let mut cb = |_: GenProgress| {};
        let mut prog = Progress::new(&mut cb, cfg.customers * 2);
        let plan = Plan::build(cfg, &mut prog);
        let mut bytes = Vec::new();
        let mut tags = Vec::new();
        plan.write_events(&mut bytes, Some(&mut tags), &mut prog)
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        assert!(text.ends_with('\n'));
        assert_eq!(lines.len(), tags.len());
        (plan, lines, tags)
    }

    fn read(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(dir.join(EVENTS_FILE)).unwrap(),
            std::fs::read(dir.join(GROUND_TRUTH_FILE)).unwrap(),
        )
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("c"),
        );
        let cfg = small(42);
        generate(&cfg, &a, &mut |_| {}).unwrap();
        generate(&cfg, &b, &mut |_| {}).unwrap();
        generate(&small(43), &c, &mut |_| {}).unwrap();
        let (ea, ta) = read(&a);
        let (eb, tb) = read(&b);
        let (ec, tc) = read(&c);
        assert!(
            ea == eb && ta == tb,
            "same config must give identical files"
        );
        assert!(ea != ec && ta != tc, "another seed must give other files");
    }

    #[test]
    fn every_line_validates_as_intended_and_every_dirty_kind_appears() {
        let cfg = GenConfig {
            dirty_rate: 0.2,
            disorder_rate: 0.05,
            late_rate: 0.01,
            ..small(5)
        };
        let (_, lines, tags) = render(&cfg);
        let mut seen = BTreeSet::new();
        let mut first_line_of: BTreeMap<String, &str> = BTreeMap::new();
        for (line, tag) in lines.iter().zip(&tags) {
            let res = decode_json_line(line);
            seen.insert(tag.dirty);
            let why = format!("{:?}: {line}", tag.dirty);
            match tag.dirty {
                Dirty::Clean => {
                    let v = res.unwrap_or_else(|e| panic!("{e} in {line}"));
                    assert!(v.issues.is_empty(), "{:?} in {line}", v.issues);
                    match v.input {
                        Input::Tick(t) => {
                            assert!(tag.tick);
                            assert_eq!(t, cfg.end());
                        }
                        Input::Event(e) => {
                            assert!(!tag.tick);
                            // Event ids are unique: only re-sent duplicates repeat one.
                            assert!(
                                first_line_of.insert(e.event_id.clone(), line).is_none(),
                                "{why}"
                            );
                            assert_eq!(e.phone.is_some(), line.contains("\"phone\""), "{why}");
                            if let EventBody::RepairOrder(r) = &e.body {
                                assert_eq!(r.vin.is_some(), line.contains("\"vin\""), "{why}");
                            }
                        }
                    }
                }
                Dirty::Duplicate => {
                    let v = res.unwrap();
                    let Input::Event(e) = v.input else {
                        panic!("{why}")
                    };
                    assert_eq!(
                        first_line_of.get(&e.event_id),
                        Some(&line.as_str()),
                        "{why}"
                    );
                }
                Dirty::BadVin => {
                    let v = res.unwrap();
                    assert_eq!(v.issues.len(), 1, "{why}");
                    assert_eq!(v.issues[0].field, "vin", "{why}");
                }
                Dirty::BadPhone => {
                    let v = res.unwrap();
                    assert_eq!(v.issues.len(), 1, "{why}");
                    assert_eq!(v.issues[0].field, "phone", "{why}");
                }
                Dirty::MissingField => {
                    assert!(
                        matches!(res, Err(InvalidEvent::Missing(_))),
                        "{res:?} {why}"
                    );
                }
                Dirty::Malformed => {
                    assert_eq!(res.unwrap_err().code(), "malformed", "{why}");
                }
                Dirty::NegativeAmount => {
                    let e = res.unwrap_err();
                    let InvalidEvent::Invalid { field, problem } = &e else {
                        panic!("{e} {why}")
                    };
                    assert!(
                        field.ends_with("amount") && problem.contains("negative"),
                        "{e} {why}"
                    );
                }
                Dirty::UnknownRoType => {
                    let e = res.unwrap_err();
                    assert!(
                        matches!(&e, InvalidEvent::Invalid { field, .. } if field == "ro_type"),
                        "{e} {why}"
                    );
                }
                Dirty::BadTimestamp => {
                    let e = res.unwrap_err();
                    assert!(
                        matches!(&e, InvalidEvent::Invalid { field, .. } if field == "event_time"),
                        "{e} {why}"
                    );
                }
            }
        }
        assert_eq!(seen.len(), 9, "clean lines and all 8 dirty kinds: {seen:?}");
        let dirty = tags.iter().filter(|t| t.dirty != Dirty::Clean).count() as f64;
        let share = dirty / lines.len() as f64;
        assert!((0.15..0.25).contains(&share), "dirty share {share}");
    }

    /// Event times of the lines that carry a valid one, with the line's tag.
    fn times(lines: &[String], tags: &[LineTag]) -> Vec<(Ts, LineTag)> {
        lines
            .iter()
            .zip(tags)
            .filter_map(|(l, t)| decode_json_line(l).ok().map(|v| (v.input.time(), *t)))
            .collect()
    }

    #[test]
    fn time_order_holds_except_for_the_configured_disorder() {
        // Without disorder, late events or dirt the file is in event-time order.
        let clean = GenConfig {
            dirty_rate: 0.0,
            disorder_rate: 0.0,
            late_rate: 0.0,
            ..small(9)
        };
        let (_, lines, tags) = render(&clean);
        let ts = times(&lines, &tags);
        assert_eq!(ts.len(), lines.len());
        assert!(ts.windows(2).all(|w| w[0].0 <= w[1].0), "not in time order");
        assert!(ts.last().unwrap().1.tick);

        // With them, only late events lag the newest time by more than the bound.
        let cfg = GenConfig {
            dirty_rate: 0.05,
            disorder_rate: 0.1,
            max_disorder_minutes: 45,
            late_rate: 0.01,
            ..small(9)
        };
        let (_, lines, tags) = render(&cfg);
        let bound = i64::from(cfg.max_disorder_minutes) * 60_000;
        let mut newest = Ts(i64::MIN);
        let (mut disordered, mut late) = (0, 0);
        for (t, tag) in times(&lines, &tags) {
            if t < newest {
                if tag.delivery == Delivery::Late {
                    late += 1;
                } else {
                    assert!(
                        newest.0 - t.0 <= bound,
                        "{t} is {} ms behind {newest}",
                        newest.0 - t.0
                    );
                    disordered += 1;
                }
            }
            newest = newest.max(t);
        }
        assert!(
            disordered > 0 && late > 0,
            "{disordered} disordered, {late} late"
        );
        let lateness = StreamPolicy::default().allowed_lateness_minutes as i64 * 60_000;
        assert!(bound <= lateness);
    }

    #[test]
    fn ground_truth_has_a_row_per_customer_and_dropouts_stop_visiting() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = small(11);
        let s = generate(&cfg, tmp.path(), &mut |_| {}).unwrap();
        assert_eq!(s.customers, cfg.customers);
        assert_eq!(
            s.files,
            vec![
                tmp.path().join(EVENTS_FILE),
                tmp.path().join(GROUND_TRUTH_FILE)
            ]
        );
        let truth = std::fs::read_to_string(tmp.path().join(GROUND_TRUTH_FILE)).unwrap();
        let mut rows = truth.lines();
        assert_eq!(rows.next(), Some(GROUND_TRUTH_HEADER));
        let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
        assert_eq!(rows.len() as u64, cfg.customers);
        let (start_date, end_date) = (cfg.start.to_date_string(), cfg.end().to_date_string());
        let mut dropout = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.len(), 5, "{r:?}");
            assert_eq!(r[0], format!("C{:08}", i + 1));
            assert!(r[1].starts_with('D') && r[1].len() == 5, "{r:?}");
            assert!(
                r[2].starts_with("private_") || r[2].starts_with("fleet_"),
                "{r:?}"
            );
            let cadence: u32 = r[3].parse().unwrap();
            assert!((14..=420).contains(&cadence), "{r:?}");
            if !r[4].is_empty() {
                assert!(
                    r[4] > start_date.as_str() && r[4] < end_date.as_str(),
                    "{r:?}"
                );
                dropout.insert(r[0].to_string(), r[4].to_string());
            }
        }
        assert_eq!(dropout.len() as u64, s.dropouts);
        let share = s.dropouts as f64 / s.customers as f64;
        assert!((0.25..0.45).contains(&share), "dropout share {share}");
        let events = std::fs::read_to_string(tmp.path().join(EVENTS_FILE)).unwrap();
        let mut visits_checked = 0;
        for line in events.lines() {
            let Ok(v) = decode_json_line(line) else {
                continue;
            };
            let Input::Event(e) = v.input else { continue };
            if let (true, Some(d)) = (e.is_visit(), dropout.get(&e.customer_id)) {
                assert!(
                    e.event_time.to_date_string() < *d,
                    "visit after drop-out: {line}"
                );
                visits_checked += 1;
            }
        }
        assert!(visits_checked > 100);
    }

    #[test]
    fn summary_matches_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = small(3);
        let s = generate(&cfg, tmp.path(), &mut |_| {}).unwrap();
        let events = std::fs::read_to_string(tmp.path().join(EVENTS_FILE)).unwrap();
        assert_eq!(events.lines().count() as u64, s.lines);
        assert!(s.events < s.lines && s.dirty_lines > 0 && s.dirty_lines < s.lines / 20);
        assert_eq!((s.start, s.end), (cfg.start, cfg.end()));
        let per_customer = s.events as f64 / s.customers as f64 * 5.0 / f64::from(cfg.years);
        assert!(
            (15.0..=25.0).contains(&per_customer),
            "{per_customer} events per customer over 5 years"
        );
    }

    #[test]
    fn histories_are_realistic() {
        let cfg = GenConfig {
            customers: 600,
            years: 5,
            dirty_rate: 0.0,
            ..small(21)
        };
        let (plan, lines, _) = render(&cfg);
        let mut with_events = BTreeSet::new();
        for e in &plan.events {
            with_events.insert(e.cust);
        }
        assert_eq!(
            with_events.len(),
            plan.customers.len(),
            "every customer has events"
        );
        let mut ro_types = BTreeSet::new();
        let mut visit_types = BTreeSet::new();
        let mut contracts = BTreeSet::new();
        let mut odometer: BTreeMap<String, Vec<(Ts, f64)>> = BTreeMap::new();
        let (mut lower_vin, mut spaced_vin, mut in_region, mut visits) = (0, 0, 0, 0);
        let mut phone_forms = BTreeSet::new();
        for line in &lines {
            let Input::Event(e) = decode_json_line(line).unwrap().input else {
                continue;
            };
            assert!(
                e.event_time >= cfg.start && e.event_time < cfg.end(),
                "{line}"
            );
            let raw: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(p) = raw["phone"].as_str() {
                phone_forms.insert(
                    p.chars()
                        .filter(|c| !c.is_ascii_digit())
                        .collect::<String>(),
                );
            }
            match &e.body {
                EventBody::RepairOrder(r) => {
                    ro_types.insert(r.ro_type);
                    let (l, p) = (r.labor_amount.unwrap(), r.parts_amount.unwrap());
                    assert!((l + p - r.total_amount).abs() < 0.005, "{line}");
                    let range = match r.ro_type {
                        RoType::Maintenance => 400.0 * 0.85..1500.0 * 1.8,
                        RoType::Accident => 2000.0 * 0.85..20000.0 * 1.8,
                        RoType::GeneralRepair => 500.0 * 0.85..5000.0 * 1.8,
                        _ => 80.0 * 0.85..5000.0 * 1.8,
                    };
                    assert!(range.contains(&r.total_amount), "{line}");
                    let vin = raw["vin"].as_str().unwrap_or("");
                    lower_vin += usize::from(vin.chars().any(|c| c.is_ascii_lowercase()));
                    spaced_vin += usize::from(vin.contains(' '));
                    let model = r.vehicle_model.clone().unwrap();
                    assert!(MODELS.iter().any(|m| m.name == model), "{line}");
                    assert!(r.vehicle_purchase_date.unwrap() < e.event_time, "{line}");
                    odometer
                        .entry(e.customer_id.clone())
                        .or_default()
                        .push((e.event_time, r.mileage_km.unwrap()));
                }
                EventBody::Visit(v) => {
                    visit_types.insert(v.visit_type.as_str());
                    visits += 1;
                    in_region += usize::from(v.in_service_region == Some(true));
                }
                EventBody::Contract(k) => {
                    contracts.insert((k.contract_type.as_str(), k.action));
                    assert!(k.start_date.unwrap() <= k.end_date.unwrap());
                }
            }
        }
        assert_eq!(ro_types.len(), 7, "{ro_types:?}");
        assert_eq!(visit_types.len(), 4, "{visit_types:?}");
        for ty in ContractType::NAMES {
            for action in [
                ContractAction::Signed,
                ContractAction::Renewed,
                ContractAction::Expired,
            ] {
                assert!(contracts.contains(&(ty, action)), "no {ty} {action:?}");
            }
        }
        assert!(contracts
            .iter()
            .any(|(_, a)| *a == ContractAction::Cancelled));
        assert!(lower_vin > 0 && spaced_vin > 0);
        assert!(phone_forms.len() >= 4, "{phone_forms:?}");
        let region_share = in_region as f64 / visits as f64;
        assert!((0.7..0.95).contains(&region_share), "{region_share}");
        for (cust, mut readings) in odometer {
            readings.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            assert!(
                readings.windows(2).all(|w| w[0].1 <= w[1].1),
                "odometer of {cust} goes back"
            );
        }
        for c in &plan.customers {
            assert!(normalize_vin_ok(&c.vin));
        }
    }

    fn normalize_vin_ok(vin: &[u8; 17]) -> bool {
        let s: String = vin.iter().map(|c| char::from(*c)).collect();
        crate::core::event::normalize_vin(&s).is_ok() && vin[8] == vin_check_digit(vin)
    }

    #[test]
    fn fewer_visits_in_the_spring_festival_week_than_before_it() {
        let cfg = GenConfig {
            customers: 2000,
            years: 3,
            dirty_rate: 0.0,
            ..small(8)
        };
        let mut cb = |_: GenProgress| {};
        let mut prog = Progress::new(&mut cb, cfg.customers * 2);
        let plan = Plan::build(&cfg, &mut prog);
        let (mut holiday, mut before) = (0.0, 0.0);
        for e in &plan.events {
            let day = ((plan.world.base_s + i64::from(e.time)).div_euclid(DAY_S)) as i32;
            let off = day - spring_festival(date_of(day).year());
            if (0..7).contains(&off) {
                holiday += 1.0 / 7.0;
            } else if (-21..-1).contains(&off) {
                before += 1.0 / 20.0;
            }
        }
        assert!(
            holiday * 2.0 < before,
            "per day: {holiday} in the holiday week, {before} before"
        );
    }

    #[test]
    fn config_errors_say_what_is_wrong() {
        let cases: Vec<(GenConfig, &str)> = vec![
            (
                GenConfig {
                    customers: 0,
                    ..small(1)
                },
                "customers must be at least 1",
            ),
            (
                GenConfig {
                    customers: MAX_CUSTOMERS + 1,
                    ..small(1)
                },
                "customers must be at most",
            ),
            (
                GenConfig {
                    dealers: 0,
                    ..small(1)
                },
                "dealers must be between 1 and 9999 (got 0)",
            ),
            (
                GenConfig {
                    years: 0,
                    ..small(1)
                },
                "years must be between 1 and 30 (got 0)",
            ),
            (
                GenConfig {
                    years: 31,
                    ..small(1)
                },
                "years must be between 1 and 30 (got 31)",
            ),
            (
                GenConfig {
                    dirty_rate: 1.5,
                    ..small(1)
                },
                "dirty_rate must be a share between 0 and 1",
            ),
            (
                GenConfig {
                    dropout_rate: -0.1,
                    ..small(1)
                },
                "dropout_rate must be a share",
            ),
            (
                GenConfig {
                    disorder_rate: f64::NAN,
                    ..small(1)
                },
                "disorder_rate must be a share",
            ),
            (
                GenConfig {
                    late_rate: 2.0,
                    ..small(1)
                },
                "late_rate must be a share",
            ),
            (
                GenConfig {
                    max_disorder_minutes: 121,
                    ..small(1)
                },
                "max_disorder_minutes must be at most 120",
            ),
            (
                GenConfig {
                    max_disorder_minutes: 0,
                    ..small(1)
                },
                "set max_disorder_minutes to at least 1 or disorder_rate to 0",
            ),
            (
                GenConfig {
                    start: Ts::ymd_hms(1980, 1, 1, 0, 0, 0),
                    ..small(1)
                },
                "must lie between",
            ),
        ];
        for (cfg, want) in cases {
            let e = cfg.validate().unwrap_err();
            assert!(matches!(e, GenerateError::InvalidConfig(_)));
            assert!(e.to_string().contains(want), "`{e}` lacks `{want}`");
            let tmp = tempfile::tempdir().unwrap();
            let out = tmp.path().join("never");
            assert!(generate(&cfg, &out, &mut |_| {}).is_err());
            assert!(!out.exists(), "nothing is written for an invalid config");
        }
        GenConfig::default().validate().unwrap();
        GenConfig {
            disorder_rate: 0.0,
            max_disorder_minutes: 0,
            ..small(1)
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn io_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let e = generate(&small(1), &file, &mut |_| {}).unwrap_err();
        assert!(matches!(e, GenerateError::CreateDir { .. }), "{e}");
        assert!(e.to_string().contains(&file.display().to_string()), "{e}");
        // The events file exists as a directory: it cannot be created.
        let dir = tmp.path().join("out");
        std::fs::create_dir_all(dir.join(EVENTS_FILE)).unwrap();
        let e = generate(&small(1), &dir, &mut |_| {}).unwrap_err();
        assert!(matches!(e, GenerateError::Write { .. }), "{e}");
        assert!(e.to_string().contains(EVENTS_FILE), "{e}");
    }

    #[test]
    fn progress_is_rate_limited_and_completes() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = small(2);
        let mut calls = Vec::new();
        generate(&cfg, tmp.path(), &mut |p| calls.push(p)).unwrap();
        assert!(calls.len() <= 102, "{} calls", calls.len());
        assert!(calls.len() >= 50, "{} calls", calls.len());
        assert!(calls.windows(2).all(|w| w[0].done < w[1].done));
        assert!(calls.iter().all(|p| p.total == cfg.customers * 2));
        assert_eq!(calls.last().unwrap().done, cfg.customers * 2);
        // A single customer still ends with a complete report.
        let mut calls = Vec::new();
        let one = GenConfig {
            customers: 1,
            years: 1,
            ..small(2)
        };
        generate(&one, &tmp.path().join("one"), &mut |p| calls.push(p)).unwrap();
        assert_eq!(calls.last(), Some(&GenProgress { done: 2, total: 2 }));
    }

    #[test]
    fn formatting_helpers() {
        for ms in [0, 1_609_459_200_000, 1_700_000_123_456, 951_782_400_000] {
            let mut s = String::new();
            push_ts(&mut s, ms);
            assert_eq!(s, Ts(ms).to_rfc3339());
        }
        let mut s = String::new();
        push_cents(&mut s, -58_050);
        s.push(' ');
        push_cents(&mut s, 7);
        s.push(' ');
        push_uint(&mut s, 42, 4);
        assert_eq!(s, "-580.50 0.07 0042");
        // The textbook example of a VIN check digit.
        let vin: [u8; 17] = *b"1M8GDM9AXKP042788";
        assert_eq!(vin_check_digit(&vin), b'X');
        for fmt in 1..=5 {
            let mut p = String::new();
            push_phone(&mut p, 13_800_138_000, fmt);
            assert_eq!(
                crate::core::event::normalize_phone(&p).unwrap(),
                "+8613800138000",
                "{p}"
            );
        }
        for var in 0..8 {
            let mut p = String::new();
            push_bad_phone(&mut p, 13_800_138_000, var);
            assert!(crate::core::event::normalize_phone(&p).is_err(), "{p}");
            let mut v = String::new();
            push_bad_vin(&mut v, &vin, var * 7);
            assert!(crate::core::event::normalize_vin(&v).is_err(), "{v}");
            let mut t = String::new();
            push_bad_ts(&mut t, 1_683_369_060, var);
            assert!(Ts::parse_rfc3339(&t).is_err(), "{t}");
        }
        assert!(
            std::mem::size_of::<Ev>() <= 48,
            "{}",
            std::mem::size_of::<Ev>()
        );
    }
}
