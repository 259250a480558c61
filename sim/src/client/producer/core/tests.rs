use super::*;
use tokio::sync::oneshot::Receiver;

type Outcome = Receiver<TransportResult<Delivered>>;

fn settings(transactional: bool) -> CoreSettings {
    CoreSettings {
        transactional,
        linger_ms: 5,
        delivery_timeout_ms: 10_000,
        topic_missing_timeout_ms: 3_000,
        max_in_flight: 5,
        batch_max_records: 3,
        batch_max_bytes: 1_000_000,
        buffered_records_max: 4,
        retry_backoff_ms: 100,
        retry_backoff_max_ms: 1_000,
    }
}

fn idempotent() -> ProducerCore {
    let mut core = ProducerCore::new(settings(false));
    core.set_identity(Identity { id: 7, epoch: 0 });
    core
}

fn in_transaction() -> ProducerCore {
    let mut core = ProducerCore::new(settings(true));
    core.initialized(Identity { id: 9, epoch: 3 });
    core.begin().unwrap();
    core
}

fn send(core: &mut ProducerCore, partition: i32, value: &str, now_ms: u64) -> Outcome {
    let (slot, outcome) = oneshot::channel();
    let record = RecordData {
        key: None,
        value: Some(value.as_bytes().to_vec()),
        timestamp_ms: 0,
        headers: vec![],
    };
    core.enqueue("t", Some(partition), record, slot, now_ms, Some(4));
    outcome
}

fn leader_zero(_: &TopicPartition) -> Option<BrokerId> {
    Some(0)
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
}

fn sequences(plans: &[ProducePlan]) -> Vec<(i32, i32, usize)> {
    plans
        .iter()
        .flat_map(|plan| plan.batches.iter())
        .map(|planned| {
            (
                planned.partition.partition,
                planned.batch.base_sequence,
                planned.batch.records.len(),
            )
        })
        .collect()
}

fn delivered(outcome: &mut Outcome) -> Option<TransportResult<Delivered>> {
    outcome.try_recv().ok()
}

mod batching {
    use super::*;

    #[test]
    fn records_wait_for_the_linger_then_go_out_with_consecutive_sequences() {
        let mut core = idempotent();
        let _a = send(&mut core, 0, "a", 0);
        let _b = send(&mut core, 0, "b", 1);
        assert!(core.drain(4, &leader_zero).is_empty(), "linger not over");
        assert_eq!(core.next_wakeup_ms(4), Some(5));
        let plans = core.drain(5, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 2)]);
        let _c = send(&mut core, 0, "c", 6);
        let plans = core.drain(20, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 2, 1)]);
        assert_eq!(plans[0].batches[0].batch.producer_id, 7);
    }

    #[test]
    fn a_full_batch_goes_out_before_the_linger_and_a_flush_sends_everything() {
        let mut core = idempotent();
        let _outcomes: Vec<Outcome> = (0..4)
            .map(|i| send(&mut core, 1, &i.to_string(), 0))
            .collect();
        let plans = core.drain(0, &leader_zero);
        assert_eq!(sequences(&plans), vec![(1, 0, 3)]);
        core.begin_flush();
        let plans = core.drain(0, &leader_zero);
        assert_eq!(sequences(&plans), vec![(1, 3, 1)]);
        assert_eq!(core.end_flush(), None);
    }

    #[test]
    fn no_more_than_five_batches_of_a_partition_are_in_flight() {
        let mut core = idempotent();
        let _outcomes: Vec<Outcome> = (0..30)
            .map(|i| send(&mut core, 0, &i.to_string(), 0))
            .collect();
        let plans = core.drain(10, &leader_zero);
        assert_eq!(sequences(&plans).len(), 5);
        // Each request holds at most one batch of the partition.
        assert_eq!(plans.len(), 5);
        assert!(core.drain(10, &leader_zero).is_empty());
        let first = plans[0].batches[0].batch_id;
        core.on_batch_outcome(&tp(0), first, BatchOutcome::Appended { base_offset: 0 }, 11);
        let plans = core.drain(11, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 15, 3)]);
    }

    #[test]
    fn batches_to_one_broker_share_a_request_and_others_get_their_own() {
        let mut core = idempotent();
        let _outcomes: Vec<Outcome> = (0..4).map(|p| send(&mut core, p, "x", 0)).collect();
        let leader = |partition: &TopicPartition| Some(partition.partition % 2);
        let plans = core.drain(10, &leader);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].broker, 0);
        assert_eq!(plans[0].batches.len(), 2);
        assert_eq!(plans[1].broker, 1);
    }

    #[test]
    fn nothing_is_sent_to_a_partition_without_a_leader() {
        let mut core = idempotent();
        let _a = send(&mut core, 0, "a", 0);
        assert!(core.drain(10, &|_| None).is_empty());
        assert_eq!(core.partitions_with_data(), vec![tp(0)]);
    }

    #[test]
    fn sequences_wrap_at_the_largest_i32_like_kafka() {
        assert_eq!(increment_sequence(0, 3), 3);
        assert_eq!(increment_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }
}

