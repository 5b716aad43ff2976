//! The options as IFLA_BOND_* attributes: what a bond is created with, what the kernel
//! reports back, and CHECK's comparison of the two in option and kernel names.

use std::net::Ipv4Addr;

use netlink_packet_route::link::{
    BondAdInfo, BondAdSelect, BondAllPortActive, BondArpAllTargets, BondArpValidate,
    BondFailOverMac, BondLacpRate, BondMode as NlMode, BondPrimaryReselect, BondXmitHashPolicy,
    InfoBond,
};

use crate::options::{BondOptions, OPTIONS};
use crate::values::{
    AdSelect, ArpAllTargets, ArpTargets, ArpValidate, BondMode, FailOverMac, LacpRate,
    PrimaryReselect, XmitHashPolicy,
};

/// A value as the netlink attribute `N` carries it.
trait Nl<N>: Sized {
    fn to_nl(&self) -> N;
    fn from_nl(n: &N) -> Option<Self>;
}

impl Nl<u32> for u32 {
    fn to_nl(&self) -> u32 {
        *self
    }
    fn from_nl(n: &u32) -> Option<Self> {
        Some(*n)
    }
}

/// `numPeerNotif` (0 to 255 by the option table).
impl Nl<u8> for u32 {
    fn to_nl(&self) -> u8 {
        u8::try_from(*self).unwrap_or(u8::MAX)
    }
    fn from_nl(n: &u8) -> Option<Self> {
        Some(u32::from(*n))
    }
}

impl Nl<bool> for bool {
    fn to_nl(&self) -> bool {
        *self
    }
    fn from_nl(n: &bool) -> Option<Self> {
        Some(*n)
    }
}

impl Nl<BondAllPortActive> for bool {
    fn to_nl(&self) -> BondAllPortActive {
        if *self {
            BondAllPortActive::Delivered
        } else {
            BondAllPortActive::Dropped
        }
    }
    fn from_nl(n: &BondAllPortActive) -> Option<Self> {
        Some(*n == BondAllPortActive::Delivered)
    }
}

impl Nl<Vec<Ipv4Addr>> for ArpTargets {
    fn to_nl(&self) -> Vec<Ipv4Addr> {
        self.0.clone()
    }
    fn from_nl(n: &Vec<Ipv4Addr>) -> Option<Self> {
        Some(ArpTargets(n.clone()))
    }
}

/// Enums whose netlink type converts from and to the kernel number as `$int`.
macro_rules! nl_enum {
    ($($ours:ty => $theirs:ty as $int:ty),+ $(,)?) => {$(
        impl Nl<$theirs> for $ours {
            fn to_nl(&self) -> $theirs {
                <$theirs>::from(<$int>::from(self.number()))
            }
            fn from_nl(n: &$theirs) -> Option<Self> {
                <$ours>::from_number(u64::from(<$int>::from(*n)))
            }
        }
    )+};
}

nl_enum!(
    BondMode => NlMode as u8,
    FailOverMac => BondFailOverMac as u8,
    XmitHashPolicy => BondXmitHashPolicy as u8,
    LacpRate => BondLacpRate as u8,
    AdSelect => BondAdSelect as u8,
    PrimaryReselect => BondPrimaryReselect as u8,
    ArpValidate => BondArpValidate as u32,
    ArpAllTargets => BondArpAllTargets as u32,
);

/// Which attribute carries which option (`primary` is an ifindex, given by the caller).
macro_rules! attributes {
    ($($field:ident => $variant:ident),+ $(,)?) => {
        fn encode_options(o: &BondOptions, out: &mut Vec<InfoBond>) {
            $( if let Some(v) = &o.$field { out.push(InfoBond::$variant(v.to_nl())); } )+
        }

        fn decode_option(attr: &InfoBond, o: &mut BondOptions) -> bool {
            match attr {
                $( InfoBond::$variant(n) => { o.$field = Nl::from_nl(n); true } )+
                _ => false,
            }
        }
    };
}

attributes!(
    miimon => MiiMon,
    updelay => UpDelay,
    downdelay => DownDelay,
    fail_over_mac => FailOverMac,
    all_slaves_active => AllPortsActive,
    tlb_dynamic_lb => TlbDynamicLb,
    xmit_hash_policy => XmitHashPolicy,
    lacp_rate => AdLacpRate,
    ad_select => AdSelect,
    min_links => MinLinks,
    primary_reselect => PrimaryReselect,
    arp_interval => ArpInterval,
    arp_ip_targets => ArpIpTarget,
    arp_validate => ArpValidate,
    arp_all_targets => ArpAllTargets,
    num_peer_notif => NumPeerNotif,
    resend_igmp => ResendIgmp,
    packets_per_slave => PacketsPerPort,
    lp_interval => LpInterval,
);

/// The IFLA_BOND_* attributes a bond is created with, the mode first. `primary` is the ifindex
/// of the primary port, resolved by the caller in the bond's namespace.
pub fn encode(mode: BondMode, options: &BondOptions, primary: Option<u32>) -> Vec<InfoBond> {
    let mut out = vec![InfoBond::Mode(mode.to_nl())];
    encode_options(options, &mut out);
    if let Some(index) = primary {
        out.push(InfoBond::Primary(index));
    }
    out
}

