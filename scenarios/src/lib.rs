//! Eddyline scenarios.

pub mod conformance;
