//! The pure core: BondNetworks + BondNodeStates (+ node labels) + the previous allocation in,
//! every object the controller writes out. No client, clock, environment, randomness or
//! filesystem here, and every map is ordered, so the same input gives the same output.
//!
//! ```text
//!   BondNetwork ──► NetworkIntent ─┐
//!                                  ├─► per node: keep valid slots, then choose PFs ─► Allocation
//!   BondNodeState ─► NodeInventory ┘                                                  │
//!                                     NADs, device-plugin config, status  ◄───────────┘
//! ```

pub mod inventory;
pub mod names;
pub mod pairing;
pub mod reasons;
pub mod render;
pub mod vf_ranges;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::bond_network::{
    BondMode, BondNetwork, BondNetworkCondition, BondNetworkSpec, BondNetworkStatus,
    IneligibleNode, SlotStatus, SpecError,
};
use crate::api::bond_node_state::{BondNodeState, PfStatus};
use crate::api::device_plugin::{DevicePluginConfig, PfName, ResourceConfig, Selectors};
use crate::api::keys;
use crate::api::nad::NetworkAttachmentDefinition;

pub use inventory::{NetworkIntent, NodeInventory};
pub use pairing::SlotAssignment;
pub use reasons::{NodeReason, ReasonCode};
pub use render::SlotNames;
pub use vf_ranges::{Allocation, PfRange};

/// How many ineligible nodes a status lists by name.
pub const MAX_LISTED_INELIGIBLE: usize = 50;

/// Where the device-plugin ConfigMap export goes (each node's own config lives in its
/// BondNodeState's spec).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Namespace of the device-plugin ConfigMaps.
    pub device_plugin_namespace: String,
    /// Name of the device-plugin ConfigMap (the base name when it takes several shards).
    pub device_plugin_configmap: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            device_plugin_namespace: keys::DEVICE_PLUGIN_NAMESPACE.to_owned(),
            device_plugin_configmap: keys::DEVICE_PLUGIN_CONFIGMAP.to_owned(),
        }
    }
}

/// Everything the plan reads. The plan borrows networks and nodes (`'a`) in its output;
/// the rest (`'b`) only while planning.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a, 'b> {
    /// Every BondNetwork, in any order.
    pub networks: &'a [BondNetwork],
    /// Every BondNodeState, in any order.
    pub nodes: &'a [BondNodeState],
    /// Labels of each Node by name; a node missing here uses its BondNodeState's labels.
    pub node_labels: &'b BTreeMap<String, BTreeMap<String, String>>,
    /// What the previous plan allocated (read back from the device-plugin ConfigMap).
    pub previous: &'b Allocation,
    /// Names of the objects the plan writes.
    pub settings: &'b Settings,
}

/// What one network gets on one selected node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeOutcome<'a> {
    /// The node hosts the bond: slot i is served by `slots[i]`.
    Hosted(Vec<SlotAssignment<'a>>),
    /// The node cannot host the bond.
    Ineligible(NodeReason),
}

/// The plan for one BondNetwork.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkPlan<'a> {
    /// Namespace of the network.
    pub namespace: &'a str,
    /// Name of the network.
    pub name: &'a str,
    /// The spec error, when the network cannot be planned at all.
    pub invalid: Option<SpecError>,
    /// Port names, resources and NADs of each slot (empty when invalid).
    pub slots: Vec<SlotNames>,
    /// SR-IOV NADs in slot order, then the bond NAD (empty when invalid).
    pub nads: Vec<NetworkAttachmentDefinition>,
    /// Selected nodes and what the network gets on each: every node that hosts it, and the
    /// first [`MAX_LISTED_INELIGIBLE`] by name that cannot (`status` counts them all).
    pub nodes: BTreeMap<&'a str, NodeOutcome<'a>>,
    /// The status the controller writes (without condition times).
    pub status: BondNetworkStatus,
}

impl NetworkPlan<'_> {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        names::network_key(self.namespace, self.name)
    }
}

