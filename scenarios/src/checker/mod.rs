//! The checker: judges a run's [`Observation`](crate::observation::Observation)
//! against a reference model and names what went wrong.
//!
//! It shares no window, watermark or worker code with the engine.

pub mod anomaly;
pub mod reference;

pub use anomaly::{Anomaly, AnomalyKind};