/// Batches bounded in bytes, as librdkafka bounds a MessageSet by
/// `min(message.max.bytes, batch.size)`.
mod batch_bytes {
    use super::*;
    use crate::broker::log::batch_size_bytes;

    /// A record of `value_bytes` takes 20 more in a batch; a batch adds 61.
    const RECORD_OF_300_BYTES: usize = 320;

    fn bounded_by(batch_max_bytes: usize) -> ProducerCore {
        let mut core = ProducerCore::new(CoreSettings {
            batch_max_records: 10,
            batch_max_bytes,
            buffered_records_max: 100,
            ..settings(false)
        });
        core.set_identity(Identity { id: 7, epoch: 0 });
        core
    }

    fn send_sized(core: &mut ProducerCore, value_bytes: usize, now_ms: u64) -> Outcome {
        let (slot, outcome) = oneshot::channel();
        let record = RecordData {
            key: None,
            value: Some(vec![b'x'; value_bytes]),
            timestamp_ms: 0,
            headers: vec![],
        };
        core.enqueue("t", Some(0), record, slot, now_ms, Some(4));
        outcome
    }

    fn batch_bytes_of(plans: &[ProducePlan]) -> Vec<usize> {
        plans
            .iter()
            .flat_map(|plan| plan.batches.iter())
            .map(|planned| batch_size_bytes(&planned.batch.records))
            .collect()
    }

    #[test]
    fn a_batch_closes_before_its_byte_bound_and_the_rest_waits_for_the_linger() {
        let mut core = bounded_by(1_000);
        let _outcomes: Vec<Outcome> = (0..3).map(|_| send_sized(&mut core, 300, 0)).collect();
        // 61 + 3 x 320 = 1 021 bytes queued: a full batch waits, before the
        // linger; it takes two records (701 bytes), a third would pass 1 000.
        let plans = core.drain(0, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 2)]);
        assert_eq!(batch_bytes_of(&plans), vec![61 + 2 * RECORD_OF_300_BYTES]);
        assert!(core.drain(4, &leader_zero).is_empty(), "linger not over");
        let plans = core.drain(5, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 2, 1)]);
    }

    #[test]
    fn a_batch_exactly_at_its_byte_bound_takes_every_record() {
        let mut core = bounded_by(61 + 3 * RECORD_OF_300_BYTES);
        let _outcomes: Vec<Outcome> = (0..3).map(|_| send_sized(&mut core, 300, 0)).collect();
        let plans = core.drain(0, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 3)]);
        assert_eq!(batch_bytes_of(&plans), vec![1_021]);
    }

    #[test]
    fn a_record_alone_larger_than_the_byte_bound_goes_in_a_batch_of_its_own() {
        let mut core = bounded_by(1_000);
        let _small = send_sized(&mut core, 300, 0);
        let _large = send_sized(&mut core, 2_000, 0);
        let _after = send_sized(&mut core, 300, 0);
        core.begin_flush();
        let plans = core.drain(0, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 1), (0, 1, 1), (0, 2, 1)]);
        assert_eq!(
            batch_bytes_of(&plans),
            vec![381, 61 + 20 + 2_000, 381],
            "the large record's batch passes the bound: it could not be split"
        );
        // Alone in the queue, it fills a batch: no linger.
        let mut core = bounded_by(1_000);
        let _large = send_sized(&mut core, 2_000, 0);
        assert_eq!(sequences(&core.drain(0, &leader_zero)), vec![(0, 0, 1)]);
    }

    #[test]
    fn records_that_leave_the_queue_no_longer_count_toward_a_full_batch() {
        let mut core = bounded_by(1_000);
        let _expired: Vec<Outcome> = (0..2).map(|_| send_sized(&mut core, 300, 0)).collect();
        // No leader until their delivery timeout (10 s) fails them.
        assert!(core.drain(10, &|_| None).is_empty());
        core.expire(10_000, &|_| None);
        assert!(core.partitions_with_data().is_empty());
        // 61 + 2 x 320 bytes queued now: not full, so they linger.
        let _fresh: Vec<Outcome> = (0..2).map(|_| send_sized(&mut core, 300, 10_000)).collect();
        assert!(
            core.drain(10_000, &leader_zero).is_empty(),
            "not a full batch"
        );
        let plans = core.drain(10_005, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 2)]);
    }

    #[test]
    fn the_producer_counts_a_batchs_bytes_as_the_broker_does() {
        let records = vec![
            RecordData {
                key: Some(b"key".to_vec()),
                value: Some(vec![7; 1_000]),
                timestamp_ms: 5,
                headers: vec![("trace".into(), vec![1; 16]), ("h".into(), vec![])],
            },
            RecordData {
                key: None,
                value: None,
                timestamp_ms: 0,
                headers: vec![],
            },
            RecordData {
                key: Some(vec![]),
                value: Some(b"v".to_vec()),
                timestamp_ms: -1,
                headers: vec![("".into(), b"x".to_vec())],
            },
        ];
        let producer_bytes =
            BATCH_HEADER_BYTES + records.iter().map(record_batch_bytes).sum::<usize>();
        assert_eq!(producer_bytes, batch_size_bytes(&records));
        assert_eq!(
            producer_bytes,
            61 + (20 + 3 + 1_000 + 2 + 5 + 16 + 2 + 1) + 20 + 24
        );
    }
}

