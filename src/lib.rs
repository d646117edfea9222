//! tidemark: a streaming online-learning and model-monitoring engine on timely and differential
//! dataflow.
//!
//! Layers, from the edge inwards:
//!
//! - [`config`] and [`schema`]: job files and record schemas, validated before anything runs;
//! - [`sources`]: partitions (files, the [`generator`]) decoded by schema ([`decode`]) and stamped
//!   with watermark ticks, bad records becoming dead letters;
//! - [`dataflow`]: the three-way join, windows, label latency, quality metrics and entity features
//!   as differential collections with fixed-point values;
//! - [`outputs`]: changelogs consolidated per timestamp and written in a canonical order;
//! - [`replay`]: the Parquet replay buffer, replays of any range, and recovery;
//! - [`runtime`]: timely execution across workers and processes.
#![deny(missing_docs)]

pub mod alerts;
pub mod bench;
pub mod config;
pub mod confine;
pub mod dataflow;
pub mod decode;
pub mod drift;
pub mod error;
pub mod generate;
pub mod generator;
pub mod kafka;
pub mod learn;
pub mod metrics;
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
