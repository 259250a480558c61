//! The simulated cluster's producer: always idempotent with acks=all, and
//! transactional with a transactional id.
//!
//! [`core::ProducerCore`] holds the state; this module does the I/O: a
//! background sender task (spawned on the host's `LocalSet`) assigns records
//! to partitions once metadata is known, obtains the producer id, adds
//! partitions to the transaction, drains ready batches into Produce
//! requests (one task per request) and feeds the answers back. The
//! transaction calls (init, commit, abort, send offsets) run in the caller's
//! future and talk to the coordinators directly.

mod core;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use eddyline_engine::transport::{
    Delivered, ErrorCode, ErrorKind, GroupMetadata, OffsetAndMetadata, Producer, ProducerConfig,
    ProducerRecord, TopicPartition, TransportError, TransportResult,
};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use self::core::{BatchOutcome, CoreSettings, Identity, ProducePlan, ProducerCore, TxnState};
use super::connection::{Endpoint, NetError};
use super::metadata::TopicState;
use super::network::{
    Attempt, Backoff, CONCURRENT_TRANSACTIONS_BACKOFF, Coordinator, Lane, NetworkClient,
};
use super::signal::Signal;
use super::{errors, ms, now, wall_clock_ms};
use crate::protocol::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, Api, CoordinatorType, EndTxnRequest, EndTxnResponse,
    InitProducerIdRequest, InitProducerIdResponse, PartitionError, ProduceRequest, ProduceResponse,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse, answer_for,
};

/// Kafka's OPERATION_NOT_ATTEMPTED: AddPartitionsToTxn did not try this
/// partition because another one failed.
const OPERATION_NOT_ATTEMPTED: i32 = 55;
/// How much longer than the broker's acks timeout the client waits for a
/// Produce answer.
const PRODUCE_TIMEOUT_MARGIN_MS: u32 = 1_000;
/// Bytes a record takes in a batch beyond its key, value and headers
/// (Kafka's record overhead, rounded up).
const RECORD_OVERHEAD_BYTES: usize = 21;

struct Shared {
    net: NetworkClient,
    config: ProducerConfig,
    core: RefCell<ProducerCore>,
    /// Raised on every change the sender or a waiting call cares about.
    signal: Signal,
    start: Instant,
    txn_coordinator: RefCell<Option<Endpoint>>,
    metadata_in_flight: Cell<bool>,
    metadata_not_before: Cell<Option<Instant>>,
    identity_in_flight: Cell<bool>,
    adding_in_flight: Cell<bool>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(now().duration_since(self.start).as_millis()).expect("ms fit in u64")
    }

    fn instant_at(&self, at_ms: u64) -> Instant {
        self.start + std::time::Duration::from_millis(at_ms)
    }

    fn transactional_id(&self) -> Option<&str> {
        self.config.transactional_id.as_deref()
    }

    /// The transaction coordinator: found by the transactional id, cached
    /// until an attempt fails with a coordinator or network error.
    fn transaction_coordinator(&self) -> Coordinator<'_> {
        Coordinator {
            key_type: CoordinatorType::Transaction,
            key: self
                .transactional_id()
                .expect("only transactional producers look for a transaction coordinator"),
            cache: Some(&self.txn_coordinator),
        }
    }

    /// One request to the transaction coordinator, retried on retriable and
    /// coordinator errors until `deadline`. `Ok(Ok(value))`: success;
    /// `Ok(Err(code))`: a broker error the caller must handle; `Err`: the
    /// deadline passed (a timeout) or no coordinator could be found.
    async fn txn_request<A: Api, T>(
        &self,
        context: &str,
        deadline: Instant,
        request: impl Fn() -> A,
        extract: impl Fn(A::Response) -> Result<T, ErrorCode>,
    ) -> TransportResult<Result<T, ErrorCode>> {
        self.net
            .coordinator_call(
                &self.transaction_coordinator(),
                context,
                deadline,
                ms(self.config.request_timeout_ms),
                request,
                |response| match extract(response) {
                    Ok(value) => Attempt::Done(Ok(value)),
                    Err(code) => Attempt::of_error(code, context, |code| Attempt::Done(Err(code))),
                },
            )
            .await
    }

    /// Waits until nothing is queued or in flight (or the producer failed).
    async fn wait_idle(&self) {
        loop {
            let seen = self.signal.generation();
            {
                let core = self.core.borrow();
                if core.is_idle() || core.fatal().is_some() {
                    return;
                }
            }
            self.signal.changed_since(seen).await;
        }
    }

    fn fatal(&self) -> Option<TransportError> {
        self.core.borrow().fatal().cloned()
    }

    fn set_fatal(&self, error: TransportError) -> TransportError {
        self.core.borrow_mut().set_fatal(error.clone());
        self.signal.raise();
        error
    }
}

