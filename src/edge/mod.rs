//! The edges: adapters between the outside world and the driver. `replay` reads
//! history files and writes output files; `kafka` is the consumer-group service.
//! Edges never import each other.

pub mod kafka;
pub mod replay;
