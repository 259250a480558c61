//! The Kafka-semantics conformance suite.
//!
//! Every check is written against the engine's `Transport` traits alone
//! (`eddyline_engine::transport`) and runs unchanged against the simulated
//! cluster and against a real Apache Kafka broker. What differs between the
//! two targets lives behind [`ConformanceEnv`]: the clock, run-unique names,
//! how topics are replicated, and what the env can do to brokers (crash a
//! partition leader on the simulator; kill and restart the single broker on
//! real Kafka, if given a command for it).
//!
//! Where the two targets disagree, real Kafka is right: the checks encode
//! what a real broker does (see `scenarios/CONFORMANCE-NOTES.md`), and the
//! simulator is fixed to match.
//!
//! A check gathers observations through the transport, then judges them.
//! Where the judgement is more than a comparison with one expected value (a
//! partition's contents, dense offsets, read-back records, committed
//! offsets, group ownership over a timeline, where a new owner starts, a
//! refusal's code, a fenced error, the coordinator's timeout abort, a wait
//! for stable offsets, how a transaction across a leader failure ended,
//! offsets released by an abort, late sends of a fenced producer, each
//! input once in the output, writes against the effective min ISR, a
//! partition's timeline under min ISR) a pure `verify_*` function makes
//! it, and the unit tests feed those functions tampered observations to
//! show that they can fail; plain equalities (an offsets range, a
//! generation that moved, a member id's prefix) are checked inline with
//! `ensure!`. The wrong-expectation controls in `tests/conformance_sim.rs`
//! show that the checks as a whole fail when told something false about
//! Kafka: each field of [`Expectations`] is a fact of Kafka's that some
//! check depends on.

mod env;
pub mod kafka_env;
mod report;
pub mod sim_env;
mod support;

mod errors;
mod failover;
mod fencing;
mod groups;
mod handover;
mod log;
mod offsets;
mod replication;
mod transactions;

use eddyline_engine::transport::{ErrorCode, ErrorKind};

pub use env::{BrokerControl, ConformanceEnv, ReplicaState, RunNames};
pub use report::{CheckReport, Outcome, Report};
pub use support::{Cx, Failure};

/// What the checks expect of Kafka where a number or a code is involved.
/// The defaults are Apache Kafka's behaviour; the tests change them on
/// purpose to see checks fail (a check that cannot fail proves nothing).
#[derive(Clone, Debug)]
pub struct Expectations {
    /// How many offsets a transaction marker (commit or abort) takes.
    pub control_marker_offsets: i64,
    /// The partitioner the suite predicts keyed records with.
    pub partition_for_key: fn(&[u8], i32) -> i32,
    /// What a producer whose epoch was bumped (by a newer incarnation's
    /// `init_transactions`, or by the coordinator aborting its timed-out
    /// transaction) fails with when it commits. Older brokers answered
    /// INVALID_PRODUCER_EPOCH; Kafka 3.8 with librdkafka 2.12 gives
    /// PRODUCER_FENCED in both cases (measured, see CONFORMANCE-NOTES.md).
    pub fenced_code: ErrorCode,
    /// How Kafka rejects a transactional offset commit from a member that
    /// is still in the group but at an older generation (KIP-447): the
    /// group coordinator answers TxnOffsetCommit with ILLEGAL_GENERATION
    /// (`GroupCoordinator.validateOffsetCommit`), which
    /// `send_offsets_to_transaction` reports as abortable (measured on
    /// Kafka 3.8 with librdkafka 2.12).
    pub stale_generation: (ErrorKind, ErrorCode),
    /// The number of in-sync replicas an acks=all write needs, from the
    /// topic's `min.insync.replicas` and its replication factor: Kafka
    /// takes the smaller (`Partition.effectiveMinIsr`).
    pub effective_min_isr: fn(i16, i16) -> i16,
}

/// Kafka's effective min ISR: `min(min.insync.replicas, replication factor)`.
pub fn kafka_effective_min_isr(min_insync_replicas: i16, replication_factor: i16) -> i16 {
    min_insync_replicas.min(replication_factor)
}

