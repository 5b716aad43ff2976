//! The one planner: a single task over the reflector stores (BondNetworks, BondNodeStates,
//! Node metadata and the NADs bondnet manages). Woken by a change, it waits for the burst to
//! settle ([`Timing::debounce`], at most [`Timing::max_delay`]), then runs one cycle: it
//! plans every network at once on a blocking thread (`spawn_blocking`), or reuses the last
//! plan when its inputs are unchanged (see [`memo`]), diffs the plan against what the stores
//! hold ([`diff`]) and hands only the differences to the [`Writer`]. Status per network
//! comes from the same plan.
//!
//! A cycle with failed writes is retried after a backoff (5 s doubling to 5 min) unless a
//! change wakes the planner first; a healthy cluster is re-planned every [`Timing::resync`].
//! After an API server restart or a "too old resource version", each watch lists again, the
//! store is replaced when the list is complete, and the end of the list wakes the planner:
//! every change made meanwhile is planned.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Notify;

use crate::api::bond_network::BondNetwork;
use crate::api::bond_node_state::BondNodeState;
use crate::api::device_plugin::DevicePluginConfig;
use crate::api::nad::NetworkAttachmentDefinition;
use crate::controller::diff::{self, Batch, Held, Written};
use crate::controller::memo::{self, Memo, Planned};
use crate::controller::writer::{self, Outcome, Writer};
use crate::error::{Error, KubeStep, Result};
use crate::plan::{self, names, Allocation, Inputs, Settings};
use crate::telemetry::Metrics;

/// The stores the planner reads.
#[derive(Clone)]
pub struct Stores {
    /// Every BondNetwork.
    pub networks: Store<BondNetwork>,
    /// Every BondNodeState.
    pub nodes: Store<BondNodeState>,
    /// Node metadata, for labels and UIDs.
    pub node_meta: Store<PartialObjectMeta<Node>>,
    /// Every NAD labelled as bondnet's.
    pub nads: Store<NetworkAttachmentDefinition>,
}

/// When the planner runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A cycle starts once no change has come for this long...
    pub debounce: Duration,
    /// ... or this long after the first change of a burst.
    pub max_delay: Duration,
    /// A cycle runs at least this often.
    pub resync: Duration,
    /// Longest wait for one read of a ConfigMap.
    pub request_timeout: Duration,
}

impl Default for Timing {
    /// 200 ms of quiet, at most 2 s, a resync every 5 minutes, 10 s per read.
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            resync: RESYNC,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// How often a healthy cluster is re-planned even without a change.
pub const RESYNC: Duration = Duration::from_secs(300);

/// 5 s, 10 s, 20 s, ... capped at 5 minutes.
pub fn backoff(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(6);
    Duration::from_secs(5u64 << exponent).min(RESYNC)
}

/// What one cycle did.
#[derive(Debug)]
pub struct Cycle {
    /// Writes the diff found.
    pub writes: usize,
    /// What the writer made of them.
    pub outcome: Outcome,
}

/// The planner and everything it needs.
pub struct Planner {
    /// API client, for the ConfigMap reads.
    pub client: Client,
    /// Where the device-plugin ConfigMaps go.
    pub settings: Settings,
    /// Whether the device-plugin config is also exported as ConfigMaps.
    pub export_configmap: bool,
    /// The stores.
    pub stores: Stores,
    /// Sends the differences.
    pub writer: Writer,
    /// What the writer wrote, for the diff.
    pub written: Arc<Written>,
    /// The last plan.
    pub memo: Arc<Memo>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// When to run.
    pub timing: Timing,
}

/// The plan's inputs read from the stores.
struct Snapshot {
    networks: Vec<BondNetwork>,
    /// The BondNodeStates whose Node exists: one whose Node is gone no longer counts (its
    /// owner reference lets the garbage collector remove it).
    nodes: Vec<BondNodeState>,
    labels: BTreeMap<String, BTreeMap<String, String>>,
    /// UID of each Node, for the owner reference of its BondNodeState.
    node_uids: BTreeMap<String, String>,
}

/// The stores at one moment: shared objects, cheap to take.
struct View {
    networks: Vec<Arc<BondNetwork>>,
    nodes: Vec<Arc<BondNodeState>>,
    node_meta: Vec<Arc<PartialObjectMeta<Node>>>,
    nads: Vec<Arc<NetworkAttachmentDefinition>>,
}

impl View {
    /// The stores' objects, in namespace and name order so that writes go in a stable order.
    fn read(stores: &Stores) -> Self {
        fn sorted<K: Resource>(mut objects: Vec<Arc<K>>) -> Vec<Arc<K>> {
            objects.sort_by(|a, b| {
                (&a.meta().namespace, &a.meta().name).cmp(&(&b.meta().namespace, &b.meta().name))
            });
            objects
        }
        Self {
            networks: sorted(stores.networks.state()),
            nodes: stores.nodes.state(),
            node_meta: stores.node_meta.state(),
            nads: sorted(stores.nads.state()),
        }
    }

