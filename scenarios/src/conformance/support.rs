//! What every check uses: the check context, failures, and helpers to create
//! topics and clients and to read partitions through the `Transport` traits.

use std::time::Duration;

use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ConsumerEvent, Delivered, ErrorCode, GroupMetadata, Isolation,
    Message, NewTopic, OffsetAndMetadata, Producer, ProducerConfig, ProducerRecord, TopicPartition,
    Transport, TransportError, TransportResult,
};

use super::{ConformanceEnv, Expectations};

/// How long a read keeps polling after it has what it expected, to catch
/// records that should not be there (duplicates, aborted records).
pub(crate) const SETTLE: Duration = Duration::from_millis(400);

/// How long one poll waits.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Records per poll.
pub(crate) const POLL_MAX_EVENTS: usize = 500;

/// Why a check did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A guarantee was broken, or the check could not be carried out.
    Fail(String),
    /// The env cannot run this check (never counted as passed).
    Skip(String),
}

/// `Err(Failure::Fail(..))` with a formatted reason.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::conformance::Failure::Fail(format!($($arg)*)))
    };
}
pub(crate) use fail;

/// Fails the check with the formatted reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::conformance::support::fail!($($arg)*);
        }
    };
}
pub(crate) use ensure;

/// Turns a verifier's `Result<_, String>` into a check result.
pub(crate) fn verdict<T>(result: Result<T, String>) -> Result<T, Failure> {
    result.map_err(Failure::Fail)
}

/// Adds what the check was doing to a transport error.
pub(crate) trait OrFail<T> {
    fn or_fail(self, doing: &str) -> Result<T, Failure>;
}

impl<T> OrFail<T> for TransportResult<T> {
    fn or_fail(self, doing: &str) -> Result<T, Failure> {
        self.map_err(|error| Failure::Fail(format!("{doing}: {error}")))
    }
}

/// `kind/code` of an error, as the notes print it.
pub(crate) fn describe(error: &TransportError) -> String {
    format!("{:?}/{:?}", error.kind, error.code)
}

/// One check's context: the env, the expectations, and the notes the check
/// leaves for the report.
pub struct Cx<'a, E> {
    pub env: &'a E,
    pub expect: &'a Expectations,
    notes: Vec<String>,
}

type TransportOf<E> = <E as ConformanceEnv>::Transport;
pub(crate) type AdminOf<E> = <TransportOf<E> as Transport>::Admin;
pub(crate) type ProducerOf<E> = <TransportOf<E> as Transport>::Producer;
pub(crate) type ConsumerOf<E> = <TransportOf<E> as Transport>::Consumer;

impl<'a, E: ConformanceEnv> Cx<'a, E> {
    pub fn new(env: &'a E, expect: &'a Expectations) -> Self {
        Self {
            env,
            expect,
            notes: Vec::new(),
        }
    }

    /// Leaves a line for the report (what was observed, for comparing targets).
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    pub fn into_notes(self) -> Vec<String> {
        self.notes
    }

    /// A run-unique name.
    pub fn name(&self, what: &str) -> String {
        self.env.names().fresh(what)
    }

    /// An admin client of the env's transport.
    pub async fn admin(&self) -> Result<AdminOf<E>, Failure> {
        self.env
            .transport()
            .admin()
            .await
            .or_fail("opening an admin client")
    }

    /// Creates a fresh topic, replicated as the env replicates the suite's
    /// topics, and waits until it reports its partitions.
    pub async fn topic(&mut self, what: &str, partitions: i32) -> Result<String, Failure> {
        let (replication_factor, min_insync) = self.env.replication();
        let mut configs = Vec::new();
        if let Some(min_insync) = min_insync {
            configs.push(("min.insync.replicas".to_string(), min_insync.to_string()));
        }
        self.topic_with(what, partitions, replication_factor, configs)
            .await
    }

    /// Creates a fresh topic with this replication factor and these topic
    /// configs (`min.insync.replicas`, ...), whatever the env's own
    /// replication, and waits until it reports its partitions.
    pub async fn topic_with(
        &mut self,
        what: &str,
        partitions: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
    ) -> Result<String, Failure> {
        let name = self.name(what);
        let admin = self.admin().await?;
        admin
            .create_topic(&NewTopic {
                name: name.clone(),
                partitions,
                replication_factor,
                configs,
            })
            .await
            .or_fail(&format!("creating topic {name}"))?;
        let deadline = self.deadline();
        loop {
            match admin.partition_count(&name).await {
                Ok(count) if count == partitions => return Ok(name),
                Ok(count) => fail!(
                    "topic {name} was created with {partitions} partitions but reports {count}"
                ),
                Err(error) if self.env.elapsed() < deadline => {
                    let _ = error;
                    self.env.sleep(Duration::from_millis(50)).await;
                }
                Err(error) => fail!("topic {name} never became visible: {error}"),
            }
        }
    }

