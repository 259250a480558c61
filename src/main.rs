//! `eddy`: Eddyline's command line (SPEC §2).
//!
//! Exit codes: 0 success, 1 a check failed, 2 bad usage or bad input (with a
//! one-line reason on stderr). Each subcommand lives in its own module and
//! returns a [`CliError`] or an [`Outcome`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod conformance_cmd;
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
}

/// What a subcommand that ran to the end concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: a check failed (the subcommand printed what and how to repro).
    CheckFailed,
}

/// Bad usage or bad input: exit 2 with this one-line reason.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(error: E) -> Self {
        CliError(error.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<Outcome, CliError> = match cli.command {
        Command::Window(args) => window_cmd::run(&args),
        Command::Conformance(args) => conformance_cmd::run(args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(CliError(reason)) => {
            // One line, whatever the error carried.
            let reason = reason.replace('\n', " ");
            eprintln!("eddy: {reason}");
            ExitCode::from(2)
        }
    }
}