mod partitioning {
    use super::*;

    #[test]
    fn a_keyed_record_goes_to_the_murmur2_partition() {
        let mut core = idempotent();
        let (slot, _outcome) = oneshot::channel();
        let record = RecordData {
            key: Some(b"user-42".to_vec()),
            value: None,
            timestamp_ms: 0,
            headers: vec![],
        };
        core.enqueue("t", None, record, slot, 0, Some(12));
        assert_eq!(
            core.partitions_with_data(),
            vec![TopicPartition::new("t", partition_for_key(b"user-42", 12))]
        );
    }

    #[test]
    fn records_waiting_for_metadata_keep_their_order_within_a_partition() {
        let mut core = idempotent();
        let record = |v: &str| RecordData {
            key: Some(v.as_bytes().to_vec()),
            value: Some(v.as_bytes().to_vec()),
            timestamp_ms: 0,
            headers: vec![],
        };
        let target = partition_for_key(b"k", 3);
        let (slot, _a) = oneshot::channel();
        core.enqueue("t", None, record("k"), slot, 0, None);
        // Metadata arrives for the next send, but the first record still
        // waits: this one must wait behind it.
        let (slot, _b) = oneshot::channel();
        core.enqueue("t", Some(target), record("z"), slot, 0, Some(3));
        assert_eq!(core.unassigned_topics(), vec!["t".to_string()]);
        core.assign_unassigned("t", 3);
        core.begin_flush();
        let plans = core.drain(0, &leader_zero);
        let values: Vec<&[u8]> = plans[0].batches[0]
            .batch
            .records
            .iter()
            .map(|r| r.value.as_deref().unwrap())
            .collect();
        assert_eq!(values, vec![&b"k"[..], b"z"]);
    }

    #[test]
    fn a_waiting_record_for_a_missing_partition_fails() {
        let mut core = idempotent();
        let (slot, mut outcome) = oneshot::channel();
        let record = RecordData {
            key: None,
            value: None,
            timestamp_ms: 0,
            headers: vec![],
        };
        core.enqueue("t", Some(5), record, slot, 0, None);
        core.assign_unassigned("t", 2);
        let error = delivered(&mut outcome).unwrap().unwrap_err();
        assert_eq!(error.code, ErrorCode::UnknownTopicOrPartition);
        assert!(core.is_idle());
    }
}