    /// Creates a fresh topic of one partition and returns that partition.
    pub async fn single_partition_topic(&mut self, what: &str) -> Result<TopicPartition, Failure> {
        let topic = self.topic(what, 1).await?;
        Ok(TopicPartition::new(topic, 0))
    }

    /// An idempotent producer (acks=all), or a transactional one that has
    /// already called `init_transactions`.
    pub async fn producer(
        &mut self,
        transactional_id: Option<&str>,
    ) -> Result<ProducerOf<E>, Failure> {
        self.producer_with(transactional_id, |_| {}).await
    }

    /// A transactional producer with a fresh transactional id, after its
    /// `init_transactions`.
    pub async fn transactional_producer(&mut self) -> Result<ProducerOf<E>, Failure> {
        let id = self.name("txn");
        self.producer(Some(&id)).await
    }

    pub async fn producer_with(
        &mut self,
        transactional_id: Option<&str>,
        tweak: impl FnOnce(&mut ProducerConfig),
    ) -> Result<ProducerOf<E>, Failure> {
        let mut producer = self.uninitialized_producer(transactional_id, tweak).await?;
        if transactional_id.is_some() {
            producer
                .init_transactions()
                .await
                .or_fail("init_transactions")?;
        }
        Ok(producer)
    }

    /// A producer as [`Self::producer_with`] makes it, but without calling
    /// `init_transactions`: for checks that time that call.
    pub async fn uninitialized_producer(
        &mut self,
        transactional_id: Option<&str>,
        tweak: impl FnOnce(&mut ProducerConfig),
    ) -> Result<ProducerOf<E>, Failure> {
        let mut config =
            ProducerConfig::new(self.name("producer"), transactional_id.map(str::to_string));
        config.linger_ms = 5;
        config.request_timeout_ms = 10_000;
        config.delivery_timeout_ms = 90_000;
        tweak(&mut config);
        self.env
            .transport()
            .producer(&config)
            .await
            .or_fail("creating a producer")
    }

    /// A consumer, in a group or (with `None`) for assigned partitions only.
    pub async fn consumer(
        &mut self,
        group_id: Option<&str>,
        isolation: Isolation,
    ) -> Result<ConsumerOf<E>, Failure> {
        self.consumer_with(group_id, isolation, |_| {}).await
    }

    pub async fn consumer_with(
        &mut self,
        group_id: Option<&str>,
        isolation: Isolation,
        tweak: impl FnOnce(&mut ConsumerConfig),
    ) -> Result<ConsumerOf<E>, Failure> {
        let mut config = ConsumerConfig::new(self.name("consumer"), group_id.map(str::to_string));
        config.isolation = isolation;
        config.request_timeout_ms = 10_000;
        tweak(&mut config);
        self.env
            .transport()
            .consumer(&config)
            .await
            .or_fail("creating a consumer")
    }

    /// The env's clock reading by which a wait for the target gives up.
    pub fn deadline(&self) -> Duration {
        self.env.elapsed() + self.env.patience()
    }

    /// Reads `partitions` from their start with a fresh, group-less consumer
    /// until `expected` records have arrived (or the env's patience runs
    /// out), then for [`SETTLE`] more to catch records that should not be
    /// there. Returns every record read, in arrival order.
    pub async fn read(
        &mut self,
        partitions: &[TopicPartition],
        isolation: Isolation,
        expected: usize,
    ) -> Result<Vec<Message>, Failure> {
        let mut consumer = self.assigned_reader(partitions, isolation).await?;
        let mut messages = Vec::new();
        read_into(self, &mut consumer, &mut messages, expected).await?;
        consumer.close().await.or_fail("closing a consumer")?;
        Ok(messages)
    }

    /// A fresh, group-less consumer of `partitions`; it starts at the reset
    /// policy, the earliest offset.
    pub async fn assigned_reader(
        &mut self,
        partitions: &[TopicPartition],
        isolation: Isolation,
    ) -> Result<ConsumerOf<E>, Failure> {
        let mut consumer = self.consumer(None, isolation).await?;
        consumer
            .assign(partitions)
            .await
            .or_fail("assigning partitions")?;
        Ok(consumer)
    }

