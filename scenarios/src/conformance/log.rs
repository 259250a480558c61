//! Partitions as logs: offsets, order, record contents, and where keyed
//! records go.

use std::collections::BTreeMap;

use eddyline_engine::transport::{
    Consumer, Delivered, ErrorCode, Isolation, Message, Producer, ProducerRecord, TopicPartition,
};

use super::support::{
    Ending, OrFail, delivered_pairs, describe, ensure, offsets, pairs, read_into, read_pairs,
    record, record_to, send_all, send_one, transaction, value_text, verdict,
    verify_partition_contents, verify_refusal,
};
use super::{ConformanceEnv, Cx, Failure};

/// Create time of the first record a log check sends: the target's clock
/// now, rounded down to a second (records older than the broker's retention
/// time would be deleted by it; see CONFORMANCE-NOTES.md).
fn base_timestamp_ms<E: ConformanceEnv>(cx: &Cx<'_, E>) -> i64 {
    cx.env.wall_clock_ms() / 1_000 * 1_000
}

pub(super) async fn offsets_are_dense_and_follow_send_order<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const PARTITIONS: i32 = 3;
    const RECORDS: usize = 30;
    let topic = cx.topic("log", PARTITIONS).await?;
    let mut producer = cx.producer(None).await?;
    let base_ms = base_timestamp_ms(cx);
    let records: Vec<ProducerRecord> = (0..RECORDS)
        .map(|i| {
            let mut r = record(
                &topic,
                Some(i as i32 % PARTITIONS),
                &format!("k{i}"),
                &format!("v{i}"),
            );
            r.timestamp_ms = Some(base_ms + i as i64);
            r.headers = vec![
                ("seq".to_string(), i.to_string().into_bytes()),
                ("seq".to_string(), b"repeated name".to_vec()),
                ("empty".to_string(), Vec::new()),
            ];
            r
        })
        .collect();
    let delivered = send_all(&mut producer, &records).await?;
    producer.flush().await.or_fail("flushing")?;
    verdict(verify_deliveries(&records, &delivered, |r| {
        r.partition.expect("the log check names partitions")
    }))?;

    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(&topic, p))
        .collect();
    for isolation in [Isolation::ReadCommitted, Isolation::ReadUncommitted] {
        let read = cx.read(&partitions, isolation, RECORDS).await?;
        verdict(
            verify_read_back(&records, &delivered, &read)
                .map_err(|e| format!("reading back ({isolation:?}): {e}")),
        )?;
        for partition in &partitions {
            let range = cx.range(partition, isolation).await?;
            let expected = (0, (RECORDS as i64) / i64::from(PARTITIONS));
            ensure!(
                range == expected,
                "{partition}: offsets_range ({isolation:?}) is {range:?}, expected {expected:?}"
            );
        }
    }
    for partition in &partitions {
        let offsets: Vec<i64> = delivered
            .iter()
            .filter(|d| d.partition == partition.partition)
            .map(|d| d.offset)
            .collect();
        cx.note(format!("p{}: offsets {offsets:?}", partition.partition));
    }
    Ok(())
}