mod retries {
    use super::*;

    #[test]
    fn a_retried_batch_keeps_its_sequence_numbers_and_resolves_with_its_offsets() {
        let mut core = idempotent();
        let mut a = send(&mut core, 0, "a", 0);
        let mut b = send(&mut core, 0, "b", 0);
        let plans = core.drain(10, &leader_zero);
        let id = plans[0].batches[0].batch_id;
        let follow_up = core.on_batch_outcome(
            &tp(0),
            id,
            BatchOutcome::Failed(ErrorCode::NotLeaderOrFollower),
            20,
        );
        assert!(follow_up.refresh_leader);
        assert!(core.drain(50, &leader_zero).is_empty(), "backing off");
        let plans = core.drain(120, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 2)]);
        assert_eq!(plans[0].batches[0].batch_id, id);
        core.on_batch_outcome(&tp(0), id, BatchOutcome::Appended { base_offset: 40 }, 130);
        assert_eq!(delivered(&mut a).unwrap().unwrap().offset, 40);
        assert_eq!(delivered(&mut b).unwrap().unwrap().offset, 41);
        assert!(core.is_idle());
    }

    #[test]
    fn out_of_order_behind_a_failed_batch_bumps_the_epoch_and_renumbers_from_zero() {
        let mut core = idempotent();
        let mut outcomes: Vec<Outcome> = (0..6)
            .map(|i| send(&mut core, 0, &i.to_string(), 0))
            .collect();
        let plans = core.drain(10, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 3), (0, 3, 3)]);
        let (first, second) = (plans[0].batches[0].batch_id, plans[1].batches[0].batch_id);
        core.on_batch_outcome(
            &tp(0),
            first,
            BatchOutcome::Failed(ErrorCode::NotEnoughReplicas),
            20,
        );
        core.on_batch_outcome(
            &tp(0),
            second,
            BatchOutcome::Failed(ErrorCode::OutOfOrderSequenceNumber),
            21,
        );
        assert!(
            delivered(&mut outcomes[3]).is_none(),
            "sent again, not failed"
        );
        // Nothing is in flight: the epoch goes from 0 to 1 and the oldest
        // batch goes out again from sequence 0.
        let plans = core.drain(500, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 3)]);
        assert_eq!(plans[0].batches[0].batch.producer_epoch, 1);
        assert_eq!(plans[0].batches[0].batch.producer_id, 7);
        assert!(core.drain(500, &leader_zero).is_empty());
        core.on_batch_outcome(
            &tp(0),
            first,
            BatchOutcome::Appended { base_offset: 0 },
            510,
        );
        let plans = core.drain(510, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 3, 3)]);
        assert_eq!(plans[0].batches[0].batch.producer_epoch, 1);
        core.on_batch_outcome(
            &tp(0),
            second,
            BatchOutcome::Appended { base_offset: 3 },
            520,
        );
        let offsets: Vec<i64> = outcomes
            .iter_mut()
            .map(|o| delivered(o).unwrap().unwrap().offset)
            .collect();
        assert_eq!(offsets, vec![0, 1, 2, 3, 4, 5]);
        // Later batches carry on in the new epoch.
        let _later = send(&mut core, 0, "later", 520);
        let plans = core.drain(600, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 6, 1)]);
        assert_eq!(plans[0].batches[0].batch.producer_epoch, 1);
    }

    #[test]
    fn the_epoch_bump_waits_for_every_batch_in_flight_on_every_partition() {
        let mut core = idempotent();
        let _a = send(&mut core, 0, "a", 0);
        let _b = send(&mut core, 1, "b", 0);
        let plans = core.drain(10, &leader_zero);
        let first_p0 = plans[0].batches[0].batch_id;
        let p1 = plans[0].batches[1].batch_id;
        let _c = send(&mut core, 0, "c", 11);
        let plans = core.drain(20, &leader_zero);
        let second_p0 = plans[0].batches[0].batch_id;
        core.on_batch_outcome(
            &tp(0),
            second_p0,
            BatchOutcome::Failed(ErrorCode::OutOfOrderSequenceNumber),
            30,
        );
        let _d = send(&mut core, 1, "d", 31);
        assert!(core.drain(100, &leader_zero).is_empty(), "draining");
        core.on_batch_outcome(&tp(1), p1, BatchOutcome::Appended { base_offset: 0 }, 110);
        core.on_batch_outcome(
            &tp(0),
            first_p0,
            BatchOutcome::Appended { base_offset: 0 },
            111,
        );
        let plans = core.drain(120, &leader_zero);
        // Every partition restarts at 0 in epoch 1.
        assert_eq!(sequences(&plans), vec![(0, 0, 1), (1, 0, 1)]);
        assert!(
            plans
                .iter()
                .flat_map(|plan| &plan.batches)
                .all(|planned| planned.batch.producer_epoch == 1)
        );
    }

    #[test]
    fn a_retry_waits_until_nothing_else_of_its_partition_is_in_flight() {
        let mut core = idempotent();
        let _a = send(&mut core, 0, "a", 0);
        let first = core.drain(10, &leader_zero)[0].batches[0].batch_id;
        let _b = send(&mut core, 0, "b", 11);
        let second = core.drain(20, &leader_zero)[0].batches[0].batch_id;
        core.on_batch_outcome(
            &tp(0),
            first,
            BatchOutcome::Failed(ErrorCode::NotLeaderOrFollower),
            30,
        );
        assert!(
            core.drain(1_000, &leader_zero).is_empty(),
            "the second is in flight"
        );
        core.on_batch_outcome(
            &tp(0),
            second,
            BatchOutcome::Failed(ErrorCode::NotLeaderOrFollower),
            1_001,
        );
        let plans = core.drain(1_001, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 1)]);
    }

    #[test]
    fn a_duplicate_sequence_answer_counts_as_delivered() {
        let mut core = idempotent();
        let mut a = send(&mut core, 0, "a", 0);
        let plans = core.drain(10, &leader_zero);
        core.on_batch_outcome(
            &tp(0),
            plans[0].batches[0].batch_id,
            BatchOutcome::Failed(ErrorCode::DuplicateSequenceNumber),
            20,
        );
        assert!(delivered(&mut a).unwrap().is_ok());
    }

    #[test]
    fn a_retry_past_the_delivery_timeout_fails_and_dooms_the_batches_behind_it() {
        let mut core = idempotent();
        let mut outcomes: Vec<Outcome> = (0..6)
            .map(|i| send(&mut core, 0, &i.to_string(), 0))
            .collect();
        let plans = core.drain(10, &leader_zero);
        let (first, second) = (plans[0].batches[0].batch_id, plans[1].batches[0].batch_id);
        core.on_batch_outcome(
            &tp(0),
            first,
            BatchOutcome::Failed(ErrorCode::RequestTimedOut),
            10_001,
        );
        let error = delivered(&mut outcomes[0]).unwrap().unwrap_err();
        assert_eq!(error.kind, ErrorKind::Timeout);
        // The second batch was appended after all (the first's fate is
        // unknown to the client): its answer decides.
        core.on_batch_outcome(
            &tp(0),
            second,
            BatchOutcome::Appended { base_offset: 3 },
            10_002,
        );
        assert_eq!(delivered(&mut outcomes[3]).unwrap().unwrap().offset, 3);
        // The sequence is broken: the producer asks for a new id first.
        assert!(core.wants_identity());
        let _later = send(&mut core, 0, "later", 10_003);
        assert!(core.drain(20_000, &leader_zero).is_empty());
        core.set_identity(Identity { id: 8, epoch: 0 });
        let plans = core.drain(20_000, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 1)]);
        assert_eq!(plans[0].batches[0].batch.producer_id, 8);
    }

    #[test]
    fn out_of_order_for_the_oldest_unacknowledged_batch_is_a_fatal_error() {
        let mut core = idempotent();
        let mut a = send(&mut core, 0, "a", 0);
        let plans = core.drain(10, &leader_zero);
        core.on_batch_outcome(
            &tp(0),
            plans[0].batches[0].batch_id,
            BatchOutcome::Appended { base_offset: 0 },
            20,
        );
        let mut b = send(&mut core, 0, "b", 20);
        let plans = core.drain(30, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 1, 1)]);
        let mut c = send(&mut core, 0, "c", 31);
        core.on_batch_outcome(
            &tp(0),
            plans[0].batches[0].batch_id,
            BatchOutcome::Failed(ErrorCode::OutOfOrderSequenceNumber),
            40,
        );
        assert!(delivered(&mut a).unwrap().is_ok());
        for outcome in [&mut b, &mut c] {
            let error = delivered(outcome).unwrap().unwrap_err();
            assert_eq!(
                (error.kind, error.code),
                (ErrorKind::Fatal, ErrorCode::OutOfOrderSequenceNumber)
            );
        }
        assert!(!core.wants_identity(), "no way on after a fatal error");
        let error = core.check_can_send().unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (ErrorKind::Fatal, ErrorCode::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn a_record_for_a_topic_the_metadata_says_is_missing_fails_after_the_propagation_bound() {
        let mut core = idempotent();
        let (slot, mut outcome) = oneshot::channel();
        let record = RecordData {
            key: Some(b"k".to_vec()),
            value: None,
            timestamp_ms: 0,
            headers: vec![],
        };
        core.enqueue("gone", None, record, slot, 0, None);
        let missing = |_: &str| Some(ErrorCode::UnknownTopicOrPartition);
        assert_eq!(core.next_wakeup_ms(0), Some(3_000));
        core.expire(2_999, &missing);
        assert!(delivered(&mut outcome).is_none());
        core.expire(3_000, &missing);
        let error = delivered(&mut outcome).unwrap().unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (ErrorKind::Retriable, ErrorCode::UnknownTopicOrPartition)
        );
        assert!(error.message.contains("gone"), "{error}");
        assert!(core.is_idle());
    }

    #[test]
    fn records_that_never_got_sent_time_out() {
        let mut core = idempotent();
        let mut a = send(&mut core, 0, "a", 0);
        core.expire(9_999, &|_| None);
        assert!(delivered(&mut a).is_none());
        core.expire(10_000, &|_| None);
        assert_eq!(
            delivered(&mut a).unwrap().unwrap_err().kind,
            ErrorKind::Timeout
        );
        assert!(core.is_idle());
    }
}

