//! `bond`: a CNI plugin that builds a Linux bond inside a pod, from links on the node
//! (`linksInContainer: false`) or links other plugins already put into the pod (SR-IOV VFs
//! through Multus, `linksInContainer: true`). A drop-in for the upstream bond-cni configs,
//! with every kernel bonding option, CNI 0.3.0 to 1.1.0, rollback on any failed ADD, an
//! idempotent DEL and a CHECK that checks.

pub mod bond;
pub mod cmd;
pub mod cni;
pub mod config;
pub mod error;
#[cfg(test)]
pub mod fake;
#[cfg(test)]
mod fuzz;
pub mod ipam;
pub mod lock;
pub mod log;
pub mod names;
pub mod net;
pub mod netns;
pub mod rollback;
pub mod rtnl;
pub mod run;
pub mod state;
pub mod trace;

pub use error::{Error, Result};
