//! Idempotent and transactional producers over rdkafka's threaded producer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as RdHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use super::call::{blocking, create_client, explain};
use super::config::KafkaConfig;
use super::context::{ClientShared, DeliverySlot, ProducerCtx};
use super::error::{error, from_kafka_error, from_native};
use super::ffi;
use crate::transport::{
    Delivered, ErrorCode, ErrorKind, GroupMetadata, OffsetAndMetadata, Producer, ProducerConfig,
    ProducerRecord, TopicPartition, TransportError, TransportResult,
};

type Inner = ThreadedProducer<ProducerCtx>;

/// A librdkafka producer: idempotent, acks=all, and transactional when its
/// configuration names a transactional id.
pub struct KafkaProducer {
    inner: Arc<Inner>,
    shared: Arc<ClientShared>,
    config: ProducerConfig,
    bootstrap: String,
}

/// Resolves when librdkafka reports the record's delivery.
pub struct KafkaDelivery {
    receiver: oneshot::Receiver<TransportResult<Delivered>>,
}

impl Future for KafkaDelivery {
    type Output = TransportResult<Delivered>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.receiver).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(_closed)) => Poll::Ready(Err(TransportError::new(
                ErrorKind::Fatal,
                ErrorCode::InvalidState,
                "the producer was dropped before a record's delivery was reported",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl KafkaProducer {
    pub(crate) fn new(
        config: Arc<KafkaConfig>,
        shared: Arc<ClientShared>,
        producer: ProducerConfig,
    ) -> TransportResult<Self> {
        let mut client_config = config.client_config();
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        let delivery_timeout_ms = match producer.transactional_id {
            Some(_) => producer
                .delivery_timeout_ms
                .min(producer.transaction_timeout_ms),
            None => producer.delivery_timeout_ms,
        };
        client_config
            .set("client.id", &producer.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", producer.linger_ms.to_string())
            .set(
                "request.timeout.ms",
                producer.request_timeout_ms.to_string(),
            )
            .set("message.timeout.ms", delivery_timeout_ms.to_string());
        if let Some(id) = &producer.transactional_id {
            client_config.set("transactional.id", id).set(
                "transaction.timeout.ms",
                producer.transaction_timeout_ms.to_string(),
            );
        }
        let inner: Inner = create_client(
            &config,
            client_config,
            ProducerCtx::new(Arc::clone(&shared)),
            &format!("producer '{}'", producer.client_id),
        )?;
        Ok(Self {
            inner: Arc::new(inner),
            shared,
            config: producer,
            bootstrap: config.bootstrap().to_string(),
        })
    }

    fn require_transactional(&self, call: &str) -> TransportResult<()> {
        if self.config.transactional_id.is_some() {
            return Ok(());
        }
        Err(error(
            ErrorKind::Fatal,
            ErrorCode::InvalidState,
            &format!(
                "{call} on producer '{}', which has no transactional id",
                self.config.client_id
            ),
            &self.shared.redactor,
        ))
    }

    fn what(&self, call: &str) -> String {
        match &self.config.transactional_id {
            Some(id) => format!(
                "{call} (transactional id '{id}', Kafka at {})",
                self.bootstrap
            ),
            None => format!(
                "{call} (producer '{}', Kafka at {})",
                self.config.client_id, self.bootstrap
            ),
        }
    }

    /// Runs a blocking transactional call and maps its error.
    async fn transactional_call<F>(
        &self,
        call: &str,
        timeout_ms: u32,
        body: F,
    ) -> TransportResult<()>
    where
        F: FnOnce(&Inner, Duration) -> Result<(), KafkaError> + Send + 'static,
    {
        self.require_transactional(call)?;
        let what = self.what(call);
        let inner = Arc::clone(&self.inner);
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        let result = blocking(&what, move || body(&inner, timeout)).await?;
        result.map_err(|e| {
            let mapped = from_kafka_error(&what, &e, &self.shared.redactor);
            explain(&self.shared, &what, timeout_ms, mapped)
        })
    }

    /// Waits until librdkafka holds no record of this producer (queued, in
    /// flight, or with an unserved delivery report), then returns the first
    /// delivery failure since the last flush. Delivery reports are served by
    /// the producer's own polling thread, so this only watches the count:
    /// rdkafka's `flush` would re-check only every 100 ms.
    async fn flush_within(&self, timeout_ms: u32) -> TransportResult<()> {
        let what = self.what("flush");
        let waited = tokio::time::timeout(Duration::from_millis(u64::from(timeout_ms)), async {
            let mut pause = Duration::from_micros(200);
            while self.inner.in_flight_count() > 0 {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(FLUSH_CHECK_MAX);
            }
        })
        .await;
        if let Some(failure) = self.inner.context().take_first_failure() {
            return Err(failure);
        }
        match waited {
            Ok(()) => Ok(()),
            Err(_elapsed) => Err(explain(
                &self.shared,
                &what,
                timeout_ms,
                error(
                    ErrorKind::Timeout,
                    ErrorCode::TimedOut,
                    &format!(
                        "{what}: {} records still unacknowledged after {timeout_ms} ms",
                        self.inner.in_flight_count()
                    ),
                    &self.shared.redactor,
                ),
            )),
        }
    }
}

/// The longest pause between two checks of a flush.
const FLUSH_CHECK_MAX: Duration = Duration::from_millis(5);

impl Producer for KafkaProducer {
    type Delivery = KafkaDelivery;

    async fn init_transactions(&mut self) -> TransportResult<()> {
        let timeout_ms = self.config.request_timeout_ms;
        self.transactional_call("init_transactions", timeout_ms, |inner, timeout| {
            inner.init_transactions(timeout)
        })
        .await
    }

    async fn begin_transaction(&mut self) -> TransportResult<()> {
        self.require_transactional("begin_transaction")?;
        // A failure of the previous transaction belongs to it, not this one.
        self.inner.context().take_first_failure();
        let what = self.what("begin_transaction");
        self.inner
            .begin_transaction()
            .map_err(|e| from_kafka_error(&what, &e, &self.shared.redactor))
    }

    fn send(&mut self, record: ProducerRecord) -> TransportResult<KafkaDelivery> {
        if record.key.is_none() && record.partition.is_none() {
            return Err(error(
                ErrorKind::Fatal,
                ErrorCode::InvalidRecord,
                &format!(
                    "a record for topic '{}' has neither a key nor a partition",
                    record.topic
                ),
                &self.shared.redactor,
            ));
        }
        let (sender, receiver) = oneshot::channel();
        let slot = Box::new(DeliverySlot { sender });
        let mut base: BaseRecord<'_, [u8], [u8], Box<DeliverySlot>> =
            BaseRecord::with_opaque_to(&record.topic, slot);
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers = headers.insert(RdHeader {
                    key,
                    value: Some(value.as_slice()),
                });
            }
            base = base.headers(headers);
        }
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            base = base.payload(value.as_slice());
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(timestamp_ms) = record.timestamp_ms {
            base = base.timestamp(timestamp_ms);
        }
        match self.inner.send(base) {
            Ok(()) => Ok(KafkaDelivery { receiver }),
            Err((e, _record)) => {
                let what = format!("sending a record to topic '{}'", record.topic);
                let mut mapped = from_kafka_error(&what, &e, &self.shared.redactor);
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
                    mapped.kind = ErrorKind::Retriable;
                }
                Err(mapped)
            }
        }
    }

    async fn flush(&mut self) -> TransportResult<()> {
        self.flush_within(self.config.delivery_timeout_ms).await
    }

    async fn send_offsets_to_transaction(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: &GroupMetadata,
    ) -> TransportResult<()> {
        self.require_transactional("send_offsets_to_transaction")?;
        let what = self.what(&format!(
            "send_offsets_to_transaction for group '{}' generation {}",
            group.group_id, group.generation_id
        ));
        let mut list = TopicPartitionList::with_capacity(offsets.len());
        for (partition, position) in offsets {
            list.add_partition_offset(
                &partition.topic,
                partition.partition,
                Offset::Offset(position.offset),
            )
            .map_err(|e| from_kafka_error(&what, &e, &self.shared.redactor))?;
            list.find_partition(&partition.topic, partition.partition)
                .expect("the partition was just added")
                .set_metadata(position.metadata.clone());
        }
        let inner = Arc::clone(&self.inner);
        let group = group.clone();
        let timeout_ms = self.config.request_timeout_ms;
        let result = blocking(&what, move || {
            ffi::send_offsets_to_transaction(
                inner.client(),
                &list,
                &group,
                i32::try_from(timeout_ms).unwrap_or(i32::MAX),
            )
        })
        .await?;
        result.map_err(|native| {
            explain(
                &self.shared,
                &what,
                timeout_ms,
                from_native(&what, &native, &self.shared.redactor),
            )
        })
    }

    async fn commit_transaction(&mut self) -> TransportResult<()> {
        self.require_transactional("commit_transaction")?;
        // Every send of the transaction is acknowledged or failed first; a
        // failed send makes the transaction abortable (librdkafka refuses the
        // commit too; this reports the send's own error).
        if let Err(failure) = self.flush_within(self.config.delivery_timeout_ms).await {
            let mut failure = failure;
            if failure.kind != ErrorKind::Fenced && failure.kind != ErrorKind::Fatal {
                failure.kind = ErrorKind::Abortable;
            }
            failure.message = format!("commit_transaction refused: {}", failure.message);
            return Err(failure);
        }
        let timeout_ms = self.config.request_timeout_ms;
        self.transactional_call("commit_transaction", timeout_ms, |inner, timeout| {
            inner.commit_transaction(timeout)
        })
        .await
    }

    async fn abort_transaction(&mut self) -> TransportResult<()> {
        let timeout_ms = self.config.request_timeout_ms;
        let result = self
            .transactional_call("abort_transaction", timeout_ms, |inner, timeout| {
                inner.abort_transaction(timeout)
            })
            .await;
        // Failures of the aborted transaction's sends are settled by the abort.
        self.inner.context().take_first_failure();
        result
    }
}