mod fencing {
    use super::*;

    #[test]
    fn a_fenced_producer_fails_everything_and_every_later_call() {
        let mut core = in_transaction();
        core.partition_added(&tp(0), None);
        let mut a = send(&mut core, 0, "a", 0);
        let plans = core.drain(10, &leader_zero);
        let mut b = send(&mut core, 0, "b", 11);
        core.on_batch_outcome(
            &tp(0),
            plans[0].batches[0].batch_id,
            BatchOutcome::Failed(ErrorCode::ProducerFenced),
            20,
        );
        for outcome in [&mut a, &mut b] {
            let error = delivered(outcome).unwrap().unwrap_err();
            assert_eq!(error.kind, ErrorKind::Fenced);
            assert_eq!(error.code, ErrorCode::ProducerFenced);
        }
        assert_eq!(core.check_can_send().unwrap_err().kind, ErrorKind::Fenced);
        assert_eq!(core.start_commit().unwrap_err().kind, ErrorKind::Fenced);
        assert_eq!(core.start_abort().unwrap_err().kind, ErrorKind::Fenced);
        assert!(core.is_idle());
    }

    #[test]
    fn an_old_epoch_on_produce_fences_a_transactional_producer_as_producer_fenced() {
        let mut core = in_transaction();
        core.partition_added(&tp(0), None);
        let mut a = send(&mut core, 0, "a", 0);
        let plans = core.drain(10, &leader_zero);
        let mut b = send(&mut core, 0, "b", 11);
        core.on_batch_outcome(
            &tp(0),
            plans[0].batches[0].batch_id,
            BatchOutcome::Failed(ErrorCode::InvalidProducerEpoch),
            20,
        );
        let error = delivered(&mut a).unwrap().unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (ErrorKind::Fenced, ErrorCode::InvalidProducerEpoch)
        );
        let error = delivered(&mut b).unwrap().unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (ErrorKind::Fenced, ErrorCode::ProducerFenced)
        );
        let error = core.start_commit().unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (ErrorKind::Fenced, ErrorCode::ProducerFenced)
        );
    }
}

