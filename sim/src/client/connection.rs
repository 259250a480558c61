//! One TCP connection from a client to a broker, over turmoil's network.
//!
//! Requests are pipelined: each gets a correlation id and a slot in the
//! pending table; one I/O task writes frames in order and completes slots
//! as responses come back (the broker answers in order, but the table does
//! not rely on it). As in Kafka's clients, a request that is not answered
//! within its timeout closes the connection (its responses can no longer be
//! matched to anything useful, and a stalled TCP stream, such as one cut by
//! a network partition, is only ever noticed this way); every other request
//! on it then fails with a network error and is retried by its owner.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::protocol::{
    Frame, FrameBuffer, Request, Response, read_frame_buffered, write_frame_buffered,
};

/// Where a broker listens: a turmoil host name and a port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `"host"` (with `default_port`) or `"host:port"`; `None` for an empty
    /// host or a port that is not a number.
    pub fn parse(text: &str, default_port: u16) -> Option<Endpoint> {
        let text = text.trim();
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().ok()?),
            None => (text, default_port),
        };
        if host.is_empty() {
            return None;
        }
        Some(Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why a request got no response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NetError {
    /// The connection could not be established.
    Connect(String),
    /// The connection broke (or was closed) before the response came.
    Disconnected(String),
    /// No response within the request timeout; the connection was closed.
    TimedOut { endpoint: String, timeout_ms: u64 },
    /// The broker answered with something that makes no sense for the
    /// request (a protocol violation).
    Unexpected(String),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Connect(reason) => write!(f, "cannot connect: {reason}"),
            NetError::Disconnected(reason) => write!(f, "disconnected: {reason}"),
            NetError::TimedOut {
                endpoint,
                timeout_ms,
            } => write!(f, "no answer from {endpoint} within {timeout_ms} ms"),
            NetError::Unexpected(reason) => write!(f, "unexpected answer: {reason}"),
        }
    }
}

type Slot = oneshot::Sender<Result<Response, NetError>>;

/// State shared by a connection's handle and its I/O task.
struct Shared {
    endpoint: Endpoint,
    pending: RefCell<BTreeMap<u32, Slot>>,
    next_correlation_id: Cell<u32>,
    /// `Some` once the connection is closed: why.
    closed: RefCell<Option<NetError>>,
    /// Bound on `pending` (and so on the outbox, whose frames all have a
    /// pending slot).
    pending_max: usize,
    /// Raised when a pending request finishes (room for a waiting one).
    room: Notify,
}

impl Shared {
    /// Closes the connection (first reason wins) and fails every request
    /// still waiting for an answer.
    fn close(&self, reason: NetError) {
        {
            let mut closed = self.closed.borrow_mut();
            if closed.is_none() {
                *closed = Some(reason.clone());
            }
        }
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (_, slot) in pending {
            // The caller may have given up (its future dropped): ignore.
            let _ = slot.send(Err(reason.clone()));
        }
        self.room.notify_waiters();
    }

    fn complete(&self, frame: Frame<Response>) {
        let slot = self.pending.borrow_mut().remove(&frame.correlation_id);
        match slot {
            Some(slot) => {
                let _ = slot.send(Ok(frame.body));
                self.room.notify_waiters();
            }
            None => {
                // A response to a request we never sent is a broker bug; an
                // answer to one that already failed cannot happen because a
                // failed request closes the connection first.
                self.close(NetError::Unexpected(format!(
                    "{} answered unknown correlation id {}",
                    self.endpoint, frame.correlation_id
                )));
            }
        }
    }
}

/// A connection to one broker. Created at once; the I/O task connects in
/// the background (after `connect_not_before`, the reconnect backoff), and
/// requests queue until then.
pub(crate) struct Connection {
    shared: Rc<Shared>,
    outbox: mpsc::UnboundedSender<Frame<Request>>,
    io_task: JoinHandle<()>,
}

