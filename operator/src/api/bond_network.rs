//! `BondNetwork`: one bonded pod network over VFs of distinct PFs (namespaced).
//!
//! The bond options use the `bond` CNI plugin's field names. What cannot work (fewer than two
//! links, an option that needs another mode) is refused by the API server through the CEL rules
//! in [`CEL_RULES`], and again by [`BondNetworkSpec::validate`] for files given to `bondnet plan`.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::keys;

/// Highest number of links (ports) one bond may have.
pub const MAX_LINKS: u32 = 8;
/// Longest bond interface name: port names append `p<digit>` and Linux allows 15 bytes.
pub const MAX_IFNAME_LEN: usize = 13;
/// The link monitor the plan renders when neither `miimon` nor `arpInterval` is given.
pub const DEFAULT_MIIMON_MS: u32 = 100;

/// Spec of a BondNetwork: which nodes and NICs, how many ports, and the bond options.
// Each printcolumn repeats `type_ = ...`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bondnet.io",
    version = "v1alpha1",
    kind = "BondNetwork",
    namespaced,
    status = "BondNetworkStatus",
    derive = "PartialEq",
    shortname = "bn",
    shortname = "bondnet",
    category = "bondnet",
    doc = "A bonded pod network whose ports are SR-IOV VFs on distinct PFs (or NICs)",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Links", type_ = "integer", json_path = ".spec.links"),
    printcolumn(name = "Diversity", type_ = "string", json_path = ".spec.diversity"),
    printcolumn(
        name = "Nodes",
        type_ = "integer",
        json_path = ".status.eligibleNodes",
        description = "nodes that can host the bond"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = cel_rules_json()))]
pub struct BondNetworkSpec {
    /// Bonding mode.
    #[serde(default)]
    pub mode: BondMode,

    /// Number of ports (slots) of the bond, each a VF from a different PF.
    #[serde(default = "default_links")]
    #[schemars(range(min = 2, max = 8))]
    pub links: u32,

    /// `nic` (default): every port on a different physical card. `pf`: different PFs suffice.
    #[serde(default)]
    pub diversity: Diversity,

    /// Which PFs may serve a port. Empty: every PF with VFs enabled.
    #[serde(default, skip_serializing_if = "NicSelector::is_empty")]
    pub nic_selector: NicSelector,

    /// Labels a node must carry (all of them) to host this bond. Empty: every node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// VFs of each chosen PF this network reserves on every node: at most this many pods per
    /// node can use the bond.
    #[serde(default = "default_vfs_per_pf")]
    #[schemars(range(min = 1, max = 256))]
    pub vfs_per_pf: u32,

    /// Per-port settings of the SR-IOV CNI plugin.
    #[serde(default, skip_serializing_if = "SriovSettings::is_empty")]
    pub sriov: SriovSettings,

    /// IPAM configuration, passed to the bond NAD unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub ipam: Option<serde_json::Value>,

    /// Name of the bond interface in the pod. Its ports are named `<ifname>p0`, `<ifname>p1`, ...
    #[serde(default = "default_ifname")]
    #[schemars(length(min = 1, max = 13), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub ifname: String,

    /// Prefix of the device-plugin resource names (`<prefix>/<resource>`).
    #[serde(default = "default_resource_prefix")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub resource_prefix: String,

    // === bond options, as the `bond` CNI plugin names them ===
    /// MII link monitoring interval in milliseconds. When neither `miimon` nor `arpInterval`
    /// is set, 100 is used.
    #[serde(default, rename = "miimon", skip_serializing_if = "Option::is_none")]
    pub miimon_ms: Option<u32>,

    /// 0 none, 1 active, 2 follow. Defaults to 1 for active-backup, since a VF may not change
    /// its MAC address unless trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_over_mac: Option<FailOverMac>,

    /// MTU of the bond and its ports. Unset: the kernel's choice is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 68, max = 65535))]
    pub mtu: Option<u32>,

    /// 1: deliver duplicate frames received on inactive ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub all_slaves_active: Option<u8>,

    /// balance-tlb only: 1 (kernel default) rebalances by load, 0 by hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub tlb_dynamic_lb: Option<u8>,

    /// Transmit hash policy for balance-xor, 802.3ad and balance-tlb.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmit_hash_policy: Option<XmitHashPolicy>,

    /// 802.3ad only: LACPDU rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacp_rate: Option<LacpRate>,

    /// 802.3ad only: aggregator selection logic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_select: Option<AdSelect>,

    /// 802.3ad only: ports that must be up for the bond to be up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 8))]
    pub min_links: Option<u32>,

