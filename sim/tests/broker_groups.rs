//! The group coordinator over the network: joins, generations, rebalances,
//! session timeouts, fencing of stale members, committed offsets, and
//! loading the group state after a coordinator failover.

mod common;

use common::*;
use eddyline_engine::transport::{ErrorCode, OffsetAndMetadata, TopicPartition};
use eddyline_sim::cluster::{ClusterConfig, ClusterHandle};
use eddyline_sim::protocol::{
    CoordinatorType, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    JoinProtocol, LeaveGroupRequest, LeaveGroupResponse, MemberAssignment, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, PartitionError, Request,
    Response, SyncGroupRequest, SyncGroupResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use eddyline_sim::rpc::Connection;

/// Kafka's group.min.session.timeout.ms, the shortest session it accepts.
const SESSION_MS: u32 = 6_000;
/// Longer than a session, so that a session expires before a rebalance does.
const REBALANCE_MS: u32 = 2 * SESSION_MS;

fn join(group: &str, member_id: &str) -> Request {
    join_as(group, member_id, None)
}

/// A JoinGroup, from a static member (KIP-345) if `group_instance_id`.
fn join_as(group: &str, member_id: &str, group_instance_id: Option<&str>) -> Request {
    Request::JoinGroup(JoinGroupRequest {
        group_id: group.to_string(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        member_id: member_id.to_string(),
        group_instance_id: group_instance_id.map(str::to_string),
        protocol_type: "consumer".to_string(),
        protocols: vec![JoinProtocol {
            name: "range".to_string(),
            metadata: b"in".to_vec(),
        }],
        client_id: "consumer".to_string(),
    })
}

struct Joined {
    generation: i32,
    member_id: String,
    leader: String,
    members: Vec<String>,
}

/// Two members that join `group` at once, each on its own connection to
/// the coordinator: (leader, its connection, follower, its connection).
async fn two_members(
    handle: &ClusterHandle,
    group: &str,
) -> (Joined, Connection, Joined, Connection) {
    let mut a = coordinator(handle, CoordinatorType::Group, group).await;
    let mut b = coordinator(handle, CoordinatorType::Group, group).await;
    let (first, second) =
        tokio::join!(join_group(&mut a, group, ""), join_group(&mut b, group, ""));
    if first.leader == first.member_id {
        (first, a, second, b)
    } else {
        (second, b, first, a)
    }
}

async fn join_group(connection: &mut Connection, group: &str, member_id: &str) -> Joined {
    let mut member_id = member_id.to_string();
    if member_id.is_empty() {
        // KIP-394: the first JoinGroup only hands out the member id.
        match call(connection, join(group, "")).await {
            Response::JoinGroup(JoinGroupResponse {
                error: Some(ErrorCode::Other(79)),
                member_id: offered,
                ..
            }) => {
                assert!(offered.starts_with("consumer-"), "{offered}");
                member_id = offered;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    match call(connection, join(group, &member_id)).await {
        Response::JoinGroup(JoinGroupResponse {
            error: None,
            generation_id,
            member_id,
            leader,
            members,
            protocol_name,
        }) => {
            assert_eq!(protocol_name.as_deref(), Some("range"));
            Joined {
                generation: generation_id,
                member_id,
                leader,
                members: members.into_iter().map(|m| m.member_id).collect(),
            }
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn sync(
    connection: &mut Connection,
    group: &str,
    joined: &Joined,
    assignments: Vec<(String, Vec<TopicPartition>)>,
) -> Result<Vec<TopicPartition>, ErrorCode> {
    match call(
        connection,
        Request::SyncGroup(SyncGroupRequest {
            group_id: group.to_string(),
            generation_id: joined.generation,
            member_id: joined.member_id.clone(),
            assignments: assignments
                .into_iter()
                .map(|(member_id, partitions)| MemberAssignment {
                    member_id,
                    partitions,
                })
                .collect(),
        }),
    )
    .await
    {
        Response::SyncGroup(SyncGroupResponse {
            error: None,
            assignment,
        }) => Ok(assignment),
        Response::SyncGroup(SyncGroupResponse {
            error: Some(error), ..
        }) => Err(error),
        other => panic!("unexpected {other:?}"),
    }
}

async fn heartbeat(
    connection: &mut Connection,
    group: &str,
    generation: i32,
    member_id: &str,
) -> Option<ErrorCode> {
    match call(
        connection,
        Request::Heartbeat(HeartbeatRequest {
            group_id: group.to_string(),
            generation_id: generation,
            member_id: member_id.to_string(),
        }),
    )
    .await
    {
        Response::Heartbeat(HeartbeatResponse { error }) => error,
        other => panic!("unexpected {other:?}"),
    }
}

async fn commit(
    handle: &ClusterHandle,
    group: &str,
    generation: i32,
    member_id: &str,
    tp: &TopicPartition,
    offset: i64,
) -> Option<ErrorCode> {
    match group_call(
        handle,
        group,
        Request::OffsetCommit(OffsetCommitRequest {
            group_id: group.to_string(),
            generation_id: generation,
            member_id: member_id.to_string(),
            offsets: vec![(
                tp.clone(),
                OffsetAndMetadata {
                    offset,
                    metadata: format!("checkpoint={offset}"),
                },
            )],
        }),
    )
    .await
    {
        Response::OffsetCommit(OffsetCommitResponse { results }) => results[0].error,
        other => panic!("unexpected {other:?}"),
    }
}

async fn committed(
    handle: &ClusterHandle,
    group: &str,
    tp: &TopicPartition,
) -> Option<OffsetAndMetadata> {
    match group_call(
        handle,
        group,
        Request::OffsetFetch(OffsetFetchRequest {
            group_id: group.to_string(),
            partitions: vec![tp.clone()],
            require_stable: true,
        }),
    )
    .await
    {
        Response::OffsetFetch(OffsetFetchResponse {
            error: None,
            mut offsets,
        }) => offsets.remove(0).offset,
        other => panic!("unexpected {other:?}"),
    }
}

mod membership {
    use super::*;

    #[test]
    fn two_members_join_one_generation_and_the_leader_hands_out_the_assignment() {
        let mut cluster = cluster(51);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let mut a = coordinator(&handle, CoordinatorType::Group, "g").await;
            let mut b = coordinator(&handle, CoordinatorType::Group, "g").await;
            let (first, second) = tokio::join!(join_group(&mut a, "g", ""), async {
                sleep_ms(20).await;
                join_group(&mut b, "g", "").await
            });
            assert_eq!(first.generation, second.generation);
            assert_eq!(first.leader, second.leader);
            let (leader, follower, leader_conn, follower_conn) = if first.leader == first.member_id
            {
                (first, second, &mut a, &mut b)
            } else {
                (second, first, &mut b, &mut a)
            };
            assert_eq!(leader.members.len(), 2);
            assert!(follower.members.is_empty());
            let p0 = TopicPartition::new("in", 0);
            let p1 = TopicPartition::new("in", 1);
            let assignments = vec![
                (leader.member_id.clone(), vec![p0.clone()]),
                (follower.member_id.clone(), vec![p1.clone()]),
            ];
            let (mine, theirs) = tokio::join!(
                sync(leader_conn, "g", &leader, assignments),
                sync(follower_conn, "g", &follower, Vec::new())
            );
            assert_eq!(mine, Ok(vec![p0]));
            assert_eq!(theirs, Ok(vec![p1]));
            assert_eq!(
                heartbeat(leader_conn, "g", leader.generation, &leader.member_id).await,
                None
            );

            // A third member joining starts a rebalance: the others are told
            // to rejoin, and a stale generation is refused.
            let mut c = coordinator(&handle, CoordinatorType::Group, "g").await;
            let third = tokio::task::spawn_local(async move { join_group(&mut c, "g", "").await });
            sleep_ms(20).await;
            assert_eq!(
                heartbeat(follower_conn, "g", follower.generation, &follower.member_id).await,
                Some(ErrorCode::RebalanceInProgress)
            );
            let (rejoined_leader, rejoined_follower) = tokio::join!(
                join_group(leader_conn, "g", &leader.member_id),
                join_group(follower_conn, "g", &follower.member_id)
            );
            let third = third.await.unwrap();
            assert_eq!(rejoined_leader.generation, leader.generation + 1);
            assert_eq!(third.generation, leader.generation + 1);
            assert_eq!(rejoined_leader.members.len(), 3);
            assert_eq!(rejoined_follower.leader, leader.member_id);
            assert_eq!(
                heartbeat(follower_conn, "g", leader.generation, &follower.member_id).await,
                Some(ErrorCode::IllegalGeneration)
            );
            assert_eq!(
                heartbeat(follower_conn, "g", third.generation, "nobody").await,
                Some(ErrorCode::UnknownMemberId)
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_member_that_stops_heartbeating_is_removed_after_its_session_timeout() {
        let mut cluster = cluster(52);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let (leader, mut leader_conn, follower, mut follower_conn) =
                two_members(&handle, "g2").await;
            let (leader_conn, follower_conn) = (&mut leader_conn, &mut follower_conn);
            let (_, _) = tokio::join!(
                sync(leader_conn, "g2", &leader, vec![]),
                sync(follower_conn, "g2", &follower, vec![])
            );
            // Only the leader keeps heartbeating, for up to three sessions.
            let mut error = None;
            for _ in 0..3 * SESSION_MS / 100 {
                sleep_ms(100).await;
                error = heartbeat(leader_conn, "g2", leader.generation, &leader.member_id).await;
                if error.is_some() {
                    break;
                }
            }
            assert_eq!(error, Some(ErrorCode::RebalanceInProgress));
            let rejoined = join_group(leader_conn, "g2", &leader.member_id).await;
            assert_eq!(rejoined.members, vec![leader.member_id.clone()]);
            assert_eq!(
                heartbeat(
                    follower_conn,
                    "g2",
                    follower.generation,
                    &follower.member_id
                )
                .await,
                Some(ErrorCode::UnknownMemberId)
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    /// Kafka keeps a member alive through a pending SyncGroup only once that
    /// SyncGroup arrives (`awaitingSyncCallback`): a leader that got its
    /// JoinGroup answer and died expires after its session timeout, and the
    /// follower parked in SyncGroup is told to rejoin.
    #[test]
    fn a_leader_that_never_syncs_expires_and_the_parked_follower_is_told_to_rejoin() {
        let mut cluster = cluster(57);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            // The leader's connection stays open (a closed one is no leave).
            let (leader, _leader_conn, follower, mut follower_conn) =
                two_members(&handle, "g7").await;
            let follower_conn = &mut follower_conn;
            // The leader goes silent: no SyncGroup, no heartbeat.
            let parked_at = handle.now_ms();
            let answer = sync(follower_conn, "g7", &follower, Vec::new()).await;
            let waited_ms = handle.now_ms() - parked_at;
            assert_eq!(answer, Err(ErrorCode::RebalanceInProgress));
            assert!(
                waited_ms >= u64::from(SESSION_MS) && waited_ms < 2 * u64::from(SESSION_MS),
                "answered after {waited_ms} ms (session {SESSION_MS} ms, rebalance {REBALANCE_MS} ms)"
            );
            // The answer restarted the follower's session (Kafka's
            // `propagateAssignment`): it may take half a session to rejoin,
            // alone, and it leads the next generation.
            sleep_ms(u64::from(SESSION_MS) / 2).await;
            let rejoined = join_group(follower_conn, "g7", &follower.member_id).await;
            assert_eq!(rejoined.generation, follower.generation + 1);
            assert_eq!(rejoined.leader, follower.member_id);
            assert_eq!(rejoined.members, vec![follower.member_id.clone()]);
            assert_eq!(
                heartbeat(follower_conn, "g7", follower.generation, &leader.member_id).await,
                Some(ErrorCode::UnknownMemberId)
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    /// Members that send SyncGroup are kept alive while it is parked, even
    /// past their session timeout (the leader takes its time to assign).
    #[test]
    fn a_follower_parked_in_sync_group_outlives_its_session_timeout() {
        let mut cluster = cluster(58);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let (leader, mut leader_conn, follower, mut follower_conn) =
                two_members(&handle, "g8").await;
            let (leader_conn, follower_conn) = (&mut leader_conn, &mut follower_conn);
            let p0 = TopicPartition::new("in", 0);
            let assignments = vec![(follower.member_id.clone(), vec![p0.clone()])];
            let (mine, theirs) = tokio::join!(
                async {
                    // The leader keeps its own session alive, then assigns
                    // after the follower's session timeout has passed.
                    for _ in 0..3 {
                        sleep_ms(u64::from(SESSION_MS) / 2).await;
                        assert_eq!(
                            heartbeat(leader_conn, "g8", leader.generation, &leader.member_id)
                                .await,
                            None
                        );
                    }
                    sync(leader_conn, "g8", &leader, assignments).await
                },
                sync(follower_conn, "g8", &follower, Vec::new())
            );
            assert_eq!(mine, Ok(Vec::new()));
            assert_eq!(theirs, Ok(vec![p0]));
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod failover {
    use super::*;

    #[test]
    fn a_group_emptied_by_a_leave_stays_empty_after_a_coordinator_failover() {
        let mut cluster = cluster(55);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let mut a = coordinator(&handle, CoordinatorType::Group, "g5").await;
            let joined = join_group(&mut a, "g5", "").await;
            sync(&mut a, "g5", &joined, vec![]).await.unwrap();
            let response = call(
                &mut a,
                Request::LeaveGroup(LeaveGroupRequest {
                    group_id: "g5".into(),
                    member_id: joined.member_id.clone(),
                }),
            )
            .await;
            assert_eq!(
                response,
                Response::LeaveGroup(LeaveGroupResponse { error: None })
            );
            sleep_ms(100).await;
            let shard = TopicPartition::new(
                "__consumer_offsets",
                eddyline_sim::broker::coordinator_partition("g5", 4),
            );
            let old = handle.leader_of(&shard).unwrap();
            handle.crash_broker(old);
            wait_for(&handle, |h| h.leader_of(&shard).is_some_and(|l| l != old)).await;
            let mut b = coordinator(&handle, CoordinatorType::Group, "g5").await;
            let mut error = None;
            for _ in 0..100 {
                error = heartbeat(&mut b, "g5", joined.generation, &joined.member_id).await;
                if error != Some(ErrorCode::CoordinatorLoadInProgress) {
                    break;
                }
                sleep_ms(10).await;
            }
            assert_eq!(error, Some(ErrorCode::UnknownMemberId));
            let rejoined = join_group(&mut b, "g5", "").await;
            assert!(
                rejoined.generation > joined.generation + 1,
                "{}",
                rejoined.generation
            );
            handle.restart_broker(old);
            Ok(())
        });
        cluster.run().unwrap();
    }
}

mod offsets {
    use super::*;

    #[test]
    fn commits_are_fenced_by_generation_and_read_back_with_their_metadata() {
        let mut cluster = cluster(53);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let tp = TopicPartition::new("in", 3);
            let mut a = coordinator(&handle, CoordinatorType::Group, "g3").await;
            let joined = join_group(&mut a, "g3", "").await;
            sync(
                &mut a,
                "g3",
                &joined,
                vec![(joined.member_id.clone(), vec![tp.clone()])],
            )
            .await
            .unwrap();
            assert_eq!(
                commit(&handle, "g3", joined.generation, &joined.member_id, &tp, 42).await,
                None
            );
            assert_eq!(
                committed(&handle, "g3", &tp).await,
                Some(OffsetAndMetadata {
                    offset: 42,
                    metadata: "checkpoint=42".into()
                })
            );
            assert_eq!(
                commit(
                    &handle,
                    "g3",
                    joined.generation - 1,
                    &joined.member_id,
                    &tp,
                    43
                )
                .await,
                Some(ErrorCode::IllegalGeneration)
            );
            assert_eq!(
                commit(&handle, "g3", joined.generation, "stranger", &tp, 43).await,
                Some(ErrorCode::UnknownMemberId)
            );
            // KIP-447: a transactional commit from a stale generation (in a
            // transaction that has the group's offsets: KIP-890 verifies
            // that before the generation is looked at).
            let producer = init_transactions(&handle, "tx-g3", 60_000).await;
            assert_eq!(add_offsets(&handle, "tx-g3", producer, "g3").await, None);
            let response = group_call(
                &handle,
                "g3",
                Request::TxnOffsetCommit(TxnOffsetCommitRequest {
                    transactional_id: "tx-g3".into(),
                    group_id: "g3".into(),
                    producer_id: producer.0,
                    producer_epoch: producer.1,
                    generation_id: joined.generation + 7,
                    member_id: joined.member_id.clone(),
                    group_instance_id: None,
                    offsets: vec![(
                        tp.clone(),
                        OffsetAndMetadata {
                            offset: 50,
                            metadata: String::new(),
                        },
                    )],
                }),
            )
            .await;
            assert_eq!(
                response,
                Response::TxnOffsetCommit(TxnOffsetCommitResponse {
                    results: vec![PartitionError {
                        topic_partition: tp.clone(),
                        error: Some(ErrorCode::IllegalGeneration)
                    }]
                })
            );
            // Nothing changed.
            assert_eq!(
                committed(&handle, "g3", &tp).await.map(|o| o.offset),
                Some(42)
            );
            // A group nobody joined accepts commits from outside (generation -1).
            assert_eq!(commit(&handle, "standalone", -1, "", &tp, 7).await, None);
            assert_eq!(
                committed(&handle, "standalone", &tp)
                    .await
                    .map(|o| o.offset),
                Some(7)
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_new_coordinator_loads_offsets_and_the_generation_from_the_log() {
        let mut cluster = cluster(54);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let tp = TopicPartition::new("in", 0);
            let mut a = coordinator(&handle, CoordinatorType::Group, "g4").await;
            let joined = join_group(&mut a, "g4", "").await;
            sync(
                &mut a,
                "g4",
                &joined,
                vec![(joined.member_id.clone(), vec![tp.clone()])],
            )
            .await
            .unwrap();
            assert_eq!(
                commit(&handle, "g4", joined.generation, &joined.member_id, &tp, 99).await,
                None
            );
            let shard = TopicPartition::new(
                "__consumer_offsets",
                eddyline_sim::broker::coordinator_partition("g4", 4),
            );
            let old = handle.leader_of(&shard).unwrap();
            handle.crash_broker(old);
            wait_for(&handle, |h| h.leader_of(&shard).is_some_and(|l| l != old)).await;
            assert_eq!(
                committed(&handle, "g4", &tp).await,
                Some(OffsetAndMetadata {
                    offset: 99,
                    metadata: "checkpoint=99".into()
                })
            );
            // The member and its generation survived the failover.
            let mut b = coordinator(&handle, CoordinatorType::Group, "g4").await;
            assert_eq!(
                heartbeat(&mut b, "g4", joined.generation, &joined.member_id).await,
                None
            );
            assert_eq!(
                commit(
                    &handle,
                    "g4",
                    joined.generation,
                    &joined.member_id,
                    &tp,
                    100
                )
                .await,
                None
            );
            handle.restart_broker(old);
            Ok(())
        });
        cluster.run().unwrap();
    }
}

/// The group timings the tests below rely on, whatever the defaults are.
fn group_timings(config: &mut ClusterConfig) {
    config.group_initial_rebalance_delay_ms = 100;
    config.group_min_session_timeout_ms = 100;
}

/// Joins `group` alone (its first JoinGroup may only hand out the member
/// id, KIP-394), as a static member if `group_instance_id`.
async fn join_alone(
    connection: &mut Connection,
    group: &str,
    group_instance_id: Option<&str>,
) -> Joined {
    let mut member_id = String::new();
    for _ in 0..2 {
        match call(connection, join_as(group, &member_id, group_instance_id)).await {
            Response::JoinGroup(JoinGroupResponse {
                error: Some(ErrorCode::Other(79)),
                member_id: offered,
                ..
            }) => member_id = offered,
            Response::JoinGroup(JoinGroupResponse {
                error: None,
                generation_id,
                member_id,
                leader,
                members,
                ..
            }) => {
                return Joined {
                    generation: generation_id,
                    member_id,
                    leader,
                    members: members.into_iter().map(|m| m.member_id).collect(),
                };
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("{group}: no member id after two joins");
}

/// Who a commit says it is: (member id, generation, group instance id).
type Identity = (String, i32, Option<&'static str>);

/// TxnOffsetCommit as Kafka 3.8 checks it (`GroupCoordinator.
/// validateOffsetCommit`, `validateCurrentMember`): once a generation, a
/// member id or a group instance id is given, the group instance id must
/// map to the member id (FENCED_INSTANCE_ID; unknown: UNKNOWN_MEMBER_ID),
/// the member must be in the group (UNKNOWN_MEMBER_ID) and the generation
/// the group's (ILLEGAL_GENERATION). With none of them the commit is not
/// checked (older protocol versions send none).
mod txn_offset_commit_validation {
    use super::*;

    const GROUP: &str = "g-txn";
    const INSTANCE: &str = "instance-1";

    /// A stable group of one static member, a transaction with the
    /// group's offsets in it, and one TxnOffsetCommit from the identity
    /// `shape` makes of the member's: its error, then what the group has
    /// committed once the transaction commits.
    fn txn_commit_case(seed: u64, shape: fn(&Joined) -> Identity, expected: Option<ErrorCode>) {
        let mut cluster = cluster_with(seed, group_timings);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let tp = TopicPartition::new("in", 0);
            let mut connection = coordinator(&handle, CoordinatorType::Group, GROUP).await;
            let joined = join_alone(&mut connection, GROUP, Some(INSTANCE)).await;
            let assignment = vec![(joined.member_id.clone(), vec![tp.clone()])];
            sync(&mut connection, GROUP, &joined, assignment)
                .await
                .unwrap();
            let producer = init_transactions(&handle, "tx-v", 60_000).await;
            assert_eq!(add_offsets(&handle, "tx-v", producer, GROUP).await, None);
            let (member_id, generation_id, group_instance_id) = shape(&joined);
            let commit = TxnCommit {
                transactional_id: "tx-v",
                group_id: GROUP,
                producer,
                generation_id,
                member_id: &member_id,
                group_instance_id,
            };
            let error = txn_offset_commit(&handle, &commit, &tp, 8).await;
            assert_eq!(
                error, expected,
                "member {member_id:?} generation {generation_id} instance \
                 {group_instance_id:?} against member {:?} generation {}",
                joined.member_id, joined.generation
            );
            assert_eq!(end_txn(&handle, "tx-v", producer, true).await, None);
            let (committed, unstable) = fetch_stable(&handle, GROUP, &tp, 10_000).await;
            assert_eq!(unstable, None);
            let expected_offset = expected.is_none().then_some(8);
            assert_eq!(committed.map(|o| o.offset), expected_offset);
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn a_txn_offset_commit_from_the_member_in_its_generation_is_accepted() {
        txn_commit_case(
            71,
            |joined| (joined.member_id.clone(), joined.generation, Some(INSTANCE)),
            None,
        );
    }

    #[test]
    fn a_txn_offset_commit_without_member_generation_or_instance_is_accepted() {
        txn_commit_case(72, |_| (String::new(), -1, None), None);
    }

    #[test]
    fn a_txn_offset_commit_with_a_generation_but_no_member_id_is_unknown_member_id() {
        txn_commit_case(
            73,
            |joined| (String::new(), joined.generation, None),
            Some(ErrorCode::UnknownMemberId),
        );
    }

    #[test]
    fn a_txn_offset_commit_from_a_member_not_in_the_group_is_unknown_member_id() {
        txn_commit_case(
            74,
            |joined| ("stranger".to_string(), joined.generation, None),
            Some(ErrorCode::UnknownMemberId),
        );
    }

    #[test]
    fn a_txn_offset_commit_with_a_member_id_and_generation_minus_one_is_illegal_generation() {
        txn_commit_case(
            75,
            |joined| (joined.member_id.clone(), -1, None),
            Some(ErrorCode::IllegalGeneration),
        );
    }

    #[test]
    fn a_txn_offset_commit_from_another_generation_is_illegal_generation() {
        txn_commit_case(
            76,
            |joined| (joined.member_id.clone(), joined.generation + 1, None),
            Some(ErrorCode::IllegalGeneration),
        );
    }

    #[test]
    fn a_txn_offset_commit_whose_instance_id_maps_to_another_member_is_fenced_instance_id() {
        txn_commit_case(
            77,
            |joined| {
                (
                    "replaced-member".to_string(),
                    joined.generation,
                    Some(INSTANCE),
                )
            },
            Some(ErrorCode::FencedInstanceId),
        );
    }

    #[test]
    fn a_txn_offset_commit_with_an_unknown_group_instance_id_is_unknown_member_id() {
        txn_commit_case(
            78,
            |joined| {
                (
                    joined.member_id.clone(),
                    joined.generation,
                    Some("instance-9"),
                )
            },
            Some(ErrorCode::UnknownMemberId),
        );
    }
}

/// OffsetCommit while the group is in CompletingRebalance (the join is
/// done, the leader's SyncGroup not yet): Kafka 3.8's
/// `GroupCoordinator.doCommitOffsets` checks the member and the generation
/// (`validateOffsetCommit`) before it answers REBALANCE_IN_PROGRESS.
mod commit_in_completing_rebalance {
    use super::*;

    fn completing_rebalance_case(
        seed: u64,
        shape: fn(&Joined) -> (String, i32),
        expected: Option<ErrorCode>,
    ) {
        let mut cluster = cluster_with(seed, group_timings);
        let handle = cluster.handle();
        cluster.client("test", async move {
            wait_ready(&handle).await;
            let tp = TopicPartition::new("in", 0);
            let mut connection = coordinator(&handle, CoordinatorType::Group, "g-cr").await;
            // Joined, not synced: the group waits for its leader's SyncGroup.
            let joined = join_alone(&mut connection, "g-cr", None).await;
            assert_eq!(joined.leader, joined.member_id);
            let (member_id, generation) = shape(&joined);
            assert_eq!(
                commit(&handle, "g-cr", generation, &member_id, &tp, 3).await,
                expected,
                "member {member_id:?} generation {generation} against member {:?} \
                 generation {}",
                joined.member_id,
                joined.generation
            );
            // Once synced, the member commits.
            let assignment = vec![(joined.member_id.clone(), vec![tp.clone()])];
            sync(&mut connection, "g-cr", &joined, assignment)
                .await
                .unwrap();
            assert_eq!(
                commit(
                    &handle,
                    "g-cr",
                    joined.generation,
                    &joined.member_id,
                    &tp,
                    4
                )
                .await,
                None
            );
            Ok(())
        });
        cluster.run().unwrap();
    }

    #[test]
    fn an_offset_commit_from_an_unknown_member_during_completing_rebalance_is_unknown_member_id() {
        completing_rebalance_case(
            81,
            |joined| ("stranger".to_string(), joined.generation),
            Some(ErrorCode::UnknownMemberId),
        );
    }

    #[test]
    fn an_offset_commit_from_another_generation_during_completing_rebalance_is_illegal_generation()
    {
        completing_rebalance_case(
            82,
            |joined| (joined.member_id.clone(), joined.generation - 1),
            Some(ErrorCode::IllegalGeneration),
        );
    }

    #[test]
    fn an_offset_commit_from_the_member_during_completing_rebalance_is_rebalance_in_progress() {
        completing_rebalance_case(
            83,
            |joined| (joined.member_id.clone(), joined.generation),
            Some(ErrorCode::RebalanceInProgress),
        );
    }
}