impl Connection {
    pub(crate) fn open(
        endpoint: Endpoint,
        connect_timeout: Duration,
        connect_not_before: Option<Instant>,
        pending_max: usize,
    ) -> Connection {
        assert!(pending_max > 0, "a connection must allow one request");
        let shared = Rc::new(Shared {
            endpoint: endpoint.clone(),
            pending: RefCell::new(BTreeMap::new()),
            next_correlation_id: Cell::new(0),
            closed: RefCell::new(None),
            pending_max,
            room: Notify::new(),
        });
        let (outbox, inbox) = mpsc::unbounded_channel();
        let io_task = tokio::task::spawn_local(run(
            Rc::clone(&shared),
            inbox,
            connect_timeout,
            connect_not_before,
        ));
        Connection {
            shared,
            outbox,
            io_task,
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// `Some(reason)` once the connection is closed.
    pub(crate) fn closed(&self) -> Option<NetError> {
        self.shared.closed.borrow().clone()
    }

    /// Whether the connection never got established (for reconnect backoff).
    pub(crate) fn failed_to_connect(&self) -> bool {
        matches!(self.closed(), Some(NetError::Connect(_)))
    }

    /// Sends a request and waits up to `timeout` for its response.
    pub(crate) async fn call(
        &self,
        body: Request,
        timeout: Duration,
    ) -> Result<Response, NetError> {
        if let Some(reason) = self.closed() {
            return Err(reason);
        }
        let mut timeout = timeout;
        if self.shared.pending.borrow().len() >= self.shared.pending_max {
            // Never at the default bound: the wait (and its timer) happens
            // only on a full connection.
            let started = super::now();
            if tokio::time::timeout(timeout, self.room_for_one())
                .await
                .is_err()
            {
                return Err(NetError::TimedOut {
                    endpoint: self.shared.endpoint.to_string(),
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                });
            }
            if let Some(reason) = self.closed() {
                return Err(reason);
            }
            timeout = timeout.saturating_sub(super::now().duration_since(started));
        }
        assert!(
            self.shared.pending.borrow().len() < self.shared.pending_max,
            "{}: more than {} requests pending",
            self.shared.endpoint,
            self.shared.pending_max
        );
        let correlation_id = self.shared.next_correlation_id.get();
        self.shared
            .next_correlation_id
            .set(correlation_id.wrapping_add(1));
        let (slot, answer) = oneshot::channel();
        let previous = self
            .shared
            .pending
            .borrow_mut()
            .insert(correlation_id, slot);
        assert!(
            previous.is_none(),
            "correlation id {correlation_id} reused on {} while still pending",
            self.shared.endpoint
        );
        if self
            .outbox
            .send(Frame {
                correlation_id,
                body,
            })
            .is_err()
        {
            self.shared.pending.borrow_mut().remove(&correlation_id);
            return Err(self
                .closed()
                .unwrap_or_else(|| NetError::Disconnected("connection task ended".into())));
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self
                .closed()
                .unwrap_or_else(|| NetError::Disconnected("request dropped".into()))),
            Err(_) => {
                let reason = NetError::TimedOut {
                    endpoint: self.shared.endpoint.to_string(),
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                };
                self.close(reason.clone());
                Err(reason)
            }
        }
    }

    /// Waits until the connection has room for one more request (or is
    /// closed).
    async fn room_for_one(&self) {
        loop {
            let room = self.shared.room.notified();
            if self.closed().is_some()
                || self.shared.pending.borrow().len() < self.shared.pending_max
            {
                return;
            }
            room.await;
        }
    }

    /// Closes the connection; requests waiting on it fail with `reason`.
    pub(crate) fn close(&self, reason: NetError) {
        self.io_task.abort();
        self.shared.close(reason);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.io_task.abort();
        self.shared.close(NetError::Disconnected(
            "connection dropped by the client".into(),
        ));
    }
}

/// The I/O task: connect, then write queued frames and read responses until
/// either side fails.
async fn run(
    shared: Rc<Shared>,
    mut inbox: mpsc::UnboundedReceiver<Frame<Request>>,
    connect_timeout: Duration,
    connect_not_before: Option<Instant>,
) {
    if let Some(at) = connect_not_before {
        tokio::time::sleep_until(at).await;
    }
    let endpoint = shared.endpoint.clone();
    let connect = turmoil::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port));
    let stream = match tokio::time::timeout(connect_timeout, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            shared.close(NetError::Connect(format!("{endpoint}: {error}")));
            return;
        }
        Err(_) => {
            shared.close(NetError::Connect(format!(
                "{endpoint}: no answer within {} ms",
                connect_timeout.as_millis()
            )));
            return;
        }
    };
    let (mut reader, mut writer) = stream.into_split();
    let read_loop = async {
        let mut buffer = FrameBuffer::default();
        loop {
            match read_frame_buffered::<_, Response>(&mut reader, &mut buffer).await {
                Ok(Some(frame)) => shared.complete(frame),
                Ok(None) => {
                    return NetError::Disconnected(format!("{endpoint} closed the connection"));
                }
                Err(error) => return NetError::Disconnected(format!("{endpoint}: {error}")),
            }
        }
    };
    let write_loop = async {
        let mut buffer = FrameBuffer::default();
        while let Some(frame) = inbox.recv().await {
            if let Err(error) = write_frame_buffered(&mut writer, &frame, &mut buffer).await {
                return NetError::Disconnected(format!("{endpoint}: {error}"));
            }
        }
        NetError::Disconnected("connection dropped by the client".into())
    };
    let reason = tokio::select! {
        reason = read_loop => reason,
        reason = write_loop => reason,
    };
    shared.close(reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_or_without_a_port() {
        assert_eq!(
            Endpoint::parse("broker-1", 9092),
            Some(Endpoint {
                host: "broker-1".into(),
                port: 9092
            })
        );
        assert_eq!(
            Endpoint::parse("broker-1:19092", 9092),
            Some(Endpoint {
                host: "broker-1".into(),
                port: 19092
            })
        );
        assert_eq!(Endpoint::parse(":9092", 9092), None);
        assert_eq!(Endpoint::parse("broker:x", 9092), None);
    }
}
