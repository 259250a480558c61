//! How the transport calls librdkafka: creating a client (a bad property
//! named by its origin, never its value), running a blocking call off the
//! runtime, bounding a call by a timeout, and explaining a timeout by what
//! librdkafka reported.

use std::future::Future;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::KafkaResult;
use rdkafka::metadata::Metadata;

use super::config::KafkaConfig;
use super::context::{CHECK_INTERVAL, ClientShared};
use super::error::{self, from_kafka_error};
use crate::transport::{ErrorCode, ErrorKind, TransportError, TransportResult};

/// Creates an rdkafka client, reporting a bad property by name and origin,
/// never by value.
pub(crate) fn create_client<T, C>(
    config: &KafkaConfig,
    client_config: rdkafka::ClientConfig,
    context: C,
    what: &str,
) -> TransportResult<T>
where
    T: FromClientConfigAndContext<C>,
    C: ClientContext,
{
    T::from_config_and_context(&client_config, context).map_err(|error| {
        let redactor = config.redactor();
        match &error {
            rdkafka::error::KafkaError::ClientConfig(_, description, key, _) => error::error(
                ErrorKind::Fatal,
                ErrorCode::Other(-186),
                &format!(
                    "{what}: bad librdkafka {}: {description}",
                    config.describe_property(key)
                ),
                &redactor,
            ),
            _ => from_kafka_error(
                &format!(
                    "{what}: cannot create a Kafka client for {}",
                    config.bootstrap()
                ),
                &error,
                &redactor,
            ),
        }
    })
}

/// Runs a blocking librdkafka call on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(what: &str, call: F) -> TransportResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(call).await.map_err(|error| {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
        TransportError::new(
            ErrorKind::Fatal,
            ErrorCode::InvalidState,
            format!("{what}: the runtime is shutting down"),
        )
    })
}

/// Reads a topic's metadata with `fetch` (a blocking librdkafka call, given
/// the timeout) bounded by `timeout_ms`, and hands the answer to `read`.
pub(crate) async fn topic_metadata<T>(
    shared: &ClientShared,
    what: &str,
    timeout_ms: u32,
    fetch: impl FnOnce(Duration) -> KafkaResult<Metadata> + Send + 'static,
    read: impl FnOnce(&Metadata) -> TransportResult<T>,
) -> TransportResult<T> {
    bounded(shared, what, timeout_ms, async {
        let metadata = blocking(what, move || {
            fetch(Duration::from_millis(u64::from(timeout_ms)))
        })
        .await?
        .map_err(|e| from_kafka_error(what, &e, &shared.redactor))?;
        read(&metadata)
    })
    .await
}

/// Bounds a call by `timeout_ms`, and ends it early if librdkafka reports
/// failed authentication (it would otherwise retry until the timeout).
pub(crate) async fn bounded<T>(
    shared: &ClientShared,
    what: &str,
    timeout_ms: u32,
    call: impl Future<Output = TransportResult<T>>,
) -> TransportResult<T> {
    let auth_failed = async {
        loop {
            if let Some(error) = shared.auth_failure() {
                return error;
            }
            tokio::time::sleep(CHECK_INTERVAL).await;
        }
    };
    tokio::select! {
        result = tokio::time::timeout(Duration::from_millis(u64::from(timeout_ms)), call) => {
            match result {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(explain(shared, what, timeout_ms, error)),
                Err(_elapsed) => Err(shared.timeout_error(what, timeout_ms)),
            }
        }
        error = auth_failed => Err(error),
    }
}

/// A timeout or transport error explained by what librdkafka reported.
pub(crate) fn explain(
    shared: &ClientShared,
    what: &str,
    timeout_ms: u32,
    error: TransportError,
) -> TransportError {
    match error.code {
        ErrorCode::TimedOut | ErrorCode::BrokerNotAvailable => {
            let explained = shared.timeout_error(what, timeout_ms);
            if explained.code == ErrorCode::TimedOut && shared.last_issue().is_none() {
                error
            } else {
                explained
            }
        }
        _ => error,
    }
}
