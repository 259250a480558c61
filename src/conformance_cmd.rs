//! `eddy conformance [--seed N] [--bootstrap HOST:PORT[,...]]`: the
//! Kafka-semantics conformance suite against the simulator (seeded) or a
//! real Kafka cluster (one broker or several).
//!
//! Prints one line per check (area, name, `pass`, `FAIL: reason` or
//! `skip: reason`), each followed by what the check observed (offsets,
//! partitions, error codes; `--brief` leaves those out), then `N passed, M
//! failed` (`, K skipped` if any). Exit 1 if a check failed, if `--strict`
//! and a check was skipped for another reason than the target's broker
//! count, or if the simulation itself failed; exit 2 on bad usage or an
//! unreachable broker.

use clap::Args;
use eddyline_engine::kafka::KafkaConfig;
use eddyline_scenarios::conformance::kafka_env::{self, BrokerCommands, KafkaRunError};
use eddyline_scenarios::conformance::{
    CHECK_BROKERS, CHECKS, Outcome as CheckOutcome, Report, SuiteOptions, sim_env,
};
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
    /// Run against the real Kafka cluster at HOST:PORT (a comma-separated
    /// list for several brokers) instead of the simulator (librdkafka
    /// settings from EDDY_KAFKA_CONFIG / EDDY_KAFKA_*).
    #[arg(long, value_name = "HOST:PORT[,...]")]
    bootstrap: Option<String>,
    /// A shell command that kills broker {node} with SIGKILL and starts it
    /// again on the same address and data (e.g. "scripts/kafka
    /// restart-node {node}"); {node} is replaced by the broker's id (1 on a
    /// single node). On one broker the failover checks need it; without any
    /// broker command they are skipped. With --bootstrap only.
    #[arg(long, value_name = "COMMAND")]
    broker_restart_cmd: Option<String>,
    /// A shell command that kills broker {node} with SIGKILL and leaves it
    /// down, returning once its process is gone (e.g. "scripts/kafka
    /// --brokers 3 kill-node {node}"); {node} is replaced by the broker's id
    /// (1 on a single node). On several brokers the failover checks stop the
    /// leader with it, and the replication checks a follower. With
    /// --bootstrap and --broker-start-cmd only.
    #[arg(long, value_name = "COMMAND")]
    broker_stop_cmd: Option<String>,
    /// A shell command that starts broker {node}, stopped by
    /// --broker-stop-cmd, again with its data, returning once it serves
    /// (e.g. "scripts/kafka --brokers 3 start-node {node}"); {node} is
    /// replaced by the broker's id. With --bootstrap and --broker-stop-cmd
    /// only.
    #[arg(long, value_name = "COMMAND")]
    broker_start_cmd: Option<String>,
    /// Exit 1 if any check was skipped for another reason than needing more
    /// brokers than the target has (a target that could run a check must
    /// run it).
    #[arg(long)]
    strict: bool,
    /// Run only the checks whose "area: name" contains this text.
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Leave out what each check observed; print only the check lines.
    #[arg(long)]
    brief: bool,
    /// List the checks ("area: name", in the order they run) and exit.
    #[arg(long)]
    list: bool,
    /// List the checks with how many brokers each needs ("N<TAB>area:
    /// name"; on a target with fewer a check is skipped as "needs N
    /// brokers") and exit.
    #[arg(long, conflicts_with = "list")]
    list_needs: bool,
}

impl ConformanceArgs {
    /// The broker commands, if they go together: every one needs
    /// --bootstrap, and stop and start come as a pair.
    fn broker_commands(&self) -> Result<BrokerCommands, CliError> {
        let commands = BrokerCommands {
            restart: self.broker_restart_cmd.clone(),
            stop: self.broker_stop_cmd.clone(),
            start: self.broker_start_cmd.clone(),
        };
        if self.bootstrap.is_none() {
            let given = [
                ("--broker-restart-cmd", &commands.restart),
                ("--broker-stop-cmd", &commands.stop),
                ("--broker-start-cmd", &commands.start),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, command)| command.is_some()) {
                return Err(CliError::BadInput(format!(
                    "{flag} needs --bootstrap (the simulator crashes its own brokers)"
                )));
            }
        }
        match (&commands.stop, &commands.start) {
            (Some(_), None) => Err(CliError::BadInput(
                "--broker-stop-cmd needs --broker-start-cmd (a stopped broker must come back)"
                    .to_string(),
            )),
            (None, Some(_)) => Err(CliError::BadInput(
                "--broker-start-cmd needs --broker-stop-cmd".to_string(),
            )),
            _ => Ok(commands),
        }
    }

    /// The command line that repeats this run against a broker.
    fn kafka_repro(&self, bootstrap: &str) -> String {
        let mut repro = format!("eddy conformance --bootstrap {bootstrap}");
        let flags = [
            ("--broker-restart-cmd", &self.broker_restart_cmd),
            ("--broker-stop-cmd", &self.broker_stop_cmd),
            ("--broker-start-cmd", &self.broker_start_cmd),
        ];
        for (flag, command) in flags {
            if let Some(command) = command {
                repro.push_str(&format!(" {flag} {command:?}"));
            }
        }
        repro
    }
}