/// A delivery future: resolves with the record's offset once acknowledged
/// by all in-sync replicas, or with the error that made it fail.
pub struct SimDelivery {
    outcome: oneshot::Receiver<TransportResult<Delivered>>,
}

impl Future for SimDelivery {
    type Output = TransportResult<Delivered>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.outcome).poll(cx).map(|outcome| {
            outcome.unwrap_or_else(|_| {
                Err(TransportError::new(
                    ErrorKind::Fatal,
                    ErrorCode::Other(-1),
                    "the producer was dropped before the record was acknowledged",
                ))
            })
        })
    }
}

/// The simulated cluster's producer.
pub struct SimProducer {
    shared: Rc<Shared>,
    sender: JoinHandle<()>,
}

impl SimProducer {
    pub(crate) fn new(net: NetworkClient, config: ProducerConfig) -> Self {
        let options = net.options().clone();
        let settings = CoreSettings {
            transactional: config.transactional_id.is_some(),
            linger_ms: u64::from(config.linger_ms),
            delivery_timeout_ms: u64::from(config.delivery_timeout_ms),
            topic_missing_timeout_ms: u64::from(options.topic_missing_timeout_ms),
            max_in_flight: options.max_in_flight_per_partition,
            batch_max_records: options.batch_max_records,
            batch_max_bytes: options.batch_max_bytes,
            buffered_records_max: options.queue_buffering_max_messages,
            retry_backoff_ms: u64::from(options.retry_backoff_ms.max(1)),
            retry_backoff_max_ms: u64::from(options.retry_backoff_max_ms.max(1)),
        };
        let shared = Rc::new(Shared {
            net,
            config,
            core: RefCell::new(ProducerCore::new(settings)),
            signal: Signal::default(),
            start: now(),
            txn_coordinator: RefCell::new(None),
            metadata_in_flight: Cell::new(false),
            metadata_not_before: Cell::new(None),
            identity_in_flight: Cell::new(false),
            adding_in_flight: Cell::new(false),
        });
        let sender = tokio::task::spawn_local(run_sender(Rc::clone(&shared)));
        Self { shared, sender }
    }

    fn request_deadline(&self) -> Instant {
        now() + ms(self.shared.config.request_timeout_ms)
    }

    fn require_transactional(&self, call: &str) -> TransportResult<&str> {
        self.shared.transactional_id().ok_or_else(|| {
            errors::invalid_state(format!("{call} on a producer without a transactional id"))
        })
    }

    fn identity(&self) -> Identity {
        self.shared
            .core
            .borrow()
            .identity()
            .expect("a transactional producer in a transaction has an identity")
    }

    fn fenced_or_fatal(&self, code: ErrorCode, context: &str) -> TransportError {
        let kind = if errors::is_fencing_error(code) {
            ErrorKind::Fenced
        } else {
            ErrorKind::Fatal
        };
        self.shared.set_fatal(TransportError::new(
            kind,
            code,
            format!("{context}: {code:?}"),
        ))
    }

    fn make_abortable(&self, error: TransportError) -> TransportError {
        let error = TransportError::new(ErrorKind::Abortable, error.code, error.message);
        self.shared.core.borrow_mut().make_abortable(error.clone());
        self.shared.signal.raise();
        error
    }

