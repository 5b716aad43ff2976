//! Object builders shared by the tests and the bench, so both build inputs the way the
//! agent and a user would. Nothing here runs in the controller or the agent.

use kube::api::ObjectMeta;

use crate::api::bond_network::{BondNetwork, BondNetworkSpec};
use crate::api::bond_node_state::{
    BondNodeState, BondNodeStateSpec, BondNodeStateStatus, PfStatus,
};

/// A spec with every default, as the API server fills it in from `spec: {}`.
pub fn default_spec() -> BondNetworkSpec {
    BondNetworkSpec::default()
}

/// A BondNetwork with default spec changed by `edit`.
pub fn network(
    namespace: &str,
    name: &str,
    edit: impl FnOnce(&mut BondNetworkSpec),
) -> BondNetwork {
    let mut spec = default_spec();
    edit(&mut spec);
    let mut network = BondNetwork::new(name, spec);
    network.metadata.namespace = Some(namespace.to_owned());
    network
}

/// An Intel E810 port with `num_vfs` VFs enabled. `nic` is the card's PCI address without
/// the function, `function` the port.
pub fn e810_pf(name: &str, nic: &str, function: u8, num_vfs: u32) -> PfStatus {
    PfStatus {
        name: name.to_owned(),
        pci_address: format!("{nic}.{function}"),
        vendor: "8086".into(),
        device_id: "159b".into(),
        driver: "ice".into(),
        vf_device_id: (num_vfs > 0).then(|| "1889".into()),
        vf_driver: (num_vfs > 0).then(|| "iavf".into()),
        total_vfs: 128,
        num_vfs,
        link_speed_mbps: Some(25_000),
        mtu: Some(1500),
        mac: Some(format!("b4:96:91:00:00:{function:02x}")),
        numa_node: Some(0),
        nic_id: nic.to_owned(),
    }
}

/// A BondNodeState with these labels and PFs.
pub fn node(name: &str, labels: &[(&str, &str)], pfs: Vec<PfStatus>) -> BondNodeState {
    BondNodeState {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: BondNodeStateSpec::default(),
        status: Some(BondNodeStateStatus {
            pfs,
            plugin_version: None,
            last_seen: None,
        }),
    }
}

/// A node with `cards` dual-port E810 cards, each port with `vfs` VFs enabled.
pub fn node_with_cards(name: &str, labels: &[(&str, &str)], cards: u32, vfs: u32) -> BondNodeState {
    let pfs = (0..cards)
        .flat_map(|card| {
            let nic = format!("0000:{:02x}:00", 0x18 + card * 0x20);
            (0..2u8).map(move |port| e810_pf(&format!("ens{}f{port}", card + 1), &nic, port, vfs))
        })
        .collect();
    node(name, labels, pfs)
}
