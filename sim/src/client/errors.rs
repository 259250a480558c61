//! How the client turns broker answers and network trouble into the seam's
//! [`TransportError`]s, following what Kafka's clients surface.
//!
//! The classification of broker error codes mirrors Apache Kafka's
//! `RetriableException` hierarchy (what librdkafka calls "retriable"):
//! the client retries those internally up to a deadline; everything else is
//! handed to the caller with a kind that says what to do.

use eddyline_engine::transport::{ErrorCode, ErrorKind, TransportError};

use super::connection::NetError;

/// KIP-394: the first JoinGroup of a member is answered with this code and
/// a member id to rejoin with. The seam has no name for it.
pub(crate) const MEMBER_ID_REQUIRED: i32 = 79;
/// The partition has no leader right now (an election is running).
pub(crate) const LEADER_NOT_AVAILABLE: i32 = 5;
/// The fetch offset is outside the log.
pub(crate) const OFFSET_OUT_OF_RANGE: i32 = 1;
/// The fetcher's leader epoch is older than the leader's.
pub(crate) const FENCED_LEADER_EPOCH: i32 = 74;
/// The fetcher's leader epoch is newer than the broker's.
pub(crate) const UNKNOWN_LEADER_EPOCH: i32 = 75;
/// librdkafka's local RD_KAFKA_RESP_ERR__QUEUE_FULL: the producer's buffer
/// is full (the rdkafka transport reports it with this number).
pub(crate) const QUEUE_FULL: i32 = -184;

/// Whether Kafka's clients retry this broker error by themselves.
pub(crate) fn is_retriable(code: ErrorCode) -> bool {
    use ErrorCode::*;
    match code {
        BrokerNotAvailable
        | TimedOut
        | UnknownTopicOrPartition
        | NotLeaderOrFollower
        | RequestTimedOut
        | NetworkException
        | CoordinatorLoadInProgress
        | CoordinatorNotAvailable
        | NotCoordinator
        | NotEnoughReplicas
        | NotEnoughReplicasAfterAppend
        | ConcurrentTransactions
        | UnstableOffsetCommit => true,
        // CORRUPT_MESSAGE, LEADER_NOT_AVAILABLE, KAFKA_STORAGE_ERROR,
        // fetch session errors, FENCED/UNKNOWN_LEADER_EPOCH,
        // OFFSET_NOT_AVAILABLE, PREFERRED/ELIGIBLE_LEADER_NOT_AVAILABLE,
        // THROTTLING_QUOTA_EXCEEDED.
        Other(number) => matches!(number, 2 | 5 | 56 | 70 | 71 | 74 | 75 | 78 | 80 | 83 | 89),
        _ => false,
    }
}

/// Whether the error means the cached coordinator is no longer right.
pub(crate) fn is_coordinator_error(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::NetworkException
            | ErrorCode::BrokerNotAvailable
            | ErrorCode::TimedOut
            | ErrorCode::RequestTimedOut
    )
}

/// Whether the error means the cached partition leader is no longer right.
pub(crate) fn is_leadership_error(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeaderOrFollower
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::NetworkException
            | ErrorCode::BrokerNotAvailable
            | ErrorCode::TimedOut
            | ErrorCode::RequestTimedOut
    ) || matches!(
        code,
        ErrorCode::Other(LEADER_NOT_AVAILABLE | FENCED_LEADER_EPOCH | UNKNOWN_LEADER_EPOCH)
    )
}

/// Whether the error says this producer was replaced by a newer incarnation.
pub(crate) fn is_fencing_error(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ProducerFenced
            | ErrorCode::InvalidProducerEpoch
            | ErrorCode::TransactionCoordinatorFenced
            | ErrorCode::FencedInstanceId
    )
}

/// The kind a caller sees for a broker error that the client gives up on.
pub(crate) fn kind_of(code: ErrorCode) -> ErrorKind {
    if code == ErrorCode::TimedOut {
        ErrorKind::Timeout
    } else if is_fencing_error(code) {
        ErrorKind::Fenced
    } else if is_retriable(code) {
        ErrorKind::Retriable
    } else {
        ErrorKind::Fatal
    }
}

/// A broker error, classified by [`kind_of`].
pub(crate) fn broker_error(code: ErrorCode, context: impl AsRef<str>) -> TransportError {
    TransportError::new(
        kind_of(code),
        code,
        format!("{}: {code:?}", context.as_ref()),
    )
}

/// The client was used in a state where the call makes no sense.
pub(crate) fn invalid_state(message: impl Into<String>) -> TransportError {
    TransportError::new(ErrorKind::Fatal, ErrorCode::InvalidState, message)
}

/// A call ran out of time; its outcome is unknown.
pub(crate) fn timed_out(message: impl Into<String>) -> TransportError {
    TransportError::new(ErrorKind::Timeout, ErrorCode::TimedOut, message)
}

/// The seam's error for a failed request.
pub(crate) fn from_net(error: &NetError, context: impl AsRef<str>) -> TransportError {
    let context = context.as_ref();
    match error {
        NetError::Connect(reason) => TransportError::new(
            ErrorKind::Retriable,
            ErrorCode::BrokerNotAvailable,
            format!("{context}: {reason}"),
        ),
        NetError::Disconnected(reason) => TransportError::new(
            ErrorKind::Retriable,
            ErrorCode::NetworkException,
            format!("{context}: {reason}"),
        ),
        NetError::TimedOut {
            endpoint,
            timeout_ms,
        } => TransportError::new(
            ErrorKind::Timeout,
            ErrorCode::TimedOut,
            format!("{context}: no answer from {endpoint} within {timeout_ms} ms"),
        ),
        NetError::Unexpected(reason) => TransportError::new(
            ErrorKind::Fatal,
            ErrorCode::Other(-1),
            format!("{context}: {reason}"),
        ),
    }
}

/// The error code a network failure stands for (what a retry loop records
/// as the last error).
pub(crate) fn code_of_net(error: &NetError) -> ErrorCode {
    match error {
        NetError::Connect(_) => ErrorCode::BrokerNotAvailable,
        NetError::Disconnected(_) => ErrorCode::NetworkException,
        NetError::TimedOut { .. } => ErrorCode::TimedOut,
        NetError::Unexpected(_) => ErrorCode::Other(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leadership_and_coordinator_errors_are_retriable() {
        for code in [
            ErrorCode::NotLeaderOrFollower,
            ErrorCode::NotCoordinator,
            ErrorCode::CoordinatorLoadInProgress,
            ErrorCode::NotEnoughReplicas,
            ErrorCode::Other(LEADER_NOT_AVAILABLE),
            ErrorCode::Other(FENCED_LEADER_EPOCH),
        ] {
            assert!(is_retriable(code), "{code:?}");
            assert_eq!(kind_of(code), ErrorKind::Retriable);
        }
    }

    #[test]
    fn fencing_errors_are_fenced_and_never_retried() {
        for code in [ErrorCode::ProducerFenced, ErrorCode::InvalidProducerEpoch] {
            assert!(!is_retriable(code));
            assert_eq!(kind_of(code), ErrorKind::Fenced);
        }
        assert_eq!(kind_of(ErrorCode::TopicAlreadyExists), ErrorKind::Fatal);
        assert_eq!(kind_of(ErrorCode::TimedOut), ErrorKind::Timeout);
    }
}
