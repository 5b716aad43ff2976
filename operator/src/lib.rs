//! bondnet's operator: the API types, the pure plan, and the binaries around it.
//!
//! `api` holds types only; `plan` depends on `api` and plain data crates only (no client, no
//! I/O); `offline` reads files and prints the plan; `telemetry` sets up logs.
#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod cli;
pub mod controller;
pub mod error;
pub mod fixtures;
pub mod metrics_server;
#[cfg(test)]
pub mod mock;
pub mod offline;
pub mod plan;
pub mod telemetry;
pub mod webhook;

pub use error::{Error, Result};
