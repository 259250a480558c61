//! librdkafka callbacks: client errors and logs (to explain timeouts with the
//! real cause), deferred rebalances, and delivery reports.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::ProducerContext;
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::oneshot;

use super::config::Redactor;
use super::error::{code_of, from_kafka_error, one_line};
use crate::transport::{
    Delivered, ErrorCode, ErrorKind, TopicPartition, TransportError, TransportResult,
};

/// The last problem librdkafka reported for a client, redacted.
#[derive(Clone, Debug)]
pub(crate) struct Issue {
    pub code: RDKafkaErrorCode,
    pub reason: String,
}

/// What every client of a transport shares: how to redact, where it
/// connects, and what went wrong lately.
#[derive(Debug)]
pub(crate) struct ClientShared {
    pub redactor: Redactor,
    pub bootstrap: String,
    log_to_stderr: bool,
    last_issue: Mutex<Option<Issue>>,
    auth_failure: Mutex<Option<String>>,
    /// The latest librdkafka log lines, redacted (bounded).
    recent_logs: Mutex<VecDeque<String>>,
}

/// How many log lines a client keeps.
const RECENT_LOGS_MAX: usize = 256;

impl ClientShared {
    pub fn new(redactor: Redactor, bootstrap: String, log_to_stderr: bool) -> Arc<Self> {
        Arc::new(Self {
            redactor,
            bootstrap,
            log_to_stderr,
            last_issue: Mutex::new(None),
            auth_failure: Mutex::new(None),
            recent_logs: Mutex::new(VecDeque::new()),
        })
    }

    /// A librdkafka error, by its code (`Fail` if it has none).
    fn record_error(&self, error: &KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        self.record(code, reason);
    }

    fn record(&self, code: RDKafkaErrorCode, reason: &str) {
        let reason = self.redactor.redact(&one_line(reason));
        if matches!(
            code,
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed
        ) {
            *self.auth_failure.lock().expect("auth failure lock") = Some(reason.clone());
        }
        *self.last_issue.lock().expect("issue lock") = Some(Issue { code, reason });
    }

    /// The authentication failure librdkafka reported, as an error.
    pub fn auth_failure(&self) -> Option<TransportError> {
        let reason = self
            .auth_failure
            .lock()
            .expect("auth failure lock")
            .clone()?;
        Some(TransportError::new(
            ErrorKind::Fatal,
            ErrorCode::SaslAuthenticationFailed,
            format!(
                "authentication to Kafka at {} failed: {reason}",
                self.bootstrap
            ),
        ))
    }

    pub fn last_issue(&self) -> Option<Issue> {
        self.last_issue.lock().expect("issue lock").clone()
    }

    /// The error for a call that did not finish within `timeout_ms`: the
    /// real cause if librdkafka reported one (unreachable broker, failed
    /// authentication), else a plain timeout.
    pub fn timeout_error(&self, what: &str, timeout_ms: u32) -> TransportError {
        if let Some(error) = self.auth_failure() {
            return error;
        }
        match self.last_issue() {
            Some(issue) if code_of(issue.code) == ErrorCode::BrokerNotAvailable => {
                TransportError::new(
                    ErrorKind::Timeout,
                    ErrorCode::BrokerNotAvailable,
                    format!(
                        "{what}: Kafka at {} is unreachable after {timeout_ms} ms: {}",
                        self.bootstrap, issue.reason
                    ),
                )
            }
            Some(issue) => TransportError::new(
                ErrorKind::Timeout,
                ErrorCode::TimedOut,
                format!(
                    "{what}: no answer from Kafka at {} within {timeout_ms} ms (last problem: {})",
                    self.bootstrap, issue.reason
                ),
            ),
            None => TransportError::new(
                ErrorKind::Timeout,
                ErrorCode::TimedOut,
                format!(
                    "{what}: no answer from Kafka at {} within {timeout_ms} ms",
                    self.bootstrap
                ),
            ),
        }
    }

    /// The latest librdkafka log lines of this client, already redacted.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by tests"))]
    pub fn recent_logs(&self) -> Vec<String> {
        self.recent_logs
            .lock()
            .expect("log lock")
            .iter()
            .cloned()
            .collect()
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let line = format!(
            "librdkafka {level:?} {facility}: {}",
            self.redactor.redact(&one_line(message))
        );
        let important = !matches!(
            level,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug
        );
        if important && self.log_to_stderr {
            eprintln!("{line}");
        }
        // Clients whose error events nobody serves (the admin client) still
        // log why a connection failed: keep that as the latest issue.
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
        ) {
            if message.contains("SASL authentication error")
                || message.contains("Authentication failed")
            {
                self.record(RDKafkaErrorCode::Authentication, message);
            } else if facility == "FAIL" {
                self.record(RDKafkaErrorCode::BrokerTransportFailure, message);
            }
        }
        let mut recent = self.recent_logs.lock().expect("log lock");
        if recent.len() == RECENT_LOGS_MAX {
            recent.pop_front();
        }
        recent.push_back(line);
    }
}

/// Every client's context sends librdkafka's log lines and error events to
/// the client's [`ClientShared`].
macro_rules! shared_client_context {
    ($($context:ty),*) => {$(
        impl ClientContext for $context {
            fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
                self.shared.log(level, fac, log_message);
            }

            fn error(&self, error: KafkaError, reason: &str) {
                self.shared.record_error(&error, reason);
            }
        }
    )*};
}