/// Everything the controller writes. Borrows PFs and names from the inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan<'a> {
    /// One entry per BondNetwork, sorted by namespace and name.
    pub networks: Vec<NetworkPlan<'a>>,
    /// Device-plugin config per node, for every node with a BondNodeState.
    pub device_plugin: BTreeMap<&'a str, DevicePluginConfig>,
    /// Where the device-plugin config goes.
    pub settings: Settings,
}

impl Plan<'_> {
    /// The VF ranges this plan holds: the next plan's `previous`.
    pub fn allocation(&self) -> Allocation {
        Allocation::from_device_plugin_configs(
            self.device_plugin
                .iter()
                .map(|(node, config)| (*node, config)),
        )
    }
}

/// Plans every network on every node.
pub fn plan<'a>(inputs: &Inputs<'a, '_>) -> Plan<'a> {
    let mut intents: Vec<NetworkIntent<'a>> = inputs
        .networks
        .iter()
        .map(NetworkIntent::from_resource)
        .collect();
    intents.sort_by(|a, b| (a.namespace, a.name).cmp(&(b.namespace, b.name)));
    // Two objects with one key: keep the first after sorting; the input is malformed anyway.
    intents.dedup_by(|b, a| a.namespace == b.namespace && a.name == b.name);

    let mut nodes: Vec<NodeInventory<'a, '_>> = inputs
        .nodes
        .iter()
        .map(|state| {
            let labels = state
                .metadata
                .name
                .as_ref()
                .and_then(|name| inputs.node_labels.get(name));
            NodeInventory::from_resource(state, labels)
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(b.name));
    nodes.dedup_by(|b, a| a.name == b.name);

    let slots: Vec<Vec<SlotNames>> = intents
        .iter()
        .map(|n| match &n.spec {
            Ok(spec) => render::slot_names(n.namespace, n.name, spec),
            Err(_) => Vec::new(),
        })
        .collect();

    // Networks often share a nodeSelector: evaluate each distinct one once per node.
    let mut selectors: Vec<&BTreeMap<String, String>> = Vec::new();
    let selector_of: Vec<Option<usize>> = intents
        .iter()
        .map(|n| {
            let spec = n.spec.as_ref().ok()?;
            Some(
                match selectors.iter().position(|s| **s == spec.node_selector) {
                    Some(i) => i,
                    None => {
                        selectors.push(&spec.node_selector);
                        selectors.len() - 1
                    }
                },
            )
        })
        .collect();

    let mut outcomes: Vec<BTreeMap<&'a str, NodeOutcome<'a>>> =
        vec![BTreeMap::new(); intents.len()];
    let mut ineligible: Vec<u32> = vec![0; intents.len()];
    let mut device_plugin = BTreeMap::new();
    for node in &nodes {
        let matched: Vec<bool> = selectors
            .iter()
            .map(|s| inventory::selects(s, node.labels))
            .collect();
        let selected = |index: usize| selector_of[index].is_some_and(|s| matched[s]);
        let hosted = plan_node(
            node,
            &intents,
            &slots,
            &selected,
            inputs.previous,
            &mut outcomes,
            &mut ineligible,
        );
        let mut config = DevicePluginConfig::default();
        for (index, assignments) in hosted {
            let Ok(spec) = &intents[index].spec else {
                continue;
            };
            for (assignment, names) in assignments.iter().zip(&slots[index]) {
                config
                    .resource_list
                    .push(resource_config(spec, names, assignment));
            }
        }
        config
            .resource_list
            .sort_by(|a, b| a.resource_name.cmp(&b.resource_name));
        device_plugin.insert(node.name, config);
    }

    let networks = intents
        .iter()
        .zip(slots)
        .zip(outcomes)
        .zip(ineligible)
        .map(|(((intent, slots), nodes), ineligible)| {
            network_plan(intent, slots, nodes, ineligible)
        })
        .collect();
    Plan {
        networks,
        device_plugin,
        settings: inputs.settings.clone(),
    }
}

/// Plans one node for every network that selects it: first keeps every still-valid previous
/// allocation, then places the rest in network order. Returns (network index, slots) pairs.
/// A network's reasons are rendered only for the first [`MAX_LISTED_INELIGIBLE`] nodes that
/// cannot host it; the rest are counted in `ineligible`.
fn plan_node<'a>(
    node: &NodeInventory<'a, '_>,
    intents: &[NetworkIntent<'a>],
    slots: &[Vec<SlotNames>],
    selected: &dyn Fn(usize) -> bool,
    previous: &Allocation,
    outcomes: &mut [BTreeMap<&'a str, NodeOutcome<'a>>],
    ineligible: &mut [u32],
) -> Vec<(usize, Vec<SlotAssignment<'a>>)> {
    let mut used = vf_ranges::UsedVfs::default();
    let mut hosted = Vec::new();
    let mut pending = Vec::new();
    let mut candidates: Vec<&'a PfStatus> = Vec::with_capacity(node.pfs.len());
    let held_on_node = previous.nodes.get(node.name);
    let mut refuse = |index: usize, reason: &dyn Fn() -> NodeReason| {
        if (ineligible[index] as usize) < MAX_LISTED_INELIGIBLE {
            outcomes[index].insert(node.name, NodeOutcome::Ineligible(reason()));
        }
        ineligible[index] = ineligible[index].saturating_add(1);
    };
    for (index, intent) in intents.iter().enumerate() {
        let Ok(spec) = intent.spec else { continue };
        if !selected(index) {
            continue;
        }
        matching_pfs(spec, node, &mut candidates);
        if candidates.len() < spec.links as usize {
            refuse(index, &|| too_few(spec, node));
            continue;
        }
        match pairing::keep_previous(spec, held_on_node, &slots[index], &candidates, &used) {
            Some(kept) => {
                for a in &kept {
                    used.take(&a.pf.name, a.range);
                }
                hosted.push((index, kept));
            }
            None => pending.push((index, spec)),
        }
    }
    let mut unplaced = Vec::new();
    for (index, spec) in pending {
        matching_pfs(spec, node, &mut candidates);
        match pairing::choose(spec, &candidates, &used) {
            Some(chosen) => {
                for a in &chosen {
                    used.take(&a.pf.name, a.range);
                }
                hosted.push((index, chosen));
            }
            None => unplaced.push((index, spec)),
        }
    }
    // Reasons use the final free counts, so re-planning the same input gives the same text.
    for (index, spec) in unplaced {
        refuse(index, &|| {
            let mut candidates = Vec::new();
            matching_pfs(spec, node, &mut candidates);
            pairing::shortfall(spec, &candidates, &used)
        });
    }
    hosted.sort_by_key(|(index, _)| *index);
    for (index, assignments) in &hosted {
        outcomes[*index].insert(node.name, NodeOutcome::Hosted(assignments.clone()));
    }
    hosted
}

/// Fills `out` with the node's PFs that can serve `spec`, in PCI order.
fn matching_pfs<'a>(
    spec: &BondNetworkSpec,
    node: &NodeInventory<'a, '_>,
    out: &mut Vec<&'a PfStatus>,
) {
    out.clear();
    out.extend(
        node.pfs
            .iter()
            .copied()
            .filter(|pf| pairing::pf_rejection(spec, pf).is_none()),
    );
}

