//! A client instance's network: its connections (one per broker and lane),
//! its metadata cache, and the request helpers every client part shares.
//!
//! Each producer, consumer and admin client owns one [`NetworkClient`], as
//! each Kafka client instance owns its connections. Connections are keyed by
//! broker endpoint and [`Lane`]: a broker serves one request of a connection
//! at a time, so a request that the broker may hold for long (a long-poll
//! Fetch, a JoinGroup waiting for the rebalance, a Produce waiting for
//! acks=all) gets a connection of its own instead of blocking the others —
//! the Java consumer does the same with its separate coordinator connection.

use std::cell::{Cell, Ref, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use eddyline_engine::transport::{
    ErrorCode, OffsetAndMetadata, TopicPartition, TransportError, TransportResult,
};
use tokio::time::Instant;

use super::connection::{Connection, Endpoint, NetError};
use super::errors;
use super::metadata::MetadataCache;
use super::{SimClientOptions, now};
use crate::protocol::{
    Api, BrokerId, BrokerInfo, CoordinatorType, FindCoordinatorRequest, FindCoordinatorResponse,
    MetadataRequest, MetadataResponse, PartitionError, answer_for,
};

/// Which connection to a broker a request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Lane {
    /// Metadata, admin, offsets, transaction coordinator requests.
    Control,
    /// Produce requests (held by the broker until acks=all completes).
    Produce,
    /// Fetch long-polls.
    Fetch,
    /// Group membership (JoinGroup waits for the whole rebalance).
    Group,
}

struct Inner {
    options: SimClientOptions,
    bootstrap: Vec<Endpoint>,
    connections: RefCell<BTreeMap<(Endpoint, Lane), Rc<Connection>>>,
    /// Reconnect backoff: no new connection to an endpoint before this.
    connect_not_before: RefCell<BTreeMap<Endpoint, Instant>>,
    metadata: RefCell<MetadataCache>,
    /// Rotates the broker a metadata request goes to first.
    metadata_rotation: Cell<usize>,
}

/// Cheap to clone; every clone shares the same connections and cache.
#[derive(Clone)]
pub(crate) struct NetworkClient {
    inner: Rc<Inner>,
}

impl NetworkClient {
    pub(crate) fn new(bootstrap: Vec<Endpoint>, options: SimClientOptions) -> NetworkClient {
        assert!(
            !bootstrap.is_empty(),
            "a client needs at least one bootstrap broker"
        );
        NetworkClient {
            inner: Rc::new(Inner {
                options,
                bootstrap,
                connections: RefCell::new(BTreeMap::new()),
                connect_not_before: RefCell::new(BTreeMap::new()),
                metadata: RefCell::new(MetadataCache::default()),
                metadata_rotation: Cell::new(0),
            }),
        }
    }

    pub(crate) fn options(&self) -> &SimClientOptions {
        &self.inner.options
    }

