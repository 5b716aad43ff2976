//! Nodes and networks as the plan sees them: converted once from the resources, keeping only
//! what the plan reads.

use std::collections::BTreeMap;

use crate::api::bond_network::{BondNetwork, BondNetworkSpec, SpecError};
use crate::api::bond_node_state::{BondNodeState, PfStatus};

/// Labels of a node that has none.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// One node: its labels and its PFs, sorted by PCI address. Borrows from the inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInventory<'a, 'l> {
    /// Node name (the BondNodeState's name).
    pub name: &'a str,
    /// Node labels, for `nodeSelector`.
    pub labels: &'l BTreeMap<String, String>,
    /// SR-IOV PFs, sorted by PCI address, one per name.
    pub pfs: Vec<&'a PfStatus>,
}

impl<'a: 'l, 'l> NodeInventory<'a, 'l> {
    /// Takes the labels from `labels` when the Node is known, else from the BondNodeState.
    pub fn from_resource(
        state: &'a BondNodeState,
        labels: Option<&'l BTreeMap<String, String>>,
    ) -> Self {
        let mut pfs: Vec<&PfStatus> = state.status.iter().flat_map(|s| &s.pfs).collect();
        pfs.sort_by(|a, b| (&a.pci_address, &a.name).cmp(&(&b.pci_address, &b.name)));
        // A name must identify one PF for the device plugin's pfNames selector.
        let mut seen = std::collections::BTreeSet::new();
        pfs.retain(|pf| seen.insert(pf.name.as_str()));
        Self {
            name: state.metadata.name.as_deref().unwrap_or_default(),
            labels: labels
                .or(state.metadata.labels.as_ref())
                .unwrap_or(&NO_LABELS),
            pfs,
        }
    }
}

/// A network as the plan sees it. Borrows from the inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkIntent<'a> {
    /// Namespace of the BondNetwork and its NADs (`default` when the input has none).
    pub namespace: &'a str,
    /// Name of the BondNetwork.
    pub name: &'a str,
    /// UID, for owner references; absent in offline input.
    pub uid: Option<&'a str>,
    /// metadata.generation, echoed as observedGeneration.
    pub generation: Option<i64>,
    /// The spec, validated (or the reason it is invalid).
    pub spec: Result<&'a BondNetworkSpec, SpecError>,
}

impl<'a> NetworkIntent<'a> {
    /// Validates the spec.
    pub fn from_resource(network: &'a BondNetwork) -> Self {
        Self {
            namespace: network.metadata.namespace.as_deref().unwrap_or("default"),
            name: network.metadata.name.as_deref().unwrap_or_default(),
            uid: network.metadata.uid.as_deref(),
            generation: network.metadata.generation,
            spec: network.spec.validate().map(|()| &network.spec),
        }
    }
}

/// True when the labels carry every label of the selector.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