pub(super) async fn keyed_records_land_in_murmur2_partitions<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    const PARTITIONS: i32 = 6;
    let topic = cx.topic("keys", PARTITIONS).await?;
    let mut producer = cx.producer(None).await?;
    // Keys of every length from 1 to 9 bytes (all of murmur2's tail cases),
    // word-like keys, and non-UTF-8 bytes; some keys repeat.
    let mut keys: Vec<Vec<u8>> = (1..=9)
        .map(|n| "abcdefghi".as_bytes()[..n].to_vec())
        .collect();
    keys.extend((0..12).map(|i| format!("user-{i}").into_bytes()));
    keys.push(vec![0xff, 0xfe, 0x00, 0x80]);
    keys.push(b"user-3".to_vec());
    keys.push(b"abc".to_vec());
    let base_ms = base_timestamp_ms(cx);
    let records: Vec<ProducerRecord> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| ProducerRecord {
            topic: topic.clone(),
            partition: None,
            key: Some(key.clone()),
            value: Some(format!("v{i}").into_bytes()),
            timestamp_ms: Some(base_ms + i as i64),
            headers: Vec::new(),
        })
        .collect();
    let delivered = send_all(&mut producer, &records).await?;
    producer.flush().await.or_fail("flushing")?;
    let partition_for_key = cx.expect.partition_for_key;
    verdict(verify_deliveries(&records, &delivered, |r| {
        partition_for_key(r.key.as_deref().expect("keyed"), PARTITIONS)
    }))?;
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(&topic, p))
        .collect();
    let read = cx
        .read(&partitions, Isolation::ReadCommitted, records.len())
        .await?;
    verdict(verify_read_back(&records, &delivered, &read))?;

    // The same records go to the same partitions at the same offsets on every
    // target: print them so that runs can be compared line by line.
    let placements: Vec<String> = records
        .iter()
        .zip(&delivered)
        .map(|(r, d)| {
            format!(
                "{}->p{}@{}",
                printable_key(r.key.as_deref().unwrap_or_default()),
                d.partition,
                d.offset
            )
        })
        .collect();
    for chunk in placements.chunks(8) {
        cx.note(chunk.join(" "));
    }
    Ok(())
}

pub(super) async fn a_record_with_neither_key_nor_partition_is_refused<E: ConformanceEnv>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let topic = cx.topic("unkeyed", 2).await?;
    let mut producer = cx.producer(None).await?;
    let unkeyed = ProducerRecord {
        topic: topic.clone(),
        partition: None,
        key: None,
        value: Some(b"nowhere to go".to_vec()),
        timestamp_ms: None,
        headers: Vec::new(),
    };
    let error = verdict(verify_refusal(
        send_one(&mut producer, unkeyed).await,
        "sending a record without key or partition",
        ErrorCode::InvalidRecord,
    ))?;
    cx.note(format!("refused with {}", describe(&error)));
    for partition in 0..2 {
        let partition = TopicPartition::new(&topic, partition);
        let range = cx.range(&partition, Isolation::ReadUncommitted).await?;
        ensure!(
            range == (0, 0),
            "{partition} is not empty after a refused send: {range:?}"
        );
    }
    Ok(())
}

/// A key as the notes print it: text if it is printable ASCII, else hex.
fn printable_key(key: &[u8]) -> String {
    if key.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(key).into_owned()
    } else {
        let hex: Vec<String> = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{}", hex.join(""))
    }
}

/// Every delivery is in the partition `partition_of` says for its record,
/// and within each partition the offsets, in send order, are 0, 1, 2, ...
pub(crate) fn verify_deliveries(
    records: &[ProducerRecord],
    delivered: &[Delivered],
    partition_of: impl Fn(&ProducerRecord) -> i32,
) -> Result<(), String> {
    if records.len() != delivered.len() {
        return Err(format!(
            "{} records sent, {} deliveries",
            records.len(),
            delivered.len()
        ));
    }
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for (index, (record, delivery)) in records.iter().zip(delivered).enumerate() {
        let partition = partition_of(record);
        if delivery.topic != record.topic || delivery.partition != partition {
            return Err(format!(
                "record {index} (key {:?}) went to {}-{}, expected {}-{partition}",
                record.key.as_deref().map(String::from_utf8_lossy),
                delivery.topic,
                delivery.partition,
                record.topic
            ));
        }
        let expected = next_offset.entry(partition).or_insert(0);
        if delivery.offset != *expected {
            return Err(format!(
                "record {index} got offset {} in partition {partition}, expected {expected} (dense offsets in send order)",
                delivery.offset
            ));
        }
        *expected += 1;
    }
    Ok(())
}

