//! What a Metadata answer says about the cluster: which brokers are live, and
//! each partition's leader, replicas and in-sync replicas (for tests and
//! tools that watch a failover; the `Transport` seam does not need it).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::{Metadata, MetadataTopic};
use rdkafka::producer::{Producer as _, ThreadedProducer};

use super::KafkaTransport;
use super::call::{blocking, create_client, topic_metadata};
use super::config::KafkaConfig;
use super::context::{ClientShared, ProducerCtx};
use super::error::{code_of, default_kind, error};
use crate::transport::{ErrorCode, ErrorKind, TransportResult};

/// How long one broker may take to answer while [`await_topic_everywhere`]
/// asks it: a broker killed a moment ago stays listed until the controller
/// fences it, and is passed over.
const BROKER_ANSWER: Duration = Duration::from_millis(1_000);
/// How often [`await_topic_everywhere`] asks a broker that does not list the
/// topic yet.
const ASK_AGAIN: Duration = Duration::from_millis(50);

/// The cluster as one broker's Metadata answer describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// The ids of the brokers the answer lists, ascending: the live ones (a
    /// KRaft broker is listed while it is registered and not fenced).
    pub brokers: Vec<i32>,
    /// The partitions of the topic asked about, by partition id (empty if
    /// none was asked about).
    pub partitions: Vec<PartitionReplicas>,
}

/// One partition's replicas, as the Metadata answer lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReplicas {
    pub partition: i32,
    /// `None` when the answer names no leader (-1: no live in-sync replica
    /// can lead it).
    pub leader: Option<i32>,
    /// The assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

impl KafkaTransport {
    /// Asks the cluster for its brokers and, if `topic` is given, that
    /// topic's partitions, within the configuration's timeout. A topic that
    /// does not exist fails with `UnknownTopicOrPartition` naming it.
    pub async fn cluster_metadata(&self, topic: Option<&str>) -> TransportResult<ClusterMetadata> {
        let shared = self.shared();
        // A producer client, as for `check_connection`: its polling thread
        // serves librdkafka's error events, which explain a timeout.
        let mut client_config = self.config.client_config();
        client_config.set("client.id", "eddyline-metadata");
        let client: Arc<ThreadedProducer<ProducerCtx>> = Arc::new(create_client(
            &self.config,
            client_config,
            ProducerCtx::new(Arc::clone(&shared)),
            "metadata client",
        )?);
        let what = match topic {
            Some(topic) => format!(
                "reading metadata of topic '{topic}' at {}",
                self.config.bootstrap()
            ),
            None => format!("reading cluster metadata at {}", self.config.bootstrap()),
        };
        let name = topic.map(str::to_string);
        let fetch = move |timeout| client.client().fetch_metadata(name.as_deref(), timeout);
        let read = |metadata: &Metadata| {
            let mut brokers: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
            brokers.sort_unstable();
            let partitions = match topic {
                Some(topic) => {
                    let found = metadata.topics().iter().find(|t| t.name() == topic);
                    partitions_of(topic, found, &what, self)?
                }
                None => Vec::new(),
            };
            Ok(ClusterMetadata {
                brokers,
                partitions,
            })
        };
        let timeout_ms = self.config.timeout_ms();
        topic_metadata(&shared, &what, timeout_ms, fetch, read).await
    }
}

/// The partitions of `topic` in a Metadata answer, by partition id.
fn partitions_of(
    topic: &str,
    found: Option<&MetadataTopic>,
    what: &str,
    transport: &KafkaTransport,
) -> TransportResult<Vec<PartitionReplicas>> {
    let redactor = transport.config.redactor();
    let missing = || {
        error(
            ErrorKind::Retriable,
            ErrorCode::UnknownTopicOrPartition,
            &format!(
                "topic '{topic}' does not exist at {}",
                transport.config.bootstrap()
            ),
            &redactor,
        )
    };
    let Some(found) = found else {
        return Err(missing());
    };
    if let Some(code) = found.error() {
        let code: RDKafkaErrorCode = code.into();
        if matches!(
            code,
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
        ) {
            return Err(missing());
        }
        let seam_code = code_of(code);
        return Err(error(
            default_kind(seam_code),
            seam_code,
            &format!("{what}: {code}"),
            &redactor,
        ));
    }
    let mut partitions: Vec<PartitionReplicas> = found
        .partitions()
        .iter()
        .map(|p| PartitionReplicas {
            partition: p.id(),
            leader: (p.leader() >= 0).then_some(p.leader()),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
        })
        .collect();
    partitions.sort_unstable_by_key(|p| p.partition);
    Ok(partitions)
}

