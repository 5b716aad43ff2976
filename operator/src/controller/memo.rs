//! The last plan, kept for reuse: the planner is woken by the echoes of its own writes (a
//! status, a NAD, a node state read back) as much as by real changes, and a cycle whose
//! inputs did not change needs no new plan. The plan is a pure function of its inputs, so a
//! cycle whose inputs hash like the last plan's reuses that plan's output and only diffs.
//!
//! The inputs are the networks (uid, generation, spec), the node inventories (PFs, labels)
//! and the previous allocation, read from the BondNodeStates' specs (and, on upgrade, the
//! ConfigMap layout before them). After a cycle writes the node states, the next one reads
//! back what that plan rendered; planning again from its own output gives the same plan (the
//! property test `the_same_input_gives_the_same_bytes_and_replanning_changes_nothing`), so
//! that counts as a match too.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;

use crate::api::bond_network::{BondNetwork, BondNetworkStatus, SpecError};
use crate::api::bond_node_state::BondNodeState;
use crate::api::device_plugin::DevicePluginConfig;
use crate::api::nad::NetworkAttachmentDefinition;
use crate::plan::{self, names, NodeOutcome, Plan, Settings};

/// What the diff needs from the plan of one network, owned so it outlives the inputs.
#[derive(Clone, Debug)]
pub struct PlannedNetwork {
    /// Why the spec is invalid, if it is.
    pub invalid: Option<SpecError>,
    /// The NADs the network wants.
    pub nads: Vec<NetworkAttachmentDefinition>,
    /// The status the plan computed.
    pub status: BondNetworkStatus,
    /// The nodes that host it: its NADs wait until their pools are written.
    pub hosts: Vec<String>,
}

/// The output of one plan, with the fingerprints it was planned from.
#[derive(Debug)]
pub struct Planned {
    inputs: u64,
    previous: u64,
    rendered: u64,
    /// Per network, keyed `namespace/name`.
    pub networks: HashMap<String, PlannedNetwork>,
    /// Each node's device-plugin config, for its BondNodeState's spec (shared with the writes
    /// that carry it, not copied: with many networks on every node these are most of the
    /// plan).
    pub device_plugin: BTreeMap<String, Arc<DevicePluginConfig>>,
    /// The device-plugin ConfigMap export, one per shard in shard order (empty unless asked
    /// for).
    pub configmaps: Vec<ConfigMap>,
}

impl Planned {
    /// Keeps the parts of `plan` the diff uses, moved out of it. `inputs` and `previous` are
    /// the fingerprints of what it was planned from; `export` renders the ConfigMap export too.
    pub fn new(plan: Plan<'_>, inputs: u64, previous: u64, export: bool) -> Self {
        let configmaps = if export {
            plan::device_plugin_configmaps(&plan)
        } else {
            Vec::new()
        };
        let rendered = allocation_fingerprint(
            plan.device_plugin
                .iter()
                .map(|(node, config)| (*node, Some(config))),
            &[],
        );
        let device_plugin = plan
            .device_plugin
            .into_iter()
            .map(|(node, config)| (node.to_owned(), Arc::new(config)))
            .collect();
        let networks = plan
            .networks
            .into_iter()
            .map(|n| {
                (
                    n.key(),
                    PlannedNetwork {
                        hosts: n
                            .nodes
                            .iter()
                            .filter(|(_, outcome)| matches!(outcome, NodeOutcome::Hosted(_)))
                            .map(|(node, _)| (*node).to_owned())
                            .collect(),
                        invalid: n.invalid,
                        nads: n.nads,
                        status: n.status,
                    },
                )
            })
            .collect();
        Self {
            inputs,
            previous,
            rendered,
            networks,
            device_plugin,
            configmaps,
        }
    }

    /// The plan of `namespace/name`, if it has one.
    pub fn network(&self, namespace: &str, name: &str) -> Option<&PlannedNetwork> {
        self.networks.get(&names::network_key(namespace, name))
    }
}

/// The last plan, kept by the planner from one cycle to the next.
#[derive(Debug, Default)]
pub struct Memo {
    last: Mutex<Option<Arc<Planned>>>,
}

impl Memo {
    /// The last plan, when it was planned from `inputs` and the node states then held either
    /// the same `previous` allocation or what that plan rendered.
    pub fn reuse(&self, inputs: u64, previous: u64) -> Option<Arc<Planned>> {
        let last = self.last.lock().ok()?;
        last.as_ref()
            .filter(|p| p.inputs == inputs && (p.previous == previous || p.rendered == previous))
            .cloned()
    }

    /// Drops the last plan (before planning anew, so that two are never held at once).
    pub fn forget(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
    }

    /// Keeps `planned` as the last plan.
    pub fn keep(&self, planned: Arc<Planned>) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(planned);
        }
    }
}

/// Feeds serialized JSON straight into a hasher, without building the string.
struct HashWriter<'h>(&'h mut DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hash_json(hasher: &mut DefaultHasher, value: &impl serde::Serialize) -> Option<()> {
    serde_json::to_writer(HashWriter(hasher), value).ok()
}

