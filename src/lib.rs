//! churnwatch: churn early warning for automotive after-sales.
//!
//! The library holds everything; the `churnwatch` binary is a thin CLI over it.
//! - [`event`]: the input contract, validation and normalisation;
//! - [`state`], [`engine`]: the pure churn engine (no I/O, no clock reads);
//! - [`status`]: the status-change output contract;
//! - [`store`]: sled persistence behind a small trait;
//! - [`replay`]: the file pipeline; [`generate`]: synthetic histories;
//! - [`clv`]: BG/NBD, MBG/NBD and Gamma-Gamma customer-base models (pure maths).

#![warn(missing_docs)]

pub mod avro;
pub mod clv;
pub mod engine;
pub mod event;
pub mod fit;
pub mod generate;
pub mod kpi;
pub mod policy;
pub mod replay;
pub mod service;
pub mod state;
pub mod status;
pub mod store;
pub mod time;