impl Default for Expectations {
    fn default() -> Self {
        Self {
            control_marker_offsets: 1,
            partition_for_key: eddyline_engine::transport::partition_for_key,
            fenced_code: ErrorCode::ProducerFenced,
            stale_generation: (ErrorKind::Abortable, ErrorCode::IllegalGeneration),
            effective_min_isr: kafka_effective_min_isr,
        }
    }
}

/// How to run the suite.
#[derive(Clone, Debug, Default)]
pub struct SuiteOptions {
    pub expectations: Expectations,
    /// Run only the checks whose `area: name` contains this text.
    pub filter: Option<String>,
}

/// The suite's checks, in the order they run: one table from which both the
/// list of checks ([`CHECKS`]) and their dispatch are generated, so the two
/// cannot drift apart.
/// Each row is `(area, name, brokers, function)`: `brokers` is how many
/// brokers the check needs (1, or 3 for replication, ISR and failover
/// between replicas).
macro_rules! checks {
    ($(($area:literal, $name:literal, $brokers:literal, $check:path),)*) => {
        /// Every check as `(area, name)`, in the order the suite runs them.
        pub const CHECKS: &[(&str, &str)] = &[$(($area, $name),)*];

        /// How many brokers each check of [`CHECKS`] needs, in the same order.
        pub const CHECK_BROKERS: &[usize] = &[$($brokers,)*];

        /// Runs check number `index` of [`CHECKS`].
        async fn run_one<E: ConformanceEnv>(index: usize, cx: &mut Cx<'_, E>) -> Result<(), Failure> {
            let mut position = 0;
            $(
                if index == position {
                    return $check(cx).await;
                }
                position += 1;
            )*
            panic!("no check number {index}: the suite has {position}");
        }
    };
}

checks! {
    ("log", "offsets are dense from 0 and follow send order in each partition", 1, log::offsets_are_dense_and_follow_send_order),
    ("log", "a seek moves the position to the first record at or after the offset", 1, log::a_seek_moves_the_position_to_the_first_record_at_or_after_it),
    ("partitioner", "keyed records land in the partitions of Kafka's murmur2 partitioner", 1, log::keyed_records_land_in_murmur2_partitions),
    ("partitioner", "a record with neither key nor partition is refused", 1, log::a_record_with_neither_key_nor_partition_is_refused),
    ("idempotence", "records retried after their acknowledgements were lost are written exactly once, in order", 1, failover::records_retried_after_lost_acknowledgements_are_written_once),
    ("transactions", "a committed transaction becomes visible and its marker takes one offset", 1, transactions::a_committed_transaction_becomes_visible_and_its_marker_takes_an_offset),
    ("transactions", "an aborted transaction is hidden from read_committed but not from read_uncommitted", 1, transactions::an_aborted_transaction_is_hidden_from_read_committed),
    ("transactions", "an open transaction holds read_committed readers at the last stable offset", 1, transactions::an_open_transaction_holds_read_committed_readers_at_the_lso),
    ("transactions", "a transaction left open past its timeout is aborted by the coordinator", 1, transactions::a_transaction_left_open_past_its_timeout_is_aborted),
    ("transactions", "a transaction spanning a leader failure is committed exactly once or aborted whole", 1, failover::a_transaction_spanning_a_leader_failure_commits_once_or_aborts_whole),
    ("fencing", "a second init_transactions fences the first producer, whose transaction is aborted", 1, transactions::a_second_init_transactions_fences_the_first_producer),
    ("fencing", "a fenced producer's late sends never reach the log", 1, fencing::a_fenced_producers_late_sends_never_reach_the_log),
    ("fencing", "a commit followed at once by a new instance's init_transactions stays committed", 1, fencing::a_commit_followed_at_once_by_a_new_init_stays_committed),
    ("fencing", "a transactional offset commit with a stale generation is rejected", 1, groups::a_transactional_offset_commit_with_a_stale_generation_is_rejected),
    ("offsets", "a committed offset reads back with its metadata", 1, offsets::a_committed_offset_reads_back_with_its_metadata),
    ("offsets", "offsets sent in a transaction appear on commit and are discarded on abort", 1, offsets::offsets_sent_in_a_transaction_appear_on_commit_only),
    ("offsets", "committed() under read_committed waits for a transaction's pending offsets", 1, offsets::committed_waits_for_pending_transactional_offsets),
    ("offsets", "a coordinator's timeout abort releases the transaction's offsets", 1, offsets::a_timeout_abort_releases_the_transactions_offsets),
    ("groups", "a joining member makes the group revoke everything before anything is assigned", 1, groups::a_joining_member_makes_the_group_revoke_before_assigning),
    ("groups", "a member that leaves hands its partitions to the remaining member", 1, groups::a_member_that_leaves_hands_its_partitions_over),
    ("groups", "the range assignor orders members by member id, which begins with the client id", 1, groups::the_range_assignor_orders_members_by_client_id),
    ("groups", "in one rebalance the old owner's transaction hands each input to the new owner exactly once (KIP-447)", 1, handover::in_one_rebalance_the_old_owners_transaction_hands_each_input_over_once),
    ("failover", "no acknowledged acks=all write is lost when the partition leader fails", 1, failover::no_acknowledged_write_is_lost_when_the_leader_fails),
    ("failover", "committed offsets survive the loss of the group coordinator", 1, failover::committed_offsets_survive_the_loss_of_the_group_coordinator),
    ("replication", "a replication-factor-1 topic with min.insync.replicas=2 accepts acks=all writes", 1, replication::a_replication_factor_1_topic_with_min_insync_2_accepts_acks_all_writes),
    ("replication", "a partition under min.insync.replicas holds its high watermark and refuses acks=all writes until the follower returns", 3, replication::a_partition_under_min_isr_holds_its_high_watermark_until_the_follower_returns),
    ("errors", "creating a topic that exists fails with TopicAlreadyExists", 1, errors::creating_a_topic_that_exists_fails),
    ("errors", "asking for a missing topic fails with UnknownTopicOrPartition", 1, errors::asking_for_a_missing_topic_fails),
    ("errors", "committing without a transaction fails with InvalidState", 1, errors::committing_without_a_transaction_fails),
    ("errors", "sending to a missing partition or topic fails with UnknownTopicOrPartition", 1, errors::sending_to_a_missing_partition_fails),
}

