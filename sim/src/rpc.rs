//! A request/response connection to a simulated node, with a timeout per
//! call and reconnection after any failure.
//!
//! Brokers use it for controller and inter-broker traffic; tests use it as
//! a raw client. One call at a time (`&mut self`): the peer answers the
//! requests of a connection in order. Any error or timeout drops the
//! connection (a late answer must never be taken for the next call's).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use turmoil::net::TcpStream;

use crate::protocol::{
    Api, Frame, FrameBuffer, FrameError, Request, Response, read_frame_buffered,
    write_frame_buffered,
};
use crate::world::now_ms;

/// Why a call failed; in every case the outcome on the peer is unknown.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("connect to {0} failed: {1}")]
    Connect(String, std::io::Error),
    #[error("connection to {0}: {1}")]
    Frame(String, FrameError),
    #[error("connection to {0} closed")]
    Closed(String),
    #[error("call to {0} timed out")]
    Timeout(String),
    #[error("answer from {0} has correlation id {1}, expected {2}")]
    Correlation(String, u32, u32),
}

/// Kafka's `reconnect.backoff.ms`: the first wait between two connection
/// attempts to one address.
pub const RECONNECT_BACKOFF_MS: u64 = 50;
/// Kafka's `reconnect.backoff.max.ms`: the wait doubles up to this.
pub const RECONNECT_BACKOFF_MAX_MS: u64 = 1_000;

/// Connection attempts per address, shared by every [`Connection`] of a
/// node (cheap to clone): attempts to one address are spaced by a backoff
/// that doubles from [`RECONNECT_BACKOFF_MS`] to [`RECONNECT_BACKOFF_MAX_MS`]
/// and resets on a successful connect, as Kafka's `NetworkClient` spaces
/// them. Besides being Kafka's behaviour this bounds a simulator resource:
/// turmoil keeps the local port of a connect that never completes, so
/// unspaced retries across a long network partition would exhaust a host's
/// ephemeral ports.
#[derive(Clone, Default)]
pub struct Reconnects(Rc<RefCell<BTreeMap<String, Attempts>>>);

#[derive(Clone, Copy)]
struct Attempts {
    failures: u32,
    /// Simulated ms ([`now_ms`]) before which no attempt starts.
    not_before_ms: u64,
}

impl Reconnects {
    /// Waits until `address` may be tried again, then records the attempt.
    async fn attempt(&self, address: &str) {
        let not_before_ms = self.0.borrow().get(address).map(|a| a.not_before_ms);
        if let Some(at) = not_before_ms {
            let wait = at.saturating_sub(now_ms());
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
        let mut map = self.0.borrow_mut();
        let attempts = map.entry(address.to_string()).or_insert(Attempts {
            failures: 0,
            not_before_ms: 0,
        });
        let delay = RECONNECT_BACKOFF_MS
            .saturating_mul(1 << attempts.failures.min(16))
            .min(RECONNECT_BACKOFF_MAX_MS);
        attempts.not_before_ms = now_ms() + delay;
        attempts.failures = attempts.failures.saturating_add(1);
    }

    /// A connect to `address` succeeded: the next attempt waits the least.
    fn connected(&self, address: &str) {
        if let Some(attempts) = self.0.borrow_mut().get_mut(address) {
            attempts.failures = 0;
        }
    }
}

/// A connection to `host:port`, opened on first use.
pub struct Connection {
    address: String,
    stream: Option<TcpStream>,
    next_correlation_id: u32,
    buffer: FrameBuffer,
    reconnects: Reconnects,
}

impl Connection {
    /// A connection with its own reconnect backoff.
    pub fn new(host: &str, port: u16) -> Self {
        Self::with_reconnects(host, port, Reconnects::default())
    }

    /// A connection whose attempts are spaced together with the other
    /// connections sharing `reconnects` (a node's connections).
    pub fn with_reconnects(host: &str, port: u16, reconnects: Reconnects) -> Self {
        Self {
            address: format!("{host}:{port}"),
            stream: None,
            next_correlation_id: 1,
            buffer: FrameBuffer::default(),
            reconnects,
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Drops the connection; the next call reconnects.
    pub fn reset(&mut self) {
        self.stream = None;
    }

    /// Sends `request` and waits up to `timeout_ms` for its answer
    /// (including the time to connect).
    pub async fn call(&mut self, request: Request, timeout_ms: u64) -> Result<Response, RpcError> {
        self.call_ref(&request, timeout_ms).await
    }

    /// Sends one API's request and waits up to `timeout_ms` for its
    /// answer. An answer of another API is a broken invariant of the peer:
    /// a panic naming the API.
    pub async fn call_api<A: Api>(
        &mut self,
        request: A,
        timeout_ms: u64,
    ) -> Result<A::Response, RpcError> {
        let response = self.call(request.into(), timeout_ms).await?;
        Ok(A::response(response)
            .unwrap_or_else(|other| panic!("{} answered {} with {other:?}", self.address, A::NAME)))
    }

    /// [`Connection::call`] with a borrowed request (the caller keeps it).
    pub async fn call_ref(
        &mut self,
        request: &Request,
        timeout_ms: u64,
    ) -> Result<Response, RpcError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let result = tokio::time::timeout(
            Duration::from_millis(timeout_ms),
            self.exchange(correlation_id, request),
        )
        .await;
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                self.stream = None;
                Err(error)
            }
            Err(_) => {
                self.stream = None;
                Err(RpcError::Timeout(self.address.clone()))
            }
        }
    }

    async fn exchange(
        &mut self,
        correlation_id: u32,
        request: &Request,
    ) -> Result<Response, RpcError> {
        if self.stream.is_none() {
            self.reconnects.attempt(&self.address).await;
            let stream = TcpStream::connect(self.address.as_str())
                .await
                .map_err(|e| RpcError::Connect(self.address.clone(), e))?;
            self.reconnects.connected(&self.address);
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        let frame = Frame {
            correlation_id,
            body: request,
        };
        write_frame_buffered(stream, &frame, &mut self.buffer)
            .await
            .map_err(|e| RpcError::Frame(self.address.clone(), e))?;
        let answer: Frame<Response> = read_frame_buffered(stream, &mut self.buffer)
            .await
            .map_err(|e| RpcError::Frame(self.address.clone(), e))?
            .ok_or_else(|| RpcError::Closed(self.address.clone()))?;
        if answer.correlation_id != correlation_id {
            return Err(RpcError::Correlation(
                self.address.clone(),
                answer.correlation_id,
                correlation_id,
            ));
        }
        Ok(answer.body)
    }
}