/// A metadata client whose only bootstrap broker is `address`: its first
/// Metadata request goes to that broker.
fn client_of_broker(
    config: &KafkaConfig,
    shared: &Arc<ClientShared>,
    address: &str,
) -> TransportResult<Arc<ThreadedProducer<ProducerCtx>>> {
    let mut client_config = config.client_config();
    client_config.set("client.id", "eddyline-metadata-broker");
    client_config.set("bootstrap.servers", address);
    Ok(Arc::new(create_client(
        config,
        client_config,
        ProducerCtx::new(Arc::clone(shared)),
        "metadata client",
    )?))
}

/// Whether a Metadata answer lists `topic` with `partitions` partitions, each
/// with a leader.
fn lists_topic(metadata: &Metadata, topic: &str, partitions: i32) -> bool {
    metadata.topics().iter().any(|t| {
        t.name() == topic
            && t.error().is_none()
            && t.partitions().len() == usize::try_from(partitions).unwrap_or(0)
            && t.partitions().iter().all(|p| p.leader() >= 0)
    })
}

/// Waits until every broker of the cluster lists a topic just created, with
/// its partitions and their leaders, within the configuration's timeout.
///
/// CreateTopics answers once the controller has committed the topic; each
/// broker learns of it when it replays the metadata log, on its own, so for
/// a moment a broker answers UNKNOWN_TOPIC_OR_PARTITION for a topic another
/// one already lists (seen on a three-node cluster: a consumer's subscribe
/// right after the creation failed so). Kafka's own integration tests wait
/// the same way after creating a topic (`TestUtils.waitForAllPartitionsMetadata`
/// asks every broker).
pub(crate) async fn await_topic_everywhere(
    config: &KafkaConfig,
    shared: &Arc<ClientShared>,
    topic: &str,
    partitions: i32,
) -> TransportResult<()> {
    let timeout_ms = config.timeout_ms();
    // Real time is right here: the rdkafka transport talks to real brokers
    // and never runs inside the simulator.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(timeout_ms));
    let what = format!("reading the brokers at {}", config.bootstrap());
    let probe = client_of_broker(config, shared, config.bootstrap())?;
    let fetch = move |timeout| probe.client().fetch_metadata(None, timeout);
    let brokers: Vec<(i32, String)> = topic_metadata(shared, &what, timeout_ms, fetch, |m| {
        Ok(m.brokers()
            .iter()
            .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
            .collect())
    })
    .await?;
    for (id, address) in brokers {
        let client = client_of_broker(config, shared, &address)?;
        loop {
            let asker = Arc::clone(&client);
            let name = topic.to_string();
            let what = format!("asking broker {id} for topic '{topic}'");
            let answer = blocking(&what, move || {
                asker.client().fetch_metadata(Some(&name), BROKER_ANSWER)
            })
            .await?;
            match answer {
                Ok(metadata) if lists_topic(&metadata, topic, partitions) => break,
                // No answer: the broker is down (and not fenced yet).
                Err(_) => break,
                // The real clock again: this module never runs in the simulator.
                Ok(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(error(
                        ErrorKind::Timeout,
                        ErrorCode::TimedOut,
                        &format!(
                            "topic '{topic}' was created, but broker {id} ({address}) did not list it within {timeout_ms} ms"
                        ),
                        &shared.redactor,
                    ));
                }
                Ok(_) => tokio::time::sleep(ASK_AGAIN).await,
            }
        }
    }
    Ok(())
}
