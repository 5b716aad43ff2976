//! [`BondOptions`]: every bonding option once, with its JSON name (what users write in a
//! BondNetwork and in a bond CNI config), the modes it applies in, and its range. The
//! BondNetwork spec embeds the struct, the NAD renderer writes it, the plugin reads it.

use serde_json::{Map, Value};

use crate::values::{
    AdSelect, ArpAllTargets, ArpTargets, ArpValidate, BondMode, FailOverMac, LacpRate, OptionValue,
    PrimaryReselect, XmitHashPolicy,
};
use crate::OptionError;

use BondMode::*;

/// Every mode.
const ANY: &[BondMode] = BondMode::ALL;

/// One row of the option table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
    /// The JSON field name.
    pub name: &'static str,
    /// What the option does, for the CRD.
    pub doc: &'static str,
    /// The modes the option applies in.
    pub modes: &'static [BondMode],
    /// The value (of [`OptionValue::numeric`]) that means "off": allowed in any mode, and
    /// not counted as set by the cross-field rules (`arpInterval: 0` is no ARP monitoring).
    pub inert: Option<i64>,
    /// The range of [`OptionValue::numeric`] (for a list, of its length).
    pub min: i64,
    /// See `min`.
    pub max: i64,
    /// A list: CEL measures it with `size()`.
    pub is_list: bool,
}

impl OptionSpec {
    /// The row of the option with this JSON name.
    pub fn get(name: &str) -> Option<&'static OptionSpec> {
        OPTIONS.iter().find(|o| o.name == name)
    }

    /// True when the option applies in every mode.
    pub fn any_mode(&self) -> bool {
        self.modes.len() == BondMode::ALL.len()
    }
}

const MS: i64 = i32::MAX as i64;

