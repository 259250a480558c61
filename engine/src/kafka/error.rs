//! librdkafka's errors mapped onto the seam's [`ErrorKind`] and [`ErrorCode`].
//!
//! - The code: a Kafka protocol error keeps its wire number
//!   ([`ErrorCode::from_kafka_code`]); librdkafka's local errors map onto
//!   the seam's client-side codes (`_TRANSPORT`, `_ALL_BROKERS_DOWN`,
//!   `_RESOLVE` -> [`ErrorCode::BrokerNotAvailable`]; `_TIMED_OUT`,
//!   `_MSG_TIMED_OUT` -> [`ErrorCode::TimedOut`]; `_STATE` ->
//!   [`ErrorCode::InvalidState`]; `_FENCED` -> [`ErrorCode::ProducerFenced`];
//!   `_AUTHENTICATION` -> [`ErrorCode::SaslAuthenticationFailed`]; `_UNKNOWN_TOPIC`,
//!   `_UNKNOWN_PARTITION` -> [`ErrorCode::UnknownTopicOrPartition`]); any other
//!   local error is [`ErrorCode::Other`] with librdkafka's negative number.
//! - The kind: fencing codes (`PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH`,
//!   `_FENCED`, `FENCED_INSTANCE_ID`, `TRANSACTION_COORDINATOR_FENCED`) are
//!   [`ErrorKind::Fenced`] whatever librdkafka's flags say; otherwise a
//!   transactional error follows librdkafka's own verdict (`is_fatal` ->
//!   Fatal, `txn_requires_abort` -> Abortable, `is_retriable` -> Retriable,
//!   timeouts -> Timeout). So a stale-generation `send_offsets_to_transaction`
//!   (`ILLEGAL_GENERATION`, `UNKNOWN_MEMBER_ID`) is Abortable with that code:
//!   the transaction must be aborted; the member learns of its lost
//!   partitions from its next poll. The same codes on a plain consumer commit
//!   are Fenced: the member's generation is gone and it must not commit.

use rdkafka::error::{KafkaError, RDKafkaError, RDKafkaErrorCode};

use super::config::Redactor;
use super::ffi::NativeError;
use crate::transport::{ErrorCode, ErrorKind, TransportError};

/// The seam's code for a librdkafka code.
pub(crate) fn code_of(code: RDKafkaErrorCode) -> ErrorCode {
    use RDKafkaErrorCode as R;
    match code {
        R::BrokerTransportFailure | R::AllBrokersDown | R::Resolve | R::BrokerNotAvailable => {
            ErrorCode::BrokerNotAvailable
        }
        R::OperationTimedOut | R::MessageTimedOut | R::TimedOutQueue => ErrorCode::TimedOut,
        R::State => ErrorCode::InvalidState,
        R::Fenced => ErrorCode::ProducerFenced,
        R::Authentication => ErrorCode::SaslAuthenticationFailed,
        R::UnknownTopic | R::UnknownPartition => ErrorCode::UnknownTopicOrPartition,
        R::BadMessage | R::InvalidRecord => ErrorCode::InvalidRecord,
        R::MessageSizeTooLarge => ErrorCode::MessageTooLarge,
        R::PollExceeded => ErrorCode::MaxPollExceeded,
        other => {
            let number = other as i32;
            if number >= 0 {
                match i16::try_from(number) {
                    Ok(wire) => ErrorCode::from_kafka_code(wire),
                    Err(_) => ErrorCode::Other(number),
                }
            } else {
                ErrorCode::Other(number)
            }
        }
    }
}

fn is_fencing(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ProducerFenced
            | ErrorCode::InvalidProducerEpoch
            | ErrorCode::FencedInstanceId
            | ErrorCode::TransactionCoordinatorFenced
    )
}

