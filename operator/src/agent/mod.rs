//! `bondnet agent`, the DaemonSet on every node: installs the `bond` CNI binary into the
//! host's CNI bin dir, scans sysfs for SR-IOV PFs and publishes them in the node's
//! BondNodeState status when they differ from what it holds, and renders the device-plugin
//! pools the controller wrote into the spec as the SR-IOV device plugin's config file,
//! restarting the node's device plugin when the file changed.
//!
//! ```text
//!  sysfs ──scan (interval)──► differs from status? ──► apply status
//!  watch own BondNodeState ──► spec.devicePlugin ──► config file changed? ──► restart pods
//! ```

pub mod device_plugin;
pub mod install;
pub mod publish;
pub mod sysfs;

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};

use crate::api::bond_node_state::{BondNodeState, BondNodeStateStatus, PfStatus};
use crate::controller::watch_backoff::WatchBackoff;
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
    /// Where the device plugin's config goes; `None` renders nothing.
    pub device_plugin: Option<DevicePluginOutput>,
}

/// The device plugin's config file on this node, and its pods to restart when it changes.
#[derive(Debug, Clone)]
pub struct DevicePluginOutput {
    /// The config file, as the agent's container sees it.
    pub config_file: PathBuf,
    /// Which pods to restart; `None` leaves restarts to the cluster's operator.
    pub restart: Option<DevicePluginPods>,
}

/// The device-plugin pods of the node.
#[derive(Debug, Clone)]
pub struct DevicePluginPods {
    /// Their namespace.
    pub namespace: String,
    /// Their label selector.
    pub selector: String,
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

/// What the agent observes, without the time it observed it: a change here is worth a write.
#[derive(Clone, Debug, PartialEq)]
struct Observed {
    pfs: Vec<PfStatus>,
    plugin_version: Option<String>,
}

impl Observed {
    fn of(status: &BondNodeStateStatus) -> Self {
        Self {
            pfs: status.pfs.clone(),
            plugin_version: status.plugin_version.clone(),
        }
    }
}

/// One node's agent: what it last saw of its BondNodeState, and what it last published.
pub struct NodeAgent {
    config: AgentConfig,
    api: Api<BondNodeState>,
    pods: Option<Api<Pod>>,
    /// True once the watch has listed the node's object.
    listed: bool,
    /// The object as the watch last showed it.
    current: Option<BondNodeState>,
    /// The object of a re-list under way.
    relisted: Option<BondNodeState>,
    /// What we published since the watch last showed the object: not published again until
    /// the watch shows something else.
    published: Option<Observed>,
}

impl NodeAgent {
    /// An agent writing through `client`.
    pub fn new(client: Client, config: AgentConfig) -> Self {
        let pods = config
            .device_plugin
            .as_ref()
            .and_then(|d| d.restart.as_ref())
            .map(|r| Api::namespaced(client.clone(), &r.namespace));
        Self {
            config,
            api: Api::all(client),
            pods,
            listed: false,
            current: None,
            relisted: None,
            published: None,
        }
    }

    /// Follows one event of the watch on the node's own BondNodeState.
    pub async fn on_event(&mut self, event: Event<BondNodeState>) {
        match event {
            Event::Init => self.relisted = None,
            Event::InitApply(state) => self.relisted = Some(state),
            Event::InitDone => {
                self.current = self.relisted.take();
                self.published = None;
                self.listed = true;
                self.publish_if_changed(Time(jiff::Timestamp::now())).await;
                self.render().await;
            }
            Event::Apply(state) => {
                self.current = Some(state);
                self.published = None;
                self.render().await;
            }
            Event::Delete(_) => {
                self.current = None;
                self.published = None;
                self.publish_if_changed(Time(jiff::Timestamp::now())).await;
            }
        }
    }

    /// The periodic round: scan and publish on a change, and retry a restart still owed.
    pub async fn on_tick(&mut self, now: Time) {
        if !self.listed {
            return;
        }
        self.publish_if_changed(now).await;
        self.restart_if_owed().await;
    }

    /// Scans sysfs and applies the status when it differs from what the object holds;
    /// returns whether it wrote.
    pub async fn publish_if_changed(&mut self, now: Time) -> bool {
        let status = match scan(&self.config, now) {
            Ok(status) => status,
            Err(err) => {
                tracing::warn!(error = %err, "will retry at the next scan");
                return false;
            }
        };
        let observed = Observed::of(&status);
        let held = self
            .current
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .map(Observed::of);
        if held.as_ref() == Some(&observed) || self.published.as_ref() == Some(&observed) {
            return false;
        }
        let node = &self.config.node_name;
        match publish::publish_node_state(&self.api, node, &status).await {
            Ok(()) => {
                tracing::info!(node = %node, pfs = observed.pfs.len(), "node state published");
                self.published = Some(observed);
                true
            }
            Err(source) => {
                let err = Error::Publish {
                    node: node.clone(),
                    source,
                };
                tracing::warn!(error = %err, "will retry at the next scan");
                false
            }
        }
    }

