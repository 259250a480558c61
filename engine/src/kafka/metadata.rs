//! What a Metadata answer says about the cluster: which brokers are live, and
//! each partition's leader, replicas and in-sync replicas (for tests and
//! tools that watch a failover; the `Transport` seam does not need it).

use std::sync::Arc;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::{Metadata, MetadataTopic};
use rdkafka::producer::{Producer as _, ThreadedProducer};

use super::KafkaTransport;
use super::call::{create_client, topic_metadata};
use super::context::ProducerCtx;
use super::error::{code_of, default_kind, error};
use crate::transport::{ErrorCode, ErrorKind, TransportResult};

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