    /// True while some node has no device-plugin spec yet: its VF ranges may still be in the
    /// ConfigMap layout before per-node state.
    fn needs_legacy(&self) -> bool {
        self.nodes.iter().any(|n| {
            n.spec.device_plugin.is_none()
                && self.node_meta.iter().any(|m| m.name_any() == n.name_any())
        })
    }

    /// The plan's inputs: networks not being deleted, and node states whose Node exists.
    fn snapshot(&self) -> Snapshot {
        let mut networks: Vec<BondNetwork> = self
            .networks
            .iter()
            .filter(|n| n.meta().deletion_timestamp.is_none())
            .map(|n| (**n).clone())
            .collect();
        networks.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        let mut labels = BTreeMap::new();
        let mut node_uids = BTreeMap::new();
        for node in &self.node_meta {
            let name = node.name_any();
            if let Some(uid) = node.uid() {
                node_uids.insert(name.clone(), uid);
            }
            labels.insert(name, node.labels().clone());
        }
        let mut nodes: Vec<BondNodeState> = self
            .nodes
            .iter()
            .filter(|n| labels.contains_key(&n.name_any()))
            .map(|n| (**n).clone())
            .collect();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Snapshot {
            networks,
            nodes,
            labels,
            node_uids,
        }
    }
}

/// The previous allocation: each node's BondNodeState spec, or, for a node whose spec the
/// controller has not written yet (the upgrade from the ConfigMap layout), its key in
/// `legacy`. A key that does not parse is skipped: its node gets planned afresh.
pub fn previous_allocation<'c>(
    nodes: &[BondNodeState],
    legacy: impl IntoIterator<Item = &'c ConfigMap>,
) -> Allocation {
    let mut from_configmaps = BTreeMap::new();
    for configmap in legacy {
        for (node, json) in configmap.data.iter().flatten() {
            match serde_json::from_str::<DevicePluginConfig>(json) {
                Ok(config) => {
                    from_configmaps.insert(node.as_str(), config);
                }
                Err(err) => {
                    tracing::warn!(node = %node, error = %err, "device-plugin config does not parse; planning the node afresh")
                }
            }
        }
    }
    let mut configs: BTreeMap<&str, &DevicePluginConfig> = BTreeMap::new();
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        match &node.spec.device_plugin {
            Some(config) => {
                configs.insert(name, config);
            }
            None => {
                if let Some(config) = from_configmaps.get(name) {
                    configs.insert(name, config);
                }
            }
        }
    }
    Allocation::from_device_plugin_configs(configs)
}

/// The plan of `snapshot` with the previous allocation from the node states (and `legacy`):
/// the last plan when its inputs are the same (see [`memo`]), else a new one, kept for the
/// next cycle.
fn planned(
    memo: &Memo,
    metrics: &Metrics,
    settings: &Settings,
    export: bool,
    snapshot: &Snapshot,
    legacy: &[ConfigMap],
) -> Arc<Planned> {
    let Snapshot {
        networks,
        nodes,
        labels,
        ..
    } = snapshot;
    let inputs = memo::inputs_fingerprint(networks, nodes, labels, settings);
    let previous_fingerprint = memo::previous_fingerprint(nodes, legacy);
    if let Some(planned) = inputs.and_then(|i| memo.reuse(i, previous_fingerprint)) {
        return planned;
    }
    metrics.plans.inc();
    memo.forget();
    let previous = previous_allocation(nodes, legacy);
    let plan = plan::plan(&Inputs {
        networks,
        nodes,
        node_labels: labels,
        previous: &previous,
        settings,
    });
    let planned = Arc::new(Planned::new(
        plan,
        inputs.unwrap_or_default(),
        previous_fingerprint,
        export,
    ));
    if inputs.is_some() {
        memo.keep(planned.clone());
    }
    planned
}

impl Planner {
    /// Waits until every store has its initial list: planning from a partial list would drop
    /// the device-plugin entries of networks and nodes not seen yet, and delete NADs.
    async fn wait_for_stores(&self) -> Result<()> {
        let closed = |kind: &'static str| move |_| Error::StoreClosed { kind };
        let stores = &self.stores;
        stores
            .networks
            .wait_until_ready()
            .await
            .map_err(closed("BondNetwork"))?;
        stores
            .nodes
            .wait_until_ready()
            .await
            .map_err(closed("BondNodeState"))?;
        stores
            .node_meta
            .wait_until_ready()
            .await
            .map_err(closed("Node"))?;
        stores
            .nads
            .wait_until_ready()
            .await
            .map_err(closed("NetworkAttachmentDefinition"))?;
        Ok(())
    }