    async fn end_transaction(&self, commit: bool) -> TransportResult<()> {
        let transactional_id = self.require_transactional("end transaction")?.to_string();
        let identity = self.identity();
        let context = if commit {
            "EndTxn(commit)"
        } else {
            "EndTxn(abort)"
        };
        let outcome = self
            .shared
            .txn_request(
                context,
                self.request_deadline(),
                || EndTxnRequest {
                    transactional_id: transactional_id.clone(),
                    producer_id: identity.id,
                    producer_epoch: identity.epoch,
                    committed: commit,
                },
                |response| match response {
                    EndTxnResponse { error: None } => Ok(()),
                    EndTxnResponse { error: Some(code) } => Err(code),
                },
            )
            .await?;
        match outcome {
            Ok(()) => Ok(()),
            // An abort of a transaction the coordinator never heard of (an
            // AddPartitionsToTxn or AddOffsetsToTxn whose answer was lost
            // may not have reached it): nothing to abort.
            Err(ErrorCode::InvalidTxnState) if !commit => Ok(()),
            Err(code) => Err(self.fenced_or_fatal(code, context)),
        }
    }

    /// KIP-360: after an abort that left sequence numbers unresolved, a new
    /// epoch for the same producer id restarts every sequence at 0.
    async fn bump_epoch(&self) -> TransportResult<()> {
        let transactional_id = self.require_transactional("bump epoch")?.to_string();
        let identity = self.identity();
        let timeout_ms = self.shared.config.transaction_timeout_ms;
        let outcome = self
            .shared
            .txn_request(
                "InitProducerId(epoch bump)",
                self.request_deadline(),
                || InitProducerIdRequest {
                    transactional_id: Some(transactional_id.clone()),
                    transaction_timeout_ms: timeout_ms,
                    producer_id: identity.id,
                    producer_epoch: identity.epoch,
                },
                extract_identity,
            )
            .await?;
        match outcome {
            Ok(identity) => {
                self.shared.core.borrow_mut().set_identity(identity);
                Ok(())
            }
            Err(code) => Err(self.fenced_or_fatal(code, "InitProducerId(epoch bump)")),
        }
    }

    async fn commit_group_offsets(
        &self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: &GroupMetadata,
        deadline: Instant,
    ) -> TransportResult<()> {
        let transactional_id = self
            .require_transactional("send_offsets_to_transaction")?
            .to_string();
        let identity = self.identity();
        let context = format!("TxnOffsetCommit({})", group.group_id);
        self.shared
            .net
            .commit_offsets_call(
                &group.group_id,
                &context,
                deadline,
                ms(self.shared.config.request_timeout_ms),
                offsets.to_vec(),
                |offsets| TxnOffsetCommitRequest {
                    transactional_id: transactional_id.clone(),
                    group_id: group.group_id.clone(),
                    producer_id: identity.id,
                    producer_epoch: identity.epoch,
                    generation_id: group.generation_id,
                    member_id: group.member_id.clone(),
                    group_instance_id: group.group_instance_id.clone(),
                    offsets,
                },
                |TxnOffsetCommitResponse { results }| results,
                |code| self.txn_commit_refused(&context, group, code),
            )
            .await
    }

    /// The error that ends a TxnOffsetCommit whose partition got `code`
    /// (not retriable): it fences the producer or makes the transaction
    /// abortable.
    fn txn_commit_refused(
        &self,
        context: &str,
        group: &GroupMetadata,
        code: ErrorCode,
    ) -> TransportError {
        match code {
            ErrorCode::ProducerFenced
            | ErrorCode::InvalidProducerEpoch
            | ErrorCode::InvalidProducerIdMapping
            | ErrorCode::InvalidTxnState => self.fenced_or_fatal(code, context),
            // KIP-447: the member is not part of that generation any more.
            // librdkafka and the Java client make the transaction abortable.
            ErrorCode::IllegalGeneration
            | ErrorCode::UnknownMemberId
            | ErrorCode::FencedInstanceId
            | ErrorCode::RebalanceInProgress => self.make_abortable(TransportError::new(
                ErrorKind::Abortable,
                code,
                format!(
                    "{context}: generation {} of member {:?} rejected: {code:?}",
                    group.generation_id, group.member_id
                ),
            )),
            code => self.make_abortable(errors::broker_error(code, context)),
        }
    }
}

impl Drop for SimProducer {
    fn drop(&mut self) {
        self.sender.abort();
        self.shared.net.close_all();
    }
}