    pub(crate) fn metadata(&self) -> Ref<'_, MetadataCache> {
        self.inner.metadata.borrow()
    }

    pub(crate) fn invalidate_leader(&self, partition: &eddyline_engine::transport::TopicPartition) {
        self.inner
            .metadata
            .borrow_mut()
            .invalidate_leader(partition);
    }

    /// The endpoint of a broker host name as Metadata names it.
    pub(crate) fn endpoint_of_host(&self, host: &str) -> Endpoint {
        Endpoint::parse(host, self.inner.options.broker_port).unwrap_or_else(|| Endpoint {
            host: host.to_string(),
            port: self.inner.options.broker_port,
        })
    }

    pub(crate) fn broker_endpoint(&self, broker: BrokerId) -> Option<Endpoint> {
        let metadata = self.inner.metadata.borrow();
        metadata
            .broker_host(broker)
            .map(|host| self.endpoint_of_host(host))
    }

    fn connection(&self, endpoint: &Endpoint, lane: Lane) -> Rc<Connection> {
        let key = (endpoint.clone(), lane);
        if let Some(existing) = self.inner.connections.borrow().get(&key) {
            if existing.closed().is_none() {
                return Rc::clone(existing);
            }
        }
        let options = &self.inner.options;
        let not_before = self
            .inner
            .connect_not_before
            .borrow()
            .get(endpoint)
            .copied()
            .filter(|at| *at > now());
        let connection = Rc::new(Connection::open(
            endpoint.clone(),
            Duration::from_millis(u64::from(options.connect_timeout_ms)),
            not_before,
            options.max_in_flight_requests_per_connection,
        ));
        self.inner
            .connections
            .borrow_mut()
            .insert(key, Rc::clone(&connection));
        connection
    }

    /// Sends a request to an endpoint on a lane and waits up to `timeout`
    /// for its API's answer.
    ///
    /// An answer of another API is a broken invariant of the broker: this is
    /// the one place that reports it (a panic naming the API).
    pub(crate) async fn call<A: Api>(
        &self,
        endpoint: &Endpoint,
        lane: Lane,
        request: A,
        timeout: Duration,
    ) -> Result<A::Response, NetError> {
        let connection = self.connection(endpoint, lane);
        let result = connection
            .call(request.into(), timeout)
            .await
            .and_then(|response| {
                A::response(response).map_err(|other| {
                    NetError::Unexpected(format!("{} answered with {other:?}", A::NAME))
                })
            });
        if let Err(NetError::TimedOut { .. }) = &result {
            // The path to this broker broke (or is broken): reset every
            // connection to it, not only the one that timed out — as if the
            // lanes were one connection, as in librdkafka. In the simulator
            // this matters: turmoil drops the segments of a partitioned link
            // without retransmitting them, so every connection that carried
            // data across a partition is dead after the heal, and only a
            // timeout reveals it.
            self.reset_endpoint(endpoint, "reset after a request to it timed out");
        }
        if result.is_err() && connection.failed_to_connect() {
            let backoff = Duration::from_millis(u64::from(self.inner.options.reconnect_backoff_ms));
            self.inner
                .connect_not_before
                .borrow_mut()
                .insert(connection.endpoint().clone(), now() + backoff);
        }
        if let Err(NetError::Unexpected(reason)) = &result {
            panic!(
                "protocol violation from {}: {reason}",
                connection.endpoint()
            );
        }
        result
    }

    /// Sends a request to a broker by id (its endpoint from the metadata).
    pub(crate) async fn call_broker<A: Api>(
        &self,
        broker: BrokerId,
        lane: Lane,
        request: A,
        timeout: Duration,
    ) -> Result<A::Response, NetError> {
        let Some(endpoint) = self.broker_endpoint(broker) else {
            return Err(NetError::Connect(format!(
                "broker {broker} is not in the metadata"
            )));
        };
        self.call(&endpoint, lane, request, timeout).await
    }

    /// Closes every connection to `endpoint` (all lanes); requests waiting
    /// on them fail with a network error and are retried by their owners.
    pub(crate) fn reset_endpoint(&self, endpoint: &Endpoint, reason: &str) {
        let closing: Vec<Rc<Connection>> = {
            let mut connections = self.inner.connections.borrow_mut();
            let keys: Vec<(Endpoint, Lane)> = connections
                .keys()
                .filter(|(at, _)| at == endpoint)
                .cloned()
                .collect();
            keys.iter()
                .filter_map(|key| connections.remove(key))
                .collect()
        };
        for connection in closing {
            connection.close(NetError::Disconnected(format!("{endpoint}: {reason}")));
        }
    }

    /// Closes every connection (the client is going away).
    pub(crate) fn close_all(&self) {
        let connections = std::mem::take(&mut *self.inner.connections.borrow_mut());
        for (_, connection) in connections {
            connection.close(NetError::Disconnected("client closed".into()));
        }
    }

    /// Where a metadata request may go, the next one first: known brokers
    /// (by id), then bootstrap endpoints not among them.
    fn metadata_candidates(&self) -> Vec<Endpoint> {
        let mut candidates: Vec<Endpoint> = self
            .inner
            .metadata
            .borrow()
            .brokers()
            .map(|(_, host)| self.endpoint_of_host(host))
            .collect();
        for endpoint in &self.inner.bootstrap {
            if !candidates.contains(endpoint) {
                candidates.push(endpoint.clone());
            }
        }
        let start = self.inner.metadata_rotation.get();
        self.inner.metadata_rotation.set(start.wrapping_add(1));
        if !candidates.is_empty() {
            let shift = start % candidates.len();
            candidates.rotate_left(shift);
        }
        candidates
    }

    /// Asks one broker after another for the metadata of `topics` until one
    /// answers; fails when none does.
    pub(crate) async fn refresh_metadata(&self, topics: &[String]) -> TransportResult<()> {
        let timeout = Duration::from_millis(u64::from(self.inner.options.metadata_timeout_ms));
        let mut last_error = None;
        for endpoint in self.metadata_candidates() {
            let request = MetadataRequest {
                topics: Some(topics.to_vec()),
            };
            match self.call(&endpoint, Lane::Control, request, timeout).await {
                Ok(MetadataResponse {
                    brokers, topics, ..
                }) => {
                    self.inner.metadata.borrow_mut().apply(&brokers, &topics);
                    return Ok(());
                }
                Err(error) => last_error = Some(error),
            }
        }
        let last_error = last_error.expect("at least one metadata candidate");
        Err(TransportError::new(
            eddyline_engine::transport::ErrorKind::Retriable,
            ErrorCode::BrokerNotAvailable,
            format!("no broker answered a metadata request: {last_error}"),
        ))
    }

    /// Refreshes metadata for `topics` with backoff until `ready` holds for
    /// the cache or `deadline` passes.
    pub(crate) async fn await_metadata(
        &self,
        topics: &[String],
        deadline: Instant,
        ready: impl Fn(&MetadataCache) -> bool,
    ) -> TransportResult<()> {
        let mut backoff = Backoff::new(&self.inner.options);
        loop {
            let refreshed = self.refresh_metadata(topics).await;
            if ready(&self.inner.metadata.borrow()) {
                return Ok(());
            }
            if now() >= deadline {
                return Err(match refreshed {
                    Err(error) => error,
                    Ok(()) => errors::timed_out(format!(
                        "metadata for {topics:?} not ready before the deadline"
                    )),
                });
            }
            backoff.sleep_until_at_most(deadline).await;
        }
    }

    /// Finds the coordinator for a group or a transactional id, retrying
    /// retriable errors until `deadline`.
    pub(crate) async fn find_coordinator(
        &self,
        key_type: CoordinatorType,
        key: &str,
        deadline: Instant,
    ) -> TransportResult<Endpoint> {
        let mut backoff = Backoff::new(&self.inner.options);
        let mut last_error;
        loop {
            // Any broker answers FindCoordinator; each attempt asks the next
            // one, briefly, so that one unreachable broker (or a connection
            // stalled by a healed partition) does not use up the deadline.
            let candidates = self.metadata_candidates();
            let endpoint = candidates
                .first()
                .expect("bootstrap is never empty")
                .clone();
            let request = FindCoordinatorRequest {
                key_type,
                key: key.to_string(),
            };
            let timeout = self.attempt_timeout(
                deadline,
                Duration::from_millis(u64::from(self.inner.options.metadata_timeout_ms)),
            );
            match self.call(&endpoint, Lane::Control, request, timeout).await {
                Ok(FindCoordinatorResponse {
                    error: None,
                    node: Some(BrokerInfo { host, .. }),
                }) => return Ok(self.endpoint_of_host(&host)),
                Ok(FindCoordinatorResponse { error, .. }) => {
                    let code = error.unwrap_or(ErrorCode::CoordinatorNotAvailable);
                    if !errors::is_retriable(code) {
                        return Err(errors::broker_error(
                            code,
                            format!("FindCoordinator({key_type:?}, {key})"),
                        ));
                    }
                    last_error =
                        errors::broker_error(code, format!("FindCoordinator({key_type:?}, {key})"));
                }
                Err(error) => {
                    last_error =
                        errors::from_net(&error, format!("FindCoordinator({key_type:?}, {key})"));
                }
            }
            if now() >= deadline {
                return Err(deadline_error(last_error));
            }
            backoff.sleep_until_at_most(deadline).await;
        }
    }

    /// One request to a group or transaction coordinator, retried until
    /// `deadline`: look the coordinator up (FindCoordinator, or the cached
    /// endpoint), send the request built by `request`, and let `answer` say
    /// what the response means. A network error or an answer that
    /// [`Attempt::Relocate`]s forgets the cached coordinator, so the next
    /// attempt looks it up again; every retry waits a backoff (shorter after
    /// CONCURRENT_TRANSACTIONS, as the Java client does).
    pub(crate) async fn coordinator_call<A: Api, T>(
        &self,
        coordinator: &Coordinator<'_>,
        context: &str,
        deadline: Instant,
        request_timeout: Duration,
        mut request: impl FnMut() -> A,
        mut answer: impl FnMut(A::Response) -> Attempt<T>,
    ) -> TransportResult<T> {
        let mut backoff = Backoff::new(&self.inner.options);
        loop {
            let endpoint = self.coordinator_endpoint(coordinator, deadline).await?;
            let timeout = self.attempt_timeout(deadline, request_timeout);
            let last_error = match self
                .call(&endpoint, Lane::Control, request(), timeout)
                .await
            {
                Ok(response) => match answer(response) {
                    Attempt::Done(value) => return Ok(value),
                    Attempt::Fail(error) => return Err(error),
                    Attempt::Retry(error) => error,
                    Attempt::Relocate(error) => {
                        coordinator.forget();
                        error
                    }
                },
                Err(error) => {
                    coordinator.forget();
                    errors::from_net(&error, context)
                }
            };
            if now() >= deadline {
                return Err(deadline_error(last_error));
            }
            if last_error.code == ErrorCode::ConcurrentTransactions {
                let wake = (now() + CONCURRENT_TRANSACTIONS_BACKOFF).min(deadline);
                tokio::time::sleep_until(wake).await;
            } else {
                backoff.sleep_until_at_most(deadline).await;
            }
        }
    }

    /// Offsets for a group's coordinator (OffsetCommit, TxnOffsetCommit)
    /// through [`NetworkClient::coordinator_call`]: sends `offsets`, then
    /// again those whose partition got a retriable error, until none is
    /// left; the first other error ends the call as `refuse` says.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn commit_offsets_call<A: Api>(
        &self,
        group_id: &str,
        context: &str,
        deadline: Instant,
        request_timeout: Duration,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
        request: impl Fn(Vec<(TopicPartition, OffsetAndMetadata)>) -> A,
        results: impl Fn(A::Response) -> Vec<PartitionError>,
        mut refuse: impl FnMut(ErrorCode) -> TransportError,
    ) -> TransportResult<()> {
        let remaining = RefCell::new(offsets);
        self.coordinator_call(
            &Coordinator::group(group_id),
            context,
            deadline,
            request_timeout,
            || request(remaining.borrow().clone()),
            |response| {
                let sent = std::mem::take(&mut *remaining.borrow_mut());
                let left = offsets_left(A::NAME, sent, &results(response), &mut refuse);
                Attempt::of_partitions(&remaining, left, context)
            },
        )
        .await
    }

    /// The coordinator's endpoint: the cached one, else FindCoordinator's
    /// answer (cached if the coordinator has a cache).
    pub(crate) async fn coordinator_endpoint(
        &self,
        coordinator: &Coordinator<'_>,
        deadline: Instant,
    ) -> TransportResult<Endpoint> {
        if let Some(cache) = coordinator.cache {
            if let Some(endpoint) = cache.borrow().clone() {
                return Ok(endpoint);
            }
        }
        let endpoint = self
            .find_coordinator(coordinator.key_type, coordinator.key, deadline)
            .await?;
        if let Some(cache) = coordinator.cache {
            *cache.borrow_mut() = Some(endpoint.clone());
        }
        Ok(endpoint)
    }

    /// The timeout for one request that must finish by `deadline`: the
    /// remaining time, at least one millisecond.
    pub(crate) fn request_timeout_until(&self, deadline: Instant) -> Duration {
        deadline
            .saturating_duration_since(now())
            .max(Duration::from_millis(1))
    }

    /// The timeout of one attempt of a retried call that must finish by
    /// `deadline` and whose requests take up to `request_timeout`: at most
    /// half of that, so that an attempt stuck on a dead connection (closed
    /// when it times out) leaves time for a retry on a new one — the
    /// Java client's `default.api.timeout.ms` is twice its
    /// `request.timeout.ms` for the same reason.
    pub(crate) fn attempt_timeout(&self, deadline: Instant, request_timeout: Duration) -> Duration {
        self.request_timeout_until(deadline)
            .min((request_timeout / 2).max(Duration::from_millis(1)))
    }
}