    /// Reads `partition` from its start under `isolation` (as [`Self::read`],
    /// until as many records as `expected` holds) and fails unless it holds
    /// exactly the `(offset, value)` pairs of `expected`.
    pub async fn read_exactly(
        &mut self,
        partition: &TopicPartition,
        isolation: Isolation,
        expected: &[(i64, String)],
    ) -> Result<(), Failure> {
        let read = self
            .read(std::slice::from_ref(partition), isolation, expected.len())
            .await?;
        verdict(
            verify_partition_contents(&partition.to_string(), &read_pairs(&read), expected)
                .map_err(|e| format!("{}: {e}", isolation_name(isolation))),
        )
    }

    /// Fails unless the offsets range of `partition` is `expected` under
    /// both isolation levels (no transaction open: the last stable offset is
    /// the high watermark); `when` says at which point of the check.
    pub async fn expect_ranges(
        &mut self,
        partition: &TopicPartition,
        expected: (i64, i64),
        when: &str,
    ) -> Result<(), Failure> {
        for isolation in [Isolation::ReadCommitted, Isolation::ReadUncommitted] {
            let range = self.range(partition, isolation).await?;
            ensure!(
                range == expected,
                "{when}, {partition} range ({isolation:?}) is {range:?}, expected {expected:?}"
            );
        }
        Ok(())
    }

    /// Waits until the read_committed end offset (the last stable offset) of
    /// `partition` reaches `at_least`. On Kafka, `commit_transaction` returns
    /// once the coordinator has logged its decision; the markers reach the
    /// partitions a moment later, and only then does the LSO move.
    pub async fn await_stable_end(
        &mut self,
        partition: &TopicPartition,
        at_least: i64,
    ) -> Result<(), Failure> {
        let mut consumer = self.consumer(None, Isolation::ReadCommitted).await?;
        let deadline = self.deadline();
        loop {
            let (_, end) = consumer
                .offsets_range(partition)
                .await
                .or_fail(&format!("reading the offsets of {partition}"))?;
            if end >= at_least {
                break;
            }
            if self.env.elapsed() >= deadline {
                fail!(
                    "the last stable offset of {partition} stayed at {end} for {} ms after the commit; expected it to reach {at_least}",
                    self.env.patience().as_millis()
                );
            }
            self.env.sleep(Duration::from_millis(20)).await;
        }
        consumer.close().await.or_fail("closing a consumer")
    }

    /// The offsets ranges of `partition` under read_committed and under
    /// read_uncommitted, once the last stable offset has caught up with the
    /// high watermark (no transaction open, its marker replicated), or as
    /// last read when the env's patience ran out (the caller judges them).
    pub async fn settled_ranges(
        &mut self,
        partition: &TopicPartition,
    ) -> Result<((i64, i64), (i64, i64)), Failure> {
        let mut committed = self.consumer(None, Isolation::ReadCommitted).await?;
        let mut uncommitted = self.consumer(None, Isolation::ReadUncommitted).await?;
        let doing = format!("reading the offsets of {partition}");
        let deadline = self.deadline();
        let ranges = loop {
            let stable = committed.offsets_range(partition).await.or_fail(&doing)?;
            let all = uncommitted.offsets_range(partition).await.or_fail(&doing)?;
            if stable.1 == all.1 || self.env.elapsed() >= deadline {
                break (stable, all);
            }
            self.env.sleep(Duration::from_millis(20)).await;
        };
        committed.close().await.or_fail("closing a consumer")?;
        uncommitted.close().await.or_fail("closing a consumer")?;
        Ok(ranges)
    }

    /// The first and end offsets of `partition` under `isolation`.
    pub async fn range(
        &mut self,
        partition: &TopicPartition,
        isolation: Isolation,
    ) -> Result<(i64, i64), Failure> {
        let mut consumer = self.consumer(None, isolation).await?;
        let range = consumer.offsets_range(partition).await.or_fail(&format!(
            "reading the offsets of {partition} ({isolation:?})"
        ))?;
        consumer.close().await.or_fail("closing a consumer")?;
        Ok(range)
    }
}