mod transactions {
    use super::*;

    #[test]
    fn data_waits_until_its_partition_is_added_to_the_transaction() {
        let mut core = in_transaction();
        let _a = send(&mut core, 2, "a", 0);
        assert!(core.drain(10, &leader_zero).is_empty());
        assert_eq!(core.partitions_to_add(), vec![tp(2)]);
        core.start_adding(&[tp(2)]);
        assert!(core.partitions_to_add().is_empty());
        assert!(!core.is_idle());
        core.partition_added(&tp(2), None);
        let plans = core.drain(10, &leader_zero);
        assert_eq!(sequences(&plans), vec![(2, 0, 1)]);
        assert!(plans[0].batches[0].batch.transactional);
        assert_eq!(plans[0].batches[0].batch.producer_epoch, 3);
    }

    #[test]
    fn a_failed_send_makes_the_transaction_abortable_and_fails_unsent_records() {
        let mut core = in_transaction();
        core.partition_added(&tp(0), None);
        let mut a = send(&mut core, 0, "a", 0);
        let plans = core.drain(10, &leader_zero);
        let mut b = send(&mut core, 1, "b", 11);
        core.on_batch_outcome(
            &tp(0),
            plans[0].batches[0].batch_id,
            BatchOutcome::Failed(ErrorCode::MessageTooLarge),
            20,
        );
        let error = delivered(&mut a).unwrap().unwrap_err();
        assert_eq!(error.kind, ErrorKind::Abortable);
        assert_eq!(error.code, ErrorCode::MessageTooLarge);
        assert_eq!(
            delivered(&mut b).unwrap().unwrap_err().kind,
            ErrorKind::Abortable
        );
        let commit = core.start_commit().unwrap_err();
        assert_eq!(commit.kind, ErrorKind::Abortable);
        assert_eq!(
            core.check_can_send().unwrap_err().kind,
            ErrorKind::Abortable
        );
        assert_eq!(core.begin().unwrap_err().kind, ErrorKind::Abortable);
        core.start_abort().unwrap();
        assert!(core.epoch_bump_needed());
        core.transaction_completed();
        core.set_identity(Identity { id: 9, epoch: 4 });
        core.begin().unwrap();
    }

