//! The errors a user of the real-Kafka transport meets: an unreachable
//! broker, wrong credentials, a missing topic. Each is one line naming the
//! address or the topic, within a stated timeout, and never shows a secret.

mod kafka_common;

use std::time::Duration;

use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::{
    Admin, ErrorCode, ErrorKind, Producer, ProducerRecord, Transport,
};
use kafka_common::*;

/// A loopback port that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    port
}

mod unreachable_broker {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn connecting_to_a_closed_port_fails_within_the_timeout_naming_the_address() {
        let address = format!("127.0.0.1:{}", closed_port());
        let config = KafkaConfig::new(address.clone()).with_timeout_ms(1_500);
        let outcome =
            tokio::time::timeout(Duration::from_secs(10), KafkaTransport::connect(config))
                .await
                .expect("no hang beyond the timeout");
        let error = outcome.expect_err("a closed port cannot be connected to");
        eprintln!("unreachable broker: {error}");
        assert_eq!(error.code, ErrorCode::BrokerNotAvailable, "{error}");
        assert_eq!(error.kind, ErrorKind::Timeout, "{error}");
        assert!(error.message.contains(&address), "{error}");
        assert!(!error.to_string().contains('\n'), "{error}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn admin_calls_to_a_closed_port_fail_within_the_timeout() {
        let address = format!("127.0.0.1:{}", closed_port());
        let transport =
            KafkaTransport::new(KafkaConfig::new(address.clone()).with_timeout_ms(1_500));
        let admin = transport
            .admin()
            .await
            .expect("creating a client contacts nothing");
        let outcome = tokio::time::timeout(Duration::from_secs(10), admin.partition_count("t"))
            .await
            .expect("no hang beyond the timeout");
        let error = outcome.unwrap_err();
        assert_eq!(error.code, ErrorCode::BrokerNotAvailable, "{error}");
        assert!(error.message.contains(&address), "{error}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_bad_librdkafka_property_is_reported_by_name_and_origin_never_by_value() {
        let config = KafkaConfig::from_sources(
            Some("127.0.0.1:1"),
            [(
                "EDDY_KAFKA_NO_SUCH_PROPERTY".to_string(),
                "canary-value-42".to_string(),
            )],
        )
        .unwrap();
        let transport = KafkaTransport::new(config);
        let error = transport
            .admin()
            .await
            .err()
            .expect("librdkafka rejects it");
        assert!(error.message.contains("no.such.property"), "{error}");
        assert!(
            error.message.contains("EDDY_KAFKA_NO_SUCH_PROPERTY"),
            "{error}"
        );
        assert!(!error.message.contains("canary-value-42"), "{error}");
    }
}

mod credentials {
    use super::*;

    fn sasl_config(username: &str, password: &str) -> KafkaConfig {
        KafkaConfig::new(bootstrap_sasl())
            .with_timeout_ms(8_000)
            .with("security.protocol", "SASL_PLAINTEXT")
            .unwrap()
            .with("sasl.mechanism", "SCRAM-SHA-256")
            .unwrap()
            .with("sasl.username", username)
            .unwrap()
            .with("sasl.password", password)
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn wrong_credentials_fail_with_a_clear_error_that_hides_the_password() {
        let (username, _) = sasl_credentials();
        let password = "canary-wrong-password-7f3a";
        let config = sasl_config(&username, password);
        assert!(!format!("{config:?}").contains(password));
        let outcome =
            tokio::time::timeout(Duration::from_secs(20), KafkaTransport::connect(config))
                .await
                .expect("no hang beyond the timeout");
        let error = outcome.expect_err("wrong credentials are refused");
        eprintln!("wrong credentials: {error}");
        assert_eq!(error.code, ErrorCode::SaslAuthenticationFailed, "{error}");
        assert_eq!(error.kind, ErrorKind::Fatal, "{error}");
        assert!(error.message.contains(&bootstrap_sasl()), "{error}");
        assert!(
            error.message.to_lowercase().contains("authentication"),
            "{error}"
        );
        assert!(!error.to_string().contains(password), "{error}");
        assert!(!format!("{error:?}").contains(password), "{error:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn right_credentials_from_the_environment_work() {
        let (username, password) = sasl_credentials();
        let config = KafkaConfig::from_sources(
            Some(&bootstrap_sasl()),
            [
                ("EDDY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
                ("EDDY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
                ("EDDY_KAFKA_SASL_USERNAME", username.as_str()),
                ("EDDY_KAFKA_SASL_PASSWORD", password.as_str()),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        let transport = KafkaTransport::connect(config)
            .await
            .expect("authenticated");
        let topic = unique("sasl");
        create_topic(&transport, &topic, 2).await;
        let admin = transport.admin().await.unwrap();
        assert_eq!(admin.partition_count(&topic).await.unwrap(), 2);
    }
}

mod missing_topics {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    #[ignore = "needs a Kafka broker: scripts/test runs it"]
    async fn producing_to_a_missing_topic_fails_naming_it_within_the_timeout() {
        let transport = KafkaTransport::new(KafkaConfig::new(bootstrap()).with_timeout_ms(3_000));
        let mut config = producer_config("missing", None);
        config.delivery_timeout_ms = 5_000;
        let mut producer = transport.producer(&config).await.unwrap();
        let topic = unique("no-such-topic");
        let delivery = producer
            .send(ProducerRecord {
                topic: topic.clone(),
                partition: None,
                key: Some(b"k".to_vec()),
                value: None,
                timestamp_ms: None,
                headers: Vec::new(),
            })
            .expect("queued");
        let error = tokio::time::timeout(Duration::from_secs(20), delivery)
            .await
            .expect("no hang beyond the timeout")
            .unwrap_err();
        assert!(error.message.contains(&topic), "{error}");
        eprintln!(
            "producing to a missing topic: {:?} {:?}: {}",
            error.kind, error.code, error.message
        );
        assert!(
            matches!(
                error.code,
                ErrorCode::UnknownTopicOrPartition | ErrorCode::TimedOut
            ),
            "{error}"
        );
    }
}