    /// Renders the spec's device-plugin pools into the config file, then restarts the node's
    /// device plugin if it owes one.
    async fn render(&mut self) {
        let Some(output) = &self.config.device_plugin else {
            return;
        };
        let Some(config) = self
            .current
            .as_ref()
            .and_then(|s| s.spec.device_plugin.as_ref())
        else {
            return;
        };
        match device_plugin::write_if_changed(&output.config_file, config) {
            Ok(true) => tracing::info!(
                file = %output.config_file.display(),
                pools = config.resource_list.len(),
                "device-plugin config changed"
            ),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(file = %output.config_file.display(), error = %err, "cannot write the device-plugin config; will retry on the next change");
                return;
            }
        }
        self.restart_if_owed().await;
    }

    /// Restarts the node's device-plugin pods when the config file changed since their last
    /// restart.
    async fn restart_if_owed(&self) {
        let (Some(output), Some(pods)) = (&self.config.device_plugin, &self.pods) else {
            return;
        };
        let Some(restart) = &output.restart else {
            return;
        };
        if !device_plugin::needs_restart(&output.config_file) {
            return;
        }
        let node = &self.config.node_name;
        match device_plugin::restart(pods, &restart.selector, node).await {
            Ok(()) => {
                tracing::info!(node = %node, selector = %restart.selector, "device plugin restarted for its new config");
                if let Err(err) = device_plugin::mark_restarted(&output.config_file) {
                    tracing::warn!(error = %err, "cannot record the restart; the next round restarts again");
                }
            }
            Err(err) => {
                tracing::warn!(node = %node, error = %err, "cannot restart the device plugin; will retry at the next scan");
            }
        }
    }
}

