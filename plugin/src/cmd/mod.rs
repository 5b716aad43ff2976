//! One file per verb. Each is a short list of steps over [`Net`] and [`Ipam`], so the same
//! code runs on the kernel and, in tests, on an in-memory fake with injected faults.
//!
//! [`Net`]: crate::net::Net
//! [`Ipam`]: crate::ipam::Ipam

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;

#[cfg(test)]
mod tests;