    /// active-backup, balance-tlb, balance-alb: the preferred port, `<ifname>p<slot>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 15))]
    pub primary: Option<String>,

    /// When the primary port becomes active again (needs `primary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_reselect: Option<PrimaryReselect>,

    /// Milliseconds to wait before enabling a port after link up; a multiple of miimon.
    #[serde(default, rename = "updelay", skip_serializing_if = "Option::is_none")]
    pub updelay_ms: Option<u32>,

    /// Milliseconds to wait before disabling a port after link down; a multiple of miimon.
    #[serde(default, rename = "downdelay", skip_serializing_if = "Option::is_none")]
    pub downdelay_ms: Option<u32>,

    /// ARP link monitoring interval in milliseconds; excludes `miimon`.
    #[serde(
        default,
        rename = "arpInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub arp_interval_ms: Option<u32>,

    /// IPv4 addresses to ARP for (needs `arpInterval`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(regex(pattern = r"^(\d{1,3}\.){3}\d{1,3}$")))]
    pub arp_ip_targets: Vec<String>,

    /// Which ARP replies validate a port (needs `arpInterval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_validate: Option<ArpValidate>,

    /// Whether any or all ARP targets must answer (needs `arpInterval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_all_targets: Option<ArpAllTargets>,

    /// Gratuitous ARPs / unsolicited NAs sent after a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 255))]
    pub num_peer_notif: Option<u32>,

    /// IGMP membership reports sent after a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 255))]
    pub resend_igmp: Option<u32>,

    /// balance-rr only: packets sent through a port before moving to the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 65535))]
    pub packets_per_slave: Option<u32>,

    /// balance-tlb and balance-alb: seconds between learning packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub lp_interval: Option<u32>,
}

/// The spec the API server fills in from `spec: {}` (the same values as the serde defaults).
impl Default for BondNetworkSpec {
    fn default() -> Self {
        Self {
            mode: Default::default(),
            links: default_links(),
            diversity: Default::default(),
            nic_selector: Default::default(),
            node_selector: BTreeMap::new(),
            vfs_per_pf: default_vfs_per_pf(),
            sriov: Default::default(),
            ipam: None,
            ifname: default_ifname(),
            resource_prefix: default_resource_prefix(),
            miimon_ms: None,
            fail_over_mac: None,
            mtu: None,
            all_slaves_active: None,
            tlb_dynamic_lb: None,
            xmit_hash_policy: None,
            lacp_rate: None,
            ad_select: None,
            min_links: None,
            primary: None,
            primary_reselect: None,
            updelay_ms: None,
            downdelay_ms: None,
            arp_interval_ms: None,
            arp_ip_targets: Vec::new(),
            arp_validate: None,
            arp_all_targets: None,
            num_peer_notif: None,
            resend_igmp: None,
            packets_per_slave: None,
            lp_interval: None,
        }
    }
}

fn default_links() -> u32 {
    2
}
fn default_vfs_per_pf() -> u32 {
    4
}
fn default_ifname() -> String {
    "bond0".to_owned()
}
fn default_resource_prefix() -> String {
    keys::DEFAULT_RESOURCE_PREFIX.to_owned()
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

// === modes and option values ===

/// Bonding mode, spelled as the kernel and the `bond` plugin spell it.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
pub enum BondMode {
    #[serde(rename = "balance-rr")]
    BalanceRr,
    #[default]
    #[serde(rename = "active-backup")]
    ActiveBackup,
    #[serde(rename = "balance-xor")]
    BalanceXor,
    #[serde(rename = "broadcast")]
    Broadcast,
    #[serde(rename = "802.3ad")]
    Ieee8023ad,
    #[serde(rename = "balance-tlb")]
    BalanceTlb,
    #[serde(rename = "balance-alb")]
    BalanceAlb,
}

impl BondMode {
    /// The mode's name in configs and in the kernel.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BalanceRr => "balance-rr",
            Self::ActiveBackup => "active-backup",
            Self::BalanceXor => "balance-xor",
            Self::Broadcast => "broadcast",
            Self::Ieee8023ad => "802.3ad",
            Self::BalanceTlb => "balance-tlb",
            Self::BalanceAlb => "balance-alb",
        }
    }

    /// Modes that rewrite the ports' MAC address, which a VF allows only with `trust on`.
    pub fn needs_trusted_vfs(self) -> bool {
        matches!(self, Self::BalanceRr | Self::BalanceXor)
    }
}

impl fmt::Display for BondMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far apart the ports of one bond must be.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Diversity {
    /// Every port on a different physical card.
    #[default]
    Nic,
    /// Every port on a different PF; two ports of one card may pair.
    Pf,
}