/// Runs the agent until a shutdown signal.
pub async fn run(client: Client, config: AgentConfig) -> Result<()> {
    if let Some(source) = &config.plugin_source {
        let outcome = install::install_binary(source, &config.cni_bin_dir, "bond")?;
        tracing::info!(dir = %config.cni_bin_dir.display(), ?outcome, "bond plugin installed");
    }
    let own = watcher::Config::default().fields(&format!("metadata.name={}", config.node_name));
    let watch =
        watcher(Api::<BondNodeState>::all(client.clone()), own).backoff(WatchBackoff::default());
    let mut watch = std::pin::pin!(watch);
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut agent = NodeAgent::new(client, config);
    loop {
        tokio::select! {
            _ = ticks.tick() => agent.on_tick(Time(jiff::Timestamp::now())).await,
            event = watch.next() => match event {
                Some(Ok(event)) => agent.on_event(event).await,
                Some(Err(err)) => tracing::warn!(error = %err, "watch of the node's BondNodeState failed; retrying"),
                None => return Ok(()),
            },
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
    use crate::fixtures::{e810_pf, node};
    use crate::mock::{self, MockApi};
    use http::{Method, StatusCode};

    const STATE: &str = "/apis/bondnet.io/v1alpha1/bondnodestates/node-1/status";
    const PODS: &str = "/api/v1/namespaces/bondnet-system/pods";

    fn config(root: &std::path::Path) -> AgentConfig {
        AgentConfig {
            node_name: "node-1".into(),
            sysfs_root: root.to_owned(),
            plugin_source: None,
            cni_bin_dir: root.join("bin"),
            interval: Duration::from_secs(60),
            device_plugin: Some(DevicePluginOutput {
                config_file: root.join("dp/config.json"),
                restart: Some(DevicePluginPods {
                    namespace: "bondnet-system".into(),
                    selector: "app=sriov-device-plugin".into(),
                }),
            }),
        }
    }

    fn now() -> Time {
        Time("2026-01-01T00:00:00Z".parse().expect("time"))
    }

    /// A sysfs root with no PF, and an agent over the mock API that has listed its object.
    fn agent(root: &std::path::Path) -> (NodeAgent, MockApi) {
        std::fs::create_dir_all(root.join("sys/class/net/lo")).expect("mkdir");
        let (client, server) = mock::client();
        let mut agent = NodeAgent::new(client, config(root));
        agent.listed = true;
        (agent, server)
    }

    /// The node's object as the watch shows it: PFs (none) and version as scanned, and
    /// `ranges` as the spec's pools on ens1f0.
    fn state(ranges: &[&str]) -> BondNodeState {
        let mut state = node("node-1", &[], vec![]);
        if let Some(status) = state.status.as_mut() {
            status.plugin_version = Some(PLUGIN_VERSION.into());
        }
        state.spec.device_plugin = Some(crate::api::device_plugin::DevicePluginConfig {
            resource_list: ranges
                .iter()
                .enumerate()
                .map(|(i, r)| crate::api::device_plugin::ResourceConfig {
                    resource_name: format!("telco_fast_p{i}"),
                    resource_prefix: Some("bondnet.io".into()),
                    selectors: crate::api::device_plugin::Selectors {
                        pf_names: vec![format!("ens1f0#{r}").parse().expect("valid")],
                        ..Default::default()
                    },
                })
                .collect(),
        });
        state
    }

    #[tokio::test]
    async fn a_scan_is_published_once_with_the_plugin_version_and_the_time_seen() {
        let root = tempfile::tempdir().expect("tempdir");
        let (mut agent, mut server) = agent(root.path());
        let task = tokio::spawn(async move {
            let wrote = agent.publish_if_changed(now()).await;
            (agent, wrote)
        });
        let seen = server
            .expect_with(Method::PATCH, STATE, StatusCode::OK, |body| {
                let mut object = body.clone();
                object["spec"] = serde_json::json!({});
                object
            })
            .await;
        assert!(
            seen.uri.contains("fieldManager=bondnet-agent"),
            "{}",
            seen.uri
        );
        assert_eq!(seen.body["status"]["pluginVersion"], PLUGIN_VERSION);
        assert_eq!(seen.body["status"]["lastSeen"], "2026-01-01T00:00:00Z");
        assert_eq!(seen.body["status"]["pfs"], serde_json::json!([]));
        let (mut agent, wrote) = task.await.expect("task");
        assert!(wrote);

        // The same scan again, before and after the watch shows the write: no request.
        assert!(!agent.publish_if_changed(now()).await);
        let mut seen_state = state(&[]);
        seen_state.spec.device_plugin = None;
        agent.on_event(Event::Apply(seen_state)).await;
        agent.on_tick(now()).await;
        server.expect_no_more().await;
    }

    #[tokio::test]
    async fn a_changed_scan_is_published_and_a_state_deleted_under_the_agent_comes_back() {
        let root = tempfile::tempdir().expect("tempdir");
        let (mut agent, mut server) = agent(root.path());
        let mut held = state(&[]);
        held.spec.device_plugin = None;
        if let Some(status) = held.status.as_mut() {
            status.pfs = vec![e810_pf("ens1f0", "0000:3b:00", 0, 8)];
        }
        agent.current = Some(held.clone());
        let task = tokio::spawn(async move {
            agent.on_tick(now()).await;
            agent.on_event(Event::Delete(held)).await;
        });
        let changed = server.expect_echo(Method::PATCH, STATE).await;
        assert_eq!(changed.body["status"]["pfs"], serde_json::json!([]));
        server.expect_echo(Method::PATCH, STATE).await;
        task.await.expect("task");
        server.expect_no_more().await;
    }

    #[tokio::test]
    async fn a_missing_sysfs_publishes_nothing() {
        let (client, mut server) = mock::client();
        let mut agent = NodeAgent::new(client, config(std::path::Path::new("/nonexistent-root")));
        agent.listed = true;
        let err = scan(&agent.config, now()).expect_err("no sysfs");
        assert!(
            err.to_string()
                .starts_with("cannot scan /nonexistent-root/sys/class/net: "),
            "{err}"
        );
        assert!(!agent.publish_if_changed(now()).await);
        server.expect_no_more().await;
    }

    #[tokio::test]
    async fn spec_pools_are_rendered_and_only_this_nodes_device_plugin_restarts_only_on_a_change() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("dp/config.json");
        let (mut agent, mut server) = agent(root.path());
        let task = tokio::spawn(async move {
            agent.on_event(Event::Apply(state(&["0-3"]))).await;
            // The same pools again (e.g. the object changed elsewhere): no restart.
            agent.on_event(Event::Apply(state(&["0-3"]))).await;
            agent.on_tick(now()).await;
            agent.on_event(Event::Apply(state(&["0-3", "4-7"]))).await;
            agent
        });
        let restart = server
            .expect(
                Method::DELETE,
                PODS,
                StatusCode::OK,
                serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
            )
            .await;
        assert!(
            restart.uri.contains("fieldSelector=spec.nodeName%3Dnode-1"),
            "{}",
            restart.uri
        );
        assert!(
            restart
                .uri
                .contains("labelSelector=app%3Dsriov-device-plugin"),
            "{}",
            restart.uri
        );
        server
            .expect(
                Method::DELETE,
                PODS,
                StatusCode::OK,
                serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
            )
            .await;
        task.await.expect("task");
        server.expect_no_more().await;
        let written: crate::api::device_plugin::DevicePluginConfig =
            serde_json::from_slice(&std::fs::read(&file).expect("the config file")).expect("JSON");
        assert_eq!(written.resource_list.len(), 2);
        assert!(!device_plugin::needs_restart(&file));
    }

    #[tokio::test]
    async fn a_failed_restart_is_retried_at_the_next_scan() {
        let root = tempfile::tempdir().expect("tempdir");
        let (mut agent, mut server) = agent(root.path());
        let task = tokio::spawn(async move {
            agent.on_event(Event::Apply(state(&["0-3"]))).await;
            agent.on_tick(now()).await;
            agent
        });
        server
            .expect(
                Method::DELETE,
                PODS,
                StatusCode::FORBIDDEN,
                mock::status_error(403, "Forbidden", "no RBAC"),
            )
            .await;
        server
            .expect(
                Method::DELETE,
                PODS,
                StatusCode::OK,
                serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
            )
            .await;
        task.await.expect("task");
        server.expect_no_more().await;
    }
}
