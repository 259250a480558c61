//! `eddy`: Eddyline's command line.
//!
//! Exit codes: 0 success; 1 a check failed or the run failed for a reason
//! that is not the caller's input (a simulation that failed, a broken
//! invariant, an output that cannot be written); 2 bad usage or bad input
//! (with a one-line reason on stderr). Each subcommand lives in its own
//! module and returns an [`Outcome`] or a [`CliError`] that says which of
//! the two kinds of failure it is.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a simulated run allocates and frees
/// small buffers for every record on every hop (BENCHMARKS.md, "scenario
/// sweeps").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod conformance_cmd;
mod live_cmd;
mod load_cmd;
mod record_cmd;
mod replay_cmd;
mod sim_cmd;
mod verify_cmd;
mod window_cmd;

#[derive(Parser, Debug)]
#[command(
    name = "eddy",
    version,
    about = "Deterministic simulation and replay testbed for event-time stream processing on Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Window(window_cmd::WindowArgs),
    /// The Kafka-semantics conformance suite, against the simulator (default) or a real broker.
    Conformance(conformance_cmd::ConformanceArgs),
    /// Scenarios on the simulated cluster: one seed (run), many (sweep), or
    /// the minimal failing scenario (shrink).
    Sim(sim_cmd::SimArgs),
    Live(live_cmd::LiveArgs),
    Load(load_cmd::LoadArgs),
    Verify(verify_cmd::VerifyArgs),
    Record(record_cmd::RecordArgs),
    Replay(replay_cmd::ReplayArgs),
}

/// What a subcommand that ran to the end concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: a check failed (the subcommand printed what and how to repro).
    CheckFailed,
}

/// Why a subcommand stopped, with a one-line reason. There is no blanket
/// conversion into it: every call site says which kind its error is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Bad usage or bad input (arguments, files, their contents, a broker
    /// address that cannot be reached): exit 2.
    BadInput(String),
    /// A failure that is not the caller's input (a simulation that failed,
    /// a broken invariant, an output that cannot be written): exit 1.
    Internal(String),
}

impl CliError {
    /// The exit status of a run that stopped with this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::BadInput(_) => 2,
            CliError::Internal(_) => 1,
        }
    }

    /// The reason on one line, whatever the error carried.
    pub fn reason_line(&self) -> String {
        let (CliError::BadInput(reason) | CliError::Internal(reason)) = self;
        reason.replace('\n', " ")
    }
}

/// What every subcommand that talks to Kafka starts with: the librdkafka
/// settings for `bootstrap` (from the properties file and the `EDDY_KAFKA_*`
/// variables, never from the command line; a bad one is bad input) and the
/// single-threaded runtime the subcommand runs on.
pub fn kafka_session(
    bootstrap: &str,
) -> Result<(eddyline_engine::kafka::KafkaConfig, tokio::runtime::Runtime), CliError> {
    let config =
        eddyline_engine::kafka::KafkaConfig::from_sources(Some(bootstrap), std::env::vars())
            .map_err(|error| CliError::BadInput(error.message))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| CliError::Internal(format!("cannot start the runtime: {error}")))?;
    Ok((config, runtime))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<Outcome, CliError> = match cli.command {
        Command::Window(args) => window_cmd::run(&args),
        Command::Conformance(args) => conformance_cmd::run(args),
        Command::Sim(args) => sim_cmd::run(args),
        Command::Live(args) => live_cmd::run(args),
        Command::Load(args) => load_cmd::run(&args),
        Command::Verify(args) => verify_cmd::run(&args),
        Command::Record(args) => record_cmd::run(&args),
        Command::Replay(args) => replay_cmd::run(&args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(error) => {
            eprintln!("eddy: {}", error.reason_line());
            ExitCode::from(error.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_exits_2_and_an_internal_failure_exits_1() {
        assert_eq!(
            CliError::BadInput("no such file".to_string()).exit_code(),
            2
        );
        assert_eq!(
            CliError::Internal("the simulation failed".to_string()).exit_code(),
            1
        );
    }

    #[test]
    fn the_reason_is_one_line() {
        let error = CliError::BadInput("first\nsecond\nthird".to_string());
        assert_eq!(error.reason_line(), "first second third");
    }
}
