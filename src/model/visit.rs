//! One entry point for scoring any visit model: [`VisitScorer`] holds the model, its
//! parameters and the Erlang order, and dispatches P(alive) and the expected visits to
//! `bgnbd` (BG/NBD, MBG/NBD) or `cnbd` (MBG/CNBD-k, every `k`). The engine and the
//! CLV use it so that a new visit model needs no change there.
//!
//! Pure maths: no I/O. Uses `params`, `bgnbd` and `cnbd`.

use crate::model::params::{BgParams, ModelParams, Rfm, VisitModel};
use crate::model::{bgnbd, cnbd};

/// A visit model ready to score customers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VisitScorer {
    /// Which model.
    pub model: VisitModel,
    /// Its parameters.
    pub params: BgParams,
    /// The Erlang order of MBG/CNBD-k (ignored by the other models; 1 for them).
    pub k: u32,
}

impl VisitScorer {
    /// The scorer of a parameter file's visit model.
    pub fn of(m: &ModelParams) -> VisitScorer {
        VisitScorer {
            model: m.model,
            params: m.visit,
            k: m.k(),
        }
    }

    /// A BG/NBD or MBG/NBD scorer (`k = 1`).
    pub fn bg(model: VisitModel, params: BgParams) -> VisitScorer {
        VisitScorer {
            model,
            params,
            k: 1,
        }
    }

    /// Probability that the customer is still alive at `T`.
    pub fn p_alive(&self, rfm: Rfm) -> f64 {
        match self.model {
            VisitModel::MbgCnbdK => cnbd::p_alive(self.k, &self.params, rfm),
            m => bgnbd::p_alive(m, &self.params, rfm),
        }
    }

    /// Conditional expected number of visits in `(T, T + horizon]`.
    pub fn expected_visits(&self, rfm: Rfm, horizon: f64) -> f64 {
        match self.model {
            VisitModel::MbgCnbdK => cnbd::expected_visits(self.k, &self.params, rfm, horizon),
            m => bgnbd::expected_visits(m, &self.params, rfm, horizon),
        }
    }

    /// [`expected_visits`](Self::expected_visits) divided by P(alive), for callers that
    /// evaluate many horizons for one customer. `horizon > 0`.
    pub fn expected_visits_if_alive(&self, rfm: Rfm, horizon: f64) -> f64 {
        match self.model {
            VisitModel::MbgCnbdK => {
                cnbd::expected_visits_if_alive(self.k, &self.params, rfm, horizon)
            }
            m => bgnbd::expected_visits_if_alive(m, &self.params, rfm, horizon),
        }
    }
}
