//! The engine's error type.

/// Everything an engine call can fail with that the outside world can cause.
/// A broken internal invariant panics instead: an error value would hide it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad user input: a spec, job or event that cannot be used, with the reason.
    #[error("{0}")]
    Invalid(String),
    /// An aggregate that would overflow its type.
    #[error("aggregate overflow: {0}")]
    Overflow(String),
    /// A snapshot that cannot be decoded (bad version, checksum or contents).
    #[error("corrupt snapshot: {0}")]
    CorruptSnapshot(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