/// Polls `consumer` until `messages` holds `expected` records (or the env's
/// patience runs out), then for [`SETTLE`] more. Only `Message` events are
/// expected from a consumer of assigned partitions; any other event fails.
pub(crate) async fn read_into<E: ConformanceEnv>(
    cx: &Cx<'_, E>,
    consumer: &mut ConsumerOf<E>,
    messages: &mut Vec<Message>,
    expected: usize,
) -> Result<(), Failure> {
    let deadline = cx.deadline();
    while messages.len() < expected && cx.env.elapsed() < deadline {
        poll_messages(consumer, messages).await?;
    }
    read_for(cx, consumer, messages, SETTLE).await
}

/// Polls for up to `duration` and collects records; used to show that
/// nothing (more) is visible.
pub(crate) async fn read_for<E: ConformanceEnv>(
    cx: &Cx<'_, E>,
    consumer: &mut ConsumerOf<E>,
    messages: &mut Vec<Message>,
    duration: Duration,
) -> Result<(), Failure> {
    let until = cx.env.elapsed() + duration;
    while cx.env.elapsed() < until {
        poll_messages(consumer, messages).await?;
    }
    Ok(())
}

async fn poll_messages<C: Consumer>(
    consumer: &mut C,
    messages: &mut Vec<Message>,
) -> Result<(), Failure> {
    let events = match consumer.poll(POLL_MAX_EVENTS, POLL).await {
        Ok(events) => events,
        // A retriable error (a broker's connection died, as when a check
        // stops a broker) says "poll again": a reader rides it out.
        Err(error) if error.is_retriable() => {
            tokio::time::sleep(POLL).await;
            return Ok(());
        }
        Err(error) => return Err(error).or_fail("polling"),
    };
    for event in events {
        match event {
            ConsumerEvent::Message(message) => messages.push(message),
            other => fail!("a consumer of assigned partitions got a group event: {other:?}"),
        }
    }
    Ok(())
}

/// A producer's transactional calls, each failing the check with what it
/// was doing.
pub(crate) trait TransactionSteps: Producer {
    async fn begin(&mut self, doing: &str) -> Result<(), Failure> {
        self.begin_transaction().await.or_fail(doing)
    }

    async fn commit(&mut self, doing: &str) -> Result<(), Failure> {
        self.commit_transaction().await.or_fail(doing)
    }

    async fn abort(&mut self, doing: &str) -> Result<(), Failure> {
        self.abort_transaction().await.or_fail(doing)
    }
}

impl<P: Producer> TransactionSteps for P {}

/// How [`transaction`] ends the transaction it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// `commit_transaction`.
    Commit,
    /// `flush`, and the transaction stays open.
    LeftOpen,
}

/// Begins a transaction, writes `records` in it and ends it as `ending`
/// says; `who` tells producers apart in failures (`""` or `" (second)"`).
pub(crate) async fn transaction<P: Producer>(
    producer: &mut P,
    records: &[ProducerRecord],
    ending: Ending,
    who: &str,
) -> Result<Vec<Delivered>, Failure> {
    producer.begin(&format!("begin_transaction{who}")).await?;
    let delivered = send_all(producer, records).await?;
    match ending {
        Ending::Commit => producer.commit(&format!("commit_transaction{who}")).await?,
        Ending::LeftOpen => producer.flush().await.or_fail(&format!("flushing{who}"))?,
    }
    Ok(delivered)
}

/// Begins a transaction, writes `output` in it and sends `offsets` for the
/// group `group` with it, leaving the transaction open. `stage` tells
/// transactions of one check apart in failures (`""` or `" after the
/// failure"`).
pub(crate) async fn transaction_with_offsets<P: Producer>(
    producer: &mut P,
    output: ProducerRecord,
    offsets: &[(TopicPartition, OffsetAndMetadata)],
    group: &GroupMetadata,
    stage: &str,
) -> Result<(), Failure> {
    producer.begin(&format!("begin_transaction{stage}")).await?;
    send_all(producer, &[output]).await?;
    producer
        .send_offsets_to_transaction(offsets, group)
        .await
        .or_fail(&format!("send_offsets_to_transaction{stage}"))
}

/// The group's committed offsets of `partitions`, as `consumer` reads them.
pub(crate) async fn committed_offsets<C: Consumer>(
    consumer: &mut C,
    partitions: &[TopicPartition],
) -> Result<Vec<Option<OffsetAndMetadata>>, Failure> {
    consumer
        .committed(partitions)
        .await
        .or_fail("reading committed offsets")
}

/// An offset to commit, with its metadata.
pub(crate) fn at(offset: i64, metadata: &str) -> OffsetAndMetadata {
    OffsetAndMetadata {
        offset,
        metadata: metadata.to_string(),
    }
}

