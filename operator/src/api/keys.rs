//! Every fixed API string bondnet shares with the cluster: the group, labels, annotations,
//! finalizer and field manager. Generated *names* live in `plan::names`.

/// API group of BondNetwork and BondNodeState.
pub const GROUP: &str = "bondnet.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

/// Server-side apply field manager for every object the controller writes.
pub const FIELD_MANAGER: &str = "bondnet";
/// Server-side apply field manager of the agent (its node's BondNodeState status), apart from
/// the controller's so neither removes the other's fields.
pub const AGENT_FIELD_MANAGER: &str = "bondnet-agent";
/// Finalizer the controller puts on each BondNetwork so its device-plugin entries are removed.
pub const FINALIZER: &str = "bondnet.io/cleanup";

/// Label on every object bondnet writes.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "bondnet";
/// Label naming the BondNetwork (bounded to a label value by `plan::names::label_value`).
pub const LABEL_NETWORK: &str = "bondnet.io/network";
/// Label giving the slot index on SR-IOV NADs; absent on the bond NAD.
pub const LABEL_SLOT: &str = "bondnet.io/slot";
/// Label naming the role of a NAD: `port` (SR-IOV, one per slot) or `bond`.
pub const LABEL_ROLE: &str = "bondnet.io/role";

/// Multus annotation on a NAD naming the device-plugin resource its VF comes from.
pub const ANNOTATION_RESOURCE_NAME: &str = "k8s.v1.cni.cncf.io/resourceName";
/// Multus annotation on a pod listing its extra networks, in order.
pub const ANNOTATION_POD_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// API version and kind of a NetworkAttachmentDefinition.
pub const NAD_GROUP: &str = "k8s.cni.cncf.io";
/// Version of the NetworkAttachmentDefinition API.
pub const NAD_VERSION: &str = "v1";

/// Default name of the device-plugin ConfigMap export (for a device plugin bondnet does not
/// run), and of the layout before per-node state, read once on upgrade. Each key is a node
/// name holding that node's JSON, as the SR-IOV network operator does.
pub const DEVICE_PLUGIN_CONFIGMAP: &str = "bondnet-device-plugin-config";
/// Default namespace of the device-plugin ConfigMap.
pub const DEVICE_PLUGIN_NAMESPACE: &str = "bondnet-system";

/// CNI version of every NAD config bondnet renders.
pub const CNI_VERSION: &str = "1.0.0";
/// Default device-plugin resource prefix.
pub const DEFAULT_RESOURCE_PREFIX: &str = "bondnet.io";
