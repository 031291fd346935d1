//! The models' parameters: which visit model ([`VisitModel`]), the visit-model
//! ([`BgParams`]) and spend-model ([`GgParams`]) parameters, a customer's sufficient
//! statistics ([`Rfm`]), and the parameter file that `churnwatch fit` writes and
//! `replay --model` / `run --model` load ([`ModelParams`]).
//!
//! Touches only `crate::core::time` (instants, a leaf module that depends on nothing
//! in the crate) and the parameter file itself; never `core::state`, `core::policy`
//! or anything else in the core, which depend on this module (the policy holds an
//! `Option<ModelParams>`).

use crate::core::time::{Ts, DAY_MS};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Which visit (purchase) model to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitModel {
    /// BG/NBD: dropout only after repeat visits; no-repeat customers are alive.
    BgNbd,
    /// MBG/NBD: dropout may also happen right after the first visit.
    MbgNbd,
    /// MBG/CNBD-k: MBG/NBD with Erlang-k instead of exponential times between visits
    /// (regular visitors); `k` is [`ModelParams::erlang_k`]. With `k = 1` it is MBG/NBD.
    MbgCnbdK,
}

/// Largest Erlang order `k` that `churnwatch fit` tries and a parameter file may hold.
pub const MAX_ERLANG_K: u32 = 12;

/// Parameters of the BG/NBD and MBG/NBD models (all strictly positive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgParams {
    /// Shape of the Gamma distribution of visit rates.
    pub r: f64,
    /// Rate (inverse scale, in the caller's time unit) of the Gamma distribution of visit rates.
    pub alpha: f64,
    /// First shape parameter of the Beta distribution of dropout probabilities.
    pub a: f64,
    /// Second shape parameter of the Beta distribution of dropout probabilities.
    pub b: f64,
}

/// Parameters of the Gamma-Gamma spend model (all strictly positive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GgParams {
    /// Shape of the per-visit value distribution.
    pub p: f64,
    /// Shape of the Gamma distribution of the customers' value rates `ν`.
    pub q: f64,
    /// Rate (in currency units) of the Gamma distribution of `ν`.
    pub v: f64,
}

/// Sufficient statistics in model time units: x = number of repeat visits, t_x = time
/// of last visit since first, t = time since first visit (T).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rfm {
    /// Number of repeat visits (visits after the first).
    pub x: f64,
    /// Time of the last visit, measured from the first visit (0 when `x = 0`).
    pub t_x: f64,
    /// Age of the customer: time from the first visit to the end of observation (`T`).
    pub t: f64,
}

/// The fitted models, as written to and read from a parameter file (TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    /// Which visit model.
    pub model: VisitModel,
    /// Length of the model's time unit in days (1 = days, 7 = weeks).
    pub time_unit_days: f64,
    /// Visit-model parameters.
    pub visit: BgParams,
    /// The Erlang order `k` of MBG/CNBD-k (1 to [`MAX_ERLANG_K`]); absent for the
    /// other models (files written before MBG/CNBD-k existed load unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erlang_k: Option<u32>,
    /// Spend-model parameters (absent when there were too few repeat customers).
    pub spend: Option<GgParams>,
    /// Last day of the calibration period the parameters were fitted on (`YYYY-MM-DD`,
    /// included; files written by earlier versions hold an RFC 3339 instant). The
    /// models do not use it.
    pub calibration_end: String,
    /// Customers in the calibration data.
    pub customers: u64,
    /// Total log-likelihood of the visit model at the optimum.
    pub log_likelihood: f64,
}

/// A model parameter file that cannot be read, used or written.
#[derive(Debug, Error)]
pub enum ParamsError {
    /// The file could not be read.
    #[error(
        "cannot read model parameters from {path}: {source}; check the --model path, or \
         write the file with `churnwatch fit --out {path}`"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error(
        "cannot write model parameters to {path}: {source}; check that its directory \
         exists and is writable, or pass another --out"
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file was read but its content is not a valid parameter set.
    #[error(
        "model parameter file {path} is invalid: {message}; write it with `churnwatch fit` \
         rather than by hand"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl ModelParams {
    /// Reads a parameter file and checks that every parameter is a positive number.
    pub fn load(path: &Path) -> Result<ModelParams, ParamsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ParamsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let p: ModelParams = toml::from_str(&text).map_err(|e| ParamsError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let v = &p.visit;
        let ok = [v.r, v.alpha, v.a, v.b, p.time_unit_days]
            .iter()
            .all(|x| x.is_finite() && *x > 0.0)
            && p.spend
                .is_none_or(|g| [g.p, g.q, g.v].iter().all(|x| x.is_finite() && *x > 0.0));
        if !ok {
            return Err(ParamsError::Invalid {
                path: path.to_path_buf(),
                message: "every parameter (visit r, alpha, a, b; spend p, q, v) and \
                          time_unit_days must be a positive number"
                    .into(),
            });
        }
        match (p.model, p.erlang_k) {
            (VisitModel::MbgCnbdK, Some(k)) if (1..=MAX_ERLANG_K).contains(&k) => {}
            (VisitModel::MbgCnbdK, _) => {
                return Err(ParamsError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "model mbg_cnbd_k needs erlang_k, a whole number from 1 to {MAX_ERLANG_K}"
                    ),
                })
            }
            (_, Some(_)) => {
                return Err(ParamsError::Invalid {
                    path: path.to_path_buf(),
                    message: "erlang_k belongs to model mbg_cnbd_k only; remove it or set \
                              model = \"mbg_cnbd_k\""
                        .into(),
                })
            }
            (_, None) => {}
        }
        Ok(p)
    }

