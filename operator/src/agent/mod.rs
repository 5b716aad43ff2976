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

use crate::api::bond_node_state::{BondNodeState, BondNodeStateStatus, PfStatus};
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

/// One round: scans sysfs and applies the node's BondNodeState; returns the PFs published.
pub async fn scan_and_publish(
    api: &Api<BondNodeState>,
    config: &AgentConfig,
    now: Time,
) -> Result<Vec<PfStatus>> {
    let status = scan(config, now)?;
    publish::publish_node_state(api, &config.node_name, &status)
        .await
        .map_err(|source| Error::Publish {
            node: config.node_name.clone(),
            source,
        })?;
    Ok(status.pfs)
}

/// Runs the agent until a shutdown signal.
pub async fn run(client: Client, config: AgentConfig) -> Result<()> {
    if let Some(source) = &config.plugin_source {
        let outcome = install::install_binary(source, &config.cni_bin_dir, "bond")?;
        tracing::info!(dir = %config.cni_bin_dir.display(), ?outcome, "bond plugin installed");
    }
    let api: Api<BondNodeState> = Api::all(client);
    let mut published: Option<Vec<PfStatus>> = None;
    loop {
        match scan_and_publish(&api, &config, Time(jiff::Timestamp::now())).await {
            Ok(pfs) => {
                if published.as_ref() != Some(&pfs) {
                    tracing::info!(node = %config.node_name, pfs = pfs.len(), "node state published");
                    published = Some(pfs);
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;
    use http::{Method, StatusCode};

    fn config(root: &std::path::Path) -> AgentConfig {
        AgentConfig {
            node_name: "node-1".into(),
            sysfs_root: root.to_owned(),
            plugin_source: None,
            cni_bin_dir: root.join("bin"),
            interval: Duration::from_secs(60),
        }
    }

    fn now() -> Time {
        Time("2026-01-01T00:00:00Z".parse().expect("time"))
    }

    #[tokio::test]
    async fn a_scan_publishes_the_plugin_version_and_the_time_seen() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("sys/class/net/lo")).expect("mkdir");
        let (client, mut server) = mock::client();
        let config = config(root.path());
        let task =
            tokio::spawn(async move { scan_and_publish(&Api::all(client), &config, now()).await });
        let seen = server
            .expect_with(
                Method::PATCH,
                "/apis/bondnet.io/v1alpha1/bondnodestates/node-1/status",
                StatusCode::OK,
                // The server returns the whole object, spec included.
                |body| {
                    let mut object = body.clone();
                    object["spec"] = serde_json::json!({});
                    object
                },
            )
            .await;
        assert_eq!(seen.body["status"]["pluginVersion"], PLUGIN_VERSION);
        assert_eq!(seen.body["status"]["lastSeen"], "2026-01-01T00:00:00Z");
        assert_eq!(seen.body["status"]["pfs"], serde_json::json!([]));
        assert!(task.await.expect("task").expect("published").is_empty());
    }

    #[tokio::test]
    async fn a_missing_sysfs_publishes_nothing_and_names_the_root() {
        let (client, mut server) = mock::client();
        let config = config(std::path::Path::new("/nonexistent-root"));
        let err = scan_and_publish(&Api::all(client), &config, now())
            .await
            .expect_err("no sysfs");
        assert!(
            err.to_string()
                .starts_with("cannot scan /nonexistent-root/sys/class/net: "),
            "{err}"
        );
        server.expect_no_more().await;
    }
}
