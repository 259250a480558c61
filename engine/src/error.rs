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
    /// A snapshot that a commit names and the checkpoint store does not
    /// have: the task stops; it never starts empty.
    #[error("missing snapshot: {0}")]
    MissingSnapshot(String),
    /// The checkpoint store could not read or write (I/O, a full disk, a
    /// transport failure of the topic store); the worker may try again.
    #[error("checkpoint store: {0}")]
    Store(String),
    /// A bad input record under `on_bad_record = "fail"`: its topic,
    /// partition, offset and what is wrong with it.
    #[error("bad record: {0}")]
    BadRecord(String),
    /// A file that cannot be written (or read for a reason other than its
    /// contents): the path and the system's reason.
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