fn extract_identity(response: InitProducerIdResponse) -> Result<Identity, ErrorCode> {
    match response {
        InitProducerIdResponse {
            error: None,
            producer_id,
            producer_epoch,
        } => {
            assert!(
                producer_id >= 0 && producer_epoch >= 0,
                "InitProducerId gave id {producer_id} epoch {producer_epoch}"
            );
            Ok(Identity {
                id: producer_id,
                epoch: producer_epoch,
            })
        }
        InitProducerIdResponse {
            error: Some(code), ..
        } => Err(code),
    }
}

fn record_bytes(record: &ProducerRecord) -> usize {
    RECORD_OVERHEAD_BYTES
        + record.key.as_ref().map_or(0, Vec::len)
        + record.value.as_ref().map_or(0, Vec::len)
        + record
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum::<usize>()
}

impl Producer for SimProducer {
    type Delivery = SimDelivery;

    async fn init_transactions(&mut self) -> TransportResult<()> {
        let transactional_id = self.require_transactional("init_transactions")?.to_string();
        if let Some(fatal) = self.shared.fatal() {
            return Err(fatal);
        }
        if *self.shared.core.borrow().txn_state() != TxnState::Uninitialized {
            return Err(errors::invalid_state("init_transactions called twice"));
        }
        let timeout_ms = self.shared.config.transaction_timeout_ms;
        let outcome = self
            .shared
            .txn_request(
                "InitProducerId",
                self.request_deadline(),
                || InitProducerIdRequest {
                    transactional_id: Some(transactional_id.clone()),
                    transaction_timeout_ms: timeout_ms,
                    producer_id: crate::protocol::NO_PRODUCER_ID,
                    producer_epoch: crate::protocol::NO_PRODUCER_EPOCH,
                },
                extract_identity,
            )
            .await?;
        match outcome {
            Ok(identity) => {
                self.shared.core.borrow_mut().initialized(identity);
                self.shared.signal.raise();
                Ok(())
            }
            Err(code) => Err(self.fenced_or_fatal(code, "InitProducerId")),
        }
    }

    async fn begin_transaction(&mut self) -> TransportResult<()> {
        self.require_transactional("begin_transaction")?;
        self.shared.core.borrow_mut().begin()
    }

    fn send(&mut self, record: ProducerRecord) -> TransportResult<SimDelivery> {
        self.shared.core.borrow().check_can_send()?;
        let refuse =
            |code, message: String| Err(TransportError::new(ErrorKind::Fatal, code, message));
        if record.topic.is_empty() {
            return refuse(ErrorCode::InvalidRecord, "a record needs a topic".into());
        }
        if record.partition.is_none() && record.key.is_none() {
            return refuse(
                ErrorCode::InvalidRecord,
                format!(
                    "a record for {} has neither a key nor a partition",
                    record.topic
                ),
            );
        }
        if let Some(partition) = record.partition {
            if partition < 0 {
                return refuse(
                    ErrorCode::InvalidRecord,
                    format!("negative partition {partition} for {}", record.topic),
                );
            }
        }
        let partition_count = self.shared.net.metadata().partition_count(&record.topic);
        if let (Some(partition), Some(count)) = (record.partition, partition_count) {
            if partition >= count {
                // Kafka classifies UNKNOWN_TOPIC_OR_PARTITION as retriable
                // (the partition may appear); librdkafka refuses at once.
                return Err(TransportError::new(
                    ErrorKind::Retriable,
                    ErrorCode::UnknownTopicOrPartition,
                    format!(
                        "{} has {count} partitions, no partition {partition}",
                        record.topic
                    ),
                ));
            }
        }
        let bytes = record_bytes(&record);
        let max_bytes = self.shared.net.options().max_record_bytes;
        if bytes > max_bytes {
            // The Java client refuses it at send, and in a transaction the
            // transaction becomes abortable: a transaction that lost a
            // record must not commit as if it held it.
            let message = format!(
                "a record of {bytes} bytes for {} exceeds the {max_bytes}-byte limit",
                record.topic
            );
            let error = TransportError::new(ErrorKind::Fatal, ErrorCode::MessageTooLarge, message);
            if self.shared.config.transactional_id.is_some() {
                return Err(self.make_abortable(error));
            }
            return Err(error);
        }
        self.shared.core.borrow().check_buffer_space()?;
        let (slot, outcome) = oneshot::channel();
        let data = crate::protocol::RecordData {
            key: record.key,
            value: record.value,
            timestamp_ms: record.timestamp_ms.unwrap_or_else(wall_clock_ms),
            headers: record.headers,
        };
        let now_ms = self.shared.now_ms();
        self.shared.core.borrow_mut().enqueue(
            &record.topic,
            record.partition,
            data,
            slot,
            now_ms,
            partition_count,
        );
        self.shared.signal.raise();
        Ok(SimDelivery { outcome })
    }

