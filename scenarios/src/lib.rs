//! Eddyline scenarios: the Kafka-semantics conformance suite, the scenario
//! files with their workloads and runs, and the checker.

pub mod checker;
pub mod conformance;
pub mod observation;
pub mod run;
pub mod scenario;
pub mod shrink;
pub mod verdict;
pub mod workload;
