//! `eddy load SCENARIO --seed N --bootstrap HOST:PORT`: writes a scenario's
//! workload for one seed into a real Kafka cluster, as the simulator's
//! feeder writes it: the same records, keys, values, timestamps (the event
//! time) and partitions, in the same order, by one idempotent producer.
//!
//! Topics that are missing (the input, and the job's output, late and
//! dead-letter topics) are created with the scenario's partition count; an
//! existing input topic with another partition count is refused (its
//! records would land in other partitions than on the simulator). Into an
//! empty input topic the records get the offsets they get on the
//! simulator.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use eddyline_engine::kafka::{KafkaConfig, KafkaTransport};
use eddyline_engine::transport::{
    Admin, Consumer, ConsumerConfig, ErrorCode, NewTopic, Producer, ProducerConfig, TopicPartition,
    Transport, TransportError,
};
use eddyline_scenarios::run::{LoadPlan, load_plan};
use eddyline_sim::Seed;

use crate::sim_cmd::{load, parse_seed};
use crate::{CliError, Outcome};

/// Writes a scenario's workload for one seed into real topics.
///
/// The records the simulator's feeder writes: same keys, values,
/// timestamps and partitions. Missing topics are created with the
/// scenario's partition count. librdkafka settings (security, credentials) come from the
/// properties file named by EDDY_KAFKA_CONFIG and from EDDY_KAFKA_*
/// variables; an unreachable broker is reported within
/// EDDY_KAFKA_TIMEOUT_MS (default 10 s). Exit 0 once every record is
/// acknowledged, 1 if the cluster refused some, 2 on bad usage or input.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// The seed (a number or a hex string; also read from EDDY_SEED;
    /// default: the first of the scenario's seeds).
    #[arg(long)]
    seed: Option<String>,
    /// The Kafka cluster's bootstrap address(es).
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap: String,
    /// Send each record at its send time (the scenario's rate and bursts,
    /// as the simulator's feeder sends them), so a running job sees its
    /// input arrive over time; default: as fast as the cluster takes them.
    #[arg(long)]
    paced: bool,
}

/// The most records in flight before the producer is flushed.
const IN_FLIGHT_MAX: usize = 10_000;
/// How long a topic that "already exists" may take to appear in the
/// metadata (created at the same moment by another client: a worker
/// creating its outputs).
const EXISTING_TOPIC_PATIENCE: Duration = Duration::from_secs(10);
/// The replication factor of the topics `load` creates, at most.
const REPLICATION_MAX: usize = 3;

pub fn run(args: &LoadArgs) -> Result<Outcome, CliError> {
    let loaded = load(&args.scenario)?;
    let seed = parse_seed(args.seed.as_deref(), Seed::new(loaded.scenario.seeds.start))?;
    let plan = load_plan(&loaded.scenario, seed)
        .map_err(|error| CliError::BadInput(format!("{}: {error}", loaded.path)))?;
    let (config, runtime) = crate::kafka_session(&args.bootstrap)?;
    let loaded_ends = runtime.block_on(write(&plan, config, args.paced))?;
    let offsets: Vec<String> = loaded_ends
        .iter()
        .map(|(partition, (start, end))| format!("{partition}:{start}..{end}"))
        .collect();
    println!(
        "loaded {} records of {} seed {seed} into '{}' ({} partitions) at {}; offsets {}",
        plan.records.len(),
        loaded.path,
        plan.input,
        plan.partitions,
        args.bootstrap,
        offsets.join(" ")
    );
    Ok(Outcome::Success)
}