    async fn flush(&mut self) -> TransportResult<()> {
        self.shared.core.borrow_mut().begin_flush();
        self.shared.signal.raise();
        self.shared.wait_idle().await;
        let failure = self.shared.core.borrow_mut().end_flush();
        if let Some(fatal) = self.shared.fatal() {
            return Err(fatal);
        }
        failure.map_or(Ok(()), Err)
    }

    async fn send_offsets_to_transaction(
        &mut self,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
        group: &GroupMetadata,
    ) -> TransportResult<()> {
        let transactional_id = self
            .require_transactional("send_offsets_to_transaction")?
            .to_string();
        self.shared
            .core
            .borrow()
            .check_in_transaction("send_offsets_to_transaction")?;
        if offsets.is_empty() {
            return Ok(());
        }
        if group.group_id.is_empty() {
            return Err(errors::invalid_state(
                "send_offsets_to_transaction without a group id",
            ));
        }
        let identity = self.identity();
        // From here the coordinator may know of the transaction even if the
        // answer is lost: the transaction must be ended explicitly.
        self.shared.core.borrow_mut().set_offsets_added();
        let deadline = self.request_deadline();
        let group_id = group.group_id.clone();
        let outcome = self
            .shared
            .txn_request(
                "AddOffsetsToTxn",
                deadline,
                || AddOffsetsToTxnRequest {
                    transactional_id: transactional_id.clone(),
                    producer_id: identity.id,
                    producer_epoch: identity.epoch,
                    group_id: group_id.clone(),
                },
                |response| match response {
                    AddOffsetsToTxnResponse { error: None } => Ok(()),
                    AddOffsetsToTxnResponse { error: Some(code) } => Err(code),
                },
            )
            .await?;
        match outcome {
            Ok(()) => {}
            Err(
                code @ (ErrorCode::ProducerFenced
                | ErrorCode::InvalidProducerEpoch
                | ErrorCode::InvalidProducerIdMapping
                | ErrorCode::InvalidTxnState),
            ) => return Err(self.fenced_or_fatal(code, "AddOffsetsToTxn")),
            Err(code) => {
                return Err(self.make_abortable(errors::broker_error(code, "AddOffsetsToTxn")));
            }
        }
        self.commit_group_offsets(offsets, group, deadline).await
    }

    async fn commit_transaction(&mut self) -> TransportResult<()> {
        self.require_transactional("commit_transaction")?;
        self.shared.core.borrow_mut().start_commit()?;
        self.shared.signal.raise();
        self.shared.wait_idle().await;
        {
            let core = self.shared.core.borrow();
            if let Some(fatal) = core.fatal() {
                return Err(fatal.clone());
            }
            if let TxnState::Abortable(error) = core.txn_state() {
                return Err(TransportError::new(
                    ErrorKind::Abortable,
                    error.code,
                    format!("the transaction cannot commit: {}", error.message),
                ));
            }
        }
        if self.shared.core.borrow().txn_has_content() {
            self.end_transaction(true).await?;
        }
        self.shared.core.borrow_mut().transaction_completed();
        self.shared.signal.raise();
        Ok(())
    }

    async fn abort_transaction(&mut self) -> TransportResult<()> {
        self.require_transactional("abort_transaction")?;
        self.shared.core.borrow_mut().start_abort()?;
        self.shared.signal.raise();
        self.shared.wait_idle().await;
        if let Some(fatal) = self.shared.fatal() {
            return Err(fatal);
        }
        if self.shared.core.borrow().txn_has_content() {
            self.end_transaction(false).await?;
        }
        if self.shared.core.borrow().epoch_bump_needed() {
            self.bump_epoch().await?;
        }
        self.shared.core.borrow_mut().transaction_completed();
        self.shared.signal.raise();
        Ok(())
    }
}

// ---- the sender task ----------------------------------------------------