/// The reason a node has fewer matching PFs than ports, naming what rejected the others.
fn too_few(spec: &BondNetworkSpec, node: &NodeInventory<'_, '_>) -> NodeReason {
    if node.pfs.is_empty() {
        return NodeReason::new(
            ReasonCode::NoPfs,
            "the node's BondNodeState lists no SR-IOV PF",
        );
    }
    let mut matched = Vec::new();
    let mut rejected = Vec::new();
    for pf in &node.pfs {
        match pairing::pf_rejection(spec, pf) {
            None => matched.push(pf.name.as_str()),
            Some(why) => rejected.push(format!("{}: {why}", pf.name)),
        }
    }
    let code = if matched.is_empty() {
        ReasonCode::NoMatchingPf
    } else {
        ReasonCode::TooFewPfs
    };
    let matched = match matched.len() {
        0 => "none match".to_owned(),
        1 => format!("only {} matches", matched[0]),
        _ => format!("only {} match", matched.join(", ")),
    };
    NodeReason::new(
        code,
        format!(
            "needs {} PFs, {matched}; {}",
            spec.links,
            rejected.join("; ")
        ),
    )
}

/// The device-plugin resource of one slot on one node: exactly one PF and its VF range.
fn resource_config(
    spec: &BondNetworkSpec,
    names: &SlotNames,
    assignment: &SlotAssignment<'_>,
) -> ResourceConfig {
    ResourceConfig {
        resource_name: names.resource.clone(),
        resource_prefix: Some(spec.resource_prefix.clone()),
        selectors: Selectors {
            drivers: assignment.pf.vf_driver.iter().cloned().collect(),
            pf_names: vec![PfName {
                pf: assignment.pf.name.clone(),
                range: Some(assignment.range),
            }],
            ..Selectors::default()
        },
    }
}

