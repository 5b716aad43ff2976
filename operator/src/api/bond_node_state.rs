//! `BondNodeState`: one per node, named after it, cluster-scoped. The agent writes `status`
//! (what it found on the node); the controller writes `spec` (the device-plugin pools it wants
//! there) and an owner reference to the Node, so the object goes with its Node. Its size is
//! bounded by what one node holds, at any cluster size.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::device_plugin::DevicePluginConfig;

/// What the controller wants on the node; the agent renders it on the node.
// Each printcolumn repeats `type_ = ...`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "bondnet.io",
    version = "v1alpha1",
    kind = "BondNodeState",
    status = "BondNodeStateStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "bns",
    category = "bondnet",
    doc = "One node's SR-IOV PFs as its bondnet agent saw them (status) and the device-plugin pools the controller wants there (spec); named after the node",
    printcolumn(name = "Plugin", type_ = "string", json_path = ".status.pluginVersion"),
    printcolumn(name = "Last-Seen", type_ = "date", json_path = ".status.lastSeen"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BondNodeStateSpec {
    /// The node's SR-IOV device-plugin config (its resource pools), written by the controller.
    /// The agent renders it into the device plugin's config file and restarts the device
    /// plugin when it changes. Unset until the controller has planned the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_plugin: Option<DevicePluginConfig>,
}

/// What the agent found on the node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BondNodeStateStatus {
    /// SR-IOV capable PFs, sorted by PCI address.
    #[serde(default)]
    pub pfs: Vec<PfStatus>,
    /// Version of the `bond` CNI binary the agent installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
    /// When the agent last scanned the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
}

/// One SR-IOV capable physical function. Other tools read these field names: keep them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PfStatus {
    /// Interface name, e.g. `ens1f0`.
    pub name: String,
    /// PCI address, e.g. `0000:3b:00.0`.
    pub pci_address: String,
    /// PCI vendor ID in hex, e.g. `8086`.
    pub vendor: String,
    /// PCI device ID of the PF in hex, e.g. `1593`.
    pub device_id: String,
    /// Kernel driver of the PF, e.g. `ice`.
    pub driver: String,
    /// PCI device ID of its VFs in hex, e.g. `1889`; unknown while no VF exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vf_device_id: Option<String>,
    /// Kernel driver bound to its VFs, e.g. `iavf`; unknown while no VF exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vf_driver: Option<String>,
    /// `sriov_totalvfs`.
    pub total_vfs: u32,
    /// `sriov_numvfs`: VFs enabled now; only these can be handed out.
    pub num_vfs: u32,
    /// Link speed in Mbit/s; unknown while the link is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_speed_mbps: Option<u32>,
    /// MTU of the PF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// MAC address of the PF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// NUMA node of the PCI device; unknown on single-node machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<i32>,
    /// Identity of the physical card: ports of one card share it.
    pub nic_id: String,
}
