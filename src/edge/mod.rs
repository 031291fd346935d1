//! The edges: adapters between the outside world and the driver. `replay` reads
//! history files and writes output files; `kafka` is the consumer-group service;
//! `backtest` runs several policies over history files and writes a report.
//! Edges never import each other.

pub mod backtest;
pub mod kafka;
pub mod replay;
