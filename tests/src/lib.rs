//! Shared helpers for the test tiers under `tests/`.
//!
//! - [`vm`]: the real-kernel (qemu) tier's scenario list and report parsing;
//!   the tier itself is `tests/tests/vm.rs` and `tests/vm/`.
//! - [`stats`] and [`timings`]: figures for the `bond-bench` benchmark.

pub mod stats;
pub mod timings;
pub mod vm;