/// Renders the objects and status of one network.
fn network_plan<'a>(
    intent: &NetworkIntent<'a>,
    slots: Vec<SlotNames>,
    nodes: BTreeMap<&'a str, NodeOutcome<'a>>,
    ineligible_count: u32,
) -> NetworkPlan<'a> {
    let mut status = BondNetworkStatus {
        observed_generation: intent.generation,
        ..BondNetworkStatus::default()
    };
    let spec = match &intent.spec {
        Ok(spec) => *spec,
        Err(err) => {
            status.conditions = vec![condition(
                intent,
                "Ready",
                "False",
                "InvalidSpec",
                err.to_string(),
            )];
            return NetworkPlan {
                namespace: intent.namespace,
                name: intent.name,
                invalid: Some(err.clone()),
                slots: Vec::new(),
                nads: Vec::new(),
                nodes,
                status,
            };
        }
    };
    let owner = render::Owner {
        namespace: intent.namespace,
        name: intent.name,
        uid: intent.uid,
    };
    let mut nads: Vec<NetworkAttachmentDefinition> = slots
        .iter()
        .map(|s| render::slot_nad(&owner, spec, s))
        .collect();
    nads.push(render::bond_nad(&owner, spec, &slots));

    let eligible = nodes
        .values()
        .filter(|o| matches!(o, NodeOutcome::Hosted(_)))
        .count();
    let ineligible: Vec<IneligibleNode> = nodes
        .iter()
        .filter_map(|(node, outcome)| match outcome {
            NodeOutcome::Ineligible(reason) => Some(IneligibleNode {
                node: (*node).to_owned(),
                reason: reason.code.as_str().to_owned(),
                message: reason.message.clone(),
            }),
            NodeOutcome::Hosted(_) => None,
        })
        .collect();
    status.eligible_nodes = count_u32(eligible);
    status.ineligible_node_count = ineligible_count;
    status.conditions = conditions(
        intent,
        spec,
        eligible,
        ineligible_count as usize,
        &ineligible,
    );
    status.ineligible_nodes = ineligible;
    status.slots = slots
        .iter()
        .map(|s| SlotStatus {
            index: s.slot,
            interface: s.ifname.clone(),
            resource_name: s.qualified_resource.clone(),
            nad_name: s.nad.clone(),
        })
        .collect();
    status.bond_nad = Some(names::bond_nad_name(intent.name));
    status.pod_annotation = Some(render::pod_annotation(
        intent.namespace,
        intent.name,
        spec,
        &slots,
    ));
    status.pod_resources = slots
        .iter()
        .map(|s| (s.qualified_resource.clone(), "1".to_owned()))
        .collect();
    NetworkPlan {
        namespace: intent.namespace,
        name: intent.name,
        invalid: None,
        slots,
        nads,
        nodes,
        status,
    }
}

