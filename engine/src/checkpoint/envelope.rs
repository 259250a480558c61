//! The envelope: the bytes a checkpoint store keeps for one snapshot.
//!
//! Layout (version 1, integers little-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | the magic `EDCK` |
//! | 2 | the format version (`u16`) |
//! | 2 | the job name's length in bytes (`u16`) |
//! | n | the job name (UTF-8) |
//! | 4 | the task (`i32`) |
//! | 8 | the checkpoint number (`u64`) |
//! | 8 | the writer's incarnation (`u64`) |
//! | 8 | the payload's length in bytes (`u64`) |
//! | p | the payload: the snapshot's bytes, as written |
//! | 4 | CRC-32 (IEEE, `crc32fast`) of every byte before it |
//!
//! The id inside the envelope makes a misplaced snapshot (a file renamed or
//! copied, a chunk under another key) an error instead of someone else's
//! state; the length makes a truncated or extended one an error; the
//! checksum catches every flipped bit (CRC-32 detects all single-bit and
//! all burst errors up to 32 bits). [`open`] names what is wrong: bad magic,
//! unknown version, truncated, trailing bytes, checksum mismatch, another id.
//!
//! The checks for names every store shares are here too ([`check_id`],
//! [`check_job`]): a job name that one store accepts, every store accepts.

use std::fmt;

use super::SnapshotId;
use crate::error::{Error, Result};

/// The first bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"EDCK";

/// The format version this build writes and reads.
pub const VERSION: u16 = 1;

/// The longest job name, in bytes: it must fit in a file name (255 bytes
/// on every common file system) and in the envelope's `u16` length.
pub const JOB_NAME_BYTES_MAX: usize = 255;

/// Magic, version and the job name's length.
const PREFIX_BYTES: usize = 4 + 2 + 2;
/// Task, checkpoint, incarnation and payload length, after the job name.
const FIXED_ID_BYTES: usize = 4 + 8 + 8 + 8;
const CHECKSUM_BYTES: usize = 4;

/// Wraps `payload` as the stored form of snapshot `id`.
///
/// # Panics
/// If `id` fails [`check_id`]: every store checks the id before it seals.
pub fn seal(id: &SnapshotId, payload: &[u8]) -> Vec<u8> {
    if let Err(error) = check_id(id) {
        panic!("sealing a snapshot with an id no store accepts: {error}");
    }
    let job = id.job.as_bytes();
    let job_bytes = u16::try_from(job.len()).expect("check_id bounds the job name");
    let total = PREFIX_BYTES + job.len() + FIXED_ID_BYTES + payload.len() + CHECKSUM_BYTES;
    let mut sealed = Vec::with_capacity(total);
    sealed.extend_from_slice(&MAGIC);
    sealed.extend_from_slice(&VERSION.to_le_bytes());
    sealed.extend_from_slice(&job_bytes.to_le_bytes());
    sealed.extend_from_slice(job);
    sealed.extend_from_slice(&id.task.to_le_bytes());
    sealed.extend_from_slice(&id.checkpoint.to_le_bytes());
    sealed.extend_from_slice(&id.incarnation.to_le_bytes());
    sealed.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    sealed.extend_from_slice(payload);
    let checksum = crc32fast::hash(&sealed);
    sealed.extend_from_slice(&checksum.to_le_bytes());
    assert_eq!(sealed.len(), total, "the envelope's length is its layout's");
    sealed
}

/// The payload of `sealed`, which must be an intact envelope of snapshot
/// `id`; otherwise [`Error::CorruptSnapshot`] naming `id` and what is wrong.
pub fn open(id: &SnapshotId, sealed: &[u8]) -> Result<Vec<u8>> {
    match inspect(id, sealed) {
        Ok(payload) => Ok(payload.to_vec()),
        Err(damage) => Err(Error::CorruptSnapshot(format!("{id}: {damage}"))),
    }
}

/// What is wrong with an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    BadMagic([u8; 4]),
    UnknownVersion(u16),
    /// Shorter than its layout says: (bytes present, bytes needed).
    Truncated(usize, u64),
    /// Longer than its layout says: the extra bytes.
    TrailingBytes(u64),
    /// (stored, computed).
    ChecksumMismatch(u32, u32),
    /// An intact envelope of another snapshot (its id, as text).
    OtherId(String),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::BadMagic(found) => {
                write!(
                    f,
                    "bad magic {found:02x?} (expected {MAGIC:02x?}, \"EDCK\")"
                )
            }
            Damage::UnknownVersion(version) => write!(
                f,
                "unknown envelope version {version} (this build reads version {VERSION})"
            ),
            Damage::Truncated(present, needed) => write!(
                f,
                "truncated: {present} bytes where the envelope needs {needed}"
            ),
            Damage::TrailingBytes(extra) => {
                write!(f, "{extra} trailing bytes after the envelope's checksum")
            }
            Damage::ChecksumMismatch(stored, computed) => write!(
                f,
                "checksum mismatch: stored crc32 {stored:08x}, computed {computed:08x}"
            ),
            Damage::OtherId(found) => write!(f, "the envelope holds snapshot {found}"),
        }
    }
}

