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

/// Where the device-plugin config goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Namespace of the device-plugin ConfigMap.
    pub device_plugin_namespace: String,
    /// Name of the device-plugin ConfigMap.
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

/// Everything the plan reads.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// Every BondNetwork, in any order.
    pub networks: &'a [BondNetwork],
    /// Every BondNodeState, in any order.
    pub nodes: &'a [BondNodeState],
    /// Labels of each Node by name; a node missing here uses its BondNodeState's labels.
    pub node_labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// What the previous plan allocated (read back from the device-plugin ConfigMap).
    pub previous: &'a Allocation,
    /// Names of the objects the plan writes.
    pub settings: &'a Settings,
}

/// What one network gets on one selected node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeOutcome {
    /// The node hosts the bond: slot i is served by `slots[i]`.
    Hosted(Vec<SlotAssignment>),
    /// The node cannot host the bond.
    Ineligible(NodeReason),
}

/// The plan for one BondNetwork.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkPlan {
    /// Namespace of the network.
    pub namespace: String,
    /// Name of the network.
    pub name: String,
    /// The spec error, when the network cannot be planned at all.
    pub invalid: Option<SpecError>,
    /// Port names, resources and NADs of each slot (empty when invalid).
    pub slots: Vec<SlotNames>,
    /// SR-IOV NADs in slot order, then the bond NAD (empty when invalid).
    pub nads: Vec<NetworkAttachmentDefinition>,
    /// Selected nodes and what the network gets on each.
    pub nodes: BTreeMap<String, NodeOutcome>,
    /// The status the controller writes (without condition times).
    pub status: BondNetworkStatus,
}

impl NetworkPlan {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        names::network_key(&self.namespace, &self.name)
    }
}

/// Everything the controller writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// One entry per BondNetwork, sorted by namespace and name.
    pub networks: Vec<NetworkPlan>,
    /// Device-plugin config per node, for every node with a BondNodeState.
    pub device_plugin: BTreeMap<String, DevicePluginConfig>,
    /// The VF ranges now held; the next plan's `previous`.
    pub allocation: Allocation,
    /// Where the device-plugin config goes.
    pub settings: Settings,
}

/// Plans every network on every node.
pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let mut intents: Vec<NetworkIntent<'_>> = inputs
        .networks
        .iter()
        .map(NetworkIntent::from_resource)
        .collect();
    intents.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    // Two objects with one key: keep the first after sorting; the input is malformed anyway.
    intents.dedup_by(|b, a| a.namespace == b.namespace && a.name == b.name);

    let mut nodes: Vec<NodeInventory> = inputs
        .nodes
        .iter()
        .map(|state| {
            let name = kube::ResourceExt::name_any(state);
            NodeInventory::from_resource(state, inputs.node_labels.get(&name))
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|b, a| a.name == b.name);

    let slots: Vec<Vec<SlotNames>> = intents
        .iter()
        .map(|n| match &n.spec {
            Ok(spec) => render::slot_names(&n.namespace, &n.name, spec),
            Err(_) => Vec::new(),
        })
        .collect();

    let mut outcomes: Vec<BTreeMap<String, NodeOutcome>> = vec![BTreeMap::new(); intents.len()];
    let mut allocation = Allocation::default();
    let mut device_plugin = BTreeMap::new();
    for node in &nodes {
        let hosted = plan_node(node, &intents, &slots, inputs.previous, &mut outcomes);
        let mut resources = BTreeMap::new();
        let mut config = DevicePluginConfig::default();
        for (index, assignments) in hosted {
            let (Ok(spec), Some(slot_names)) = (&intents[index].spec, slots.get(index)) else {
                continue;
            };
            for (assignment, names) in assignments.iter().zip(slot_names) {
                resources.insert(
                    names.resource.clone(),
                    PfRange {
                        pf: assignment.pf.clone(),
                        range: assignment.range,
                    },
                );
                config
                    .resource_list
                    .push(resource_config(spec, names, assignment, node));
            }
        }
        config
            .resource_list
            .sort_by(|a, b| a.resource_name.cmp(&b.resource_name));
        allocation.nodes.insert(node.name.clone(), resources);
        device_plugin.insert(node.name.clone(), config);
    }

    let networks = intents
        .iter()
        .zip(slots)
        .zip(outcomes)
        .map(|((intent, slots), nodes)| network_plan(intent, slots, nodes))
        .collect();
    Plan {
        networks,
        device_plugin,
        allocation,
        settings: inputs.settings.clone(),
    }
}

