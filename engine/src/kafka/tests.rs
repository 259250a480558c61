//! Tests of the Kafka transport that need its internals.

use std::sync::Arc;

use super::KafkaAdmin;
use super::config::KafkaConfig;
use super::context::ClientShared;
use crate::transport::{Admin, ErrorCode};

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
