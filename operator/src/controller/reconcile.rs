//! One reconcile of one BondNetwork: read the stores, call the plan, hand the result to
//! `apply`. kube-runtime's finalizer helper routes to [`apply`] or [`cleanup`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::finalizer::{finalizer, Error as FinalizerError, Event as FinalizerEvent};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use tracing::Instrument;

use crate::api::bond_network::BondNetwork;
use crate::api::bond_node_state::BondNodeState;
use crate::api::device_plugin::DevicePluginConfig;
use crate::api::keys;
use crate::controller::memo::{self, Memo, Planned};
use crate::controller::{apply, status};
use crate::error::{Error, KubeStep, Result};
use crate::plan::{self, names, Allocation, Inputs, Settings};
use crate::telemetry::Metrics;

/// How often a healthy network is re-planned even without a change.
pub const RESYNC: Duration = Duration::from_secs(300);

/// Everything a reconcile needs, shared by all reconciles.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Where the device-plugin ConfigMaps go.
    pub settings: Settings,
    /// Whether the device-plugin config is also exported as ConfigMaps.
    pub export_configmap: bool,
    /// Every BondNetwork.
    pub networks: Store<BondNetwork>,
    /// Every BondNodeState.
    pub nodes: Store<BondNodeState>,
    /// Node metadata, for labels.
    pub node_meta: Store<PartialObjectMeta<Node>>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per network, for the backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// The last plan, reused while its inputs are unchanged.
    pub memo: Memo,
    /// Per node: the resourceVersion the store showed and the digest of the pools we then
    /// applied, so a store that has not caught up yet does not cause the same write twice.
    pub written: Mutex<HashMap<String, (String, u64)>>,
}

fn key(network: &BondNetwork) -> String {
    format!(
        "{}/{}",
        network.namespace().unwrap_or_default(),
        network.name_any()
    )
}