    /// The Erlang order of the visit model: `erlang_k` for MBG/CNBD-k, 1 otherwise.
    pub fn k(&self) -> u32 {
        self.erlang_k.unwrap_or(1)
    }

    /// Writes the parameter file.
    pub fn save(&self, path: &Path) -> Result<(), ParamsError> {
        let text = toml::to_string_pretty(self).expect("parameters serialise");
        std::fs::write(path, text).map_err(|source| ParamsError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The recency/frequency statistics of a visit history at `now`, in model units.
    pub fn rfm(&self, first: Ts, last: Ts, visit_days: u32, now: Ts) -> Rfm {
        let unit = self.time_unit_days * DAY_MS as f64;
        Rfm {
            x: f64::from(visit_days.saturating_sub(1)),
            t_x: ((last.0 - first.0).max(0) as f64 / unit).max(0.0),
            t: ((now.0 - first.0).max(0) as f64 / unit).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ModelParams {
        ModelParams {
            model: VisitModel::BgNbd,
            time_unit_days: 7.0,
            visit: BgParams {
                r: 0.5,
                alpha: 8.0,
                a: 0.7,
                b: 3.0,
            },
            erlang_k: None,
            spend: None,
            calibration_end: "2024-01-01T00:00:00Z".into(),
            customers: 10,
            log_likelihood: -12.5,
        }
    }

    #[test]
    fn params_file_round_trips_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        sample().save(&path).unwrap();
        assert_eq!(ModelParams::load(&path).unwrap(), sample());

        let missing = dir.path().join("missing.toml");
        let e = ModelParams::load(&missing).unwrap_err().to_string();
        assert!(
            e.contains("missing.toml") && e.contains("churnwatch fit"),
            "{e}"
        );

        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("alpha = 8.0", "alpha = -8.0")).unwrap();
        let e = ModelParams::load(&path).unwrap_err();
        assert!(matches!(e, ParamsError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains("positive number"), "{e}");

        // MBG/CNBD-k round-trips with its k and is refused without one.
        let cnbd = ModelParams {
            model: VisitModel::MbgCnbdK,
            erlang_k: Some(3),
            ..sample()
        };
        cnbd.save(&path).unwrap();
        assert_eq!(ModelParams::load(&path).unwrap(), cnbd);
        for bad in [
            ModelParams {
                erlang_k: None,
                ..cnbd.clone()
            },
            ModelParams {
                erlang_k: Some(MAX_ERLANG_K + 1),
                ..cnbd.clone()
            },
            ModelParams {
                erlang_k: Some(2),
                ..sample()
            },
        ] {
            bad.save(&path).unwrap();
            let e = ModelParams::load(&path).unwrap_err().to_string();
            assert!(e.contains("erlang_k"), "{e}");
        }
        // A file without erlang_k (as earlier versions wrote) still loads.
        sample().save(&path).unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains("erlang_k"));

        let e = sample()
            .save(&dir.path().join("no-such-dir").join("m.toml"))
            .unwrap_err();
        assert!(matches!(e, ParamsError::Write { .. }), "{e}");
    }

    #[test]
    fn rfm_counts_repeat_days_in_model_units() {
        let m = sample();
        let day = |d: i64| Ts(d * DAY_MS);
        let r = m.rfm(day(0), day(14), 3, day(28));
        assert_eq!(
            r,
            Rfm {
                x: 2.0,
                t_x: 2.0,
                t: 4.0
            }
        );
        // A history seen before its first visit clamps to zero.
        let r = m.rfm(day(10), day(10), 1, day(3));
        assert_eq!(
            r,
            Rfm {
                x: 0.0,
                t_x: 0.0,
                t: 0.0
            }
        );
    }
}