    /// Reads every device-plugin ConfigMap there is: `<name>`, then `<name>-0`, `<name>-1`,
    /// ... up to the first that does not exist (the export's shards, or the layout before
    /// per-node state). Each read is bounded by the request timeout.
    async fn read_configmaps(&self) -> Result<Vec<ConfigMap>> {
        let (namespace, base) = (
            &self.settings.device_plugin_namespace,
            &self.settings.device_plugin_configmap,
        );
        let read = |name: String| {
            writer::bounded(
                self.timing.request_timeout,
                KubeStep::Get,
                format!("ConfigMap {namespace}/{name}"),
                async move {
                    crate::controller::apply::get_configmap(&self.client, namespace, &name).await
                },
            )
        };
        let mut found = Vec::new();
        if let Some(configmap) = read(base.clone()).await? {
            found.push(configmap);
        }
        for shard in 0..plan::MAX_SHARDS {
            let name = names::device_plugin_configmap_name(base, plan::MAX_SHARDS, shard);
            match read(name).await? {
                Some(configmap) => found.push(configmap),
                None => break,
            }
        }
        Ok(found)
    }

    /// One cycle: plan (or reuse the last plan), diff, write. Fails only when it cannot plan
    /// (a store closed, a ConfigMap unreadable); failed writes are in the outcome (the rest
    /// were sent; a later cycle retries what still differs).
    pub async fn cycle(&self) -> Result<Cycle> {
        let started = Instant::now();
        self.metrics.reconciles.inc();
        self.wait_for_stores().await?;
        let view = View::read(&self.stores);
        let legacy_needed = view.needs_legacy();
        let configmaps = if self.export_configmap || legacy_needed {
            self.read_configmaps().await?
        } else {
            Vec::new()
        };
        let (memo, metrics, written) = (
            self.memo.clone(),
            self.metrics.clone(),
            self.written.clone(),
        );
        let (settings, export) = (self.settings.clone(), self.export_configmap);
        let batch: Batch = tokio::task::spawn_blocking(move || {
            let snapshot = view.snapshot();
            let legacy: &[ConfigMap] = if legacy_needed { &configmaps } else { &[] };
            let planned = planned(&memo, &metrics, &settings, export, &snapshot, legacy);
            let exported: &[ConfigMap] = if export { &configmaps } else { &[] };
            let held = Held {
                networks: &view.networks,
                nodes: &snapshot.nodes,
                node_uids: &snapshot.node_uids,
                nads: &view.nads,
                configmaps: exported,
            };
            diff::diff(&planned, &held, &written, &Time(jiff::Timestamp::now()))
        })
        .await
        .map_err(Error::Planner)?;
        let writes = batch.len();
        let outcome = if batch.is_empty() {
            Outcome::default()
        } else {
            self.writer.write(batch).await
        };
        self.metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        if outcome.written > 0 || !outcome.failures.is_empty() {
            tracing::info!(
                writes = outcome.written,
                held_back = outcome.held_back,
                failed = outcome.failures.len(),
                "wrote the differences"
            );
        }
        if let Some(first) = outcome.failures.first() {
            tracing::warn!(failed = outcome.failures.len(), held_back = outcome.held_back, category = first.category(), error = %first, "some writes failed; retrying after a backoff");
        }
        Ok(Cycle { writes, outcome })
    }

    /// Runs cycles until the process ends: one at once, then one per burst of changes, a
    /// retry after a failure, a resync when nothing happens.
    pub async fn run(self, wake: Arc<Notify>) {
        let mut failures = 0u32;
        loop {
            match self.cycle().await {
                Ok(cycle) if cycle.outcome.failures.is_empty() => failures = 0,
                // The writer counted and logged each failed write.
                Ok(_) => failures = failures.saturating_add(1),
                Err(err) => {
                    failures = failures.saturating_add(1);
                    self.metrics.count_failure(err.category());
                    tracing::warn!(attempts = failures, retry_in_s = backoff(failures).as_secs(), error = %err, "planning cycle failed");
                }
            }
            let wait = if failures > 0 {
                backoff(failures)
            } else {
                self.timing.resync
            };
            tokio::select! {
                () = wake.notified() => debounce(&wake, self.timing).await,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Waits until no wake has come for `debounce`, or `max_delay` since it was called. The cap
/// is looked at first, so no stream of wakes, however dense, holds a cycle back past it; a
/// wake is looked at before the quiet timer, so a change that came before the planner got to
/// run again counts as one more change of the burst, not as quiet.
pub async fn debounce(wake: &Notify, timing: Timing) {
    let cap = tokio::time::sleep(timing.max_delay);
    tokio::pin!(cap);
    loop {
        tokio::select! {
            biased;
            () = &mut cap => return,
            () = wake.notified() => continue,
            () = tokio::time::sleep(timing.debounce) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5_seconds_to_5_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 5);
    }

    #[test]
    fn a_configmap_key_that_does_not_parse_is_skipped() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("n1".to_owned(), "garbage".to_owned()),
                (
                    "n2".to_owned(),
                    r#"{"resourceList":[{"resourceName":"a_b_p0","selectors":{"pfNames":["ens1f0#0-3"]}}]}"#.to_owned(),
                ),
            ])),
            ..ConfigMap::default()
        };
        let nodes = [
            crate::fixtures::node("n1", &[], vec![]),
            crate::fixtures::node("n2", &[], vec![]),
        ];
        let alloc = previous_allocation(&nodes, [&cm]);
        assert!(!alloc.nodes.contains_key("n1"));
        assert!(alloc.get("n2", "a_b_p0").is_some());
    }
}
