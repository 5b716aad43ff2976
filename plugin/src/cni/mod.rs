//! The CNI protocol: the environment a runtime sets, the spec versions and the shapes of
//! results and errors for each.

pub mod args;
pub mod error;
pub mod result;
pub mod version;
