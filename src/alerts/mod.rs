//! Alert rules over final windows: thresholds, relative changes against a baseline, and
//! error-budget burn rates, each with a severity and a runbook; evaluated in event-time order
//! into an `alerts` changelog of firing and resolved records.

pub mod deliver;
pub mod eval;
pub mod spec;

pub use eval::{AlertEvent, AlertState, Observation};
pub use spec::{AlertSpec, Metric, Rule};
