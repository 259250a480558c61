//! The suite against a real Apache Kafka broker, through the rdkafka
//! transport.
//!
//! The test broker is a single node (`scripts/kafka` starts one broker): a
//! partition leader cannot fail over to another replica. With a restart
//! command (`scripts/kafka restart` SIGKILLs the broker and starts it again
//! on the same ports and data) the failover checks kill the only broker
//! instead and verify that acknowledged writes survive it; without one they
//! are skipped.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::TopicPartition;

use super::env::{BrokerControl, ConformanceEnv, ReplicaState, RunNames};
use super::{Report, SuiteOptions, run_suite};

/// How long one check may run against a broker (a restart included).
const CHECK_BUDGET: Duration = Duration::from_secs(120);
/// How long a check waits for the broker to do something on its own.
const PATIENCE: Duration = Duration::from_secs(30);

/// A real broker, a run prefix that no earlier run used, and optionally a
/// command that kills and restarts the broker.
pub struct KafkaEnv {
    transport: KafkaTransport,
    bootstrap: String,
    names: RunNames,
    started: tokio::time::Instant,
    restart_command: Option<String>,
}

impl KafkaEnv {
    /// Connects to the broker that `config` names; a one-line error naming
    /// the address if it cannot be reached.
    pub async fn connect(
        config: KafkaConfig,
        restart_command: Option<String>,
    ) -> Result<Self, String> {
        let bootstrap = config.bootstrap().to_string();
        let transport = KafkaTransport::connect(config)
            .await
            .map_err(|e| e.message)?;
        // Topics, groups and transactional ids persist on a broker: every run
        // takes names no earlier run used (real time is fine here: this env
        // never runs inside the simulator).
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let names = RunNames::new(format!("eddy-conf-{now_ms}-{}", std::process::id()));
        Ok(Self {
            transport,
            bootstrap,
            names,
            started: tokio::time::Instant::now(),
            restart_command,
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

impl ConformanceEnv for KafkaEnv {
    type Transport = KafkaTransport;

    fn transport(&self) -> &KafkaTransport {
        &self.transport
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn wall_clock_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default()
    }

    fn names(&self) -> &RunNames {
        &self.names
    }

    fn replication(&self) -> (i16, Option<i16>) {
        (1, None)
    }

    fn check_budget(&self) -> Duration {
        CHECK_BUDGET
    }

    fn patience(&self) -> Duration {
        PATIENCE
    }

    fn broker_control(&self) -> BrokerControl {
        match &self.restart_command {
            Some(command) => BrokerControl::RestartBroker {
                command: command.clone(),
            },
            None => BrokerControl::None,
        }
    }

    fn broker_count(&self) -> usize {
        1
    }

    async fn replica_state(&self, _partition: &TopicPartition) -> Result<ReplicaState, String> {
        // One broker holds every replica and leads every partition.
        Ok(ReplicaState {
            leader: Some(1),
            replicas: vec![1],
            isr: vec![1],
        })
    }

    async fn stop_broker(&self, node: i32) -> Result<String, String> {
        Err(format!(
            "cannot stop broker {node}: this env has no stop command"
        ))
    }

    async fn start_broker(&self, node: i32) -> Result<String, String> {
        Err(format!(
            "cannot start broker {node}: this env has no start command"
        ))
    }

    async fn fail_leader(&self, partition: &TopicPartition) -> Result<String, String> {
        let Some(command) = self.restart_command.clone() else {
            return Err("no broker control: pass --broker-restart-cmd".to_string());
        };
        let began = self.elapsed();
        let shell = command.clone();
        let output =
            tokio::task::spawn_blocking(move || Command::new("sh").arg("-c").arg(&shell).output())
                .await
                .map_err(|e| format!("running the restart command: {e}"))?
                .map_err(|e| format!("running the restart command {command:?}: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().last().unwrap_or("no output");
            return Err(format!(
                "the restart command {command:?} failed ({}): {last}",
                output.status
            ));
        }
        // `scripts/kafka restart` prints the addresses it serves; the broker
        // must come back where the clients look for it.
        let stdout = String::from_utf8_lossy(&output.stdout);
        if let Some(address) = stdout.lines().find_map(|l| l.strip_prefix("BOOTSTRAP=")) {
            if address.trim() != self.bootstrap {
                return Err(format!(
                    "the restart command brought the broker back at {address}, not at {}",
                    self.bootstrap
                ));
            }
        }
        self.transport.check_connection().await.map_err(|e| {
            format!(
                "the broker did not come back after the restart: {}",
                e.message
            )
        })?;
        Ok(format!(
            "killed the only broker (leader of {partition}) with SIGKILL and restarted it: serving again after {} ms",
            self.elapsed().saturating_sub(began).as_millis()
        ))
    }

    async fn lose_acknowledgements(&self, partition: &TopicPartition) -> Result<String, String> {
        // One broker cannot drop only its answers: SIGKILL it, so that the
        // requests in flight on its connections go unanswered, whether or
        // not they were appended, and the producer retries them.
        self.fail_leader(partition).await
    }
}

/// Why the suite could not run against a broker.
#[derive(Debug, thiserror::Error)]
pub enum KafkaRunError {
    /// The broker that the configuration names could not be reached or
    /// refused the client (one line, naming the address): the caller's input.
    #[error("{0}")]
    Unreachable(String),
    /// This process could not run the suite at all (no runtime).
    #[error("{0}")]
    Internal(String),
}

/// Runs the suite against the broker that `config` names, on a runtime of
/// its own; `connected` is called once the broker has answered, before any
/// check.
pub fn run_on_kafka(
    config: KafkaConfig,
    restart_command: Option<String>,
    options: &SuiteOptions,
    connected: impl FnOnce(),
) -> Result<Report, KafkaRunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaRunError::Internal(format!("starting a runtime: {e}")))?;
    runtime.block_on(async {
        let env = KafkaEnv::connect(config, restart_command)
            .await
            .map_err(KafkaRunError::Unreachable)?;
        connected();
        Ok(run_suite(&env, options).await)
    })
}
