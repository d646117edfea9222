//! Outputs: changelog rows, their files and the sink that writes them in canonical order.

pub mod rows;
pub mod sink;
pub mod writeback;
pub mod writer;
