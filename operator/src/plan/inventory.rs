//! Nodes and networks as the plan sees them: converted once from the resources, keeping only
//! what the plan reads.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::api::bond_network::{BondNetwork, BondNetworkSpec, SpecError};
use crate::api::bond_node_state::{BondNodeState, PfStatus};

/// One node: its labels and its PFs, sorted by PCI address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInventory {
    /// Node name (the BondNodeState's name).
    pub name: String,
    /// Node labels, for `nodeSelector`.
    pub labels: BTreeMap<String, String>,
    /// SR-IOV PFs, sorted by PCI address, one per name.
    pub pfs: Vec<PfStatus>,
}

impl NodeInventory {
    /// Takes the labels from `labels` when the Node is known, else from the BondNodeState.
    pub fn from_resource(state: &BondNodeState, labels: Option<&BTreeMap<String, String>>) -> Self {
        let mut pfs: Vec<PfStatus> = state
            .status
            .as_ref()
            .map(|s| s.pfs.clone())
            .unwrap_or_default();
        pfs.sort_by(|a, b| {
            (a.pci_address.as_str(), a.name.as_str())
                .cmp(&(b.pci_address.as_str(), b.name.as_str()))
        });
        // A name must identify one PF for the device plugin's pfNames selector.
        let mut seen = std::collections::BTreeSet::new();
        pfs.retain(|pf| seen.insert(pf.name.clone()));
        Self {
            name: state.name_any(),
            labels: labels.cloned().unwrap_or_else(|| state.labels().clone()),
            pfs,
        }
    }
}

/// A network as the plan sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkIntent<'a> {
    /// Namespace of the BondNetwork and its NADs.
    pub namespace: String,
    /// Name of the BondNetwork.
    pub name: String,
    /// UID, for owner references; absent in offline input.
    pub uid: Option<String>,
    /// metadata.generation, echoed as observedGeneration.
    pub generation: Option<i64>,
    /// The spec, validated (or the reason it is invalid).
    pub spec: Result<&'a BondNetworkSpec, SpecError>,
}

impl<'a> NetworkIntent<'a> {
    /// Validates the spec; a network without namespace is placed in `default`, as kubectl would.
    pub fn from_resource(network: &'a BondNetwork) -> Self {
        Self {
            namespace: network.namespace().unwrap_or_else(|| "default".to_owned()),
            name: network.name_any(),
            uid: network.uid(),
            generation: network.metadata.generation,
            spec: network.spec.validate().map(|()| &network.spec),
        }
    }

    /// True when the node carries every label of the selector.
    pub fn selects(spec: &BondNetworkSpec, node: &NodeInventory) -> bool {
        spec.node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v))
    }
}