/// What was read holds exactly the delivered records, each partition in
/// offset order, with their keys, values, timestamps and headers intact.
pub(crate) fn verify_read_back(
    records: &[ProducerRecord],
    delivered: &[Delivered],
    read: &[Message],
) -> Result<(), String> {
    let mut expected: BTreeMap<i32, Vec<(i64, &ProducerRecord)>> = BTreeMap::new();
    for (record, delivery) in records.iter().zip(delivered) {
        expected
            .entry(delivery.partition)
            .or_default()
            .push((delivery.offset, record));
    }
    let mut got: BTreeMap<i32, Vec<&Message>> = BTreeMap::new();
    for message in read {
        got.entry(message.partition).or_default().push(message);
    }
    if let Some(extra) = got.keys().find(|p| !expected.contains_key(p)) {
        return Err(format!(
            "read records from partition {extra}, which was never written"
        ));
    }
    for (partition, mut want) in expected {
        want.sort_by_key(|(offset, _)| *offset);
        let have = got.remove(&partition).unwrap_or_default();
        let want_pairs: Vec<(i64, String)> = want
            .iter()
            .map(|(offset, r)| (*offset, value_text(r.value.as_deref())))
            .collect();
        verify_partition_contents(
            &format!("partition {partition}"),
            &pairs(&have),
            &want_pairs,
        )?;
        for ((offset, record), message) in want.iter().zip(&have) {
            if message.key.as_deref() != record.key.as_deref() {
                return Err(format!(
                    "partition {partition} offset {offset}: key {:?}, sent {:?}",
                    message.key, record.key
                ));
            }
            if let Some(timestamp_ms) = record.timestamp_ms
                && message.timestamp_ms != timestamp_ms
            {
                return Err(format!(
                    "partition {partition} offset {offset}: timestamp {} ms, sent {timestamp_ms} ms",
                    message.timestamp_ms
                ));
            }
            if message.headers != record.headers {
                return Err(format!(
                    "partition {partition} offset {offset}: headers {:?}, sent {:?}",
                    message.headers, record.headers
                ));
            }
        }
    }
    Ok(())
}

pub(super) async fn a_seek_moves_the_position_to_the_first_record_at_or_after_it<
    E: ConformanceEnv,