    #[test]
    fn the_state_machine_refuses_calls_out_of_order() {
        let mut core = ProducerCore::new(settings(true));
        assert_eq!(core.begin().unwrap_err().code, ErrorCode::InvalidState);
        assert_eq!(
            core.check_can_send().unwrap_err().code,
            ErrorCode::InvalidState
        );
        core.initialized(Identity { id: 1, epoch: 0 });
        assert_eq!(
            core.start_commit().unwrap_err().code,
            ErrorCode::InvalidState
        );
        assert_eq!(
            core.start_abort().unwrap_err().code,
            ErrorCode::InvalidState
        );
        assert_eq!(
            core.check_in_transaction("send_offsets_to_transaction")
                .unwrap_err()
                .code,
            ErrorCode::InvalidState
        );
        core.begin().unwrap();
        assert_eq!(core.begin().unwrap_err().code, ErrorCode::InvalidState);
        core.start_commit().unwrap();
        assert!(!core.txn_has_content());
        core.transaction_completed();
        assert_eq!(core.txn_state(), &TxnState::Ready);
    }

    #[test]
    fn a_batch_that_fails_retriably_during_an_abort_is_failed_not_retried() {
        let mut core = in_transaction();
        core.partition_added(&tp(0), None);
        let mut a = send(&mut core, 0, "a", 0);
        let plans = core.drain(10, &leader_zero);
        core.start_abort().unwrap();
        core.on_batch_outcome(
            &tp(0),
            plans[0].batches[0].batch_id,
            BatchOutcome::Failed(ErrorCode::TimedOut),
            20,
        );
        assert_eq!(
            delivered(&mut a).unwrap().unwrap_err().kind,
            ErrorKind::Abortable
        );
        assert!(core.is_idle(), "nothing left to wait for");
        assert!(core.epoch_bump_needed(), "the batch may have been appended");
    }