/// Creates the topics, writes the records; each input partition's end
/// offsets before and after.
async fn write(
    plan: &LoadPlan,
    config: KafkaConfig,
    paced: bool,
) -> Result<BTreeMap<i32, (i64, i64)>, CliError> {
    let transport = KafkaTransport::connect(config)
        .await
        .map_err(|error| CliError::BadInput(error.message))?;
    create_topics(&transport, plan).await?;
    let mut reader = transport
        .consumer(&ConsumerConfig::new("eddy-load-ends", None))
        .await
        .map_err(bad_input)?;
    let before = end_offsets(&mut reader, plan).await?;
    let mut producer = transport
        .producer(&ProducerConfig::new("eddy-load", None))
        .await
        .map_err(bad_input)?;
    let started = tokio::time::Instant::now();
    for (index, record) in plan.records.iter().enumerate() {
        if paced {
            tokio::time::sleep_until(started + Duration::from_millis(record.send_ms)).await;
        }
        if index > 0 && index % IN_FLIGHT_MAX == 0 {
            producer.flush().await.map_err(refused)?;
        }
        producer
            .send(record.producer_record(&plan.input))
            .map_err(refused)?;
    }
    producer.flush().await.map_err(refused)?;
    let after = end_offsets(&mut reader, plan).await?;
    Ok(before
        .into_iter()
        .map(|(partition, start)| (partition, (start, after[&partition])))
        .collect())
}

async fn create_topics(transport: &KafkaTransport, plan: &LoadPlan) -> Result<(), CliError> {
    let bootstrap = transport.config().bootstrap().to_string();
    let admin = transport.admin().await.map_err(bad_input)?;
    let brokers = transport
        .cluster_metadata(None)
        .await
        .map_err(bad_input)?
        .brokers
        .len();
    let replication = i16::try_from(brokers.clamp(1, REPLICATION_MAX)).unwrap_or(1);
    let mut topics = vec![plan.input.clone()];
    topics.extend(plan.outputs.iter().cloned());
    topics.dedup();
    for topic in topics {
        let new_topic = NewTopic {
            name: topic.clone(),
            partitions: plan.partitions,
            replication_factor: replication,
            configs: Vec::new(),
        };
        match admin.create_topic(&new_topic).await {
            Ok(()) => eprintln!(
                "created topic '{topic}' ({} partitions, replication {replication})",
                plan.partitions
            ),
            Err(error) if error.code == ErrorCode::TopicAlreadyExists => {
                let count = existing_partitions(&admin, &topic).await?;
                if count != plan.partitions {
                    return Err(CliError::BadInput(format!(
                        "topic '{topic}' at {bootstrap} has {count} partitions; the scenario \
                         writes {}: delete it or use another cluster",
                        plan.partitions
                    )));
                }
            }
            Err(error) => {
                return Err(CliError::BadInput(format!(
                    "cannot create topic '{topic}' at {bootstrap}: {}",
                    error.message
                )));
            }
        }
    }
    Ok(())
}

/// The partition count of a topic that exists: one another client has
/// just created may take a moment to show in the metadata.
async fn existing_partitions(admin: &impl Admin, topic: &str) -> Result<i32, CliError> {
    let deadline = tokio::time::Instant::now() + EXISTING_TOPIC_PATIENCE;
    loop {
        match admin.partition_count(topic).await {
            Ok(count) => return Ok(count),
            Err(error)
                if error.code == ErrorCode::UnknownTopicOrPartition
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(bad_input(error)),
        }
    }
}

async fn end_offsets(
    reader: &mut impl Consumer,
    plan: &LoadPlan,
) -> Result<BTreeMap<i32, i64>, CliError> {
    let mut ends = BTreeMap::new();
    for partition in 0..plan.partitions {
        let tp = TopicPartition::new(plan.input.clone(), partition);
        let (_, end) = reader.offsets_range(&tp).await.map_err(bad_input)?;
        ends.insert(partition, end);
    }
    Ok(ends)
}

fn bad_input(error: TransportError) -> CliError {
    CliError::BadInput(error.message)
}

/// The cluster refused records (after librdkafka's retries): not the
/// caller's input.
fn refused(error: TransportError) -> CliError {
    CliError::Internal(format!("writing the workload: {}", error.message))
}
