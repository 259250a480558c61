//! Unit tests of the envelope and of the topic store's record layout.

use proptest::prelude::*;

use super::SnapshotId;
use super::envelope::{self, Damage, MAGIC, VERSION, check_id, check_job, inspect, open, seal};
use crate::error::Error;

fn id(job: &str, task: i32, checkpoint: u64, incarnation: u64) -> SnapshotId {
    SnapshotId {
        job: job.to_string(),
        task,
        checkpoint,
        incarnation,
    }
}

fn sample() -> SnapshotId {
    id("orders", 3, 17, 0xdead_beef_0000_0001)
}

/// `EDDY_PROPTEST_CASES=N` runs N cases instead of the default.
fn cases() -> u32 {
    std::env::var("EDDY_PROPTEST_CASES")
        .ok()
        .map(|cases| cases.parse().expect("EDDY_PROPTEST_CASES is a number"))
        .unwrap_or(32)
}

mod envelope_format {
    use super::*;

    #[test]
    fn a_sealed_snapshot_opens_to_the_same_bytes_empty_payload_included() {
        for payload in [&b""[..], b"x", b"EDDY\x02\x01\x00 some window state"] {
            let sealed = seal(&sample(), payload);
            assert_eq!(open(&sample(), &sealed).unwrap(), payload);
        }
    }

    #[test]
    fn the_layout_is_magic_version_id_length_payload_and_crc32() {
        let sealed = seal(&id("j", 2, 5, 9), b"abc");
        assert_eq!(&sealed[..4], &MAGIC);
        assert_eq!(u16::from_le_bytes([sealed[4], sealed[5]]), VERSION);
        assert_eq!(u16::from_le_bytes([sealed[6], sealed[7]]), 1);
        assert_eq!(sealed[8], b'j');
        assert_eq!(i32::from_le_bytes(sealed[9..13].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(sealed[13..21].try_into().unwrap()), 5);
        assert_eq!(u64::from_le_bytes(sealed[21..29].try_into().unwrap()), 9);
        assert_eq!(u64::from_le_bytes(sealed[29..37].try_into().unwrap()), 3);
        assert_eq!(&sealed[37..40], b"abc");
        let crc = u32::from_le_bytes(sealed[40..44].try_into().unwrap());
        assert_eq!(crc, crc32fast::hash(&sealed[..40]));
        assert_eq!(sealed.len(), 44);
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let good = seal(&sample(), b"payload");
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(matches!(
            inspect(&sample(), &magic),
            Err(Damage::BadMagic(_))
        ));
        let mut version = good.clone();
        version[4] = 2;
        assert_eq!(inspect(&sample(), &version), Err(Damage::UnknownVersion(2)));
        let short = &good[..good.len() - 1];
        assert!(matches!(
            inspect(&sample(), short),
            Err(Damage::Truncated(..))
        ));
        assert!(matches!(
            inspect(&sample(), &good[..3]),
            Err(Damage::Truncated(3, 8))
        ));
        let mut long = good.clone();
        long.extend_from_slice(b"!!");
        assert_eq!(inspect(&sample(), &long), Err(Damage::TrailingBytes(2)));
        let mut flipped = good.clone();
        let last_payload_byte = good.len() - 5;
        flipped[last_payload_byte] ^= 0x10;
        assert!(matches!(
            inspect(&sample(), &flipped),
            Err(Damage::ChecksumMismatch(..))
        ));
    }

    #[test]
    fn an_intact_envelope_of_another_snapshot_is_refused_for_each_id_field() {
        let written = sample();
        let sealed = seal(&written, b"state");
        let others = [
            id("orders2", 3, 17, written.incarnation),
            id("orders", 4, 17, written.incarnation),
            id("orders", 3, 18, written.incarnation),
            id("orders", 3, 17, written.incarnation + 1),
        ];
        for other in others {
            let error = open(&other, &sealed).unwrap_err();
            let Error::CorruptSnapshot(message) = &error else {
                panic!("{error:?}");
            };
            assert!(message.starts_with(&other.to_string()), "{message}");
            assert!(
                message.contains(&format!("holds snapshot {written}")),
                "{message}"
            );
        }
    }

    #[test]
    fn the_error_names_the_snapshot_and_the_reason() {
        let error = open(&sample(), b"EDCK").unwrap_err().to_string();
        assert_eq!(
            error,
            "corrupt snapshot: orders/task-3/checkpoint-17-deadbeef00000001: \
             truncated: 4 bytes where the envelope needs 8"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_single_flipped_bit_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            bit in any::<prop::sample::Index>(),
        ) {
            let sealed = seal(&sample(), &payload);
            let bit = bit.index(sealed.len() * 8);
            let mut damaged = sealed.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let opened = open(&sample(), &damaged);
            prop_assert!(
                matches!(opened, Err(Error::CorruptSnapshot(_))),
                "bit {} of {} flipped: {:?}", bit, sealed.len() * 8, opened
            );
        }

        #[test]
        fn any_truncation_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            cut in any::<prop::sample::Index>(),
        ) {
            let sealed = seal(&sample(), &payload);
            let kept = cut.index(sealed.len());
            let opened = open(&sample(), &sealed[..kept]);
            prop_assert!(
                matches!(opened, Err(Error::CorruptSnapshot(_))),
                "{} of {} bytes kept: {:?}", kept, sealed.len(), opened
            );
        }
    }
}

mod names {
    use super::*;

    #[test]
    fn a_job_name_that_is_not_one_safe_path_component_is_refused() {
        for bad in ["", ".", "..", "a/b", "/", "a\\b", "nul\0", &"x".repeat(256)] {
            let error = check_job(bad).unwrap_err();
            assert!(matches!(error, Error::Invalid(_)), "{bad:?}: {error:?}");
        }
        for good in ["orders", "orders-v2.1", "..hidden", "a b", &"x".repeat(255)] {
            assert!(check_job(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_negative_task_is_refused() {
        let error = check_id(&id("orders", -1, 0, 0)).unwrap_err();
        assert!(error.to_string().contains("task -1"), "{error}");
        assert!(check_id(&id("orders", 0, 0, 0)).is_ok());
    }

    #[test]
    #[should_panic(expected = "sealing a snapshot with an id no store accepts")]
    fn sealing_under_a_refused_id_panics() {
        let _ = envelope::seal(&id("a/b", 0, 0, 0), b"");
    }
}

mod topic_records {
    use super::super::topic::{chunk_key, parse_chunk_key};

    #[test]
    fn a_chunk_key_reads_back_for_its_own_job_and_task_only() {
        let key = chunk_key("orders", 12, 3);
        assert_eq!(key, "orders/12/3");
        assert_eq!(parse_chunk_key(key.as_bytes(), "orders", 12), Some(3));
        assert_eq!(parse_chunk_key(key.as_bytes(), "orders", 1), None);
        assert_eq!(parse_chunk_key(key.as_bytes(), "order", 12), None);
        assert_eq!(parse_chunk_key(b"orders/12/3/4", "orders", 12), None);
        for other in [
            &b"orders/12/"[..],
            b"orders/12/x",
            b"orders/12/03",
            b"orders/12/-1",
        ] {
            assert_eq!(parse_chunk_key(other, "orders", 12), None, "{other:?}");
        }
        assert_eq!(parse_chunk_key(b"orders/12/0", "orders", 12), Some(0));
    }
}