/// `fail_over_mac` as an integer: 0 none, 1 active, 2 follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailOverMac {
    None,
    Active,
    Follow,
}

impl FailOverMac {
    /// The integer the kernel and the plugin use.
    pub fn as_int(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Active => 1,
            Self::Follow => 2,
        }
    }
}

impl Serialize for FailOverMac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.as_int())
    }
}

impl<'de> Deserialize<'de> for FailOverMac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u64::deserialize(d)? {
            0 => Ok(Self::None),
            1 => Ok(Self::Active),
            2 => Ok(Self::Follow),
            other => Err(serde::de::Error::custom(format!(
                "failOverMac is {other}; use 0 (none), 1 (active) or 2 (follow)"
            ))),
        }
    }
}

impl JsonSchema for FailOverMac {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FailOverMac".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "integer",
            "enum": [0, 1, 2],
            "description": "0 none, 1 active, 2 follow",
        })
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// The value's spelling in configs and in the kernel.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }
    };
}

string_enum!(
    /// Transmit hash policy.
    XmitHashPolicy {
        Layer2 = "layer2",
        Layer3Plus4 = "layer3+4",
        Layer2Plus3 = "layer2+3",
        Encap2Plus3 = "encap2+3",
        Encap3Plus4 = "encap3+4",
        VlanSrcMac = "vlan+srcmac",
    }
);
string_enum!(
    /// 802.3ad LACPDU rate.
    LacpRate { Slow = "slow", Fast = "fast" }
);
string_enum!(
    /// 802.3ad aggregator selection.
    AdSelect { Stable = "stable", Bandwidth = "bandwidth", Count = "count" }
);
string_enum!(
    /// When a returning primary port becomes active.
    PrimaryReselect { Always = "always", Better = "better", Failure = "failure" }
);
string_enum!(
    /// ARP validation.
    ArpValidate {
        None = "none",
        Active = "active",
        Backup = "backup",
        All = "all",
        Filter = "filter",
        FilterActive = "filter_active",
        FilterBackup = "filter_backup",
    }
);
string_enum!(
    /// ARP targets that must answer.
    ArpAllTargets { Any = "any", All = "all" }
);
string_enum!(
    /// An SR-IOV on/off switch.
    OnOff { On = "on", Off = "off" }
);
string_enum!(
    /// VF link state as the SR-IOV CNI plugin names it.
    LinkState { Auto = "auto", Enable = "enable", Disable = "disable" }
);

// === selectors and per-port settings ===

/// Which PFs may serve a port; every non-empty list must match (AND), any entry within a
/// list may match (OR).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicSelector {
    /// PCI vendor IDs in hex, e.g. `8086` (Intel), `15b3` (Mellanox).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vendors: Vec<String>,
    /// PCI device IDs of the PF in hex, e.g. `1593` (E810), `1572` (X710).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    /// PF kernel drivers, e.g. `ice`, `i40e`, `mlx5_core`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drivers: Vec<String>,
    /// PF interface names, e.g. `ens1f0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pf_names: Vec<String>,
    /// PF PCI addresses, e.g. `0000:3b:00.0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_devices: Vec<String>,
    /// Lowest acceptable PF link speed in Mbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_link_speed_mbps: Option<u32>,
}

impl NicSelector {
    /// True when nothing is selected on, so every PF matches.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Settings of the SR-IOV CNI plugin for every port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.vlanQoS) || has(self.vlan)", "message": "sriov.vlanQoS needs sriov.vlan"},
    {"rule": "!has(self.minTxRate) || !has(self.maxTxRate) || self.maxTxRate == 0 || self.minTxRate <= self.maxTxRate",
     "message": "sriov.minTxRate must not exceed sriov.maxTxRate"},
]))]
pub struct SriovSettings {
    /// VLAN ID of the VF, 0-4094.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 4094))]
    pub vlan: Option<u32>,
    /// VLAN priority, 0-7.
    #[serde(default, rename = "vlanQoS", skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 7))]
    pub vlan_qos: Option<u32>,
    /// MAC spoof checking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoofchk: Option<OnOff>,
    /// Trusted VF. balance-rr and balance-xor need `on`, which is then the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<OnOff>,
    /// VF link state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<LinkState>,
    /// Minimum transmit rate in Mbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tx_rate: Option<u32>,
    /// Maximum transmit rate in Mbit/s (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tx_rate: Option<u32>,
}