/// Runs the checks against the env's target, in [`CHECKS`] order, each with
/// a fresh context and the env's time budget, and returns the report.
/// Checks do not share topics, groups or transactional ids.
pub async fn run_suite<E: ConformanceEnv>(env: &E, options: &SuiteOptions) -> Report {
    let mut report = Report::new(env.target_name());
    for (index, &(area, name)) in CHECKS.iter().enumerate() {
        if let Some(filter) = &options.filter
            && !format!("{area}: {name}").contains(filter.as_str())
        {
            continue;
        }
        let needs = CHECK_BROKERS[index];
        if env.broker_count() < needs {
            report.checks.push(CheckReport {
                area,
                name,
                outcome: Outcome::Skipped(format!("needs {needs} brokers")),
                notes: Vec::new(),
                elapsed_ms: 0,
            });
            continue;
        }
        let started = env.elapsed();
        let mut cx = Cx::new(env, &options.expectations);
        let budget = env.check_budget();
        let outcome = match tokio::time::timeout(budget, run_one(index, &mut cx)).await {
            Ok(Ok(())) => Outcome::Passed,
            Ok(Err(Failure::Fail(reason))) => Outcome::Failed(reason),
            Ok(Err(Failure::Skip(reason))) => Outcome::Skipped(reason),
            Err(_) => Outcome::Failed(format!(
                "did not finish within its budget of {} ms",
                budget.as_millis()
            )),
        };
        report.checks.push(CheckReport {
            area,
            name,
            outcome,
            notes: cx.into_notes(),
            elapsed_ms: env.elapsed().saturating_sub(started).as_millis() as u64,
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_are_unique_sentences() {
        let mut seen = std::collections::BTreeSet::new();
        for (area, name) in CHECKS {
            assert!(seen.insert(*name), "two checks are named {name:?}");
            assert!(!area.is_empty() && name.contains(' '), "{area}: {name}");
        }
    }
}
