//! The processing loop of `churnwatch run` and its end: [`run`] prepares the topics,
//! the state directory and the clients, then polls the group consumer until the
//! shutdown token is cancelled; after each poll it handles the rebalance that poll
//! recorded, if any, then releases, commits and delivers; on shutdown it drains within
//! `shutdown.drain_timeout_ms` and closes the clients within what is left of it.
//!
//! Runs on one dedicated thread that owns the consumer and the [`Worker`] outright:
//! no state is shared with the rebalance callback (see [`super::rebalance`]). The
//! admin endpoints see the service through [`Shared`] only.

use crate::core::policy::Policy;
use crate::edge::kafka::config::Config;
use crate::edge::kafka::delivery::Delivery;
use crate::edge::kafka::error::{kafka, ServiceError};
use crate::edge::kafka::rebalance::{handle_recorded, GroupConsumer, Recorder};
use crate::edge::kafka::restore::Restorer;
use crate::edge::kafka::shared::Shared;
use crate::edge::kafka::ticks::Every;
use crate::edge::kafka::topics::{consumer_config, inputs, prepare_topics, producer_config};
use crate::edge::kafka::worker::Worker;
use crate::store::open_sled_db;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// A summary of a run, for logs and tests.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    /// Records handed to the engines.
    pub processed: u64,
}

/// At most this many records already fetched are read after a poll that returned
/// one, before the next release.
const BURST: usize = 500;

/// How long a poll waits for a record when none is fetched.
const POLL_WAIT: Duration = Duration::from_millis(50);

/// Runs the service until `shutdown` is cancelled, then drains: commits every
/// partition and delivers the outbox within `shutdown.drain_timeout_ms`.
pub(crate) fn run(
    cfg: Arc<Config>,
    policy: Policy,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    rt: tokio::runtime::Handle,
) -> Result<RunSummary, ServiceError> {
    let inputs = inputs(&cfg)?;
    let n = prepare_topics(&cfg, &inputs.topics, &rt)?;
    info!(partitions = n, topics = ?inputs.topics, "input topics co-partitioned");
    std::fs::create_dir_all(&cfg.state.dir).map_err(|source| ServiceError::StateDir {
        path: cfg.state.dir.clone(),
        source,
    })?;
    let instance_id = cfg.group_instance_id()?;
    match &instance_id {
        Some(id) => info!(instance_id = %id, "static group membership (kafka.instance_id)"),
        None => info!("dynamic group membership (kafka.instance_id = none)"),
    }
    let db = open_sled_db(&cfg.state.dir)?;
    let producer: FutureProducer = producer_config(&cfg)
        .create()
        .map_err(kafka("creating the producer"))?;
    let topics = inputs.topics.clone();
    let delivery = Delivery::new(&cfg, producer, rt, shutdown.clone(), shared.clone());
    let restorer = Restorer::new(&cfg, db, policy, topics.clone(), shared.clone());
    let mut worker = Worker::new(cfg.clone(), inputs, delivery, restorer, shared.clone());
    let consumer: GroupConsumer = consumer_config(&cfg, instance_id.as_deref())
        .create_with_context(Recorder::default())
        .map_err(kafka("creating the consumer"))?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(kafka("subscribing to the input topics"))?;
    info!(group = %cfg.kafka.group_id, "consuming");

    let result = process(
        &cfg,
        instance_id.as_deref(),
        &consumer,
        &mut worker,
        &shared,
        &shutdown,
    );
    let drain = Duration::from_millis(cfg.shutdown.drain_timeout_ms);
    let drained = drain_and_close(consumer, worker, drain);
    result?;
    if !drained {
        return Err(ServiceError::DrainTimeout(drain));
    }
    info!("drained");
    Ok(RunSummary {
        processed: shared.metrics.processed_events.get(),
    })
}