impl SriovSettings {
    /// True when every setting is left to the SR-IOV plugin.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

// === status ===

/// What the controller last planned for a BondNetwork.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BondNetworkStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Degraded`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<BondNetworkCondition>,
    /// One entry per port: its interface, device-plugin resource and SR-IOV NAD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<SlotStatus>,
    /// Name of the bond NAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_nad: Option<String>,
    /// Number of selected nodes that can host the bond.
    #[serde(default)]
    pub eligible_nodes: u32,
    /// Number of selected nodes that cannot.
    #[serde(default)]
    pub ineligible_node_count: u32,
    /// Selected nodes that cannot host the bond, with the reason (the first 50 by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ineligible_nodes: Vec<IneligibleNode>,
    /// The `k8s.v1.cni.cncf.io/networks` annotation a pod needs without the webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotation: Option<String>,
    /// The resource requests (and limits) a pod needs: resource name to quantity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_resources: BTreeMap<String, String>,
}

/// A status condition. `lastTransitionTime` is set by the controller, never by the plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BondNetworkCondition {
    /// `Ready` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A PascalCase reason.
    pub reason: String,
    /// What happened, for a person.
    pub message: String,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Generation of the spec the condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One port of the bond as a pod sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotStatus {
    /// Slot index, from 0.
    pub index: u32,
    /// Interface name of the port in the pod.
    pub interface: String,
    /// Full device-plugin resource name (`prefix/name`).
    pub resource_name: String,
    /// Name of the SR-IOV NAD of this slot.
    pub nad_name: String,
}

/// A selected node that cannot host the bond.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IneligibleNode {
    /// Node name.
    pub node: String,
    /// PascalCase reason.
    pub reason: String,
    /// Why, for a person.
    pub message: String,
}

// === validation ===

/// A spec that cannot work. Each message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub struct SpecError {
    /// The offending field, relative to `spec`.
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A CEL rule on `spec` with the message the API server returns when it fails.
pub struct CelRule {
    /// The CEL expression; `self` is the spec.
    pub rule: &'static str,
    /// Message for the user.
    pub message: &'static str,
}

/// Rules on the spec, enforced by the API server. [`BondNetworkSpec::validate`] checks the same.
pub const CEL_RULES: &[CelRule] = &[
    CelRule {
        rule: "self.links >= 2",
        message: "links must be at least 2: a bond of one port has no redundancy",
    },
    CelRule {
        rule: "!has(self.lacpRate) || self.mode == '802.3ad'",
        message: "lacpRate needs mode 802.3ad",
    },
    CelRule {
        rule: "!has(self.adSelect) || self.mode == '802.3ad'",
        message: "adSelect needs mode 802.3ad",
    },
    CelRule {
        rule: "!has(self.minLinks) || self.mode == '802.3ad'",
        message: "minLinks needs mode 802.3ad",
    },
    CelRule {
        rule: "!has(self.minLinks) || self.minLinks <= self.links",
        message: "minLinks must not exceed links",
    },
    CelRule {
        rule: "!has(self.primary) || self.mode in ['active-backup', 'balance-tlb', 'balance-alb']",
        message: "primary needs mode active-backup, balance-tlb or balance-alb",
    },
    CelRule {
        rule: "!has(self.primary) || [0, 1, 2, 3, 4, 5, 6, 7].exists(i, i < self.links && self.primary == self.ifname + ['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7'][i])",
        message: "primary must name a port: <ifname>p<slot>, e.g. bond0p0",
    },
    CelRule {
        rule: "!has(self.primaryReselect) || has(self.primary)",
        message: "primaryReselect needs primary",
    },
    CelRule {
        rule: "!has(self.xmitHashPolicy) || self.mode in ['balance-xor', '802.3ad', 'balance-tlb']",
        message: "xmitHashPolicy needs mode balance-xor, 802.3ad or balance-tlb",
    },
    CelRule {
        rule: "!has(self.failOverMac) || self.mode == 'active-backup'",
        message: "failOverMac needs mode active-backup",
    },
    CelRule {
        rule: "!has(self.tlbDynamicLb) || self.mode == 'balance-tlb'",
        message: "tlbDynamicLb needs mode balance-tlb",
    },
    CelRule {
        rule: "!has(self.packetsPerSlave) || self.mode == 'balance-rr'",
        message: "packetsPerSlave needs mode balance-rr",
    },
    CelRule {
        rule: "!has(self.lpInterval) || self.mode in ['balance-tlb', 'balance-alb']",
        message: "lpInterval needs mode balance-tlb or balance-alb",
    },
    CelRule {
        rule: "!(has(self.arpInterval) && self.arpInterval > 0 && has(self.miimon) && self.miimon > 0)",
        message: "arpInterval and miimon exclude each other: keep one link monitor",
    },
    CelRule {
        rule: "!has(self.arpInterval) || self.arpInterval == 0 || !(self.mode in ['802.3ad', 'balance-tlb', 'balance-alb'])",
        message: "arpInterval does not work with mode 802.3ad, balance-tlb or balance-alb: use miimon",
    },
    CelRule {
        rule: "!has(self.arpInterval) || self.arpInterval == 0 || (has(self.arpIpTargets) && size(self.arpIpTargets) > 0)",
        message: "arpInterval needs arpIpTargets",
    },
    CelRule {
        rule: "!has(self.arpIpTargets) || (has(self.arpInterval) && self.arpInterval > 0)",
        message: "arpIpTargets needs arpInterval",
    },
    CelRule {
        rule: "!has(self.arpValidate) || (has(self.arpInterval) && self.arpInterval > 0)",
        message: "arpValidate needs arpInterval",
    },
    CelRule {
        rule: "!has(self.arpAllTargets) || (has(self.arpInterval) && self.arpInterval > 0)",
        message: "arpAllTargets needs arpInterval",
    },
    CelRule {
        rule: "!(has(self.updelay) || has(self.downdelay)) || !has(self.arpInterval) || self.arpInterval == 0",
        message: "updelay and downdelay work with miimon, not arpInterval",
    },
    CelRule {
        rule: "!has(self.updelay) || (has(self.miimon) ? (self.miimon > 0 && self.updelay % self.miimon == 0) : self.updelay % 100 == 0)",
        message: "updelay must be a multiple of miimon (100 when unset)",
    },
    CelRule {
        rule: "!has(self.downdelay) || (has(self.miimon) ? (self.miimon > 0 && self.downdelay % self.miimon == 0) : self.downdelay % 100 == 0)",
        message: "downdelay must be a multiple of miimon (100 when unset)",
    },
    CelRule {
        rule: "!(self.mode in ['balance-rr', 'balance-xor']) || !has(self.sriov) || !has(self.sriov.trust) || self.sriov.trust == 'on'",
        message: "balance-rr and balance-xor change the ports' MAC address, which a VF allows only when trusted: set sriov.trust to on or leave it unset",
    },
];