fn conditions(
    intent: &NetworkIntent<'_>,
    spec: &BondNetworkSpec,
    eligible: usize,
    ineligible_count: usize,
    listed: &[IneligibleNode],
) -> Vec<BondNetworkCondition> {
    let selected = eligible + ineligible_count;
    let lacp_note = if spec.mode == BondMode::Ieee8023ad && spec.vfs_per_pf > 1 {
        "; note: 802.3ad over VFs works for only one pod per PF, so vfsPerPf above 1 adds no capacity"
    } else {
        ""
    };
    let ready = if selected == 0 {
        condition(
            intent,
            "Ready",
            "False",
            "NoNodeSelected",
            "no node with a BondNodeState matches nodeSelector".to_owned(),
        )
    } else if eligible == 0 {
        let first = listed
            .first()
            .map(|f| format!("; {}: {}", f.node, f.message))
            .unwrap_or_default();
        condition(
            intent,
            "Ready",
            "False",
            "NoEligibleNode",
            format!("none of the {selected} selected nodes can host the bond{first}"),
        )
    } else {
        condition(
            intent,
            "Ready",
            "True",
            "Planned",
            format!("{eligible} of {selected} selected nodes can host the bond{lacp_note}"),
        )
    };
    let degraded = if ineligible_count == 0 {
        condition(
            intent,
            "Degraded",
            "False",
            "AllNodesEligible",
            format!("all {selected} selected nodes can host the bond"),
        )
    } else {
        condition(
            intent,
            "Degraded",
            "True",
            "SomeNodesIneligible",
            format!(
                "{ineligible_count} of {selected} selected nodes cannot host the bond; see status.ineligibleNodes"
            ),
        )
    };
    vec![ready, degraded]
}

fn condition(
    intent: &NetworkIntent<'_>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> BondNetworkCondition {
    BondNetworkCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: None,
        observed_generation: intent.generation,
    }
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Largest `data` a device-plugin ConfigMap may carry: Kubernetes refuses objects over
/// 1 MiB, and metadata needs some room.
pub const MAX_CONFIGMAP_DATA_BYTES: usize = 1_000_000;

/// What a shard is filled to before another is added: room for a quarter more.
pub const SHARD_TARGET_BYTES: usize = MAX_CONFIGMAP_DATA_BYTES * 3 / 4;

/// Most shards the export is spread over (about 750 MB of config).
pub const MAX_SHARDS: u32 = 1024;

/// The device-plugin ConfigMap export, sharded by size: one ConfigMap named after the
/// settings while everything fits [`SHARD_TARGET_BYTES`], else `<name>-0` .. `<name>-<n-1>`
/// with `n` a power of two, each node's key in shard `hash(node) % n` (so doubling moves
/// about half the keys, and a node's shard depends on nothing else). One key per node,
/// named after it, holding that node's JSON.
pub fn device_plugin_configmaps(plan: &Plan<'_>) -> Vec<ConfigMap> {
    let entries: Vec<(&str, String)> = plan
        .device_plugin
        .iter()
        .map(|(node, config)| (*node, serde_json::to_string(config).unwrap_or_default()))
        .collect();
    let total: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut shards = 1u32;
    while usize::try_from(shards).unwrap_or(usize::MAX) * SHARD_TARGET_BYTES < total
        && shards < MAX_SHARDS
    {
        shards *= 2;
    }
    loop {
        let mut data: Vec<BTreeMap<String, String>> = vec![BTreeMap::new(); shards as usize];
        for (node, json) in &entries {
            let shard = names::device_plugin_shard(node, shards) as usize;
            if let Some(keys) = data.get_mut(shard) {
                keys.insert((*node).to_owned(), json.clone());
            }
        }
        let fits = data.iter().all(|d| {
            d.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() <= MAX_CONFIGMAP_DATA_BYTES
        });
        // Hashing can overfill one shard: double until every shard fits.
        if fits || shards >= MAX_SHARDS {
            return (0u32..)
                .zip(data)
                .map(|(shard, data)| configmap_shard(&plan.settings, shards, shard, data))
                .collect();
        }
        shards *= 2;
    }
}

fn configmap_shard(
    settings: &Settings,
    shards: u32,
    shard: u32,
    data: BTreeMap<String, String>,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(names::device_plugin_configmap_name(
                &settings.device_plugin_configmap,
                shards,
                shard,
            )),
            namespace: Some(settings.device_plugin_namespace.clone()),
            labels: Some(BTreeMap::from([(
                keys::LABEL_MANAGED_BY.to_owned(),
                keys::MANAGED_BY.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// Bytes of a ConfigMap's data (keys and values).
pub fn configmap_data_bytes(configmap: &ConfigMap) -> usize {
    configmap
        .data
        .iter()
        .flatten()
        .map(|(k, v)| k.len() + v.len())
        .sum()
}

#[cfg(test)]
mod tests;
