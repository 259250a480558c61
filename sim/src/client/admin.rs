//! Topic administration: CreateTopics and partition counts from metadata.

use eddyline_engine::transport::{
    Admin, ErrorCode, ErrorKind, NewTopic, TransportError, TransportResult,
};

use super::metadata::TopicState;
use super::network::{Backoff, Lane, NetworkClient, deadline_error};
use super::{errors, ms, now};
use crate::protocol::{CreateTopicsRequest, CreateTopicsResponse};

/// The admin client of the simulated cluster.
pub struct SimAdmin {
    net: NetworkClient,
}

impl SimAdmin {
    pub(crate) fn new(net: NetworkClient) -> Self {
        Self { net }
    }
}

impl Drop for SimAdmin {
    fn drop(&mut self) {
        self.net.close_all();
    }
}

impl Admin for SimAdmin {
    /// CreateTopics through any broker (which forwards it to the
    /// controller), retried on retriable errors until the admin timeout;
    /// then waits until the metadata shows a leader for every partition,
    /// so that the topic is usable when this returns.
    ///
    /// A retry that finds the topic existing after an attempt whose outcome
    /// was unknown (timed out or disconnected) counts as success: the
    /// earlier attempt created it.
    async fn create_topic(&self, topic: &NewTopic) -> TransportResult<()> {
        // -1 asks for the broker's default, as in Kafka's CreateTopics.
        let bad_count = topic.partitions == 0 || topic.partitions < -1;
        let bad_factor = topic.replication_factor == 0 || topic.replication_factor < -1;
        if topic.name.is_empty() || bad_count || bad_factor {
            return Err(TransportError::new(
                ErrorKind::Fatal,
                ErrorCode::InvalidPartitions,
                format!(
                    "bad topic {:?}: {} partitions, replication factor {}",
                    topic.name, topic.partitions, topic.replication_factor
                ),
            ));
        }
        let options = self.net.options().clone();
        let deadline = now() + ms(options.admin_timeout_ms);
        let context = format!("CreateTopics({})", topic.name);
        let mut backoff = Backoff::new(&options);
        let mut outcome_unknown = false;
        loop {
            self.net.refresh_metadata(&[]).await.ok();
            let broker = self.net.metadata().brokers().next().map(|(id, _)| id);
            let request = CreateTopicsRequest {
                topics: vec![topic.clone()],
                timeout_ms: options.admin_timeout_ms,
            };
            let timeout = self
                .net
                .attempt_timeout(deadline, ms(options.admin_timeout_ms));
            let result = match broker {
                Some(broker) => {
                    self.net
                        .call_broker(broker, Lane::Control, request, timeout)
                        .await
                }
                None => Err(super::connection::NetError::Connect(
                    "no broker known".into(),
                )),
            };
            let last_error = match result {
                Ok(CreateTopicsResponse { results }) => {
                    let error = results
                        .iter()
                        .find(|result| result.name == topic.name)
                        .unwrap_or_else(|| {
                            panic!("CreateTopics answer without {}: {results:?}", topic.name)
                        })
                        .error;
                    match error {
                        None => break,
                        Some(ErrorCode::TopicAlreadyExists) if outcome_unknown => break,
                        Some(code) if errors::is_retriable(code) => {
                            outcome_unknown = true;
                            errors::broker_error(code, &context)
                        }
                        Some(code) => return Err(errors::broker_error(code, &context)),
                    }
                }
                Err(error) => {
                    outcome_unknown = true;
                    errors::from_net(&error, &context)
                }
            };
            if now() >= deadline {
                return Err(deadline_error(last_error));
            }
            backoff.sleep_until_at_most(deadline).await;
        }
        let name = topic.name.clone();
        self.net
            .await_metadata(std::slice::from_ref(&name), deadline, |cache| {
                cache.all_leaders_known(&name)
                    && (topic.partitions == -1
                        || cache.partition_count(&name) == Some(topic.partitions))
            })
            .await
    }

    /// The partition count from a fresh Metadata answer.
    async fn partition_count(&self, topic: &str) -> TransportResult<i32> {
        let options = self.net.options().clone();
        let deadline = now() + ms(options.admin_timeout_ms);
        let name = topic.to_string();
        self.net
            .await_metadata(std::slice::from_ref(&name), deadline, |cache| {
                cache.topic(&name).is_some()
            })
            .await?;
        let metadata = self.net.metadata();
        match metadata.topic(topic) {
            Some(TopicState::Known(partitions)) if !partitions.is_empty() => {
                Ok(i32::try_from(partitions.len()).expect("partition count fits in i32"))
            }
            Some(TopicState::Known(_)) | None => Err(errors::broker_error(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {topic}"),
            )),
            Some(TopicState::Error(code)) => {
                Err(errors::broker_error(*code, format!("topic {topic}")))
            }
        }
    }
}
