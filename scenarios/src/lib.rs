//! Eddyline scenarios.
