//! Customer-base models for non-contractual settings: who is still a customer, how
//! often will they come back, and what are they worth.
//!
//! After-sales customers never cancel a contract; they just stop coming. The models
//! infer that unobserved "death" from each customer's visit history, summarised by
//! three sufficient statistics ([`params::Rfm`]): the number of *repeat* visits `x`,
//! the time of the last visit `t_x` and the age `T`, both measured from the first visit
//! in whatever time unit the caller chooses (days, weeks: the fitted `alpha` carries
//! the unit).
//!
//! Modules, each depending only on those listed before it:
//! - [`hash`]: a stable identifier hash (event-id de-duplication), shared with the core;
//! - [`special`]: `ln Γ`, digamma, log-Pochhammer and the Gauss hypergeometric function;
//! - [`params`]: the parameter types and the parameter file ([`params::ModelParams`]);
//! - [`optimise`]: multi-start BFGS, standard errors, [`optimise::Fit`] and
//!   [`optimise::OptimiseError`];
//! - [`bgnbd`]: the BG/NBD and MBG/NBD visit models (likelihood, P(alive), expected
//!   visits);
//! - [`bgnbd_fit`]: their maximum-likelihood fit;
//! - [`cnbd`]: the MBG/CNBD-k visit model (Erlang-k gaps: regular visitors), its
//!   likelihood, P(alive), expected visits and fit with the choice of `k`;
//! - [`visit`]: [`visit::VisitScorer`], one entry point for scoring any visit model;
//! - [`gamma_gamma`]: the Gamma-Gamma spend model, its fit, and CLV;
//! - [`fit`]: the `churnwatch fit` command (reads history, fits, checks on a holdout).
//!
//! Everything but `params` (the parameter file) and `fit` (history files) is pure
//! maths over plain data. The layer may use `crate::core::time` and, in `fit`, the event
//! contract `crate::core::event`; it never imports `core::state`, `core::policy` or the
//! engine, which depend on it.

pub mod bgnbd;
pub mod bgnbd_fit;
pub mod cnbd;
pub mod fit;
pub mod gamma_gamma;
pub mod hash;
pub mod optimise;
pub mod params;
pub mod special;
#[cfg(test)]
mod test_support;
pub mod visit;