/// What a producer passes for a group it is not a member of (the engine's
/// consumers always are; a standalone commit uses generation -1).
pub(crate) fn outside_the_group(group_id: &str) -> GroupMetadata {
    GroupMetadata {
        group_id: group_id.to_string(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
    }
}

/// `read_committed` or `read_uncommitted`, as failures name them.
pub(crate) fn isolation_name(isolation: Isolation) -> &'static str {
    match isolation {
        Isolation::ReadCommitted => "read_committed",
        Isolation::ReadUncommitted => "read_uncommitted",
    }
}

/// The error `call` was expected to fail with, `code`; an error saying so
/// if it succeeded or failed with another code.
pub(crate) fn verify_refusal<T: std::fmt::Debug>(
    result: Result<T, TransportError>,
    call: &str,
    code: ErrorCode,
) -> Result<TransportError, String> {
    match result {
        Ok(value) => Err(format!(
            "{call} succeeded with {value:?}; it should have failed"
        )),
        Err(error) if error.code == code => Ok(error),
        Err(error) => Err(format!(
            "{call} failed with {}, expected {code:?}",
            describe(&error)
        )),
    }
}

/// Sends one record and waits for its acknowledgement; a refusal at
/// either step is the error.
pub(crate) async fn send_one<P: Producer>(
    producer: &mut P,
    record: ProducerRecord,
) -> TransportResult<Delivered> {
    match producer.send(record) {
        Err(error) => Err(error),
        Ok(delivery) => delivery.await,
    }
}

/// Sends every record, then waits for each acknowledgement in send order.
pub(crate) async fn send_all<P: Producer>(
    producer: &mut P,
    records: &[ProducerRecord],
) -> Result<Vec<Delivered>, Failure> {
    let mut pending = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        pending.push(
            producer
                .send(record.clone())
                .or_fail(&format!("sending record {index}"))?,
        );
    }
    await_deliveries(pending).await
}

/// Sends every record and waits for each acknowledgement in send order,
/// keeping every outcome (a refusal at `send` is that record's outcome).
pub(crate) async fn send_each<P: Producer>(
    producer: &mut P,
    records: &[ProducerRecord],
) -> Vec<TransportResult<Delivered>> {
    let mut pending = Vec::with_capacity(records.len());
    for record in records {
        pending.push(producer.send(record.clone()));
    }
    let mut outcomes = Vec::with_capacity(pending.len());
    for sent in pending {
        outcomes.push(match sent {
            Ok(delivery) => delivery.await,
            Err(error) => Err(error),
        });
    }
    outcomes
}

/// Waits for each acknowledgement, in send order.
pub(crate) async fn await_deliveries<D: Future<Output = TransportResult<Delivered>>>(
    pending: Vec<D>,
) -> Result<Vec<Delivered>, Failure> {
    let mut delivered = Vec::with_capacity(pending.len());
    for (index, delivery) in pending.into_iter().enumerate() {
        delivered.push(
            delivery
                .await
                .or_fail(&format!("delivering record {index}"))?,
        );
    }
    Ok(delivered)
}

/// A record to an explicit partition with a recognisable key, value and
/// header, stamped by the producer's clock.
pub(crate) fn record(
    topic: &str,
    partition: Option<i32>,
    key: &str,
    value: &str,
) -> ProducerRecord {
    ProducerRecord {
        topic: topic.to_string(),
        partition,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        // The producer's clock: a broker deletes records whose timestamps are
        // older than its retention time (see CONFORMANCE-NOTES.md).
        timestamp_ms: None,
        headers: vec![("check".to_string(), value.as_bytes().to_vec())],
    }
}

/// [`record`] to `partition`.
pub(crate) fn record_to(partition: &TopicPartition, key: &str, value: &str) -> ProducerRecord {
    record(&partition.topic, Some(partition.partition), key, value)
}

/// A record's value as text (lossy; the checks write text values).
pub(crate) fn value_text(value: Option<&[u8]>) -> String {
    String::from_utf8_lossy(value.unwrap_or_default()).into_owned()
}

/// The values of messages as text, in arrival order.
pub(crate) fn values(messages: &[&Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| value_text(m.value.as_deref()))
        .collect()
}

