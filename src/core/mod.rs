//! The pure core: the input contract and its validation, time, the churn policy,
//! per-customer state, the engine, the status-change contract and the KPIs.
//!
//! Nothing here performs I/O or reads a clock; it may use only `crate::model` (the
//! customer-base models) besides itself. Edges, the driver and the store depend on
//! it, never the other way round.

pub mod assess;
pub mod engine;
pub mod event;
pub mod kpi;
pub mod policy;
pub mod state;
pub mod status;
pub mod time;
pub mod view;
