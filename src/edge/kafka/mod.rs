//! The Kafka service (`churnwatch run`): configuration, record codecs, per-partition
//! processing with a sled outbox, the consumer-group loop, metrics and the admin HTTP
//! server. [`start`] wires them together; the binary adds signal handling.
//!
//! The service's modules, from the outside in:
//! - `service`: the processing loop, its drain and the clients' close;
//! - `rebalance`: the rebalance callback (it only records) and the loop's handling of
//!   what it recorded (take over / give up, assign / unassign);
//! - `worker`: the owned partitions between polls (decode, release, flow control,
//!   commits, gauges);
//! - `restore`: newly assigned partitions' state from local sled or, all together,
//!   from the changelog;
//! - `delivery`: the outbox through the idempotent producer;
//! - `topics`: topic checks and client configurations; `ticks`: timed chores;
//! - [`shared`]: what the admin endpoints see; [`error`]: what can go wrong.

pub mod admin;
pub mod changelog;
pub mod config;
mod delivery;
pub mod error;
pub mod io;
pub mod metrics;
pub mod partition;
mod rebalance;
mod restore;
mod service;
pub mod shared;
mod ticks;
mod topics;
mod worker;

pub use error::ServiceError;
pub use service::RunSummary;
pub use shared::{Published, Shared, HEARTBEAT_LIMIT};

use crate::core::policy::Policy;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A started service: the processing thread, the admin server and their runtime.
pub struct Running {
    /// What the admin endpoints see (metrics, partitions).
    pub shared: Arc<Shared>,
    /// The admin server's bound address.
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    processing: std::thread::JoinHandle<Result<RunSummary, ServiceError>>,
    rt: tokio::runtime::Runtime,
}

impl Running {
    /// The token that stops the service (a drain follows).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The runtime's handle (for signal handling at the binary's edge).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.handle().clone()
    }

    /// Waits for the processing loop to end (after the token is cancelled, or on a
    /// fatal error), then stops the admin server.
    pub fn wait(self) -> Result<RunSummary, ServiceError> {
        let result = self.processing.join().unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "the processing thread panicked");
            Err(ServiceError::Panicked)
        });
        self.shutdown.cancel();
        self.tracker.close();
        let tracker = self.tracker.clone();
        self.rt.block_on(async {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait()).await;
        });
        self.rt.shutdown_timeout(std::time::Duration::from_secs(1));
        result
    }

    /// Whether the processing loop has ended (after a stop, or on a fatal error that
    /// [`Running::wait`] returns).
    pub fn is_finished(&self) -> bool {
        self.processing.is_finished()
    }

    /// Cancels and waits: a graceful stop with a drain.
    pub fn stop(self) -> Result<RunSummary, ServiceError> {
        self.shutdown.cancel();
        self.wait()
    }
}

/// Starts the service: binds the admin port, then runs the consumer loop on its own
/// thread until the shutdown token is cancelled.
pub fn start(cfg: config::Config, policy: Policy) -> Result<Running, ServiceError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("churnwatch-rt")
        .enable_all()
        .build()
        .map_err(ServiceError::Runtime)?;
    let metrics = Arc::new(metrics::Metrics::new(cfg.metrics.max_dealers));
    let shared = Arc::new(
        Shared::new(metrics.clone(), policy.clone())
            .with_stuck_after(Duration::from_millis(cfg.output.stuck_after_ms)),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&cfg.admin.listen))
        .map_err(|source| ServiceError::Admin {
            addr: cfg.admin.listen.clone(),
            source,
        })?;
    let admin_addr = listener
        .local_addr()
        .map_err(|source| ServiceError::Admin {
            addr: cfg.admin.listen.clone(),
            source,
        })?;
    if let Some(f) = &cfg.admin.port_file {
        std::fs::write(f, format!("{admin_addr}\n")).map_err(|source| ServiceError::PortFile {
            path: f.clone(),
            source,
        })?;
    }
    tracing::info!(%admin_addr, "admin HTTP listening (/metrics, /healthz, /readyz, /customers/{{id}})");
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let state: Arc<dyn admin::AdminState> = shared.clone();
    tracker.spawn_on(
        admin::serve(listener, metrics, state, shutdown.clone()),
        rt.handle(),
    );
    // The KPIs scan every stored customer: a blocking task of their own, off the
    // processing thread.
    let kpi_every = std::time::Duration::from_millis(cfg.metrics.kpi_interval_ms.max(100));
    let (kpi_shared, kpi_stop) = (shared.clone(), shutdown.clone());
    tracker.spawn_on(
        async move {
            loop {
                tokio::select! {
                    _ = kpi_stop.cancelled() => break,
                    _ = tokio::time::sleep(kpi_every) => {}
                }
                let s = kpi_shared.clone();
                match tokio::task::spawn_blocking(move || s.update_kpis()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot compute the KPIs"),
                    Err(e) => tracing::warn!(error = %e, "the KPI task failed"),
                }
            }
        },
        rt.handle(),
    );
    let cfg = Arc::new(cfg);
    let (s, t, h) = (shared.clone(), shutdown.clone(), rt.handle().clone());
    let processing = std::thread::Builder::new()
        .name("churnwatch-processing".into())
        .spawn(move || service::run(cfg, policy, s, t, h))
        .map_err(ServiceError::Thread)?;
    Ok(Running {
        shared,
        admin_addr,
        shutdown,
        tracker,
        processing,
        rt,
    })
}
