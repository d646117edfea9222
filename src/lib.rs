//! tidemark: a streaming online-learning and model-monitoring engine on timely and differential
//! dataflow.
//!
//! Layers, from the edge inwards:
//!
//! - [`config`] and [`schema`]: job files and record schemas, validated before anything runs;
//! - [`sources`]: partitions (files, the [`generator`]) decoded by schema ([`decode`]) and stamped
//!   with watermark ticks, bad records becoming dead letters;
//! - [`dataflow`]: one keyed join of events, predictions and labels, then windows on panes
//!   (quality, label health, entity features, drift, shadow) pre-aggregated per worker in integer
//!   accumulators, and the history-dependent operators ([`learn`], drift detectors, [`alerts`])
//!   run in order on one worker;
//! - [`outputs`]: changelogs consolidated per timestamp and written in a canonical order, and
//!   [`kafka`] topics beside them;
//! - [`replay`]: the Parquet replay buffer, replays of any range, and recovery;
//! - [`runtime`]: timely execution across workers and processes, and [`metrics`] for a live
//!   job.
#![deny(missing_docs)]

pub mod alerts;
pub mod bench;
pub mod config;
pub mod confine;
pub mod control;
pub mod dataflow;
pub mod decode;
pub mod drift;
pub mod error;
pub mod generate;
pub mod generator;
pub mod init;
pub mod kafka;
pub mod learn;
pub mod metrics;
pub mod mlflow;
pub mod outputs;
pub mod profile;
pub mod records;
pub mod registry;
pub mod replay;
pub mod report;
pub mod runtime;
pub mod schema;
pub mod sources;

pub use error::{Error, Result};