fn cel_rules_json() -> serde_json::Value {
    CEL_RULES
        .iter()
        .map(|r| serde_json::json!({"rule": r.rule, "message": r.message}))
        .collect()
}

impl BondNetworkSpec {
    /// Checks what the CEL rules check, for input that did not pass an API server.
    pub fn validate(&self) -> Result<(), SpecError> {
        use BondMode::*;
        let mode = self.mode;
        let err = |field: &'static str, message: &str| {
            Err(SpecError {
                field,
                message: message.to_owned(),
            })
        };
        let needs = |set: bool, field: &'static str, modes: &[BondMode], message: &str| {
            if set && !modes.contains(&mode) {
                err(field, &format!("{message} (mode is {mode})"))
            } else {
                Ok(())
            }
        };
        if self.links < 2 {
            return err(
                "links",
                "links must be at least 2: a bond of one port has no redundancy",
            );
        }
        if self.links > MAX_LINKS {
            return err("links", "links must be at most 8");
        }
        if self.vfs_per_pf == 0 || self.vfs_per_pf > 256 {
            return err("vfsPerPf", "vfsPerPf must be between 1 and 256");
        }
        if self.ifname.is_empty()
            || self.ifname.len() > MAX_IFNAME_LEN
            || !self
                .ifname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return err(
                "ifname",
                "ifname must be 1 to 13 letters, digits, '_' or '-' (ports append p<slot>)",
            );
        }
        if !is_dns_subdomain(&self.resource_prefix) {
            return err(
                "resourcePrefix",
                "resourcePrefix must be a DNS subdomain such as bondnet.io",
            );
        }
        needs(
            self.lacp_rate.is_some(),
            "lacpRate",
            &[Ieee8023ad],
            "lacpRate needs mode 802.3ad",
        )?;
        needs(
            self.ad_select.is_some(),
            "adSelect",
            &[Ieee8023ad],
            "adSelect needs mode 802.3ad",
        )?;
        needs(
            self.min_links.is_some(),
            "minLinks",
            &[Ieee8023ad],
            "minLinks needs mode 802.3ad",
        )?;
        if self.min_links.is_some_and(|m| m > self.links) {
            return err("minLinks", "minLinks must not exceed links");
        }
        needs(
            self.primary.is_some(),
            "primary",
            &[ActiveBackup, BalanceTlb, BalanceAlb],
            "primary needs mode active-backup, balance-tlb or balance-alb",
        )?;
        if let Some(primary) = &self.primary {
            if !(0..self.links).any(|i| *primary == format!("{}p{i}", self.ifname)) {
                return err(
                    "primary",
                    "primary must name a port: <ifname>p<slot>, e.g. bond0p0",
                );
            }
        }
        if self.primary_reselect.is_some() && self.primary.is_none() {
            return err("primaryReselect", "primaryReselect needs primary");
        }
        needs(
            self.xmit_hash_policy.is_some(),
            "xmitHashPolicy",
            &[BalanceXor, Ieee8023ad, BalanceTlb],
            "xmitHashPolicy needs mode balance-xor, 802.3ad or balance-tlb",
        )?;
        needs(
            self.fail_over_mac.is_some(),
            "failOverMac",
            &[ActiveBackup],
            "failOverMac needs mode active-backup",
        )?;
        needs(
            self.tlb_dynamic_lb.is_some(),
            "tlbDynamicLb",
            &[BalanceTlb],
            "tlbDynamicLb needs mode balance-tlb",
        )?;
        needs(
            self.packets_per_slave.is_some(),
            "packetsPerSlave",
            &[BalanceRr],
            "packetsPerSlave needs mode balance-rr",
        )?;
        needs(
            self.lp_interval.is_some(),
            "lpInterval",
            &[BalanceTlb, BalanceAlb],
            "lpInterval needs mode balance-tlb or balance-alb",
        )?;
        let arp = self.arp_interval_ms.is_some_and(|v| v > 0);
        if arp && self.miimon_ms.is_some_and(|v| v > 0) {
            return err(
                "arpInterval",
                "arpInterval and miimon exclude each other: keep one link monitor",
            );
        }
        if arp && matches!(mode, Ieee8023ad | BalanceTlb | BalanceAlb) {
            return err(
                "arpInterval",
                "arpInterval does not work with mode 802.3ad, balance-tlb or balance-alb: use miimon",
            );
        }
        if arp && self.arp_ip_targets.is_empty() {
            return err("arpIpTargets", "arpInterval needs arpIpTargets");
        }
        if !arp && !self.arp_ip_targets.is_empty() {
            return err("arpIpTargets", "arpIpTargets needs arpInterval");
        }
        for target in &self.arp_ip_targets {
            if target.parse::<std::net::Ipv4Addr>().is_err() {
                return err(
                    "arpIpTargets",
                    &format!("{target:?} is not an IPv4 address"),
                );
            }
        }
        if self.arp_ip_targets.len() > 16 {
            return err("arpIpTargets", "at most 16 arpIpTargets");
        }
        if !arp && self.arp_validate.is_some() {
            return err("arpValidate", "arpValidate needs arpInterval");
        }
        if !arp && self.arp_all_targets.is_some() {
            return err("arpAllTargets", "arpAllTargets needs arpInterval");
        }
        if arp && (self.updelay_ms.is_some() || self.downdelay_ms.is_some()) {
            return err(
                "updelay",
                "updelay and downdelay work with miimon, not arpInterval",
            );
        }
        let miimon = self.miimon_ms.unwrap_or(DEFAULT_MIIMON_MS);
        for (field, delay) in [
            ("updelay", self.updelay_ms),
            ("downdelay", self.downdelay_ms),
        ] {
            if let Some(delay) = delay {
                if miimon == 0 || delay % miimon != 0 {
                    return err(
                        field,
                        &format!("{field} must be a multiple of miimon (100 when unset)"),
                    );
                }
            }
        }
        if mode.needs_trusted_vfs() && self.sriov.trust == Some(OnOff::Off) {
            return err(
                "sriov.trust",
                "balance-rr and balance-xor change the ports' MAC address, which a VF allows only when trusted: set sriov.trust to on or leave it unset",
            );
        }
        if self.sriov.vlan_qos.is_some() && self.sriov.vlan.is_none() {
            return err("sriov.vlanQoS", "sriov.vlanQoS needs sriov.vlan");
        }
        if let (Some(min), Some(max)) = (self.sriov.min_tx_rate, self.sriov.max_tx_rate) {
            if max != 0 && min > max {
                return err(
                    "sriov.minTxRate",
                    "sriov.minTxRate must not exceed sriov.maxTxRate",
                );
            }
        }
        Ok(())
    }

    /// `failOverMac` as the bond gets it: 1 (active) for active-backup unless set.
    pub fn effective_fail_over_mac(&self) -> Option<FailOverMac> {
        match (self.fail_over_mac, self.mode) {
            (Some(v), _) => Some(v),
            (None, BondMode::ActiveBackup) => Some(FailOverMac::Active),
            (None, _) => None,
        }
    }

    /// `miimon` as the bond gets it: 100 unless ARP monitoring or an explicit value is chosen.
    pub fn effective_miimon_ms(&self) -> Option<u32> {
        match (self.miimon_ms, self.arp_interval_ms) {
            (Some(v), _) => Some(v),
            (None, Some(arp)) if arp > 0 => None,
            (None, _) => Some(DEFAULT_MIIMON_MS),
        }
    }

    /// `trust` for the VFs: on for modes that rewrite MAC addresses unless set.
    pub fn effective_trust(&self) -> Option<OnOff> {
        match self.sriov.trust {
            Some(v) => Some(v),
            None if self.mode.needs_trusted_vfs() => Some(OnOff::On),
            None => None,
        }
    }
}