/// The payload of an intact envelope of `id`, or what is wrong with it. The
/// checks run in layout order, the checksum before the id, so that a flipped
/// bit in the id is a checksum mismatch and an intact envelope of another
/// snapshot is reported as such.
pub(crate) fn inspect<'a>(id: &SnapshotId, sealed: &'a [u8]) -> Result<&'a [u8], Damage> {
    if sealed.len() < PREFIX_BYTES {
        return Err(Damage::Truncated(sealed.len(), PREFIX_BYTES as u64));
    }
    let magic: [u8; 4] = sealed[..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(Damage::BadMagic(magic));
    }
    let version = u16::from_le_bytes([sealed[4], sealed[5]]);
    if version != VERSION {
        return Err(Damage::UnknownVersion(version));
    }
    let job_bytes = usize::from(u16::from_le_bytes([sealed[6], sealed[7]]));
    let header_bytes = PREFIX_BYTES + job_bytes + FIXED_ID_BYTES;
    if sealed.len() < header_bytes + CHECKSUM_BYTES {
        let needed = (header_bytes + CHECKSUM_BYTES) as u64;
        return Err(Damage::Truncated(sealed.len(), needed));
    }
    let job = &sealed[PREFIX_BYTES..PREFIX_BYTES + job_bytes];
    let mut fields = Fields(&sealed[PREFIX_BYTES + job_bytes..header_bytes]);
    let task = i32::from_le_bytes(fields.take());
    let checkpoint = u64::from_le_bytes(fields.take());
    let incarnation = u64::from_le_bytes(fields.take());
    let payload_bytes = u64::from_le_bytes(fields.take());
    // In u64 (and saturating): a damaged length may be any number.
    let needed = (header_bytes as u64)
        .saturating_add(payload_bytes)
        .saturating_add(CHECKSUM_BYTES as u64);
    let present = sealed.len() as u64;
    if present < needed {
        return Err(Damage::Truncated(sealed.len(), needed));
    }
    if present > needed {
        return Err(Damage::TrailingBytes(present - needed));
    }
    let (body, checksum) = sealed.split_at(sealed.len() - CHECKSUM_BYTES);
    let stored = u32::from_le_bytes(checksum.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(Damage::ChecksumMismatch(stored, computed));
    }
    let found = SnapshotId {
        job: String::from_utf8_lossy(job).into_owned(),
        task,
        checkpoint,
        incarnation,
    };
    if found != *id || job != id.job.as_bytes() {
        return Err(Damage::OtherId(found.to_string()));
    }
    Ok(&body[header_bytes..])
}

/// Reads fixed-size fields off the front of a slice whose length the
/// caller checked.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (field, rest) = self.0.split_at(N);
        self.0 = rest;
        field.try_into().expect("the caller checked the length")
    }
}

/// Refuses a snapshot id that some store could not keep: see [`check_job`];
/// a task is a partition number, never negative.
pub fn check_id(id: &SnapshotId) -> Result<()> {
    check_job(&id.job)?;
    check_task(id.task)
}

/// Refuses a negative task (tasks are partition numbers).
pub fn check_task(task: i32) -> Result<()> {
    if task < 0 {
        return Err(Error::Invalid(format!(
            "task {task}: a task is a partition number, never negative"
        )));
    }
    Ok(())
}

/// Refuses a job name that is not safe as one path component: empty, `.`
/// or `..`, containing `/`, `\` or NUL, or longer than
/// [`JOB_NAME_BYTES_MAX`] bytes. Every store applies the same rule.
pub fn check_job(job: &str) -> Result<()> {
    let why = if job.is_empty() {
        Some("it is empty")
    } else if job == "." || job == ".." {
        Some("it names a directory (`.` or `..`)")
    } else if job.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else if job.contains('\0') {
        Some("it contains a NUL byte")
    } else if job.len() > JOB_NAME_BYTES_MAX {
        Some("it is longer than 255 bytes")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Error::Invalid(format!(
            "job name {job:?} cannot name a checkpoint: {why}"
        ))),
    }
}