/// What the kernel reports of a bond.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readback {
    /// `None` for a mode number bondnet does not know.
    pub mode: Option<BondMode>,
    pub options: BondOptions,
    /// The primary port's ifindex.
    pub primary: Option<u32>,
    /// 802.3ad: the aggregator id the bond selected, if any.
    pub ad_aggregator: Option<u16>,
}

impl Readback {
    pub fn from_netlink(attrs: &[InfoBond]) -> Self {
        let mut r = Readback::default();
        for attr in attrs {
            if decode_option(attr, &mut r.options) {
                continue;
            }
            match attr {
                InfoBond::Mode(m) => r.mode = Nl::from_nl(m),
                InfoBond::Primary(index) => r.primary = Some(*index),
                InfoBond::AdInfo(info) => {
                    for i in info {
                        if let BondAdInfo::Aggregator(id) = i {
                            r.ad_aggregator = Some(*id);
                        }
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// Every option the config sets that the kernel reports differently, as "option: want X,
    /// kernel has Y" in option and kernel names. `primary` is the wanted primary port's
    /// ifindex; `name_of` names an ifindex.
    pub fn mismatches(
        &self,
        mode: BondMode,
        want: &BondOptions,
        primary: Option<u32>,
        name_of: impl Fn(u32) -> String,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if self.mode != Some(mode) {
            let have = self.mode.map_or("an unknown mode", BondMode::name);
            out.push(format!("mode: want {mode}, kernel has {have}"));
        }
        for name in OPTIONS.iter().map(|o| o.name).filter(|n| *n != "primary") {
            let Some(w) = want.show(name) else { continue };
            match self.options.show(name) {
                Some(h) if h == w => {}
                Some(h) => out.push(format!("{name}: want {w}, kernel has {h}")),
                None => out.push(format!("{name}: want {w}, kernel reports none")),
            }
        }
        if let Some(w) = primary {
            if self.primary != Some(w) {
                let have = self.primary.map_or("none".to_owned(), &name_of);
                out.push(format!("primary: want {}, kernel has {have}", name_of(w)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: serde_json::Value) -> BondOptions {
        serde_json::from_value(v).expect("options parse")
    }

    #[test]
    fn attributes_start_with_the_mode_and_carry_each_option() {
        let o = opts(json!({"miimon": 100, "lacpRate": "fast", "xmitHashPolicy": "vlan+srcmac"}));
        let attrs = encode(BondMode::Ieee8023ad, &o, None);
        assert_eq!(attrs[0], InfoBond::Mode(NlMode::Ieee8023Ad));
        assert!(attrs.contains(&InfoBond::MiiMon(100)));
        assert!(attrs.contains(&InfoBond::AdLacpRate(BondLacpRate::Fast)));
        assert!(attrs.contains(&InfoBond::XmitHashPolicy(BondXmitHashPolicy::VlanSrcMac)));
    }

    #[test]
    fn every_option_but_primary_has_an_attribute_and_reads_back_unchanged() {
        let o = opts(json!({
            "miimon": 100, "failOverMac": 2, "allSlavesActive": 1, "tlbDynamicLb": 0,
            "xmitHashPolicy": "encap3+4", "lacpRate": "fast", "adSelect": "count",
            "minLinks": 1, "primaryReselect": "failure", "updelay": 200, "downdelay": 300,
            "arpInterval": 50, "arpIpTargets": ["10.0.0.1"], "arpValidate": "filter_backup",
            "arpAllTargets": "all", "numPeerNotif": 3, "resendIgmp": 4, "packetsPerSlave": 5,
            "lpInterval": 6
        }));
        let set = o.to_map().len();
        assert_eq!(set + 1, OPTIONS.len(), "every option but primary is set");
        let back = Readback::from_netlink(&encode(BondMode::BalanceTlb, &o, Some(7)));
        assert_eq!(back.options, o);
        assert_eq!(back.primary, Some(7));
        assert!(back
            .mismatches(BondMode::BalanceTlb, &o, Some(7), |i| i.to_string())
            .is_empty());
    }

    #[test]
    fn mismatches_use_option_and_kernel_names() {
        let want = opts(json!({"miimon": 100, "xmitHashPolicy": "layer3+4"}));
        let live = opts(json!({"miimon": 50, "xmitHashPolicy": "layer2"}));
        let back = Readback::from_netlink(&encode(BondMode::BalanceXor, &live, Some(3)));
        assert_eq!(
            back.mismatches(BondMode::ActiveBackup, &want, Some(4), |i| format!(
                "net{i}"
            )),
            vec![
                "mode: want active-backup, kernel has balance-xor".to_owned(),
                "miimon: want 100, kernel has 50".to_owned(),
                "xmitHashPolicy: want layer3+4, kernel has layer2".to_owned(),
                "primary: want net4, kernel has net3".to_owned(),
            ]
        );
    }
}