/// The kind of an error that carries no librdkafka verdict.
pub(crate) fn default_kind(code: ErrorCode) -> ErrorKind {
    use ErrorCode::*;
    if is_fencing(code) {
        return ErrorKind::Fenced;
    }
    match code {
        TimedOut | RequestTimedOut => ErrorKind::Timeout,
        BrokerNotAvailable
        | NotLeaderOrFollower
        | NetworkException
        | CoordinatorLoadInProgress
        | CoordinatorNotAvailable
        | NotCoordinator
        | NotEnoughReplicas
        | NotEnoughReplicasAfterAppend
        | RebalanceInProgress
        | UnknownTopicOrPartition
        | ConcurrentTransactions
        | UnstableOffsetCommit => ErrorKind::Retriable,
        IllegalGeneration | UnknownMemberId => ErrorKind::Fenced,
        InvalidRecord | MessageTooLarge | RecordListTooLarge => ErrorKind::Abortable,
        _ => ErrorKind::Fatal,
    }
}

/// The kind of a transactional error from librdkafka's verdict.
fn transactional_kind(
    code: ErrorCode,
    fatal: bool,
    txn_requires_abort: bool,
    retriable: bool,
) -> ErrorKind {
    if is_fencing(code) {
        ErrorKind::Fenced
    } else if fatal {
        ErrorKind::Fatal
    } else if txn_requires_abort {
        ErrorKind::Abortable
    } else if code == ErrorCode::TimedOut || code == ErrorCode::RequestTimedOut {
        ErrorKind::Timeout
    } else if retriable {
        ErrorKind::Retriable
    } else {
        default_kind(code)
    }
}

/// A transactional call's error (init, begin, send offsets, commit, abort).
pub(crate) fn from_native(what: &str, error: &NativeError, redactor: &Redactor) -> TransportError {
    let code = code_of(error.code);
    let kind = transactional_kind(code, error.fatal, error.txn_requires_abort, error.retriable);
    TransportError::new(
        kind,
        code,
        redactor.redact(&one_line(&format!("{what}: {}", error.message))),
    )
}

fn from_rdkafka_error(what: &str, error: &RDKafkaError, redactor: &Redactor) -> TransportError {
    from_native(
        what,
        &NativeError {
            code: error.code(),
            message: error.string(),
            fatal: error.is_fatal(),
            retriable: error.is_retriable(),
            txn_requires_abort: error.txn_requires_abort(),
        },
        redactor,
    )
}

/// Any rdkafka error, with `what` saying what was being done (it should name
/// the address or topic involved).
pub(crate) fn from_kafka_error(
    what: &str,
    error: &KafkaError,
    redactor: &Redactor,
) -> TransportError {
    match error {
        KafkaError::Transaction(native) => from_rdkafka_error(what, native, redactor),
        KafkaError::ClientConfig(_, description, key, _value) => {
            // Never the value: it may be a secret.
            TransportError::new(
                ErrorKind::Fatal,
                ErrorCode::Other(-186),
                redactor.redact(&one_line(&format!(
                    "{what}: bad librdkafka property '{key}': {description}"
                ))),
            )
        }
        KafkaError::MessageConsumptionFatal(code) => {
            let code = code_of(*code);
            let kind = if is_fencing(code) {
                ErrorKind::Fenced
            } else {
                ErrorKind::Fatal
            };
            TransportError::new(
                kind,
                code,
                redactor.redact(&one_line(&format!("{what}: {error}"))),
            )
        }
        other => {
            let code = other
                .rdkafka_error_code()
                .map(code_of)
                .unwrap_or(ErrorCode::Other(-1));
            TransportError::new(
                default_kind(code),
                code,
                redactor.redact(&one_line(&format!("{what}: {other}"))),
            )
        }
    }
}

/// An error with a fixed kind and code.
pub(crate) fn error(
    kind: ErrorKind,
    code: ErrorCode,
    message: &str,
    redactor: &Redactor,
) -> TransportError {
    TransportError::new(kind, code, redactor.redact(&one_line(message)))
}

