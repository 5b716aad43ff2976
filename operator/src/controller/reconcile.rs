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
    /// Where the device-plugin config goes.
    pub settings: Settings,
    /// Label selector of the device-plugin pods to restart on nodes whose config changed;
    /// `None` leaves restarts to the operator of the cluster.
    pub device_plugin_selector: Option<String>,
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

/// The previous allocation, read back from the device-plugin ConfigMaps. A key that does
/// not parse is skipped: its node gets planned afresh.
pub fn previous_allocation<'c>(configmaps: impl IntoIterator<Item = &'c ConfigMap>) -> Allocation {
    let mut configs = BTreeMap::new();
    for configmap in configmaps {
        for (node, json) in configmap.data.iter().flatten() {
            match serde_json::from_str::<DevicePluginConfig>(json) {
                Ok(config) => {
                    configs.insert(node.as_str(), config);
                }
                Err(err) => {
                    tracing::warn!(node = %node, error = %err, "device-plugin config does not parse; planning the node afresh")
                }
            }
        }
    }
    Allocation::from_device_plugin_configs(configs.iter().map(|(n, c)| (*n, c)))
}

/// Reads every device-plugin ConfigMap shard, in shard order.
async fn read_configmaps(ctx: &Context) -> Result<Vec<Option<ConfigMap>>> {
    let settings = &ctx.settings;
    let shards = settings.device_plugin_shards.max(1);
    let mut current = Vec::new();
    for shard in 0..shards {
        let name =
            names::device_plugin_configmap_name(&settings.device_plugin_configmap, shards, shard);
        current.push(
            apply::get_configmap(&ctx.client, &settings.device_plugin_namespace, &name).await?,
        );
    }
    Ok(current)
}

/// The plan's inputs read from the stores.
struct Snapshot {
    networks: Vec<BondNetwork>,
    nodes: Vec<BondNodeState>,
    labels: BTreeMap<String, BTreeMap<String, String>>,
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
    let nodes = ctx.nodes.state().iter().map(|n| (**n).clone()).collect();
    let labels = ctx
        .node_meta
        .state()
        .iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect();
    Snapshot {
        networks: networks.into_values().collect(),
        nodes,
        labels,
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

/// Writes everything the plan wants for `network`: the device-plugin config first (so VFs are
/// pooled before a pod can ask for them), then NADs, orphan deletion and status.
pub async fn apply(network: &BondNetwork, ctx: &Context) -> Result<Action> {
    wait_for_stores(ctx).await?;
    let current = read_configmaps(ctx).await?;
    let planned = planned(ctx, &snapshot(ctx, Some(network), None), &current);
    let namespace = network.namespace().unwrap_or_default();
    let name = network.name_any();
    let Some(mine) = planned.network(&namespace, &name) else {
        return Ok(Action::requeue(RESYNC));
    };

    write_configmaps(ctx, &current, &planned.configmaps).await?;
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

/// Removes the network's device-plugin entries and NADs before its finalizer is released.
pub async fn cleanup(network: &BondNetwork, ctx: &Context) -> Result<Action> {
    wait_for_stores(ctx).await?;
    let current = read_configmaps(ctx).await?;
    let gone = key(network);
    let planned = planned(ctx, &snapshot(ctx, None, Some(&gone)), &current);
    write_configmaps(ctx, &current, &planned.configmaps).await?;
    let namespace = network.namespace().unwrap_or_default();
    apply::delete_orphan_nads(
        &ctx.client,
        &namespace,
        &network.name_any(),
        &BTreeSet::new(),
    )
    .await?;
    tracing::info!("device-plugin entries and NADs removed");
    Ok(Action::await_change())
}

/// The plan of `snapshot` with the allocation in `current`: the last plan when its inputs
/// are the same (see [`memo`]), else a new one, kept for the next reconcile.
fn planned(ctx: &Context, snapshot: &Snapshot, current: &[Option<ConfigMap>]) -> Arc<Planned> {
    let Snapshot {
        networks,
        nodes,
        labels,
    } = snapshot;
    let inputs = memo::inputs_fingerprint(networks, nodes, labels, &ctx.settings);
    let previous_fingerprint = memo::configmaps_fingerprint(current.iter().map(Option::as_ref));
    if let Some(planned) = inputs.and_then(|i| ctx.memo.reuse(i, previous_fingerprint)) {
        return planned;
    }
    ctx.metrics.plans.inc();
    let previous = previous_allocation(current.iter().flatten());
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
    ));
    if inputs.is_some() {
        ctx.memo.keep(planned.clone());
    }
    planned
}

/// Applies every changed ConfigMap shard, then restarts the device plugin on the nodes whose
/// config changed. Nothing is written when a shard would pass the object size limit.
async fn write_configmaps(
    ctx: &Context,
    current: &[Option<ConfigMap>],
    desired: &[ConfigMap],
) -> Result<()> {
    if let Some(big) = desired
        .iter()
        .find(|c| plan::configmap_data_bytes(c) > plan::MAX_CONFIGMAP_DATA_BYTES)
    {
        return Err(Error::ConfigMapTooLarge {
            name: big.name_any(),
            bytes: plan::configmap_data_bytes(big),
            shards: plan::shards_needed(desired),
        });
    }
    let mut changed = BTreeSet::new();
    for (index, want) in desired.iter().enumerate() {
        let have = current.get(index).and_then(Option::as_ref);
        changed.extend(apply::apply_configmap(&ctx.client, have, want).await?);
    }
    if changed.is_empty() {
        return Ok(());
    }
    let changed: Vec<String> = changed.into_iter().collect();
    tracing::info!(nodes = changed.len(), "device-plugin config changed");
    if let Some(selector) = &ctx.device_plugin_selector {
        apply::restart_device_plugin(
            &ctx.client,
            &ctx.settings.device_plugin_namespace,
            selector,
            &changed,
        )
        .await?;
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
        let alloc = previous_allocation([&cm]);
        assert!(!alloc.nodes.contains_key("n1"));
        assert!(alloc.get("n2", "a_b_p0").is_some());
    }
}