/// Hashes each item on its own and combines the sorted hashes, so store order does not
/// matter.
fn unordered<T>(items: &[T], each: impl Fn(&mut DefaultHasher, &T) -> Option<()>) -> Option<u64> {
    let mut hashes = Vec::with_capacity(items.len());
    for item in items {
        let mut hasher = DefaultHasher::new();
        each(&mut hasher, item)?;
        hashes.push(hasher.finish());
    }
    hashes.sort_unstable();
    let mut hasher = DefaultHasher::new();
    hashes.hash(&mut hasher);
    Some(hasher.finish())
}

/// Fingerprint of everything the plan reads except the previous allocation; `None` when a
/// spec does not serialize (the caller then plans afresh).
pub fn inputs_fingerprint(
    networks: &[BondNetwork],
    nodes: &[BondNodeState],
    labels: &BTreeMap<String, BTreeMap<String, String>>,
    settings: &Settings,
) -> Option<u64> {
    let networks = unordered(networks, |h, n| {
        n.metadata.namespace.hash(h);
        n.metadata.name.hash(h);
        n.metadata.uid.hash(h);
        n.metadata.generation.hash(h);
        hash_json(h, &n.spec)
    })?;
    let nodes = unordered(nodes, |h, n| {
        n.metadata.name.hash(h);
        n.metadata.labels.hash(h);
        n.status.as_ref().map(|s| &s.pfs).map_or(Some(()), |pfs| {
            true.hash(h);
            hash_json(h, pfs)
        })
    })?;
    let mut hasher = DefaultHasher::new();
    networks.hash(&mut hasher);
    nodes.hash(&mut hasher);
    labels.hash(&mut hasher);
    settings.device_plugin_namespace.hash(&mut hasher);
    settings.device_plugin_configmap.hash(&mut hasher);
    Some(hasher.finish())
}

/// Fingerprint of the previous allocation as the plan reads it: each node's device-plugin
/// spec (in name order, as the store gives them in any order) and the legacy ConfigMaps.
pub fn previous_fingerprint(nodes: &[BondNodeState], legacy: &[ConfigMap]) -> u64 {
    let mut specs: Vec<(&str, Option<&DevicePluginConfig>)> = nodes
        .iter()
        .map(|n| {
            (
                n.metadata.name.as_deref().unwrap_or_default(),
                n.spec.device_plugin.as_ref(),
            )
        })
        .collect();
    specs.sort_by_key(|(name, _)| *name);
    allocation_fingerprint(specs, legacy)
}

/// Fingerprint of per-node device-plugin configs in name order, then of `legacy`.
fn allocation_fingerprint<'c>(
    specs: impl IntoIterator<Item = (&'c str, Option<&'c DevicePluginConfig>)>,
    legacy: &[ConfigMap],
) -> u64 {
    let mut hasher = DefaultHasher::new();
    for (name, config) in specs {
        name.hash(&mut hasher);
        if hash_json(&mut hasher, &config).is_none() {
            // Unserializable: never matches, so the caller plans afresh.
            return 0;
        }
    }
    configmaps_fingerprint(legacy.iter().map(Some)).hash(&mut hasher);
    hasher.finish()
}

/// Digest of one node's pools and owner, to recognise a write already made.
pub fn config_digest(config: &DevicePluginConfig, owner_uid: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    owner_uid.hash(&mut hasher);
    let _ = hash_json(&mut hasher, config);
    hasher.finish()
}

/// Fingerprint of the device-plugin ConfigMap shards' data, in shard order; a missing shard
/// and an empty one differ.
pub fn configmaps_fingerprint<'c>(shards: impl IntoIterator<Item = Option<&'c ConfigMap>>) -> u64 {
    let empty = BTreeMap::new();
    let mut hasher = DefaultHasher::new();
    for shard in shards {
        shard.is_some().hash(&mut hasher);
        if let Some(configmap) = shard {
            configmap.data.as_ref().unwrap_or(&empty).hash(&mut hasher);
        }
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{network, node_with_cards};

    fn fingerprint(networks: &[BondNetwork], nodes: &[BondNodeState]) -> Option<u64> {
        inputs_fingerprint(networks, nodes, &BTreeMap::new(), &Settings::default())
    }

    #[test]
    fn the_inputs_fingerprint_ignores_order_and_status_but_not_the_spec() {
        let a = network("telco", "a", |_| {});
        let b = network("telco", "b", |_| {});
        let nodes = [
            node_with_cards("n1", &[], 2, 8),
            node_with_cards("n2", &[], 2, 8),
        ];
        let base = fingerprint(&[a.clone(), b.clone()], &nodes);
        assert!(base.is_some());
        let reversed = [nodes[1].clone(), nodes[0].clone()];
        assert_eq!(fingerprint(&[b.clone(), a.clone()], &reversed), base);

        let mut with_status = a.clone();
        with_status.status = Some(BondNetworkStatus::default());
        with_status.metadata.resource_version = Some("7".into());
        assert_eq!(fingerprint(&[with_status, b.clone()], &nodes), base);

        let mut changed = a.clone();
        changed.spec.vfs_per_pf += 1;
        assert_ne!(fingerprint(&[changed, b.clone()], &nodes), base);
        let mut newer = a;
        newer.metadata.generation = Some(2);
        assert_ne!(fingerprint(&[newer, b], &nodes), base);
    }

    #[test]
    fn a_missing_configmap_shard_differs_from_an_empty_one() {
        let empty = ConfigMap::default();
        assert_ne!(
            configmaps_fingerprint([None]),
            configmaps_fingerprint([Some(&empty)])
        );
    }
}
