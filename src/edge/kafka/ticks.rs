//! The processing loop's timed chores: [`Every`] says when one is due, and
//! [`produce_ticks`] writes a wall-clock tick into every owned partition of every input
//! topic, so that stream time moves (and timers fire) when no events arrive.
//!
//! Produces through the output producer it is lent; reads no state but the owned
//! partition numbers.

use crate::codec::record::{TopicDecoder, RECORD_TYPE_HEADER};
use crate::core::time::Ts;
use crate::edge::kafka::metrics::Metrics;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, Instant};
use tracing::warn;

/// A chore due every so often (never when the interval is zero).
pub(crate) struct Every {
    every: Duration,
    last: Instant,
}

impl Every {
    /// Due `every` from now on.
    pub(crate) fn new(every: Duration) -> Self {
        Every {
            every,
            last: Instant::now(),
        }
    }

    /// Whether the chore is due; if so, the next one is `every` from now.
    pub(crate) fn due(&mut self) -> bool {
        if self.every.is_zero() || self.last.elapsed() < self.every {
            return false;
        }
        self.last = Instant::now();
        true
    }
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Produces a tick at the wall clock's time to `partitions` of every input topic (in
/// each topic's own encoding; a topic whose encoding has no tick is skipped).
pub(crate) fn produce_ticks(
    producer: &FutureProducer,
    topics: &[String],
    decoders: &[TopicDecoder],
    partitions: impl Iterator<Item = i32>,
    metrics: &Metrics,
) {
    let time = Ts(now_ms()).to_rfc3339();
    for p in partitions {
        for (topic, decoder) in topics.iter().zip(decoders) {
            let Some(value) = decoder.encode_tick(&time) else {
                continue;
            };
            let headers = OwnedHeaders::new().insert(Header {
                key: RECORD_TYPE_HEADER,
                value: Some("tick"),
            });
            let rec: FutureRecord<'_, [u8], Vec<u8>> = FutureRecord::to(topic)
                .payload(&value)
                .partition(p)
                .headers(headers);
            match producer.send_result(rec) {
                Ok(_) => metrics.ticks_produced.inc(),
                Err((e, _)) => {
                    warn!(error = %e, topic, partition = p, "cannot produce a tick");
                    metrics.produce_errors.inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_interval_is_never_due() {
        let mut off = Every::new(Duration::ZERO);
        assert!(!off.due());
        let mut on = Every::new(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(2));
        assert!(on.due());
        assert!(!on.due(), "the next one is an interval away");
    }
}