shared_client_context!(BasicContext, ConsumerCtx, ProducerCtx);

/// The context of admin clients and of the probe that checks a connection.
pub(crate) struct BasicContext {
    pub shared: Arc<ClientShared>,
}

/// A rebalance as librdkafka announced it, awaiting the consumer's next poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RebalanceOp {
    Assign(Vec<TopicPartition>),
    Revoke(Vec<TopicPartition>),
    /// Already unassigned in the callback: a lost member cannot commit.
    Lost(Vec<TopicPartition>),
    Error(String),
}

pub(crate) fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    let mut partitions: Vec<TopicPartition> = tpl
        .elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect();
    partitions.sort();
    partitions
}

/// The consumer's context: rebalances are recorded, not applied, so that the
/// member keeps its partitions (and generation) until its next poll (see
/// `ConsumerEvent::Revoked`). librdkafka lets the application call
/// `assign`/`unassign` after the callback returned; until then the group
/// waits (bounded by `max.poll.interval.ms`) and heartbeats go on.
pub(crate) struct ConsumerCtx {
    pub shared: Arc<ClientShared>,
    rebalances: Mutex<VecDeque<RebalanceOp>>,
    /// `rebalances.len()`, readable without the lock (checked per record).
    rebalances_pending: AtomicUsize,
    /// Set while closing: librdkafka's close waits for the unassign, so the
    /// callback then applies rebalances at once.
    pub closing: AtomicBool,
}

impl ConsumerCtx {
    pub fn new(shared: Arc<ClientShared>) -> Self {
        Self {
            shared,
            rebalances: Mutex::new(VecDeque::new()),
            rebalances_pending: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        }
    }

    pub fn next_rebalance(&self) -> Option<RebalanceOp> {
        if !self.has_rebalance() {
            return None;
        }
        let mut rebalances = self.rebalances.lock().expect("rebalance lock");
        let op = rebalances.pop_front();
        self.rebalances_pending
            .store(rebalances.len(), Ordering::SeqCst);
        op
    }

    pub fn has_rebalance(&self) -> bool {
        self.rebalances_pending.load(Ordering::SeqCst) > 0
    }
}

impl ConsumerContext for ConsumerCtx {
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions = partitions_of(tpl);
        if self.closing.load(Ordering::SeqCst) {
            let result = match err {
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => base_consumer.assign(tpl),
                _ => base_consumer.unassign(),
            };
            if let Err(error) = result {
                self.shared
                    .record_error(&error, &format!("rebalance while closing: {error}"));
            }
            return;
        }
        let op = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => RebalanceOp::Assign(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if base_consumer.assignment_lost() {
                    // The generation is gone: nothing may be committed for
                    // these partitions, so there is nothing to wait for.
                    if let Err(error) = base_consumer.unassign() {
                        self.shared.record_error(
                            &error,
                            &format!("unassign after a lost assignment: {error}"),
                        );
                    }
                    RebalanceOp::Lost(partitions)
                } else {
                    RebalanceOp::Revoke(partitions)
                }
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                // librdkafka wants the assignment dropped on a rebalance error.
                let _ = base_consumer.unassign();
                RebalanceOp::Error(format!("rebalance failed: {code}"))
            }
        };
        let mut rebalances = self.rebalances.lock().expect("rebalance lock");
        rebalances.push_back(op);
        self.rebalances_pending
            .store(rebalances.len(), Ordering::SeqCst);
    }
}

/// Where a record's delivery report goes.
pub(crate) struct DeliverySlot {
    pub sender: oneshot::Sender<TransportResult<Delivered>>,
}

/// The producer's context: delivery reports resolve the futures `send`
/// returned, and the first failure since the last flush is kept for
/// `flush`.
pub(crate) struct ProducerCtx {
    pub shared: Arc<ClientShared>,
    first_failure: Mutex<Option<TransportError>>,
}

impl ProducerCtx {
    pub fn new(shared: Arc<ClientShared>) -> Self {
        Self {
            shared,
            first_failure: Mutex::new(None),
        }
    }

    pub fn take_first_failure(&self) -> Option<TransportError> {
        self.first_failure.lock().expect("failure lock").take()
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = Box<DeliverySlot>;

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, slot: Self::DeliveryOpaque) {
        let result = match delivery_result {
            // Nobody waits for this report (the future was dropped): skip
            // building it.
            Ok(_) if slot.sender.is_closed() => return,
            Ok(message) => Ok(Delivered {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
            }),
            Err((error, message)) => {
                let what = format!(
                    "delivery of a record to topic '{}' (partition {}) failed",
                    message.topic(),
                    message.partition()
                );
                let mut error = from_kafka_error(&what, error, &self.shared.redactor);
                if error.code == ErrorCode::TimedOut {
                    if let Some(issue) = self.shared.last_issue() {
                        error.message =
                            format!("{} (last problem: {})", error.message, issue.reason);
                    }
                }
                let mut first = self.first_failure.lock().expect("failure lock");
                if first.is_none() {
                    *first = Some(error.clone());
                }
                Err(error)
            }
        };
        // The caller may have dropped the future: the report is then unused.
        let _ = slot.sender.send(result);
    }
}

/// How long to wait between checks of a condition librdkafka cannot signal.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(25);
