//! A request/response connection to a simulated node, with a timeout per
//! call and reconnection after any failure.
//!
//! Brokers use it for controller and inter-broker traffic; tests use it as
//! a raw client. One call at a time (`&mut self`): the peer answers the
//! requests of a connection in order. Any error or timeout drops the
//! connection (a late answer must never be taken for the next call's).

use std::time::Duration;

use turmoil::net::TcpStream;

use crate::protocol::{
    Frame, FrameBuffer, FrameError, Request, Response, read_frame_buffered, write_frame_buffered,
};

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

/// A connection to `host:port`, opened on first use.
pub struct Connection {
    address: String,
    stream: Option<TcpStream>,
    next_correlation_id: u32,
    buffer: FrameBuffer,
}

impl Connection {
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            address: format!("{host}:{port}"),
            stream: None,
            next_correlation_id: 1,
            buffer: FrameBuffer::default(),
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
            let stream = TcpStream::connect(self.address.as_str())
                .await
                .map_err(|e| RpcError::Connect(self.address.clone(), e))?;
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