async fn run_sender(shared: Rc<Shared>) {
    let mut tasks: JoinSet<()> = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let seen = shared.signal.generation();
        let now_ms = shared.now_ms();
        let (mut wake_at_ms, wants_metadata) = sender_step(&shared, &mut tasks, now_ms);
        if let Some(not_before) = shared.metadata_not_before.get() {
            if wants_metadata && !shared.metadata_in_flight.get() {
                let at_ms = u64::try_from(not_before.duration_since(shared.start).as_millis())
                    .expect("ms fit in u64");
                wake_at_ms = Some(wake_at_ms.map_or(at_ms, |at| at.min(at_ms)));
            }
        }
        match wake_at_ms {
            Some(at_ms) => {
                shared
                    .signal
                    .changed_since_or(seen, shared.instant_at(at_ms))
                    .await;
            }
            None => shared.signal.changed_since(seen).await,
        }
    }
}

/// Topics the sender needs metadata for: records waiting for a partition
/// count, or partitions with data and no known leader.
fn wants_metadata(shared: &Shared) -> bool {
    let core = shared.core.borrow();
    if core.has_unassigned() {
        return true;
    }
    let metadata = shared.net.metadata();
    core.partitions_with_data_iter()
        .any(|partition| metadata.leader(partition).is_none())
}

fn metadata_topics(shared: &Shared) -> Vec<String> {
    let core = shared.core.borrow();
    let metadata = shared.net.metadata();
    let mut topics = std::collections::BTreeSet::new();
    topics.extend(core.unassigned_topics());
    for partition in core.partitions_with_data_iter() {
        if metadata.leader(partition).is_none() {
            topics.insert(partition.topic.clone());
        }
    }
    topics.into_iter().collect()
}

/// One pass of the sender: returns when it must look again at the latest,
/// and whether it wants metadata it did not ask for (only said while no
/// metadata request is in flight).
fn sender_step(shared: &Rc<Shared>, tasks: &mut JoinSet<()>, now_ms: u64) -> (Option<u64>, bool) {
    // Records waiting for a partition count that the metadata now has.
    {
        let waiting = shared.core.borrow().unassigned_topics();
        for topic in waiting {
            let count = shared.net.metadata().partition_count(&topic);
            if let Some(count) = count {
                shared.core.borrow_mut().assign_unassigned(&topic, count);
            }
        }
    }
    {
        let metadata = shared.net.metadata();
        let missing = |topic: &str| match metadata.topic(topic) {
            Some(TopicState::Error(code)) => Some(*code),
            _ => None,
        };
        shared.core.borrow_mut().expire(now_ms, &missing);
    }
    if shared.core.borrow().wants_identity() && !shared.identity_in_flight.get() {
        shared.identity_in_flight.set(true);
        tasks.spawn_local(obtain_producer_id(Rc::clone(shared)));
    }
    if !shared.adding_in_flight.get() {
        let to_add = shared.core.borrow().partitions_to_add();
        if !to_add.is_empty() {
            shared.core.borrow_mut().start_adding(&to_add);
            shared.adding_in_flight.set(true);
            tasks.spawn_local(add_partitions(Rc::clone(shared), to_add));
        }
    }
    let plans = {
        let metadata = shared.net.metadata();
        let leader_of = |partition: &TopicPartition| metadata.leader(partition).map(|l| l.broker);
        shared.core.borrow_mut().drain(now_ms, &leader_of)
    };
    for plan in plans {
        tasks.spawn_local(produce(Rc::clone(shared), plan));
    }
    let mut wants = false;
    if !shared.metadata_in_flight.get() && wants_metadata(shared) {
        wants = true;
        let topics = metadata_topics(shared);
        let allowed = shared
            .metadata_not_before
            .get()
            .is_none_or(|not_before| not_before <= now());
        if allowed {
            shared.metadata_in_flight.set(true);
            tasks.spawn_local(refresh_metadata(Rc::clone(shared), topics));
        }
    }
    (shared.core.borrow().next_wakeup_ms(now_ms), wants)
}

async fn refresh_metadata(shared: Rc<Shared>, topics: Vec<String>) {
    // Errors only mean "try again later": the backoff below paces that.
    let _ = shared.net.refresh_metadata(&topics).await;
    shared
        .metadata_not_before
        .set(Some(now() + ms(shared.net.options().retry_backoff_ms)));
    shared.metadata_in_flight.set(false);
    shared.signal.raise();
}

