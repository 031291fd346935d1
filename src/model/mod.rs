//! Customer-base models: special functions, the optimiser, the BG/NBD family,
//! Gamma-Gamma spend and the maximum-likelihood `fit`. Pure maths over plain data;
//! `fit` reads history files through the event contract of `crate::core`.

pub mod clv;
pub mod fit;