    #[test]
    fn out_of_order_behind_an_unacknowledged_batch_makes_the_transaction_abortable_with_a_bump() {
        let mut core = in_transaction();
        core.partition_added(&tp(0), None);
        let mut a = send(&mut core, 0, "a", 0);
        let first = core.drain(10, &leader_zero)[0].batches[0].batch_id;
        let mut b = send(&mut core, 0, "b", 11);
        let second = core.drain(20, &leader_zero)[0].batches[0].batch_id;
        let mut c = send(&mut core, 0, "c", 21);
        core.on_batch_outcome(
            &tp(0),
            second,
            BatchOutcome::Failed(ErrorCode::OutOfOrderSequenceNumber),
            30,
        );
        let error = delivered(&mut b).unwrap().unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (ErrorKind::Abortable, ErrorCode::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            delivered(&mut c).unwrap().unwrap_err().kind,
            ErrorKind::Abortable
        );
        assert!(
            matches!(core.txn_state(), TxnState::Abortable(e) if e.code == ErrorCode::OutOfOrderSequenceNumber)
        );
        assert!(core.fatal().is_none());
        // The first batch is still in flight and resolved by its answer.
        core.on_batch_outcome(&tp(0), first, BatchOutcome::Appended { base_offset: 0 }, 40);
        assert!(delivered(&mut a).unwrap().is_ok());
        core.start_abort().unwrap();
        assert!(core.is_idle());
        assert!(
            core.epoch_bump_needed(),
            "KIP-360: the epoch is bumped after the abort"
        );
    }

    #[test]
    fn out_of_order_for_the_head_of_line_is_fatal_for_a_transactional_producer() {
        let mut core = in_transaction();
        core.partition_added(&tp(0), None);
        let mut a = send(&mut core, 0, "a", 0);
        let plans = core.drain(10, &leader_zero);
        core.on_batch_outcome(
            &tp(0),
            plans[0].batches[0].batch_id,
            BatchOutcome::Failed(ErrorCode::OutOfOrderSequenceNumber),
            20,
        );
        let error = delivered(&mut a).unwrap().unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (ErrorKind::Fatal, ErrorCode::OutOfOrderSequenceNumber)
        );
        assert_eq!(core.start_commit().unwrap_err().kind, ErrorKind::Fatal);
        assert_eq!(core.start_abort().unwrap_err().kind, ErrorKind::Fatal);
    }

    #[test]
    fn abort_fails_unsent_records_but_waits_for_those_in_flight() {
        let mut core = in_transaction();
        core.partition_added(&tp(0), None);
        let mut a = send(&mut core, 0, "a", 0);
        let plans = core.drain(10, &leader_zero);
        let mut b = send(&mut core, 0, "b", 11);
        core.start_abort().unwrap();
        assert_eq!(
            delivered(&mut b).unwrap().unwrap_err().kind,
            ErrorKind::Abortable
        );
        assert!(delivered(&mut a).is_none());
        assert!(!core.is_idle());
        core.on_batch_outcome(
            &tp(0),
            plans[0].batches[0].batch_id,
            BatchOutcome::Appended { base_offset: 0 },
            20,
        );
        assert!(core.is_idle());
        assert!(!core.epoch_bump_needed());
        core.transaction_completed();
    }
}

mod buffer {
    use super::*;

    #[test]
    fn a_full_buffer_refuses_records_until_a_delivery_frees_room() {
        let mut core = idempotent();
        // Four records (the bound), in two batches in flight.
        let mut outcomes: Vec<Outcome> = (0..4)
            .map(|i| {
                core.check_buffer_space().expect("room for four");
                send(&mut core, 0, &format!("r{i}"), 0)
            })
            .collect();
        let plans = core.drain(5, &leader_zero);
        assert_eq!(sequences(&plans), vec![(0, 0, 3), (0, 3, 1)]);
        assert_eq!(core.buffered_records(), 4);
        // In-flight records count until their delivery is reported.
        let error = core.check_buffer_space().expect_err("the buffer is full");
        assert_eq!(error.kind, ErrorKind::Retriable);
        assert_eq!(error.code, ErrorCode::Other(errors::QUEUE_FULL));
        assert_eq!(core.buffered_records(), 4, "a refused record is not taken");
        let id = plans[0].batches[0].batch_id;
        core.on_batch_outcome(&tp(0), id, BatchOutcome::Appended { base_offset: 0 }, 6);
        for outcome in &mut outcomes[..3] {
            assert!(delivered(outcome).unwrap().is_ok());
        }
        assert_eq!(core.buffered_records(), 1);
        core.check_buffer_space()
            .expect("room again after the delivery");
    }
}
