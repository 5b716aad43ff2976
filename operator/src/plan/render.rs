//! The objects a plan writes: the SR-IOV NAD of each slot, the bond NAD, the device-plugin
//! config of each node, and the pod annotation. CNI configs are rendered from typed structs
//! with a fixed field order, so the same input gives the same bytes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;

use crate::api::bond_network::{BondMode, BondNetworkSpec};
use crate::api::keys;
use crate::api::nad::{NetworkAttachmentDefinition, NetworkAttachmentDefinitionSpec};
use crate::plan::names;

/// The slots of a network with the names every object uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotNames {
    /// Slot index.
    pub slot: u32,
    /// Interface name of the port in the pod.
    pub ifname: String,
    /// Resource name without prefix.
    pub resource: String,
    /// `prefix/resource`.
    pub qualified_resource: String,
    /// Name of the slot's SR-IOV NAD.
    pub nad: String,
}

/// Names of every slot of a network.
pub fn slot_names(namespace: &str, name: &str, spec: &BondNetworkSpec) -> Vec<SlotNames> {
    (0..spec.links)
        .map(|slot| {
            let resource = names::resource_name(namespace, name, slot);
            SlotNames {
                slot,
                ifname: names::slot_ifname(&spec.ifname, slot),
                qualified_resource: names::qualified_resource_name(
                    &spec.resource_prefix,
                    &resource,
                ),
                resource,
                nad: names::slot_nad_name(name, slot),
            }
        })
        .collect()
}

/// The network whose NADs are rendered.
pub struct Owner<'a> {
    /// Namespace of the network.
    pub namespace: &'a str,
    /// Name of the network.
    pub name: &'a str,
    /// UID of the network; owner references need it.
    pub uid: Option<&'a str>,
}

impl Owner<'_> {
    fn meta(&self, name: String, role: &str, slot: Option<u32>) -> ObjectMeta {
        let mut labels = BTreeMap::from([
            (
                keys::LABEL_MANAGED_BY.to_owned(),
                keys::MANAGED_BY.to_owned(),
            ),
            (
                keys::LABEL_NETWORK.to_owned(),
                names::network_label_value(self.name),
            ),
            (keys::LABEL_ROLE.to_owned(), role.to_owned()),
        ]);
        if let Some(slot) = slot {
            labels.insert(keys::LABEL_SLOT.to_owned(), slot.to_string());
        }
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(labels),
            owner_references: self.uid.map(|uid| {
                vec![OwnerReference {
                    api_version: format!("{}/{}", keys::GROUP, keys::VERSION),
                    kind: "BondNetwork".to_owned(),
                    name: self.name.to_owned(),
                    uid: uid.to_owned(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..ObjectMeta::default()
        }
    }
}

/// SR-IOV CNI config of one port, in the SR-IOV plugin's own spelling.
#[derive(Serialize)]
struct SriovNadConfig<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(rename = "type")]
    type_: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u32>,
    #[serde(rename = "vlanQoS", skip_serializing_if = "Option::is_none")]
    vlan_qos: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spoofchk: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link_state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_tx_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tx_rate: Option<u32>,
}

/// The SR-IOV NAD of one slot, annotated with its device-plugin resource.
pub fn slot_nad(
    owner: &Owner<'_>,
    spec: &BondNetworkSpec,
    slot: &SlotNames,
) -> NetworkAttachmentDefinition {
    let config = SriovNadConfig {
        cni_version: keys::CNI_VERSION,
        type_: "sriov",
        name: &slot.nad,
        vlan: spec.sriov.vlan,
        vlan_qos: spec.sriov.vlan_qos,
        spoofchk: spec.sriov.spoofchk.map(|v| v.as_str()),
        trust: spec.effective_trust().map(|v| v.as_str()),
        link_state: spec.sriov.link_state.map(|v| v.as_str()),
        min_tx_rate: spec.sriov.min_tx_rate,
        max_tx_rate: spec.sriov.max_tx_rate,
    };
    let mut metadata = owner.meta(slot.nad.clone(), "port", Some(slot.slot));
    metadata.annotations = Some(BTreeMap::from([(
        keys::ANNOTATION_RESOURCE_NAME.to_owned(),
        slot.qualified_resource.clone(),
    )]));
    NetworkAttachmentDefinition {
        metadata,
        spec: NetworkAttachmentDefinitionSpec {
            config: to_json(&config),
        },
    }
}

#[derive(Serialize)]
struct Link<'a> {
    name: &'a str,
}

/// The bond CNI config: the fixed fields, then the bond options as the spec has them (by
/// name), in the `bond` plugin's spelling.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BondNadConfig<'a> {
    cni_version: &'a str,
    #[serde(rename = "type")]
    type_: &'a str,
    name: &'a str,
    mode: BondMode,
    links_in_container: bool,
    links: Vec<Link<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipam: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(flatten)]
    options: serde_json::Map<String, serde_json::Value>,
}

/// The bond CNI config JSON of a network whose ports are `slots`.
pub fn bond_config(name: &str, spec: &BondNetworkSpec, slots: &[SlotNames]) -> String {
    let mut options = spec.bond.clone();
    options.fail_over_mac = spec.effective_fail_over_mac();
    options.miimon = options.effective_miimon();
    let mut options = options.to_map();
    // A string, as upstream bond-cni requires; bondnet's plugin takes both.
    if let Some(miimon) = options.get_mut("miimon") {
        *miimon = serde_json::Value::from(miimon.to_string());
    }
    let config = BondNadConfig {
        cni_version: keys::CNI_VERSION,
        type_: "bond",
        name,
        mode: spec.mode,
        links_in_container: true,
        links: slots.iter().map(|s| Link { name: &s.ifname }).collect(),
        ipam: spec.ipam.as_ref(),
        mtu: spec.mtu,
        options,
    };
    to_json(&config)
}

/// The bond NAD of a network.
pub fn bond_nad(
    owner: &Owner<'_>,
    spec: &BondNetworkSpec,
    slots: &[SlotNames],
) -> NetworkAttachmentDefinition {
    let name = names::bond_nad_name(owner.name);
    NetworkAttachmentDefinition {
        spec: NetworkAttachmentDefinitionSpec {
            config: bond_config(&name, spec, slots),
        },
        metadata: owner.meta(name, "bond", None),
    }
}

#[derive(Serialize)]
struct PodNetwork<'a> {
    name: &'a str,
    namespace: &'a str,
    interface: &'a str,
}

/// The `k8s.v1.cni.cncf.io/networks` value: the SR-IOV NADs in slot order, then the bond.
pub fn pod_annotation(
    namespace: &str,
    name: &str,
    spec: &BondNetworkSpec,
    slots: &[SlotNames],
) -> String {
    let bond_nad = names::bond_nad_name(name);
    let networks: Vec<PodNetwork<'_>> = slots
        .iter()
        .map(|s| PodNetwork {
            name: &s.nad,
            namespace,
            interface: &s.ifname,
        })
        .chain(std::iter::once(PodNetwork {
            name: &bond_nad,
            namespace,
            interface: &spec.ifname,
        }))
        .collect();
    to_json(&networks)
}

/// Serializes a value built from strings, numbers and lists; that cannot fail.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