/// A DNS-1123 subdomain: lowercase labels of letters, digits and '-', joined by '.'.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> BondNetworkSpec {
        serde_json::from_value(value).expect("test spec parses")
    }

    /// Specs that cannot work, with the field the error must name.
    pub(crate) fn refused_specs() -> Vec<(serde_json::Value, &'static str)> {
        vec![
            (json!({"links": 1}), "links"),
            (
                json!({"mode": "active-backup", "lacpRate": "fast"}),
                "lacpRate",
            ),
            (
                json!({"mode": "balance-xor", "adSelect": "count"}),
                "adSelect",
            ),
            (json!({"mode": "balance-rr", "minLinks": 1}), "minLinks"),
            (json!({"mode": "802.3ad", "minLinks": 3}), "minLinks"),
            (
                json!({"mode": "balance-xor", "primary": "bond0p0"}),
                "primary",
            ),
            (
                json!({"mode": "active-backup", "primary": "eth0"}),
                "primary",
            ),
            (
                json!({"mode": "active-backup", "primary": "bond0p2"}),
                "primary",
            ),
            (
                json!({"mode": "active-backup", "primaryReselect": "always"}),
                "primaryReselect",
            ),
            (
                json!({"mode": "active-backup", "xmitHashPolicy": "layer3+4"}),
                "xmitHashPolicy",
            ),
            (
                json!({"mode": "balance-rr", "failOverMac": 1}),
                "failOverMac",
            ),
            (
                json!({"mode": "balance-alb", "tlbDynamicLb": 0}),
                "tlbDynamicLb",
            ),
            (
                json!({"mode": "active-backup", "packetsPerSlave": 2}),
                "packetsPerSlave",
            ),
            (
                json!({"mode": "active-backup", "lpInterval": 2}),
                "lpInterval",
            ),
            (
                json!({"arpInterval": 200, "miimon": 100, "arpIpTargets": ["10.0.0.1"]}),
                "arpInterval",
            ),
            (
                json!({"mode": "802.3ad", "arpInterval": 200, "arpIpTargets": ["10.0.0.1"]}),
                "arpInterval",
            ),
            (json!({"arpInterval": 200}), "arpIpTargets"),
            (json!({"arpIpTargets": ["10.0.0.1"]}), "arpIpTargets"),
            (json!({"arpValidate": "all"}), "arpValidate"),
            (json!({"arpAllTargets": "all"}), "arpAllTargets"),
            (
                json!({"arpInterval": 200, "arpIpTargets": ["10.0.0.1"], "updelay": 200}),
                "updelay",
            ),
            (json!({"miimon": 100, "updelay": 150}), "updelay"),
            (json!({"downdelay": 150}), "downdelay"),
            (
                json!({"mode": "balance-rr", "sriov": {"trust": "off"}}),
                "sriov.trust",
            ),
            (json!({"sriov": {"vlanQoS": 3}}), "sriov.vlanQoS"),
            (
                json!({"sriov": {"minTxRate": 100, "maxTxRate": 50}}),
                "sriov.minTxRate",
            ),
        ]
    }

    /// Specs that work, each touching an option in a mode that takes it.
    pub(crate) fn accepted_specs() -> Vec<serde_json::Value> {
        vec![
            json!({}),
            json!({"mode": "802.3ad", "lacpRate": "fast", "adSelect": "bandwidth", "minLinks": 1, "xmitHashPolicy": "layer3+4"}),
            json!({"mode": "active-backup", "primary": "bond0p1", "primaryReselect": "failure", "failOverMac": 2}),
            json!({"mode": "balance-tlb", "tlbDynamicLb": 0, "lpInterval": 1, "xmitHashPolicy": "layer2+3", "primary": "bond0p0"}),
            json!({"mode": "balance-rr", "packetsPerSlave": 4, "sriov": {"trust": "on"}}),
            json!({"mode": "balance-xor", "arpInterval": 100, "arpIpTargets": ["10.0.0.1", "10.0.0.2"], "arpValidate": "all", "arpAllTargets": "any"}),
            json!({"miimon": 50, "updelay": 200, "downdelay": 100, "links": 4, "ifname": "uplink"}),
            json!({"sriov": {"vlan": 100, "vlanQoS": 5, "minTxRate": 10, "maxTxRate": 0}}),
            json!({"mode": "broadcast", "allSlavesActive": 1, "numPeerNotif": 3, "resendIgmp": 2}),
        ]
    }

    #[test]
    fn every_refused_spec_names_its_field() {
        for (value, field) in refused_specs() {
            let err = spec(value.clone())
                .validate()
                .expect_err(&format!("{value} must be refused"));
            assert_eq!(err.field, field, "{value}: {err}");
            assert!(
                err.to_string().starts_with(&format!("spec.{field}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn every_accepted_spec_validates() {
        for value in accepted_specs() {
            let result = spec(value.clone()).validate();
            assert!(result.is_ok(), "{value}: {result:?}");
        }
    }

    #[test]
    fn the_default_spec_is_the_serde_default() {
        assert_eq!(spec(json!({})), BondNetworkSpec::default());
    }

    #[test]
    fn active_backup_defaults_fail_over_mac_to_active_and_other_modes_leave_it_out() {
        assert_eq!(
            spec(json!({})).effective_fail_over_mac(),
            Some(FailOverMac::Active)
        );
        assert_eq!(
            spec(json!({"failOverMac": 0})).effective_fail_over_mac(),
            Some(FailOverMac::None)
        );
        assert_eq!(
            spec(json!({"mode": "802.3ad"})).effective_fail_over_mac(),
            None
        );
    }

    #[test]
    fn miimon_defaults_to_100_unless_arp_monitoring_is_chosen() {
        assert_eq!(spec(json!({})).effective_miimon_ms(), Some(100));
        assert_eq!(spec(json!({"miimon": 0})).effective_miimon_ms(), Some(0));
        assert_eq!(
            spec(json!({"arpInterval": 100, "arpIpTargets": ["10.0.0.1"]})).effective_miimon_ms(),
            None
        );
    }

    #[test]
    fn modes_that_rewrite_macs_default_to_trusted_vfs() {
        assert_eq!(
            spec(json!({"mode": "balance-rr"})).effective_trust(),
            Some(OnOff::On)
        );
        assert_eq!(
            spec(json!({"mode": "balance-xor"})).effective_trust(),
            Some(OnOff::On)
        );
        assert_eq!(spec(json!({})).effective_trust(), None);
    }

    #[test]
    fn fail_over_mac_outside_0_to_2_is_refused_with_the_allowed_values() {
        let err =
            serde_json::from_value::<BondNetworkSpec>(json!({"failOverMac": 3})).expect_err("3");
        assert!(
            err.to_string()
                .contains("use 0 (none), 1 (active) or 2 (follow)"),
            "{err}"
        );
    }

    #[test]
    fn unknown_modes_are_refused_with_the_list_of_modes() {
        let err = serde_json::from_value::<BondNetworkSpec>(json!({"mode": "round-robin"}))
            .expect_err("bad");
        assert!(err.to_string().contains("balance-rr"), "{err}");
    }

    fn crd_schema() -> serde_json::Value {
        use kube::CustomResourceExt;
        let crd = BondNetwork::crd();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .expect("schema")
            .open_api_v3_schema
            .as_ref();
        serde_json::to_value(schema.expect("openAPIV3Schema")).expect("schema serializes")
    }

    fn object(spec: &serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "bondnet.io/v1alpha1",
            "kind": "BondNetwork",
            "metadata": {"name": "net", "namespace": "ns"},
            "spec": spec,
        })
    }

    #[test]
    fn every_cel_rule_compiles() {
        let compiled = kube::core::cel::compile_schema(&crd_schema());
        assert!(
            !compiled.has_errors(),
            "{:?}",
            compiled.compilation_errors()
        );
    }

    #[test]
    fn the_api_server_refuses_what_validate_refuses_with_a_message_naming_the_field() {
        let schema = crd_schema();
        for (spec, field) in refused_specs() {
            let errors = kube::core::cel::Validator::new()
                .validate(&schema, &object(&spec), None)
                .expect_err(&format!("CEL must refuse {spec}"));
            let text = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            let leaf = field.rsplit('.').next().unwrap_or(field);
            assert!(text.contains(leaf), "{spec}: {text}");
        }
    }

    #[test]
    fn the_api_server_accepts_what_validate_accepts() {
        let schema = crd_schema();
        for spec in accepted_specs() {
            let result = kube::core::cel::Validator::new().validate(&schema, &object(&spec), None);
            assert!(result.is_ok(), "{spec}: {result:?}");
        }
    }
}
