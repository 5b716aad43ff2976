//! `bondnet agent`, the DaemonSet on every node: installs the `bond` CNI binary into the
//! host's CNI bin dir, then scans sysfs for SR-IOV PFs and publishes them as the node's
//! BondNodeState on an interval, until SIGTERM or Ctrl-C.

pub mod install;
pub mod publish;
pub mod sysfs;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};

use crate::api::bond_node_state::{BondNodeState, BondNodeStateStatus};
use crate::error::{Error, Result};

/// What the agent needs to know.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name (the BondNodeState's name).
    pub node_name: String,
    /// Where sysfs is mounted is `<sysfs_root>/sys`.
    pub sysfs_root: PathBuf,
    /// The `bond` binary shipped in the agent's image; `None` skips the install.
    pub plugin_source: Option<PathBuf>,
    /// The host's CNI bin dir as mounted in the agent.
    pub cni_bin_dir: PathBuf,
    /// Time between scans.
    pub interval: Duration,
}

/// Version the agent reports for the plugin: the agent and plugin ship together.
pub const PLUGIN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Scans sysfs once into a BondNodeState status stamped `now`.
pub fn scan(config: &AgentConfig, now: Time) -> Result<BondNodeStateStatus> {
    let discovery = sysfs::discover_pfs(&config.sysfs_root).map_err(|source| Error::Sysfs {
        root: config.sysfs_root.clone(),
        source,
    })?;
    for skipped in &discovery.skipped {
        tracing::warn!(node = %config.node_name, %skipped, "PF left out of the node state");
    }
    Ok(BondNodeStateStatus {
        pfs: discovery.pfs,
        plugin_version: Some(PLUGIN_VERSION.to_owned()),
        last_seen: Some(now),
    })
}

/// Runs the agent until a shutdown signal.
pub async fn run(client: Client, config: AgentConfig) -> Result<()> {
    if let Some(source) = &config.plugin_source {
        let outcome = install::install_binary(source, &config.cni_bin_dir, "bond")?;
        tracing::info!(dir = %config.cni_bin_dir.display(), ?outcome, "bond plugin installed");
    }
    let api: Api<BondNodeState> = Api::all(client);
    let mut published: Option<Vec<crate::api::bond_node_state::PfStatus>> = None;
    loop {
        match scan(&config, Time(jiff::Timestamp::now())) {
            Ok(status) => match publish::publish_node_state(&api, &config.node_name, &status).await
            {
                Ok(()) => {
                    if published.as_ref() != Some(&status.pfs) {
                        tracing::info!(node = %config.node_name, pfs = status.pfs.len(), "node state published");
                        published = Some(status.pfs);
                    }
                }
                Err(source) => {
                    let err = Error::Publish {
                        node: config.node_name.clone(),
                        source,
                    };
                    tracing::warn!(error = %err, "will retry at the next scan");
                }
            },
            Err(err) => tracing::warn!(error = %err, "will retry at the next scan"),
        }
        tokio::select! {
            () = tokio::time::sleep(config.interval) => {}
            () = crate::telemetry::shutdown_signal() => {
                tracing::info!("shutting down");
                return Ok(());
            }
        }
    }
}