/// Whether a skip reason is the suite's "needs N brokers": the target is
/// too small for the check, which `--strict` accepts.
fn skipped_for_broker_count(reason: &str) -> bool {
    reason
        .strip_prefix("needs ")
        .and_then(|rest| rest.strip_suffix(" brokers"))
        .is_some_and(|count| !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit()))
}

/// The checks `--strict` refuses: skipped for another reason than the
/// target's broker count, as `area: name (reason)`.
fn strict_refusals(report: &Report) -> Vec<String> {
    report
        .checks
        .iter()
        .filter_map(|check| match &check.outcome {
            CheckOutcome::Skipped(reason) if !skipped_for_broker_count(reason) => {
                Some(format!("{}: {} ({reason})", check.area, check.name))
            }
            _ => None,
        })
        .collect()
}

pub fn run(args: ConformanceArgs) -> Result<Outcome, CliError> {
    if args.list || args.list_needs {
        for ((area, name), needs) in CHECKS.iter().zip(CHECK_BROKERS) {
            if args.list_needs {
                println!("{needs}\t{area}: {name}");
            } else {
                println!("{area}: {name}");
            }
        }
        return Ok(Outcome::Success);
    }
    let commands = args.broker_commands()?;
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
            let report = kafka_env::run_on_kafka(config, commands, &options, |brokers| {
                println!("conformance against Kafka at {bootstrap}, {brokers} broker(s)")
            })
            .map_err(|error| match error {
                // The broker could not be reached at the address the caller
                // gave, or a broker command cannot work on it.
                KafkaRunError::Unreachable(reason) => CliError::BadInput(reason),
                KafkaRunError::Internal(reason) => CliError::Internal(reason),
            })?;
            (report, args.kafka_repro(bootstrap))
        }
        None => {
            let seed = seed(args.seed.as_deref())?;
            println!("conformance against the simulator, seed {seed}");
            println!("simulator {}", sim_env::cluster_config().timings_summary());
            let report = run_on_simulator(seed, &options)?;
            (report, format!("eddy conformance --seed {seed}"))
        }
    };
    print!("{}", report.render(!args.brief));
    let refused = if args.strict {
        strict_refusals(&report)
    } else {
        Vec::new()
    };
    for check in &refused {
        println!("strict: skipped, and not for the broker count: {check}");
    }
    if report.failed() > 0 || !refused.is_empty() {
        let only = match &args.only {
            Some(filter) => format!(" --only {filter:?}"),
            None => String::new(),
        };
        let strict = if args.strict { " --strict" } else { "" };
        println!("repro: {repro}{strict}{only}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use eddyline_scenarios::conformance::CheckReport;

    fn report_with(outcomes: &[CheckOutcome]) -> Report {
        let mut report = Report::new("kafka");
        for (n, outcome) in outcomes.iter().enumerate() {
            report.checks.push(CheckReport {
                area: "failover",
                name: ["first", "second", "third"][n],
                outcome: outcome.clone(),
                notes: Vec::new(),
                elapsed_ms: 0,
            });
        }
        report
    }

    #[test]
    fn strict_accepts_only_skips_for_too_few_brokers() {
        assert!(skipped_for_broker_count("needs 3 brokers"));
        assert!(skipped_for_broker_count("needs 12 brokers"));
        assert!(!skipped_for_broker_count("needs broker control"));
        assert!(!skipped_for_broker_count("needs  brokers"));
        assert!(!skipped_for_broker_count(
            "needs 3 brokers and a restart command"
        ));
        let report = report_with(&[
            CheckOutcome::Passed,
            CheckOutcome::Skipped("needs 3 brokers".to_string()),
            CheckOutcome::Skipped("needs broker control".to_string()),
        ]);
        assert_eq!(
            strict_refusals(&report),
            vec!["failover: third (needs broker control)".to_string()]
        );
    }

    #[test]
    fn the_repro_line_repeats_every_broker_command() {
        let args = ConformanceArgs {
            seed: None,
            bootstrap: Some("h:1,h:2".to_string()),
            broker_restart_cmd: None,
            broker_stop_cmd: Some("kill-node {node}".to_string()),
            broker_start_cmd: Some("start-node {node}".to_string()),
            strict: true,
            only: None,
            brief: false,
            list: false,
            list_needs: false,
        };
        assert_eq!(
            args.kafka_repro("h:1,h:2"),
            "eddy conformance --bootstrap h:1,h:2 --broker-stop-cmd \"kill-node {node}\" --broker-start-cmd \"start-node {node}\""
        );
        assert!(args.broker_commands().is_ok());
    }
}
