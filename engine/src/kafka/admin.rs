//! Topic administration over rdkafka's admin client.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic as RdNewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;

use super::config::KafkaConfig;
use rdkafka::producer::{Producer as _, ThreadedProducer};

use super::call::{bounded, create_client, explain, topic_metadata};
use super::context::{BasicContext, ClientShared, ProducerCtx};
use super::error::{code_of, default_kind, error, from_kafka_error};
use super::metadata::await_topic_everywhere;
use crate::transport::{Admin, ErrorCode, ErrorKind, NewTopic, TransportResult};

/// Creates topics and reads their partition counts.
pub struct KafkaAdmin {
    client: Arc<AdminClient<BasicContext>>,
    /// Metadata requests go through a producer client: its polling thread
    /// serves librdkafka's error and log events (the admin client's never
    /// are), which explain a timeout (refused connection, failed login).
    probe: Arc<ThreadedProducer<ProducerCtx>>,
    shared: Arc<ClientShared>,
    config: Arc<KafkaConfig>,
}

impl KafkaAdmin {
    pub(crate) fn new(
        config: Arc<KafkaConfig>,
        shared: Arc<ClientShared>,
    ) -> TransportResult<Self> {
        let mut client_config = config.client_config();
        client_config.set("client.id", "eddyline-admin");
        let client = create_client(
            &config,
            client_config,
            BasicContext {
                shared: Arc::clone(&shared),
            },
            "admin client",
        )?;
        let mut probe_config = config.client_config();
        probe_config.set("client.id", "eddyline-admin-metadata");
        let probe = create_client(
            &config,
            probe_config,
            ProducerCtx::new(Arc::clone(&shared)),
            "admin client",
        )?;
        Ok(Self {
            client: Arc::new(client),
            probe: Arc::new(probe),
            shared,
            config,
        })
    }
}

impl Admin for KafkaAdmin {
    async fn create_topic(&self, topic: &NewTopic) -> TransportResult<()> {
        let redactor = &self.shared.redactor;
        if topic.partitions <= 0 || topic.replication_factor <= 0 {
            return Err(error(
                ErrorKind::Fatal,
                ErrorCode::InvalidPartitions,
                &format!(
                    "topic '{}': {} partitions and replication factor {} are not valid",
                    topic.name, topic.partitions, topic.replication_factor
                ),
                redactor,
            ));
        }
        let timeout_ms = self.config.timeout_ms();
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        let what = format!(
            "creating topic '{}' at {}",
            topic.name,
            self.config.bootstrap()
        );
        let mut new_topic = RdNewTopic::new(
            &topic.name,
            topic.partitions,
            TopicReplication::Fixed(i32::from(topic.replication_factor)),
        );
        for (key, value) in &topic.configs {
            new_topic = new_topic.set(key, value);
        }
        let options = AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout));
        let results = bounded(&self.shared, &what, timeout_ms, async {
            self.client
                .create_topics([&new_topic], &options)
                .await
                .map_err(|e| from_kafka_error(&what, &e, redactor))
        })
        .await?;
        for result in results {
            if let Err((name, code)) = result {
                let seam_code = code_of(code);
                let message = match code {
                    RDKafkaErrorCode::TopicAlreadyExists => {
                        format!(
                            "topic '{name}' already exists at {}",
                            self.config.bootstrap()
                        )
                    }
                    _ => format!("{what}: {code}"),
                };
                let kind = match seam_code {
                    ErrorCode::TimedOut | ErrorCode::RequestTimedOut => ErrorKind::Timeout,
                    ErrorCode::TopicAlreadyExists => ErrorKind::Fatal,
                    other => default_kind(other),
                };
                let failure = error(kind, seam_code, &message, redactor);
                return Err(explain(&self.shared, &what, timeout_ms, failure));
            }
        }
        // Returned once every broker knows the topic, so that a consumer or
        // a metadata read right after it, whichever broker answers, finds it.
        await_topic_everywhere(&self.config, &self.shared, &topic.name, topic.partitions).await
    }

    async fn partition_count(&self, topic: &str) -> TransportResult<i32> {
        let what = format!(
            "reading metadata of topic '{topic}' at {}",
            self.config.bootstrap()
        );
        let client = Arc::clone(&self.probe);
        let name = topic.to_string();
        let fetch = move |timeout| client.client().fetch_metadata(Some(&name), timeout);
        let redactor = &self.shared.redactor;
        let read = |metadata: &Metadata| {
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Ok(None);
            };
            if let Some(code) = found.error() {
                let code: RDKafkaErrorCode = code.into();
                if code == RDKafkaErrorCode::UnknownTopicOrPartition
                    || code == RDKafkaErrorCode::UnknownTopic
                {
                    return Ok(None);
                }
                let seam_code = code_of(code);
                return Err(error(
                    default_kind(seam_code),
                    seam_code,
                    &format!("{what}: {code}"),
                    redactor,
                ));
            }
            Ok(Some(
                i32::try_from(found.partitions().len()).expect("partition count fits i32"),
            ))
        };
        let timeout_ms = self.config.timeout_ms();
        let partitions = topic_metadata(&self.shared, &what, timeout_ms, fetch, read).await?;
        partitions.ok_or_else(|| {
            error(
                ErrorKind::Retriable,
                ErrorCode::UnknownTopicOrPartition,
                &format!(
                    "topic '{topic}' does not exist at {}",
                    self.config.bootstrap()
                ),
                &self.shared.redactor,
            )
        })
    }
}