/// The Java client retries CONCURRENT_TRANSACTIONS sooner than other errors
/// (the previous transaction is still completing).
pub(crate) const CONCURRENT_TRANSACTIONS_BACKOFF: Duration = Duration::from_millis(20);

/// A group or transaction coordinator, as [`NetworkClient::coordinator_call`]
/// finds it.
pub(crate) struct Coordinator<'a> {
    pub(crate) key_type: CoordinatorType,
    /// The group id or the transactional id.
    pub(crate) key: &'a str,
    /// `Some`: the endpoint found last, reused until an attempt relocates
    /// or fails on the network (the producer's transaction coordinator);
    /// `None`: FindCoordinator before every attempt.
    pub(crate) cache: Option<&'a RefCell<Option<Endpoint>>>,
}

impl<'a> Coordinator<'a> {
    /// A group's coordinator, looked up before every attempt.
    pub(crate) fn group(group_id: &'a str) -> Coordinator<'a> {
        Coordinator {
            key_type: CoordinatorType::Group,
            key: group_id,
            cache: None,
        }
    }

    pub(crate) fn forget(&self) {
        if let Some(cache) = self.cache {
            *cache.borrow_mut() = None;
        }
    }
}

/// What one answer of a coordinator means for a [`NetworkClient::coordinator_call`].
pub(crate) enum Attempt<T> {
    /// The call's result.
    Done(T),
    /// The call failed for good.
    Fail(TransportError),
    /// A retriable error: try again after a backoff.
    Retry(TransportError),
    /// The coordinator moved or is unavailable (NOT_COORDINATOR,
    /// COORDINATOR_NOT_AVAILABLE, ...): look it up again, then retry.
    Relocate(TransportError),
}

impl<T> Attempt<T> {
    /// A coordinator's error `code`: relocate after a coordinator error,
    /// retry a retriable one, else `otherwise(code)`.
    pub(crate) fn of_error(
        code: ErrorCode,
        context: &str,
        otherwise: impl FnOnce(ErrorCode) -> Attempt<T>,
    ) -> Attempt<T> {
        if errors::is_coordinator_error(code) {
            Attempt::Relocate(errors::broker_error(code, context))
        } else if errors::is_retriable(code) {
            Attempt::Retry(errors::broker_error(code, context))
        } else {
            otherwise(code)
        }
    }
}

impl Attempt<()> {
    /// A per-partition answer (`(to retry, last retriable error)`, or the
    /// error that ends the call): done when nothing is left to retry, else
    /// a retry of the partitions left, which it stores in `remaining`.
    fn of_partitions<P>(
        remaining: &RefCell<Vec<P>>,
        answer: TransportResult<PartitionsLeft<P>>,
        context: &str,
    ) -> Attempt<()> {
        match answer {
            Ok((retry, None)) => {
                assert!(retry.is_empty(), "{context}: a retry without an error");
                Attempt::Done(())
            }
            Ok((retry, Some(code))) => {
                *remaining.borrow_mut() = retry;
                Attempt::Retry(errors::broker_error(code, context))
            }
            Err(error) => Attempt::Fail(error),
        }
    }
}

/// Goes through a per-partition answer to the offsets `sent`: a retriable
/// error leaves its offset to send again; the first other error ends the
/// call with `refuse(code)` (which may change the client's state: it is
/// called at most once).
fn offsets_left(
    api: &str,
    sent: Vec<(TopicPartition, OffsetAndMetadata)>,
    results: &[PartitionError],
    refuse: &mut impl FnMut(ErrorCode) -> TransportError,
) -> TransportResult<PartitionsLeft<(TopicPartition, OffsetAndMetadata)>> {
    let mut retry = Vec::new();
    let mut last = None;
    for (partition, offset) in sent {
        match answer_for(api, results, &partition).error {
            None => {}
            Some(code) if errors::is_retriable(code) => {
                last = Some(code);
                retry.push((partition, offset));
            }
            Some(code) => return Err(refuse(code)),
        }
    }
    Ok((retry, last))
}

/// The partitions of a request to send again, with the last retriable error
/// one of them got (`None` when they all succeeded).
pub(crate) type PartitionsLeft<P> = (Vec<P>, Option<ErrorCode>);

/// The error a retry loop returns when its deadline passes: the last error,
/// as a timeout if it was retriable (the caller may try again later).
pub(crate) fn deadline_error(last: TransportError) -> TransportError {
    if last.kind == eddyline_engine::transport::ErrorKind::Retriable {
        TransportError::new(
            eddyline_engine::transport::ErrorKind::Timeout,
            ErrorCode::TimedOut,
            format!("timed out; last error: {}", last.message),
        )
    } else {
        last
    }
}

/// Exponential retry backoff without jitter (jitter would need randomness,
/// and the simulated network already varies latency).
pub(crate) struct Backoff {
    next_ms: u64,
    max_ms: u64,
}

impl Backoff {
    pub(crate) fn new(options: &SimClientOptions) -> Backoff {
        Backoff {
            next_ms: u64::from(options.retry_backoff_ms.max(1)),
            max_ms: u64::from(
                options
                    .retry_backoff_max_ms
                    .max(options.retry_backoff_ms)
                    .max(1),
            ),
        }
    }

    /// The next delay, doubling up to the maximum.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next_ms;
        self.next_ms = (self.next_ms * 2).min(self.max_ms);
        Duration::from_millis(delay)
    }

    pub(crate) fn reset(&mut self, options: &SimClientOptions) {
        self.next_ms = u64::from(options.retry_backoff_ms.max(1));
    }

    /// Sleeps for the next delay, but not past `deadline`.
    pub(crate) async fn sleep_until_at_most(&mut self, deadline: Instant) {
        let wake = (now() + self.next_delay()).min(deadline);
        tokio::time::sleep_until(wake).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let options = SimClientOptions {
            retry_backoff_ms: 100,
            retry_backoff_max_ms: 1000,
            ..SimClientOptions::default()
        };
        let mut backoff = Backoff::new(&options);
        let delays: Vec<u128> = (0..6).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        backoff.reset(&options);
        assert_eq!(backoff.next_delay().as_millis(), 100);
    }
}