>(
    cx: &mut Cx<'_, E>,
) -> Result<(), Failure> {
    let p0 = cx.single_partition_topic("seek").await?;
    // Three committed transactional records, their marker, two plain records.
    let mut transactional = cx.transactional_producer().await?;
    let txn: Vec<ProducerRecord> = (0..3)
        .map(|i| record_to(&p0, "k", &format!("txn-{i}")))
        .collect();
    let mut delivered = transaction(&mut transactional, &txn, Ending::Commit, "").await?;
    let marker = cx.expect.control_marker_offsets;
    // The commit returns once the coordinator has logged its decision; the
    // marker lands a moment later, and plain records sent before it would
    // take its place.
    cx.await_stable_end(&p0, 3 + marker).await?;
    let mut plain = cx.producer(None).await?;
    let after: Vec<ProducerRecord> = (0..2)
        .map(|i| record_to(&p0, "k", &format!("plain-{i}")))
        .collect();
    delivered.extend(send_all(&mut plain, &after).await?);
    let mut all = txn;
    all.extend(after);
    let all_pairs = delivered_pairs(&all, &delivered);
    let marker_offset = 3;
    ensure!(
        offsets(&delivered) == vec![0, 1, 2, 3 + marker, 4 + marker],
        "records landed at {:?}, expected 0, 1, 2 and, after the commit marker, {} and {}",
        offsets(&delivered),
        3 + marker,
        4 + marker
    );

    let mut reader = cx
        .assigned_reader(std::slice::from_ref(&p0), Isolation::ReadCommitted)
        .await?;
    let mut seen = Vec::new();
    read_into(cx, &mut reader, &mut seen, all.len()).await?;
    verdict(verify_partition_contents(
        "from the start",
        &read_pairs(&seen),
        &all_pairs,
    ))?;
    let mut observed = Vec::new();
    for (seek_to, what) in [
        (1, "a record"),
        (marker_offset, "the commit marker"),
        (0, "the start"),
        (5 + marker, "the end"),
    ] {
        reader
            .seek(&p0, seek_to)
            .await
            .or_fail(&format!("seeking to {seek_to}"))?;
        let expected: Vec<(i64, String)> = all_pairs
            .iter()
            .filter(|(o, _)| *o >= seek_to)
            .cloned()
            .collect();
        let mut seen = Vec::new();
        read_into(cx, &mut reader, &mut seen, expected.len()).await?;
        verdict(verify_partition_contents(
            &format!("after a seek to {seek_to} ({what})"),
            &read_pairs(&seen),
            &expected,
        ))?;
        observed.push(format!(
            "seek {seek_to} ({what}) -> {:?}",
            seen.first().map(|m| m.offset)
        ));
    }
    reader.close().await.or_fail("closing")?;
    cx.note(observed.join("; "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::support::record;

    fn sent(n: usize) -> (Vec<ProducerRecord>, Vec<Delivered>, Vec<Message>) {
        let records: Vec<ProducerRecord> = (0..n)
            .map(|i| {
                let mut r = record("t", Some(i as i32 % 2), &format!("k{i}"), &format!("v{i}"));
                r.timestamp_ms = Some(1_000 + i as i64);
                r
            })
            .collect();
        let delivered: Vec<Delivered> = (0..n)
            .map(|i| Delivered {
                topic: "t".into(),
                partition: i as i32 % 2,
                offset: i as i64 / 2,
            })
            .collect();
        let read = records
            .iter()
            .zip(&delivered)
            .map(|(r, d)| Message {
                topic: "t".into(),
                partition: d.partition,
                offset: d.offset,
                key: r.key.clone().map(Into::into),
                value: r.value.clone().map(Into::into),
                timestamp_ms: r.timestamp_ms.unwrap(),
                headers: r.headers.clone(),
            })
            .collect();
        (records, delivered, read)
    }

    #[test]
    fn an_honest_log_passes_both_verifiers() {
        let (records, delivered, read) = sent(10);
        assert_eq!(
            verify_deliveries(&records, &delivered, |r| r.partition.unwrap()),
            Ok(())
        );
        assert_eq!(verify_read_back(&records, &delivered, &read), Ok(()));
    }

    #[test]
    fn a_gap_or_a_repeated_offset_in_deliveries_fails() {
        let (records, mut delivered, _) = sent(10);
        delivered[4].offset += 1;
        assert!(verify_deliveries(&records, &delivered, |r| r.partition.unwrap()).is_err());
        let (records, mut delivered, _) = sent(10);
        delivered[4].offset -= 1;
        assert!(verify_deliveries(&records, &delivered, |r| r.partition.unwrap()).is_err());
    }

    #[test]
    fn a_record_in_the_wrong_partition_fails() {
        let (records, delivered, _) = sent(10);
        let error = verify_deliveries(&records, &delivered, |_| 0).unwrap_err();
        assert!(error.contains("expected t-0"), "{error}");
    }

    #[test]
    fn a_duplicated_reordered_or_altered_record_fails_the_read_back() {
        let (records, delivered, read) = sent(6);
        let mut duplicated = read.clone();
        duplicated.insert(3, read[2].clone());
        assert!(verify_read_back(&records, &delivered, &duplicated).is_err());

        let mut reordered = read.clone();
        reordered.swap(0, 2);
        assert!(verify_read_back(&records, &delivered, &reordered).is_err());

        let mut altered = read.clone();
        altered[1].timestamp_ms += 1;
        assert!(verify_read_back(&records, &delivered, &altered).is_err());

        let mut altered = read.clone();
        altered[1].headers.reverse();
        altered[1].headers.push(("x".into(), vec![]));
        assert!(verify_read_back(&records, &delivered, &altered).is_err());

        let mut missing = read;
        missing.pop();
        assert!(verify_read_back(&records, &delivered, &missing).is_err());
    }
}