/// The loop: poll, handle what the poll recorded, read the rest of the burst, release
/// and commit, and the timed chores; until the token is cancelled or an error (among
/// them a fatal consumer error, such as being fenced by another instance with the same
/// `instance_id`).
fn process(
    cfg: &Config,
    instance_id: Option<&str>,
    consumer: &GroupConsumer,
    worker: &mut Worker,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<(), ServiceError> {
    let mut ticks = Every::new(Duration::from_millis(cfg.ticks.interval_ms));
    let mut lag = Every::new(Duration::from_millis(cfg.metrics.lag_interval_ms.max(100)));
    loop {
        shared.beat();
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if poll(consumer, worker, POLL_WAIT).map_err(|e| fatal(cfg, instance_id, e))? {
            // Read what is already fetched before the next release.
            for _ in 0..BURST {
                if !poll(consumer, worker, Duration::ZERO)
                    .map_err(|e| fatal(cfg, instance_id, e))?
                {
                    break;
                }
            }
        }
        worker.step(consumer, false)?;
        if ticks.due() {
            worker.produce_ticks();
        }
        if lag.due() {
            worker.update_lag(consumer);
        }
    }
}

/// What ends a poll: an error of the loop's own, or a fatal one of the consumer (its
/// code and librdkafka's reason), after which the consumer cannot go on.
enum PollError {
    Service(ServiceError),
    Fatal(RDKafkaErrorCode, String),
}

impl From<ServiceError> for PollError {
    fn from(e: ServiceError) -> Self {
        PollError::Service(e)
    }
}

/// The service error of a poll's error: a fenced instance gets its own.
fn fatal(cfg: &Config, instance_id: Option<&str>, e: PollError) -> ServiceError {
    match e {
        PollError::Service(e) => e,
        PollError::Fatal(RDKafkaErrorCode::FencedInstanceId, reason) => ServiceError::Fenced {
            group: cfg.kafka.group_id.clone(),
            instance_id: instance_id.unwrap_or_default().to_string(),
            reason,
        },
        PollError::Fatal(code, reason) => ServiceError::ConsumerFatal { code, reason },
    }
}

/// Polls once: a record goes to the worker; a rebalance the poll recorded is handled
/// before anything else happens. Returns whether a record came. A fatal consumer error
/// ends the loop: the consumer is unusable after it, and polling on would only spin.
fn poll(consumer: &GroupConsumer, worker: &mut Worker, wait: Duration) -> Result<bool, PollError> {
    let got = match consumer.poll(wait) {
        Some(Ok(m)) => {
            worker.on_message(&m);
            true
        }
        Some(Err(e)) => {
            // librdkafka reports a fatal error as the generic `_FATAL`; the client keeps
            // the underlying one.
            if let Some((code, reason)) = consumer.client().fatal_error() {
                error!(error = %e, code = ?code, %reason, "fatal consumer error");
                return Err(PollError::Fatal(code, reason));
            }
            if let KafkaError::MessageConsumptionFatal(code) = e {
                error!(error = %e, "fatal consumer error");
                return Err(PollError::Fatal(code, e.to_string()));
            }
            warn!(error = %e, "consumer error");
            false
        }
        None => false,
    };
    if let Err(e) = handle_recorded(consumer, worker) {
        // A take-over ended by a fatal consumer error: report it as such.
        if let Some((code, reason)) = consumer.client().fatal_error() {
            return Err(PollError::Fatal(code, reason));
        }
        return Err(e.into());
    }
    Ok(got)
}

/// Commits what was handed on and delivers the outbox within `drain`, then closes the
/// consumer (leaving the group) and the producer (flushing) within what is left of
/// it, at least a second; past that they are abandoned, the process is exiting anyway.
/// Returns whether everything was drained and closed in time.
fn drain_and_close(consumer: GroupConsumer, mut worker: Worker, drain: Duration) -> bool {
    let deadline = Instant::now() + drain;
    let mut drained = worker.drain(&consumer, deadline);
    // Leave the group without running the revoke path again.
    consumer.context().close();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        drop(worker);
        let _ = closed_tx.send(());
    });
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    if closed_rx.recv_timeout(left).is_err() {
        warn!("the Kafka clients did not close in time (broker unreachable?)");
        drained = false;
    }
    drained
}
