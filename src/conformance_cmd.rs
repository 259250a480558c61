//! `eddy conformance [--seed N] [--bootstrap HOST:PORT]`: the Kafka-semantics
//! conformance suite against the simulator (seeded) or a real broker.
//!
//! Prints one line per check (area, name, `pass`, `FAIL: reason` or
//! `skip: reason`), each followed by what the check observed (offsets,
//! partitions, error codes; `--brief` leaves those out), then `N passed, M
//! failed` (`, K skipped` if any). Exit 1 if a check failed or the simulation
//! itself failed; exit 2 on bad usage or an unreachable broker.

use clap::Args;
use eddyline_engine::kafka::KafkaConfig;
use eddyline_scenarios::conformance::kafka_env::{self, KafkaRunError};
use eddyline_scenarios::conformance::{CHECKS, Report, SuiteOptions, sim_env};
use eddyline_sim::Seed;

use crate::{CliError, Outcome};

/// The seed of a simulator run when neither `--seed` nor `EDDY_SEED` is given.
const DEFAULT_SEED: u64 = 1;

#[derive(Args, Debug)]
pub struct ConformanceArgs {
    /// Seed of the simulated cluster (a number or a hex string; also read
    /// from EDDY_SEED). Simulator only.
    #[arg(long)]
    seed: Option<String>,
    /// Run against the real Kafka broker at HOST:PORT instead of the
    /// simulator (librdkafka settings from EDDY_KAFKA_CONFIG / EDDY_KAFKA_*).
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Option<String>,
    /// A shell command that kills the broker with SIGKILL and starts it again
    /// on the same address and data (e.g. "scripts/kafka restart"); without
    /// it, the checks that need a broker failure are skipped. With
    /// --bootstrap only.
    #[arg(long, value_name = "COMMAND")]
    broker_restart_cmd: Option<String>,
    /// Run only the checks whose "area: name" contains this text.
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Leave out what each check observed; print only the check lines.
    #[arg(long)]
    brief: bool,
    /// List the checks and exit.
    #[arg(long)]
    list: bool,
}

pub fn run(args: ConformanceArgs) -> Result<Outcome, CliError> {
    if args.list {
        for (area, name) in CHECKS {
            println!("{area}: {name}");
        }
        return Ok(Outcome::Success);
    }
    let options = SuiteOptions {
        filter: args.only.clone(),
        ..SuiteOptions::default()
    };
    if let Some(filter) = &options.filter
        && !CHECKS
            .iter()
            .any(|(area, name)| format!("{area}: {name}").contains(filter.as_str()))
    {
        return Err(CliError::BadInput(format!(
            "--only {filter:?} matches no check (see eddy conformance --list)"
        )));
    }
    let (report, repro) = match &args.bootstrap {
        Some(bootstrap) => {
            if args.seed.is_some() {
                return Err(CliError::BadInput(
                    "--seed applies to the simulator; it cannot be combined with --bootstrap"
                        .to_string(),
                ));
            }
            // librdkafka settings (credentials among them) come from
            // EDDY_KAFKA_CONFIG / EDDY_KAFKA_*, never from the command line.
            let config = KafkaConfig::from_sources(Some(bootstrap), std::env::vars())
                .map_err(|error| CliError::BadInput(error.message))?;
            let report =
                kafka_env::run_on_kafka(config, args.broker_restart_cmd.clone(), &options, || {
                    println!("conformance against Kafka at {bootstrap}")
                })
                .map_err(|error| match error {
                    // The broker could not be reached at the address the caller gave.
                    KafkaRunError::Unreachable(reason) => CliError::BadInput(reason),
                    KafkaRunError::Internal(reason) => CliError::Internal(reason),
                })?;
            let mut repro = format!("eddy conformance --bootstrap {bootstrap}");
            if let Some(command) = &args.broker_restart_cmd {
                repro.push_str(&format!(" --broker-restart-cmd {command:?}"));
            }
            (report, repro)
        }
        None => {
            if args.broker_restart_cmd.is_some() {
                return Err(CliError::BadInput(
                    "--broker-restart-cmd needs --bootstrap (the simulator crashes its own brokers)"
                        .to_string(),
                ));
            }
            let seed = seed(args.seed.as_deref())?;
            println!("conformance against the simulator, seed {seed}");
            println!("simulator {}", sim_env::cluster_config().timings_summary());
            let report = run_on_simulator(seed, &options)?;
            (report, format!("eddy conformance --seed {seed}"))
        }
    };
    print!("{}", report.render(!args.brief));
    if report.failed() > 0 {
        let only = match &args.only {
            Some(filter) => format!(" --only {filter:?}"),
            None => String::new(),
        };
        println!("repro: {repro}{only}");
        return Ok(Outcome::CheckFailed);
    }
    Ok(Outcome::Success)
}

/// `--seed`, else `EDDY_SEED`, else the default seed.
fn seed(flag: Option<&str>) -> Result<Seed, CliError> {
    let text = match flag {
        Some(text) => text.to_string(),
        None => match std::env::var("EDDY_SEED") {
            Ok(text) => text,
            Err(_) => return Ok(Seed::new(DEFAULT_SEED)),
        },
    };
    text.parse::<Seed>()
        .map_err(|error| CliError::BadInput(error.to_string()))
}

fn run_on_simulator(seed: Seed, options: &SuiteOptions) -> Result<Report, CliError> {
    // A failed simulation (not a failed check) is a broken simulator: exit 1
    // with the seed, like a failed check, not 2 ("bad usage").
    let on = |name: &str| std::env::var_os(name).is_some_and(|value| value == "1");
    let output = sim_env::SimOutput {
        trace_echo: on("EDDY_SIM_TRACE"),
        print_run_fingerprint: on("EDDY_SIM_HASH"),
    };
    match sim_env::run_on_simulator(seed, options, output) {
        Ok(run) => {
            println!(
                "simulation: trace hash {:#018x}, {} events",
                run.trace.hash, run.trace.events
            );
            Ok(run.report)
        }
        Err(reason) => Err(CliError::Internal(format!(
            "the simulation failed (seed {seed}): {reason}"
        ))),
    }
}