macro_rules! bond_options {
    ($( $(#[doc = $doc:literal])+ $field:ident: $ty:ty = $json:literal, modes $modes:expr, inert $inert:expr, range $min:expr => $max:expr; )+) => {
        /// Every bonding option; `None` leaves the kernel's default (or the plugin's, for
        /// `miimon`). The mode is not among them: its default differs between a bond CNI
        /// config (balance-rr, as upstream) and a BondNetwork (active-backup).
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct BondOptions {
            $( $(#[doc = $doc])+ pub $field: Option<$ty>, )+
        }

        /// The option table, in the order configs are written.
        pub const OPTIONS: &[OptionSpec] = &[$(OptionSpec {
            name: $json,
            doc: concat!($($doc, "\n"),+),
            modes: $modes,
            inert: $inert,
            min: $min,
            max: $max,
            is_list: <$ty as OptionValue>::IS_LIST,
        }),+];

        impl BondOptions {
            /// Reads the options from a JSON object, ignoring every other field. Each error
            /// names the field.
            pub fn from_map(map: &Map<String, Value>) -> Result<Self, OptionError> {
                Ok(BondOptions {
                    $( $field: read::<$ty>($json, map.get($json))?, )+
                })
            }

            /// The options that are set, by JSON name (in name order).
            pub fn to_map(&self) -> Map<String, Value> {
                let mut map = Map::new();
                $( if let Some(v) = &self.$field { map.insert($json.to_owned(), v.to_json()); } )+
                map
            }

            /// The numeric view of a set option (see [`OptionValue::numeric`]).
            pub fn number(&self, name: &str) -> Option<i64> {
                match name {
                    $( $json => self.$field.as_ref().and_then(OptionValue::numeric), )+
                    _ => None,
                }
            }

            /// True when the option is given (even with its inert value).
            pub fn is_set(&self, name: &str) -> bool {
                match name {
                    $( $json => self.$field.is_some(), )+
                    _ => false,
                }
            }

            /// A set option's value for a person.
            pub fn show(&self, name: &str) -> Option<String> {
                match name {
                    $( $json => self.$field.as_ref().map(OptionValue::show), )+
                    _ => None,
                }
            }

            /// The OpenAPI schema of each option, by JSON name.
            #[cfg(feature = "schema")]
            pub fn property_schemas() -> Vec<(&'static str, Value)> {
                vec![$( ($json, crate::schema::property(OptionSpec::get($json), <$ty as OptionValue>::schema())), )+]
            }
        }
    };
}

fn read<T: OptionValue>(
    name: &'static str,
    value: Option<&Value>,
) -> Result<Option<T>, OptionError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let err = |message: String| OptionError {
        field: name.to_owned(),
        message,
    };
    let v = T::from_json(value).map_err(err)?;
    if let (Some(n), Some(spec)) = (v.numeric(), OptionSpec::get(name)) {
        if n < spec.min || n > spec.max {
            return Err(err(if spec.is_list {
                format!("has {n} entries; list at most {}", spec.max)
            } else {
                format!("{n} is out of range; use {} to {}", spec.min, spec.max)
            }));
        }
    }
    Ok(Some(v))
}

bond_options! {
    /// MII link monitoring interval in milliseconds; 0 turns it off. When neither `miimon`
    /// nor `arpInterval` is set, 100 is used.
    miimon: u32 = "miimon", modes ANY, inert Some(0), range 0 => MS;
    /// active-backup: 0 (none) every port takes the bond's MAC, 1 (active) the bond takes the
    /// active port's MAC, 2 (follow) the active port takes the bond's MAC.
    fail_over_mac: FailOverMac = "failOverMac", modes &[ActiveBackup], inert Some(0), range 0 => 2;
    /// 1: deliver duplicate frames received on inactive ports.
    all_slaves_active: bool = "allSlavesActive", modes ANY, inert None, range 0 => 1;
    /// balance-tlb and balance-alb: 1 (kernel default) rebalances flows by load, 0 by hash.
    tlb_dynamic_lb: bool = "tlbDynamicLb", modes &[BalanceTlb, BalanceAlb], inert None, range 0 => 1;
    /// Transmit hash policy for balance-xor, 802.3ad and balance-tlb.
    xmit_hash_policy: XmitHashPolicy = "xmitHashPolicy", modes &[BalanceXor, Ieee8023ad, BalanceTlb], inert None, range 0 => 5;
    /// 802.3ad: the rate at which the partner sends LACPDUs.
    lacp_rate: LacpRate = "lacpRate", modes &[Ieee8023ad], inert None, range 0 => 1;
    /// 802.3ad: aggregator selection logic.
    ad_select: AdSelect = "adSelect", modes &[Ieee8023ad], inert None, range 0 => 2;
    /// 802.3ad: ports that must be up for the bond to have carrier; at most the number of
    /// ports.
    min_links: u32 = "minLinks", modes &[Ieee8023ad], inert None, range 0 => MS;
    /// active-backup, balance-tlb, balance-alb: the preferred port, by interface name.
    primary: String = "primary", modes &[ActiveBackup, BalanceTlb, BalanceAlb], inert None, range 0 => 0;
    /// When a returning primary port becomes active again (needs `primary`).
    primary_reselect: PrimaryReselect = "primaryReselect", modes &[ActiveBackup, BalanceTlb, BalanceAlb], inert None, range 0 => 2;
    /// Milliseconds to wait before enabling a port after link up; a multiple of miimon.
    updelay: u32 = "updelay", modes ANY, inert Some(0), range 0 => MS;
    /// Milliseconds to wait before disabling a port after link down; a multiple of miimon.
    downdelay: u32 = "downdelay", modes ANY, inert Some(0), range 0 => MS;
    /// ARP link monitoring interval in milliseconds (balance-rr, active-backup, balance-xor,
    /// broadcast); excludes `miimon`, needs `arpIpTargets`.
    arp_interval: u32 = "arpInterval", modes &[BalanceRr, ActiveBackup, BalanceXor, Broadcast], inert Some(0), range 0 => MS;
    /// IPv4 addresses to send ARP probes to, at most 16 (needs `arpInterval`).
    arp_ip_targets: ArpTargets = "arpIpTargets", modes ANY, inert Some(0), range 0 => 16;
    /// Which ARP replies validate a port (needs `arpInterval`).
    arp_validate: ArpValidate = "arpValidate", modes ANY, inert None, range 0 => 6;
    /// Whether any or all ARP targets must answer (needs `arpInterval`).
    arp_all_targets: ArpAllTargets = "arpAllTargets", modes ANY, inert None, range 0 => 1;
    /// active-backup: gratuitous ARPs and unsolicited IPv6 NAs sent after a failover
    /// (the kernel's num_grat_arp and num_unsol_na).
    num_peer_notif: u32 = "numPeerNotif", modes &[ActiveBackup], inert None, range 0 => 255;
    /// IGMP membership reports sent after a failover (balance-rr, active-backup,
    /// balance-tlb, balance-alb).
    resend_igmp: u32 = "resendIgmp", modes &[BalanceRr, ActiveBackup, BalanceTlb, BalanceAlb], inert None, range 0 => 255;
    /// balance-rr: packets sent through a port before moving to the next (0: random).
    packets_per_slave: u32 = "packetsPerSlave", modes &[BalanceRr], inert None, range 0 => 65535;
    /// balance-tlb and balance-alb: seconds between learning packets.
    lp_interval: u32 = "lpInterval", modes &[BalanceTlb, BalanceAlb], inert None, range 1 => MS;
}

impl BondOptions {
    /// True when the option is set to something other than its inert value.
    pub fn active(&self, name: &str) -> bool {
        match OptionSpec::get(name).and_then(|s| s.inert) {
            Some(inert) => self.number(name).is_some_and(|n| n != inert),
            None => self.is_set(name),
        }
    }

    /// `miimon` as the bond gets it: the value given, else none with ARP monitoring, else
    /// the plugin's default of 100.
    pub fn effective_miimon(&self) -> Option<u32> {
        match self.miimon {
            Some(v) => Some(v),
            None if self.active("arpInterval") => None,
            None => Some(crate::DEFAULT_MIIMON_MS),
        }
    }
}

impl serde::Serialize for BondOptions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for BondOptions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        BondOptions::from_map(&map).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn options_round_trip_through_json() {
        let o = BondOptions::from_map(&map(json!({
            "miimon": "100", "failOverMac": "active", "allSlavesActive": true,
            "arpIpTargets": "10.0.0.1,10.0.0.2", "xmitHashPolicy": 1, "ignored": 5
        })))
        .expect("parses");
        assert_eq!(o.miimon, Some(100));
        assert_eq!(o.xmit_hash_policy, Some(XmitHashPolicy::Layer34));
        assert_eq!(
            Value::Object(o.to_map()),
            json!({"miimon": 100, "failOverMac": 1, "allSlavesActive": 1,
                   "xmitHashPolicy": "layer3+4", "arpIpTargets": ["10.0.0.1", "10.0.0.2"]})
        );
        assert_eq!(BondOptions::from_map(&o.to_map()), Ok(o));
    }

    #[test]
    fn errors_name_the_field_and_the_range() {
        let e = BondOptions::from_map(&map(json!({"numPeerNotif": 300}))).expect_err("range");
        assert_eq!(
            e.to_string(),
            "numPeerNotif: 300 is out of range; use 0 to 255"
        );
        let e = BondOptions::from_map(&map(json!({"lpInterval": 0}))).expect_err("range");
        assert_eq!(e.field, "lpInterval");
        let e = BondOptions::from_map(&map(json!({"miimon": "fast"}))).expect_err("text");
        assert_eq!(
            e.to_string(),
            "miimon: \"fast\" is not a whole number; write it as a number, e.g. 100"
        );
        let targets: Vec<String> = (1..=17).map(|i| format!("10.0.0.{i}")).collect();
        let e = BondOptions::from_map(&map(json!({ "arpIpTargets": targets }))).expect_err("17");
        assert_eq!(
            e.to_string(),
            "arpIpTargets: has 17 entries; list at most 16"
        );
    }

    #[test]
    fn every_option_is_in_the_table_once() {
        let mut names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPTIONS.len());
        for o in OPTIONS {
            assert!(!o.modes.is_empty(), "{}", o.name);
            assert!(!o.doc.trim().is_empty(), "{}", o.name);
        }
    }
}