/// Error messages are one line (a log line or a CLI reason stays one line).
pub(crate) fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_protocol_errors_keep_their_wire_numbers() {
        use RDKafkaErrorCode as R;
        for (librdkafka, seam) in [
            (R::IllegalGeneration, ErrorCode::IllegalGeneration),
            (R::ProducerFenced, ErrorCode::ProducerFenced),
            (R::InvalidProducerEpoch, ErrorCode::InvalidProducerEpoch),
            (R::UnstableOffsetCommit, ErrorCode::UnstableOffsetCommit),
            (R::InvalidTransactionalState, ErrorCode::InvalidTxnState),
            (R::PolicyViolation, ErrorCode::Other(44)),
        ] {
            assert_eq!(code_of(librdkafka), seam, "{librdkafka:?}");
        }
    }

    #[test]
    fn local_errors_map_onto_client_side_codes() {
        use RDKafkaErrorCode as R;
        for (librdkafka, seam) in [
            (R::BrokerTransportFailure, ErrorCode::BrokerNotAvailable),
            (R::AllBrokersDown, ErrorCode::BrokerNotAvailable),
            (R::OperationTimedOut, ErrorCode::TimedOut),
            (R::Fenced, ErrorCode::ProducerFenced),
            (R::Authentication, ErrorCode::SaslAuthenticationFailed),
            (R::QueueFull, ErrorCode::Other(-184)),
            (R::PollExceeded, ErrorCode::MaxPollExceeded),
        ] {
            assert_eq!(code_of(librdkafka), seam, "{librdkafka:?}");
        }
    }

    #[test]
    fn fencing_wins_over_librdkafkas_fatal_flag() {
        let redactor = Redactor::default();
        let fenced = from_native(
            "commit",
            &NativeError {
                code: RDKafkaErrorCode::ProducerFenced,
                message: "fenced".into(),
                fatal: true,
                retriable: false,
                txn_requires_abort: false,
            },
            &redactor,
        );
        assert_eq!(fenced.kind, ErrorKind::Fenced);
        assert_eq!(fenced.code, ErrorCode::ProducerFenced);
    }

    #[test]
    fn a_stale_generation_in_a_transaction_is_abortable_with_its_code() {
        let error = from_native(
            "send offsets",
            &NativeError {
                code: RDKafkaErrorCode::IllegalGeneration,
                message: "Broker: Specified group generation id is not valid".into(),
                fatal: false,
                retriable: false,
                txn_requires_abort: true,
            },
            &Redactor::default(),
        );
        assert_eq!(error.kind, ErrorKind::Abortable);
        assert_eq!(error.code, ErrorCode::IllegalGeneration);
        assert_eq!(
            default_kind(ErrorCode::IllegalGeneration),
            ErrorKind::Fenced,
            "outside a transaction the member is fenced"
        );
    }

    #[test]
    fn librdkafkas_verdicts_decide_the_kind_of_other_transactional_errors() {
        let native = |fatal, abort, retriable| NativeError {
            code: RDKafkaErrorCode::ConcurrentTransactions,
            message: String::new(),
            fatal,
            retriable,
            txn_requires_abort: abort,
        };
        let r = Redactor::default();
        assert_eq!(
            from_native("x", &native(true, false, false), &r).kind,
            ErrorKind::Fatal
        );
        assert_eq!(
            from_native("x", &native(false, true, false), &r).kind,
            ErrorKind::Abortable
        );
        assert_eq!(
            from_native("x", &native(false, false, true), &r).kind,
            ErrorKind::Retriable
        );
        let timeout = NativeError {
            code: RDKafkaErrorCode::OperationTimedOut,
            ..native(false, false, true)
        };
        assert_eq!(from_native("x", &timeout, &r).kind, ErrorKind::Timeout);
    }

    #[test]
    fn messages_are_one_line() {
        let error = from_kafka_error(
            "line one\nline two",
            &KafkaError::Subscription("x\ny".into()),
            &Redactor::default(),
        );
        assert!(!error.message.contains('\n'), "{error}");
    }
}
