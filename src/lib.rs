//! churnwatch: churn early warning for automotive after-sales.
//!
//! The library holds everything but the command line; it is layered:
//! - [`core`]: the input contract, time, policy, state, the pure engine, status
//!   changes and KPIs (no I/O, no clock reads);
//! - [`model`]: BG/NBD, MBG/NBD and Gamma-Gamma customer-base models and their fit;
//! - [`codec`]: JSON and Avro encodings;
//! - [`store`]: persistence of state, timers, progress and the outbox;
//! - [`edge`]: file replay and the Kafka service, which adapt I/O to the engine;
//! - [`generate`]: synthetic histories for demos, tests and benchmarks (cargo feature
//!   `generator`, on by default; the production library builds without it).

#![warn(missing_docs)]

pub mod codec;
pub mod core;
pub mod driver;
pub mod edge;
#[cfg(feature = "generator")]
pub mod generate;
pub mod model;
pub mod store;