/// Compares what a partition was read to hold with what it should hold:
/// `(offset, value)` pairs in order, nothing missing, nothing extra.
pub(crate) fn verify_partition_contents(
    partition: &str,
    read: &[(i64, String)],
    expected: &[(i64, String)],
) -> Result<(), String> {
    if read == expected {
        return Ok(());
    }
    let first_difference = read
        .iter()
        .zip(expected)
        .position(|(r, e)| r != e)
        .unwrap_or(read.len().min(expected.len()));
    Err(format!(
        "{partition}: expected {} records {}, read {} records {} (first difference at position {first_difference})",
        expected.len(),
        summarize(expected),
        read.len(),
        summarize(read),
    ))
}

/// `[offset=value, ...]`, shortened in the middle when long.
pub(crate) fn summarize(pairs: &[(i64, String)]) -> String {
    const SHOWN: usize = 6;
    let show = |p: &(i64, String)| format!("{}={}", p.0, p.1);
    if pairs.len() <= 2 * SHOWN {
        let all: Vec<String> = pairs.iter().map(show).collect();
        return format!("[{}]", all.join(", "));
    }
    let head: Vec<String> = pairs[..SHOWN].iter().map(show).collect();
    let tail: Vec<String> = pairs[pairs.len() - SHOWN..].iter().map(show).collect();
    format!("[{}, ..., {}]", head.join(", "), tail.join(", "))
}

/// `(offset, value)` pairs of messages.
pub(crate) fn pairs(messages: &[&Message]) -> Vec<(i64, String)> {
    messages
        .iter()
        .zip(values(messages))
        .map(|(m, v)| (m.offset, v))
        .collect()
}

/// `(offset, value)` pairs of what was read.
pub(crate) fn read_pairs(messages: &[Message]) -> Vec<(i64, String)> {
    let refs: Vec<&Message> = messages.iter().collect();
    pairs(&refs)
}

/// `(offset, value)` pairs of what was delivered: each record's value at
/// the offset its delivery reported.
pub(crate) fn delivered_pairs(
    records: &[ProducerRecord],
    delivered: &[Delivered],
) -> Vec<(i64, String)> {
    records
        .iter()
        .zip(delivered)
        .map(|(r, d)| (d.offset, value_text(r.value.as_deref())))
        .collect()
}

/// The offsets of deliveries, in send order.
pub(crate) fn offsets(delivered: &[Delivered]) -> Vec<i64> {
    delivered.iter().map(|d| d.offset).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddyline_engine::transport::ErrorKind;

    fn p(offset: i64, value: &str) -> (i64, String) {
        (offset, value.to_string())
    }

    #[test]
    fn identical_partition_contents_pass() {
        let expected = vec![p(0, "a"), p(1, "b")];
        assert_eq!(
            verify_partition_contents("t-0", &expected, &expected),
            Ok(())
        );
    }

    #[test]
    fn a_duplicate_a_gap_or_a_swap_fails_the_contents_check() {
        let expected = vec![p(0, "a"), p(1, "b"), p(2, "c")];
        for tampered in [
            vec![p(0, "a"), p(1, "b"), p(1, "b"), p(2, "c")],
            vec![p(0, "a"), p(2, "c")],
            vec![p(0, "a"), p(2, "c"), p(1, "b")],
            vec![p(0, "a"), p(1, "x"), p(2, "c")],
        ] {
            let error = verify_partition_contents("t-0", &tampered, &expected).unwrap_err();
            assert!(error.starts_with("t-0: expected 3 records"), "{error}");
        }
    }

    #[test]
    fn long_lists_are_shortened_in_the_middle() {
        let pairs: Vec<(i64, String)> = (0..40).map(|i| (i, format!("v{i}"))).collect();
        let text = summarize(&pairs);
        assert!(text.starts_with("[0=v0, "));
        assert!(text.contains(", ..., "));
        assert!(text.ends_with("39=v39]"));
    }

    #[test]
    fn a_success_or_another_code_fails_the_refusal_check() {
        let code = ErrorCode::UnknownTopicOrPartition;
        let refused = TransportError::new(ErrorKind::Fatal, code, "unknown");
        assert!(verify_refusal::<()>(Err(refused), "asking", code).is_ok());
        let error = verify_refusal(Ok(2), "asking", code).unwrap_err();
        assert!(error.contains("succeeded with 2"), "{error}");
        let other = TransportError::new(ErrorKind::Fatal, ErrorCode::InvalidState, "state");
        let error = verify_refusal::<()>(Err(other), "asking", code).unwrap_err();
        assert!(
            error.contains("expected UnknownTopicOrPartition"),
            "{error}"
        );
    }
}
