//! Tests of the Kafka transport that need its internals.

use std::sync::Arc;

use super::config::KafkaConfig;
use super::context::ClientShared;
use super::{KafkaAdmin, KafkaTransport};
use crate::transport::{Admin, ErrorCode, NewTopic, Transport};

mod secrets {
    use super::*;

    /// librdkafka's own log lines (here with security and broker debugging
    /// on) pass through the redactor before anyone can see them.
    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn librdkafka_log_lines_never_show_the_password() {
        let bootstrap = std::env::var("EDDY_KAFKA_BOOTSTRAP_SASL")
            .expect("EDDY_KAFKA_BOOTSTRAP_SASL is set by scripts/test");
        let password = "canary-log-password-91c2";
        let config = KafkaConfig::new(bootstrap.clone())
            .with_timeout_ms(4_000)
            .with("security.protocol", "SASL_PLAINTEXT")
            .unwrap()
            .with("sasl.mechanism", "SCRAM-SHA-256")
            .unwrap()
            .with("sasl.username", "eddy-test")
            .unwrap()
            .with("sasl.password", password)
            .unwrap()
            .with("debug", "security,broker,conf")
            .unwrap();
        let shared = ClientShared::new(config.redactor(), bootstrap, false);
        let admin = KafkaAdmin::new(Arc::new(config), Arc::clone(&shared)).unwrap();
        let error = admin.partition_count("any-topic").await.unwrap_err();
        assert_eq!(error.code, ErrorCode::SaslAuthenticationFailed, "{error}");
        assert!(!error.to_string().contains(password), "{error}");
        let logs = shared.recent_logs();
        assert!(
            logs.iter().any(|line| line.contains("SASL")),
            "the debug log was captured: {logs:?}"
        );
        for line in &logs {
            assert!(!line.contains(password), "{line}");
        }
    }
}

mod metadata {
    use super::*;

    /// A new topic's partitions each have a live leader among their
    /// replicas, all of them in sync; the cluster lists its live brokers;
    /// a topic that does not exist is an error naming it.
    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn cluster_metadata_names_each_partitions_leader_replicas_and_isr() {
        let bootstrap = std::env::var("EDDY_KAFKA_BOOTSTRAP")
            .expect("EDDY_KAFKA_BOOTSTRAP is set by scripts/test");
        let transport = KafkaTransport::connect(KafkaConfig::new(bootstrap))
            .await
            .unwrap();
        let cluster = transport.cluster_metadata(None).await.unwrap();
        assert!(!cluster.brokers.is_empty(), "{cluster:?}");
        assert!(cluster.partitions.is_empty(), "{cluster:?}");
        let factor = cluster.brokers.len().min(3);
        let topic = format!("eddy-metadata-{}", std::process::id());
        let admin = transport.admin().await.unwrap();
        admin
            .create_topic(&NewTopic {
                name: topic.clone(),
                partitions: 2,
                replication_factor: i16::try_from(factor).unwrap(),
                configs: Vec::new(),
            })
            .await
            .unwrap();
        // A new topic's leaders are elected as it is created; the broker
        // that answers may learn of them a moment later.
        let mut read = transport.cluster_metadata(Some(&topic)).await;
        for _ in 0..50 {
            if matches!(&read, Ok(m) if m.partitions.iter().all(|p| p.leader.is_some())) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            read = transport.cluster_metadata(Some(&topic)).await;
        }
        let metadata = read.unwrap();
        assert_eq!(
            metadata
                .partitions
                .iter()
                .map(|p| p.partition)
                .collect::<Vec<_>>(),
            vec![0, 1]
        );
        for p in &metadata.partitions {
            let leader = p.leader.expect("a leader");
            assert_eq!(p.replicas.len(), factor, "{p:?}");
            assert!(p.replicas.contains(&leader), "{p:?}");
            assert!(metadata.brokers.contains(&leader), "{p:?}");
            let mut isr = p.isr.clone();
            let mut replicas = p.replicas.clone();
            isr.sort_unstable();
            replicas.sort_unstable();
            assert_eq!(isr, replicas, "{p:?}");
        }
        let missing = format!("{topic}-missing");
        let error = transport
            .cluster_metadata(Some(&missing))
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::UnknownTopicOrPartition, "{error}");
        assert!(error.message.contains(&missing), "{error}");
    }
}

mod propagation {
    use super::*;

    /// CreateTopics answers once the controller has the topic; each broker
    /// learns of it later, on its own. `create_topic` returns only once every
    /// broker lists it: asked right after, each broker alone knows it.
    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a three-node Kafka cluster: scripts/test runs it"]
    async fn on_three_brokers_every_broker_knows_a_topic_once_create_topic_returns() {
        let bootstrap = std::env::var("EDDY_KAFKA_TEST_CLUSTER_BOOTSTRAP")
            .expect("EDDY_KAFKA_TEST_CLUSTER_BOOTSTRAP is set by scripts/test");
        let addresses: Vec<&str> = bootstrap.split(',').collect();
        assert_eq!(addresses.len(), 3, "{bootstrap}");
        let cluster = KafkaTransport::connect(KafkaConfig::new(bootstrap.clone()))
            .await
            .unwrap();
        let admin = cluster.admin().await.unwrap();
        // One transport per broker, each bootstrapped to that broker alone
        // (a client's first Metadata request goes to its bootstrap broker).
        let mut each = Vec::new();
        for address in &addresses {
            each.push(KafkaTransport::new(KafkaConfig::new(*address)));
        }
        for round in 0..10 {
            let topic = format!("eddy-propagation-{}-{round}", std::process::id());
            admin
                .create_topic(&NewTopic {
                    name: topic.clone(),
                    partitions: 3,
                    replication_factor: 3,
                    configs: Vec::new(),
                })
                .await
                .unwrap();
            for (broker, address) in each.iter().zip(&addresses) {
                let metadata = broker.cluster_metadata(Some(&topic)).await;
                let metadata = metadata.unwrap_or_else(|e| {
                    panic!("round {round}: {address} right after create_topic: {e}")
                });
                assert_eq!(metadata.partitions.len(), 3, "{address}: {metadata:?}");
                assert!(
                    metadata.partitions.iter().all(|p| p.leader.is_some()),
                    "round {round}: {address}: {metadata:?}"
                );
            }
        }
    }
}