/// Plans one node for every network that selects it: first keeps every still-valid previous
/// allocation, then places the rest in network order. Returns (network index, slots) pairs.
fn plan_node(
    node: &NodeInventory,
    intents: &[NetworkIntent<'_>],
    slots: &[Vec<SlotNames>],
    previous: &Allocation,
    outcomes: &mut [BTreeMap<String, NodeOutcome>],
) -> Vec<(usize, Vec<SlotAssignment>)> {
    let mut used = vf_ranges::UsedVfs::default();
    let mut hosted = Vec::new();
    let mut pending = Vec::new();
    for (index, intent) in intents.iter().enumerate() {
        let Ok(spec) = intent.spec else { continue };
        if !NetworkIntent::selects(spec, node) {
            continue;
        }
        let mut candidates: Vec<&PfStatus> = Vec::new();
        let mut rejected: Vec<String> = Vec::new();
        for pf in &node.pfs {
            match pairing::pf_rejection(spec, pf) {
                None => candidates.push(pf),
                Some(why) => rejected.push(format!("{}: {why}", pf.name)),
            }
        }
        if candidates.len() < spec.links as usize {
            outcomes[index].insert(
                node.name.clone(),
                NodeOutcome::Ineligible(too_few(spec, node, &candidates, &rejected)),
            );
            continue;
        }
        let resources: Vec<String> = slots[index].iter().map(|s| s.resource.clone()).collect();
        match pairing::keep_previous(spec, &node.name, &resources, &candidates, previous, &used) {
            Some(kept) => {
                for a in &kept {
                    used.take(&a.pf, a.range);
                }
                hosted.push((index, kept));
            }
            None => pending.push((index, spec, candidates)),
        }
    }
    for (index, spec, candidates) in pending {
        match pairing::choose(spec, &candidates, &used) {
            Ok(chosen) => {
                for a in &chosen {
                    used.take(&a.pf, a.range);
                }
                hosted.push((index, chosen));
            }
            Err(reason) => {
                outcomes[index].insert(node.name.clone(), NodeOutcome::Ineligible(reason));
            }
        }
    }
    hosted.sort_by_key(|(index, _)| *index);
    for (index, assignments) in &hosted {
        outcomes[*index].insert(node.name.clone(), NodeOutcome::Hosted(assignments.clone()));
    }
    hosted
}

/// The reason a node has fewer matching PFs than ports, naming what rejected the others.
fn too_few(
    spec: &BondNetworkSpec,
    node: &NodeInventory,
    candidates: &[&PfStatus],
    rejected: &[String],
) -> NodeReason {
    if node.pfs.is_empty() {
        return NodeReason::new(
            ReasonCode::NoPfs,
            "the node's BondNodeState lists no SR-IOV PF",
        );
    }
    let matched = candidates
        .iter()
        .map(|pf| pf.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let code = if candidates.is_empty() {
        ReasonCode::NoMatchingPf
    } else {
        ReasonCode::TooFewPfs
    };
    let matched = if matched.is_empty() {
        "none match".to_owned()
    } else {
        format!(
            "only {matched} match{}",
            if candidates.len() == 1 { "es" } else { "" }
        )
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
    assignment: &SlotAssignment,
    node: &NodeInventory,
) -> ResourceConfig {
    let pf = node.pfs.iter().find(|pf| pf.name == assignment.pf);
    ResourceConfig {
        resource_name: names.resource.clone(),
        resource_prefix: Some(spec.resource_prefix.clone()),
        selectors: Selectors {
            drivers: pf.and_then(|pf| pf.vf_driver.clone()).into_iter().collect(),
            pf_names: vec![PfName {
                pf: assignment.pf.clone(),
                range: Some(assignment.range),
            }],
            ..Selectors::default()
        },
    }
}

/// Renders the objects and status of one network.
fn network_plan(
    intent: &NetworkIntent<'_>,
    slots: Vec<SlotNames>,
    nodes: BTreeMap<String, NodeOutcome>,
) -> NetworkPlan {
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
                namespace: intent.namespace.clone(),
                name: intent.name.clone(),
                invalid: Some(err.clone()),
                slots: Vec::new(),
                nads: Vec::new(),
                nodes,
                status,
            };
        }
    };
    let owner = render::Owner {
        namespace: &intent.namespace,
        name: &intent.name,
        uid: intent.uid.as_deref(),
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
                node: node.clone(),
                reason: reason.code.as_str().to_owned(),
                message: reason.message.clone(),
            }),
            NodeOutcome::Hosted(_) => None,
        })
        .collect();
    status.eligible_nodes = count_u32(eligible);
    status.ineligible_node_count = count_u32(ineligible.len());
    status.conditions = conditions(intent, spec, eligible, &ineligible);
    status.ineligible_nodes = ineligible.into_iter().take(MAX_LISTED_INELIGIBLE).collect();
    status.slots = slots
        .iter()
        .map(|s| SlotStatus {
            index: s.slot,
            interface: s.ifname.clone(),
            resource_name: s.qualified_resource.clone(),
            nad_name: s.nad.clone(),
        })
        .collect();
    status.bond_nad = Some(names::bond_nad_name(&intent.name));
    status.pod_annotation = Some(render::pod_annotation(
        &intent.namespace,
        &intent.name,
        spec,
        &slots,
    ));
    status.pod_resources = slots
        .iter()
        .map(|s| (s.qualified_resource.clone(), "1".to_owned()))
        .collect();
    NetworkPlan {
        namespace: intent.namespace.clone(),
        name: intent.name.clone(),
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
    ineligible: &[IneligibleNode],
) -> Vec<BondNetworkCondition> {
    let selected = eligible + ineligible.len();
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
        let first = &ineligible[0];
        condition(
            intent,
            "Ready",
            "False",
            "NoEligibleNode",
            format!(
                "none of the {selected} selected nodes can host the bond; {}: {}",
                first.node, first.message
            ),
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
    let degraded = if ineligible.is_empty() {
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
                "{} of {selected} selected nodes cannot host the bond; see status.ineligibleNodes",
                ineligible.len()
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

/// The device-plugin ConfigMap: one key per node, named after it, holding that node's JSON.
pub fn device_plugin_configmap(plan: &Plan) -> ConfigMap {
    let data = plan
        .device_plugin
        .iter()
        .map(|(node, config)| {
            (
                node.clone(),
                serde_json::to_string(config).unwrap_or_default(),
            )
        })
        .collect();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(plan.settings.device_plugin_configmap.clone()),
            namespace: Some(plan.settings.device_plugin_namespace.clone()),
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

#[cfg(test)]
mod tests;
