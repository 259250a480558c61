//! Eddyline scenarios: the Kafka-semantics conformance suite, and the
//! scenario runs with their checker.

pub mod checker;
pub mod conformance;
pub mod observation;