/// Idempotent producer: InitProducerId without a transactional id, sent to
/// any broker, retried until it works (records time out meanwhile).
async fn obtain_producer_id(shared: Rc<Shared>) {
    let mut backoff = Backoff::new(shared.net.options());
    loop {
        if shared.net.metadata().brokers().next().is_none() {
            let _ = shared.net.refresh_metadata(&[]).await;
        }
        let broker = shared.net.metadata().brokers().next().map(|(id, _)| id);
        let result = match broker {
            Some(broker) => {
                shared
                    .net
                    .call_broker(
                        broker,
                        Lane::Control,
                        InitProducerIdRequest {
                            transactional_id: None,
                            transaction_timeout_ms: shared.config.transaction_timeout_ms,
                            producer_id: crate::protocol::NO_PRODUCER_ID,
                            producer_epoch: crate::protocol::NO_PRODUCER_EPOCH,
                        },
                        ms(shared.config.request_timeout_ms),
                    )
                    .await
            }
            None => Err(NetError::Connect("no broker known".into())),
        };
        match result.map(extract_identity) {
            Ok(Ok(identity)) => {
                shared.core.borrow_mut().set_identity(identity);
                break;
            }
            Ok(Err(code)) if !errors::is_retriable(code) => {
                shared.set_fatal(errors::broker_error(code, "InitProducerId"));
                break;
            }
            Ok(Err(_)) | Err(_) => {
                let _ = shared.net.refresh_metadata(&[]).await;
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    shared.identity_in_flight.set(false);
    shared.signal.raise();
}

/// AddPartitionsToTxn for partitions about to get their first record in
/// the transaction, retried until each is added or fails for good.
async fn add_partitions(shared: Rc<Shared>, partitions: Vec<TopicPartition>) {
    let transactional_id = shared
        .transactional_id()
        .expect("only transactional producers add partitions")
        .to_string();
    let mut remaining = partitions;
    let mut backoff = Backoff::new(shared.net.options());
    loop {
        let active = {
            let core = shared.core.borrow();
            core.fatal().is_none()
                && matches!(
                    core.txn_state(),
                    TxnState::InTransaction | TxnState::Committing
                )
        };
        if !active || remaining.is_empty() {
            break;
        }
        let identity = shared.core.borrow().identity().expect("initialized");
        let deadline = now() + ms(shared.config.request_timeout_ms);
        let mut delay = None;
        let coordinator = shared.transaction_coordinator();
        match shared
            .net
            .coordinator_endpoint(&coordinator, deadline)
            .await
        {
            Err(_) => {}
            Ok(endpoint) => {
                let request = AddPartitionsToTxnRequest {
                    transactional_id: transactional_id.clone(),
                    producer_id: identity.id,
                    producer_epoch: identity.epoch,
                    partitions: remaining.clone(),
                };
                match shared
                    .net
                    .call(
                        &endpoint,
                        Lane::Control,
                        request,
                        ms(shared.config.request_timeout_ms),
                    )
                    .await
                {
                    Ok(AddPartitionsToTxnResponse { results }) => {
                        remaining = partitions_added(
                            &shared,
                            &coordinator,
                            remaining,
                            &results,
                            &mut delay,
                        );
                        shared.signal.raise();
                    }
                    Err(_) => coordinator.forget(),
                }
            }
        }
        if remaining.is_empty() {
            break;
        }
        match delay {
            Some(delay) => tokio::time::sleep(delay).await,
            None => tokio::time::sleep(backoff.next_delay()).await,
        }
    }
    if !remaining.is_empty() {
        // The transaction ended or failed meanwhile; the coordinator may
        // still have added them, so the transaction is ended explicitly.
        shared.core.borrow_mut().adding_abandoned(&remaining);
    }
    shared.adding_in_flight.set(false);
    shared.signal.raise();
}

/// Applies an AddPartitionsToTxn answer to the core, partition by
/// partition; returns the partitions to send again (and, in `delay`, a
/// shorter wait after CONCURRENT_TRANSACTIONS).
fn partitions_added(
    shared: &Shared,
    coordinator: &Coordinator<'_>,
    remaining: Vec<TopicPartition>,
    results: &[PartitionError],
    delay: &mut Option<Duration>,
) -> Vec<TopicPartition> {
    let context = "AddPartitionsToTxn";
    let mut retry = Vec::new();
    for partition in remaining {
        let error = answer_for("AddPartitionsToTxn", results, &partition).error;
        let mut core = shared.core.borrow_mut();
        match error {
            None => core.partition_added(&partition, None),
            Some(code) if errors::is_fencing_error(code) => {
                core.partition_added(&partition, Some(errors::broker_error(code, context)));
            }
            Some(code)
                if errors::is_retriable(code)
                    || code == ErrorCode::Other(OPERATION_NOT_ATTEMPTED) =>
            {
                if errors::is_coordinator_error(code) {
                    coordinator.forget();
                }
                if code == ErrorCode::ConcurrentTransactions {
                    *delay = Some(CONCURRENT_TRANSACTIONS_BACKOFF);
                }
                retry.push(partition);
            }
            Some(code @ (ErrorCode::InvalidProducerIdMapping | ErrorCode::InvalidTxnState)) => {
                core.partition_added(
                    &partition,
                    Some(TransportError::new(
                        ErrorKind::Fatal,
                        code,
                        format!("{context}: {code:?}"),
                    )),
                );
            }
            Some(code) => core.partition_added(
                &partition,
                Some(TransportError::new(
                    ErrorKind::Abortable,
                    code,
                    format!("{context} for {partition}: {code:?}"),
                )),
            ),
        }
    }
    retry
}

/// One Produce request; its answer (or failure) goes to the core batch by
/// batch.
async fn produce(shared: Rc<Shared>, plan: ProducePlan) {
    // The request takes the batches; the answer is matched by partition.
    let (planned, batches): (Vec<(TopicPartition, u64)>, Vec<_>) = plan
        .batches
        .into_iter()
        .map(|planned| ((planned.partition, planned.batch_id), planned.batch))
        .unzip();
    let request = ProduceRequest {
        transactional_id: shared.config.transactional_id.clone(),
        timeout_ms: shared.config.request_timeout_ms,
        batches,
    };
    // The broker answers REQUEST_TIMED_OUT after `timeout_ms`; the client
    // waits a little longer so that answer, not a client-side timeout (which
    // resets the connections), ends a slow acks=all wait.
    let result = shared
        .net
        .call_broker(
            plan.broker,
            Lane::Produce,
            request,
            ms(shared.config.request_timeout_ms) + ms(PRODUCE_TIMEOUT_MARGIN_MS),
        )
        .await;
    let now_ms = shared.now_ms();
    let mut stale = Vec::new();
    {
        let mut core = shared.core.borrow_mut();
        match result {
            Ok(ProduceResponse { results }) => {
                for (partition, batch_id) in &planned {
                    let answer = results
                        .iter()
                        .find(|result| {
                            result.topic == partition.topic
                                && result.partition == partition.partition
                        })
                        .unwrap_or_else(|| {
                            panic!("Produce answer without {partition}: {results:?}")
                        });
                    let outcome = match answer.error {
                        None => BatchOutcome::Appended {
                            base_offset: answer.base_offset,
                        },
                        Some(ErrorCode::DuplicateSequenceNumber) if answer.base_offset >= 0 => {
                            BatchOutcome::Appended {
                                base_offset: answer.base_offset,
                            }
                        }
                        Some(code) => BatchOutcome::Failed(code),
                    };
                    let follow_up = core.on_batch_outcome(partition, *batch_id, outcome, now_ms);
                    if follow_up.refresh_leader {
                        stale.push(partition.clone());
                    }
                }
            }
            Err(error) => {
                let code = errors::code_of_net(&error);
                for (partition, batch_id) in &planned {
                    let follow_up = core.on_batch_outcome(
                        partition,
                        *batch_id,
                        BatchOutcome::Failed(code),
                        now_ms,
                    );
                    if follow_up.refresh_leader {
                        stale.push(partition.clone());
                    }
                }
            }
        }
    }
    for partition in &stale {
        shared.net.invalidate_leader(partition);
    }
    if !stale.is_empty() {
        shared.metadata_not_before.set(None);
    }
    shared.signal.raise();
}