/// Reconciles one BondNetwork.
pub async fn reconcile(network: Arc<BondNetwork>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let network_key = key(&network);
    let span = tracing::info_span!("reconcile", bond_network = %network_key);
    let api: Api<BondNetwork> =
        Api::namespaced(ctx.client.clone(), &network.namespace().unwrap_or_default());
    let result = finalizer(&api, keys::FINALIZER, network, |event| async {
        match event {
            FinalizerEvent::Apply(network) => apply(&network, &ctx).await,
            FinalizerEvent::Cleanup(network) => cleanup(&network, &ctx).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| match e {
        // Our own errors keep their category; only the helper's own failures are wrapped.
        FinalizerError::ApplyFailed(err) | FinalizerError::CleanupFailed(err) => err,
        other => Error::Finalizer(Box::new(other)),
    });
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        if let Ok(mut failures) = ctx.failures.lock() {
            failures.remove(&network_key);
        }
    }
    result
}

/// Logs and counts a failure, then retries with exponential backoff (5 s doubling to 5 min).
pub fn error_policy(network: Arc<BondNetwork>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.count_failure(err.category());
    let attempts = ctx
        .failures
        .lock()
        .map(|mut failures| {
            let n = failures.entry(key(&network)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let delay = backoff(attempts);
    tracing::warn!(bond_network = %key(&network), category = err.category(), error = %err, attempts, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// 5 s, 10 s, 20 s, ... capped at 5 minutes.
pub fn backoff(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(6);
    Duration::from_secs(5u64 << exponent).min(RESYNC)
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

/// Reads every device-plugin ConfigMap there is: `<name>`, then `<name>-0`, `<name>-1`, ...
/// up to the first that does not exist (the export's shards, or the layout before per-node
/// state).
async fn read_configmaps(ctx: &Context) -> Result<Vec<ConfigMap>> {
    let settings = &ctx.settings;
    let (namespace, base) = (
        &settings.device_plugin_namespace,
        &settings.device_plugin_configmap,
    );
    let mut found = Vec::new();
    if let Some(configmap) = apply::get_configmap(&ctx.client, namespace, base).await? {
        found.push(configmap);
    }
    for shard in 0..plan::MAX_SHARDS {
        let name = names::device_plugin_configmap_name(base, plan::MAX_SHARDS, shard);
        match apply::get_configmap(&ctx.client, namespace, &name).await? {
            Some(configmap) => found.push(configmap),
            None => break,
        }
    }
    Ok(found)
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

impl Snapshot {
    /// True while some node has no device-plugin spec yet: its VF ranges may still be in the
    /// ConfigMap layout before per-node state.
    fn needs_legacy(&self) -> bool {
        self.nodes.iter().any(|n| n.spec.device_plugin.is_none())
    }
}

/// The inputs from the stores, with `current` in its latest version and `excluded` left out.
fn snapshot(ctx: &Context, current: Option<&BondNetwork>, excluded: Option<&str>) -> Snapshot {
    let mut networks: BTreeMap<String, BondNetwork> = ctx
        .networks
        .state()
        .iter()
        .filter(|n| n.meta().deletion_timestamp.is_none())
        .map(|n| (key(n), (**n).clone()))
        .collect();
    if let Some(current) = current {
        networks.insert(key(current), current.clone());
    }
    if let Some(excluded) = excluded {
        networks.remove(excluded);
    }
    let mut labels = BTreeMap::new();
    let mut node_uids = BTreeMap::new();
    for node in ctx.node_meta.state() {
        let name = node.name_any();
        if let Some(uid) = node.uid() {
            node_uids.insert(name.clone(), uid);
        }
        labels.insert(name, node.labels().clone());
    }
    let mut nodes: Vec<BondNodeState> = ctx
        .nodes
        .state()
        .iter()
        .filter(|n| labels.contains_key(&n.name_any()))
        .map(|n| (**n).clone())
        .collect();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Snapshot {
        networks: networks.into_values().collect(),
        nodes,
        labels,
        node_uids,
    }
}

/// Waits until every store has its initial list: planning from a partial list would drop the
/// device-plugin entries of networks and nodes not seen yet.
async fn wait_for_stores(ctx: &Context) -> Result<()> {
    let closed = |kind: &'static str| move |_| Error::StoreClosed { kind };
    ctx.networks
        .wait_until_ready()
        .await
        .map_err(closed("BondNetwork"))?;
    ctx.nodes
        .wait_until_ready()
        .await
        .map_err(closed("BondNodeState"))?;
    ctx.node_meta
        .wait_until_ready()
        .await
        .map_err(closed("Node"))?;
    Ok(())
}

/// Plans from the stores and writes the device-plugin side: each changed node's
/// BondNodeState spec, and the ConfigMap export when it is on.
async fn plan_and_write_pools(ctx: &Context, snapshot: &Snapshot) -> Result<Arc<Planned>> {
    let existing = if ctx.export_configmap || snapshot.needs_legacy() {
        read_configmaps(ctx).await?
    } else {
        Vec::new()
    };
    let legacy: &[ConfigMap] = if snapshot.needs_legacy() {
        &existing
    } else {
        &[]
    };
    let planned = planned(ctx, snapshot, legacy);
    write_node_states(ctx, snapshot, &planned).await?;
    if ctx.export_configmap {
        export_configmaps(ctx, &existing, &planned.configmaps).await?;
    }
    Ok(planned)
}

/// Writes everything the plan wants for `network`: the node states first (so VFs are pooled
/// before a pod can ask for them), then NADs, orphan deletion and status.
pub async fn apply(network: &BondNetwork, ctx: &Context) -> Result<Action> {
    wait_for_stores(ctx).await?;
    let planned = plan_and_write_pools(ctx, &snapshot(ctx, Some(network), None)).await?;
    let namespace = network.namespace().unwrap_or_default();
    let name = network.name_any();
    let Some(mine) = planned.network(&namespace, &name) else {
        return Ok(Action::requeue(RESYNC));
    };

    if mine.invalid.is_none() {
        apply::apply_nads(&ctx.client, &namespace, &mine.nads).await?;
        let keep: BTreeSet<String> = mine.nads.iter().map(|n| n.name_any()).collect();
        let deleted = apply::delete_orphan_nads(&ctx.client, &namespace, &name, &keep).await?;
        if !deleted.is_empty() {
            tracing::info!(?deleted, "deleted NADs the network no longer needs");
        }
    }

    let old = network.status.as_ref();
    let now = Time(jiff::Timestamp::now());
    let new_status = status::with_transition_times(mine.status.clone(), old, &now);
    if old != Some(&new_status) {
        apply::apply_status(&ctx.client, network, &new_status).await?;
    }
    if let Some(event) = status::readiness_event(&new_status, old) {
        ctx.recorder
            .publish(&event, &network.object_ref(&()))
            .await
            .map_err(Error::kube(
                KubeStep::Event,
                format!("BondNetwork {namespace}/{name}"),
            ))?;
    }
    Ok(match mine.invalid {
        // An invalid spec waits for a change; its status says why.
        Some(_) => Action::await_change(),
        None => Action::requeue(RESYNC),
    })
}

/// Removes the network's device-plugin pools and NADs before its finalizer is released.
pub async fn cleanup(network: &BondNetwork, ctx: &Context) -> Result<Action> {
    wait_for_stores(ctx).await?;
    let gone = key(network);
    plan_and_write_pools(ctx, &snapshot(ctx, None, Some(&gone))).await?;
    let namespace = network.namespace().unwrap_or_default();
    apply::delete_orphan_nads(
        &ctx.client,
        &namespace,
        &network.name_any(),
        &BTreeSet::new(),
    )
    .await?;
    tracing::info!("device-plugin pools and NADs removed");
    Ok(Action::await_change())
}

/// The plan of `snapshot` with the previous allocation from the node states (and `legacy`):
/// the last plan when its inputs are the same (see [`memo`]), else a new one, kept for the
/// next reconcile.
fn planned(ctx: &Context, snapshot: &Snapshot, legacy: &[ConfigMap]) -> Arc<Planned> {
    let Snapshot {
        networks,
        nodes,
        labels,
        ..
    } = snapshot;
    let inputs = memo::inputs_fingerprint(networks, nodes, labels, &ctx.settings);
    let previous_fingerprint = memo::previous_fingerprint(nodes, legacy);
    if let Some(planned) = inputs.and_then(|i| ctx.memo.reuse(i, previous_fingerprint)) {
        return planned;
    }
    ctx.metrics.plans.inc();
    let previous = previous_allocation(nodes, legacy);
    let plan = plan::plan(&Inputs {
        networks,
        nodes,
        node_labels: labels,
        previous: &previous,
        settings: &ctx.settings,
    });
    let planned = Arc::new(Planned::new(
        &plan,
        inputs.unwrap_or_default(),
        previous_fingerprint,
        ctx.export_configmap,
    ));
    if inputs.is_some() {
        ctx.memo.keep(planned.clone());
    }
    planned
}

/// Applies the spec (and the owner reference to its Node) of every BondNodeState whose
/// device-plugin pools differ from the plan's. A node the store still shows as it was before
/// our last write of the same pools is skipped: the store has not caught up yet.
async fn write_node_states(ctx: &Context, snapshot: &Snapshot, planned: &Planned) -> Result<()> {
    let mut changed = 0usize;
    for state in &snapshot.nodes {
        let name = state.name_any();
        let (Some(want), Some(uid)) = (
            planned.device_plugin.get(&name),
            snapshot.node_uids.get(&name),
        ) else {
            continue;
        };
        let owned = state
            .owner_references()
            .iter()
            .any(|o| o.kind == "Node" && &o.uid == uid);
        if owned && state.spec.device_plugin.as_ref() == Some(want) {
            continue;
        }
        let version = state.resource_version().unwrap_or_default();
        let digest = memo::config_digest(want, uid);
        if ctx.written.lock().ok().and_then(|w| w.get(&name).cloned())
            == Some((version.clone(), digest))
        {
            continue;
        }
        apply::apply_node_state(&ctx.client, &name, uid, want).await?;
        if let Ok(mut written) = ctx.written.lock() {
            written.insert(name, (version, digest));
        }
        changed += 1;
    }
    if changed > 0 {
        tracing::info!(nodes = changed, "device-plugin pools changed");
    }
    Ok(())
}

/// Applies every changed shard of the ConfigMap export and empties shards no longer used.
/// Nothing is written when a shard would pass the object size limit.
async fn export_configmaps(
    ctx: &Context,
    existing: &[ConfigMap],
    desired: &[ConfigMap],
) -> Result<()> {
    if let Some(big) = desired
        .iter()
        .find(|c| plan::configmap_data_bytes(c) > plan::MAX_CONFIGMAP_DATA_BYTES)
    {
        return Err(Error::ConfigMapTooLarge {
            name: big.name_any(),
            bytes: plan::configmap_data_bytes(big),
            shards: u32::try_from(desired.len()).unwrap_or(u32::MAX),
        });
    }
    let current = |name: &str| existing.iter().find(|c| c.name_any() == name);
    for want in desired {
        apply::apply_configmap(&ctx.client, current(&want.name_any()), want).await?;
    }
    for stale in existing {
        let name = stale.name_any();
        if desired.iter().any(|d| d.name_any() == name)
            || stale.data.as_ref().is_none_or(BTreeMap::is_empty)
        {
            continue;
        }
        let mut empty = stale.clone();
        empty.metadata = kube::api::ObjectMeta {
            name: Some(name),
            namespace: stale.metadata.namespace.clone(),
            labels: desired.first().and_then(|d| d.metadata.labels.clone()),
            ..kube::api::ObjectMeta::default()
        };
        empty.data = Some(BTreeMap::new());
        apply::apply_configmap(&ctx.client, Some(stale), &empty).await?;
    }
    Ok(())
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
