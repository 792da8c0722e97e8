//! Producing without dropping records when librdkafka's queue is full.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

/// Hands `record` to `producer`, serving delivery reports and retrying
/// while the local queue is full (back-pressure instead of an error).
pub fn send_blocking<'a, K, P, C>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
) -> Result<(), KafkaError>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: ProducerContext,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Waits until the broker acknowledged (or refused) every record handed to
/// `producer`, serving delivery reports as they come, at most `timeout`.
///
/// rust-rdkafka's `BaseProducer::flush` polls in steps of up to 100 ms
/// that each run to their end, whatever arrives: a flush then took at
/// least 100 ms whenever a record was still in flight. This one checks
/// again every millisecond.
pub fn flush<C: ProducerContext>(
    producer: &BaseProducer<C>,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        producer.poll(Duration::ZERO);
        // SAFETY: the handle is valid while `producer` lives; a zero
        // timeout only reads librdkafka's count of messages in flight.
        let left = unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), 0) };
        match left {
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => return Ok(()),
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR__TIMED_OUT
                if std::time::Instant::now() < deadline =>
            {
                producer.poll(Duration::from_millis(1));
            }
            e => return Err(KafkaError::Flush(e.into())),
        }
    }
}
