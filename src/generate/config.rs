//! What a generator run is asked for and what it reports: [`GenConfig`] with its limits
//! and validation, [`GenProgress`], [`GenSummary`] and [`GenerateError`].
//!
//! Owns the configuration contract only. It may read the engine's default stream policy
//! (to bound the disorder it may ask for) and [`Ts`]; it does no I/O and draws no random
//! numbers.

use crate::core::policy::StreamPolicy;
use crate::core::time::Ts;
use std::io;
use std::path::PathBuf;
use thiserror::Error;

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
    /// About the share of customers with a latent drop-out time inside the period (each
    /// customer's risk varies around it with vehicle age, warranty end, dealer, region,
    /// segment and price shocks; calibrated on the default configuration). 0 means nobody
    /// drops out. Default 0.35.
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

/// Progress of a [`generate`](super::generate) run, reported through its callback at
/// most about every 1% of the work. The work is measured in customer units: the first
/// `total / 2` units are the customers simulated, the second half the events written
/// (scaled to customers). The last report has `done == total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenProgress {
    /// Units done.
    pub done: u64,
    /// Units in the whole run (twice the number of customers).
    pub total: u64,
}

/// What a [`generate`](super::generate) run wrote.
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

/// Why [`generate`](super::generate) failed.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::generate;
    use crate::generate::tests::small;

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
}
