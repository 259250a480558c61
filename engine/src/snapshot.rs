//! The versioned encoding of operator and task state.
//!
//! Layout: the magic `EDDY`, one byte naming what is encoded
//! ([`SnapshotKind`]), the format version as a little-endian `u16`, then the
//! state as [postcard](https://docs.rs/postcard) (serde). A reader refuses
//! another magic, another kind, an unknown version, a body that does not
//! decode, and trailing bytes. Integrity (a checksum over these bytes) is the
//! checkpoint store's wrapper's job, not this layer's.
//!
//! The encoding is deterministic: the same state gives the same bytes
//! (ordered collections everywhere, no maps with hash order).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The first bytes of every snapshot.
pub const MAGIC: [u8; 4] = *b"EDDY";

/// The format version this build writes and reads.
///
/// - 1: decimals in job accumulators as strings (`rust_decimal`'s
///   `serde-str`).
/// - 2: decimals as scale and mantissa
///   (`crate::job::value::snapshot_decimal`); otherwise as version 1.
///
/// Older versions are refused, not migrated: a job restored from a
/// version-1 checkpoint fails with [`Error::CorruptSnapshot`] naming the
/// version, and must start over from its input (or be restored by the
/// build that wrote it).
pub const VERSION: u16 = 2;

const HEADER_LEN: usize = MAGIC.len() + 1 + 2;

/// What a snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SnapshotKind {
    /// A [`crate::window::WindowOperator`].
    WindowOperator = 1,
    /// A [`crate::window::WindowTask`]: watermark tracker and operator.
    WindowTask = 2,
}

impl SnapshotKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(SnapshotKind::WindowOperator),
            2 => Some(SnapshotKind::WindowTask),
            _ => None,
        }
    }
}

/// Encodes `state` as a snapshot of `kind`, into a buffer first sized for
/// `size_hint` bytes of state.
pub fn encode<T: Serialize + ?Sized>(kind: SnapshotKind, state: &T, size_hint: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + size_hint);
    bytes.extend_from_slice(&MAGIC);
    bytes.push(kind as u8);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    // Serializing our own state types into a Vec cannot fail: they contain
    // no maps with non-string keys or other constructs postcard refuses.
    postcard::to_extend(state, bytes).expect("window state serializes with postcard")
}

/// Decodes a snapshot of `kind`.
pub fn decode<T: DeserializeOwned>(kind: SnapshotKind, bytes: &[u8]) -> Result<T> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::CorruptSnapshot(format!(
            "{} bytes is shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    let (header, body) = bytes.split_at(HEADER_LEN);
    if header[..MAGIC.len()] != MAGIC {
        return Err(Error::CorruptSnapshot(format!(
            "bad magic {:02x?} (expected {:02x?})",
            &header[..MAGIC.len()],
            MAGIC
        )));
    }
    let kind_byte = header[MAGIC.len()];
    match SnapshotKind::from_byte(kind_byte) {
        Some(found) if found == kind => {}
        Some(found) => {
            return Err(Error::CorruptSnapshot(format!(
                "snapshot holds a {found:?}, expected a {kind:?}"
            )));
        }
        None => {
            return Err(Error::CorruptSnapshot(format!(
                "unknown snapshot kind {kind_byte}"
            )));
        }
    }
    let version = u16::from_le_bytes([header[MAGIC.len() + 1], header[MAGIC.len() + 2]]);
    if version != VERSION {
        return Err(Error::CorruptSnapshot(format!(
            "snapshot format version {version} is not supported (this build reads version {VERSION})"
        )));
    }
    let (state, rest) = postcard::take_from_bytes::<T>(body)
        .map_err(|error| Error::CorruptSnapshot(format!("undecodable body: {error}")))?;
    if !rest.is_empty() {
        return Err(Error::CorruptSnapshot(format!(
            "{} trailing bytes after the state",
            rest.len()
        )));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_through_the_encoding() {
        let value = (
            7u64,
            "ключ".to_string(),
            vec![i64::MIN, -1, i64::MAX],
            3i128,
        );
        let bytes = encode(SnapshotKind::WindowOperator, &value, 0);
        assert_eq!(&bytes[..4], b"EDDY");
        let back: (u64, String, Vec<i64>, i128) =
            decode(SnapshotKind::WindowOperator, &bytes).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn another_magic_kind_or_version_is_refused() {
        let bytes = encode(SnapshotKind::WindowOperator, &42u64, 0);
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        assert!(decode::<u64>(SnapshotKind::WindowOperator, &bad_magic).is_err());
        assert!(decode::<u64>(SnapshotKind::WindowTask, &bytes).is_err());
        let mut bad_kind = bytes.clone();
        bad_kind[4] = 99;
        assert!(decode::<u64>(SnapshotKind::WindowOperator, &bad_kind).is_err());
        let mut future = bytes.clone();
        future[5] = 3;
        let error = decode::<u64>(SnapshotKind::WindowOperator, &future).unwrap_err();
        assert!(error.to_string().contains("version 3"), "{error}");
    }

    #[test]
    fn version_1_is_refused_by_name() {
        let mut old = encode(SnapshotKind::WindowTask, &42u64, 0);
        assert_eq!(old[5..7], VERSION.to_le_bytes());
        old[5..7].copy_from_slice(&1u16.to_le_bytes());
        let error = decode::<u64>(SnapshotKind::WindowTask, &old).unwrap_err();
        assert!(matches!(error, Error::CorruptSnapshot(_)), "{error}");
        assert!(
            error.to_string().contains("version 1 is not supported"),
            "{error}"
        );
    }

    #[test]
    fn truncated_and_trailing_bytes_are_refused() {
        let bytes = encode(
            SnapshotKind::WindowOperator,
            &(1u64, 2u64, "abc".to_string()),
            0,
        );
        for len in 0..bytes.len() {
            assert!(
                decode::<(u64, u64, String)>(SnapshotKind::WindowOperator, &bytes[..len]).is_err(),
                "a snapshot cut to {len} bytes was accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<(u64, u64, String)>(SnapshotKind::WindowOperator, &longer).is_err());
    }
}
