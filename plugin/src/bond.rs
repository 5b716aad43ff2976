//! Bond options as typed values: the kernel's names and numbers for each option, which modes
//! each option needs, the netlink attributes a bond is created with, and the comparison CHECK
//! makes against what the kernel reports (IFLA_BOND_*, never sysfs).

use std::net::Ipv4Addr;

use netlink_packet_route::link::{
    BondAdSelect, BondAllPortActive, BondArpAllTargets, BondArpValidate, BondFailOverMac,
    BondLacpRate, BondMode as NlMode, BondPrimaryReselect, BondXmitHashPolicy, InfoBond,
};

/// Declares an enum of kernel option values with their kernel names and numbers, so a value
/// parses from either, as the bonding driver's own sysfs interface accepts both.
macro_rules! kernel_values {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = ($num:expr, $text:expr)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The kernel's name for the value.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The kernel's number for the value.
            pub fn number(self) -> u8 {
                match self { $($name::$variant => $num),+ }
            }

            /// Parse the kernel name or number (as text).
            pub fn parse(text: &str) -> Option<Self> {
                let text = text.trim();
                Self::ALL.iter().copied().find(|v| {
                    v.name().eq_ignore_ascii_case(text) || v.number().to_string() == text
                })
            }

            pub fn from_number(n: u64) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| u64::from(v.number()) == n)
            }

            /// "a, b or c": for error messages.
            pub fn choices() -> String {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                crate::bond::join_choices(&names)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub(crate) fn join_choices(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_string(),
        None => String::new(),
    }
}

kernel_values!(
    /// The seven bonding modes.
    BondMode {
        BalanceRr = (0, "balance-rr"),
        ActiveBackup = (1, "active-backup"),
        BalanceXor = (2, "balance-xor"),
        Broadcast = (3, "broadcast"),
        Lacp = (4, "802.3ad"),
        BalanceTlb = (5, "balance-tlb"),
        BalanceAlb = (6, "balance-alb"),
    }
);

kernel_values!(FailOverMac { None = (0, "none"), Active = (1, "active"), Follow = (2, "follow") });

kernel_values!(XmitHashPolicy {
    Layer2 = (0, "layer2"),
    Layer34 = (1, "layer3+4"),
    Layer23 = (2, "layer2+3"),
    Encap23 = (3, "encap2+3"),
    Encap34 = (4, "encap3+4"),
    VlanSrcMac = (5, "vlan+srcmac"),
});

kernel_values!(LacpRate { Slow = (0, "slow"), Fast = (1, "fast") });

kernel_values!(AdSelect {
    Stable = (0, "stable"),
    Bandwidth = (1, "bandwidth"),
    Count = (2, "count"),
});

kernel_values!(PrimaryReselect {
    Always = (0, "always"),
    Better = (1, "better"),
    Failure = (2, "failure"),
});

kernel_values!(ArpValidate {
    None = (0, "none"),
    Active = (1, "active"),
    Backup = (2, "backup"),
    All = (3, "all"),
    Filter = (4, "filter"),
    FilterActive = (5, "filter_active"),
    FilterBackup = (6, "filter_backup"),
});

kernel_values!(ArpAllTargets { Any = (0, "any"), All = (1, "all") });

impl BondMode {
    /// Modes in which tlb/alb MAC handling needs every port to have its own MAC.
    pub fn needs_unique_port_macs(self) -> bool {
        matches!(self, BondMode::BalanceTlb | BondMode::BalanceAlb)
    }
}

/// Every option the plugin sets on a bond. `None` leaves the kernel's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondOptions {
    pub mode: BondMode,
    pub miimon_ms: Option<u32>,
    pub fail_over_mac: Option<FailOverMac>,
    pub all_slaves_active: Option<bool>,
    pub tlb_dynamic_lb: Option<bool>,
    pub xmit_hash_policy: Option<XmitHashPolicy>,
    pub lacp_rate: Option<LacpRate>,
    pub ad_select: Option<AdSelect>,
    pub min_links: Option<u32>,
    /// The name of the primary port (one of `links`).
    pub primary: Option<String>,
    pub primary_reselect: Option<PrimaryReselect>,
    pub updelay_ms: Option<u32>,
    pub downdelay_ms: Option<u32>,
    pub arp_interval_ms: Option<u32>,
    pub arp_ip_targets: Vec<Ipv4Addr>,
    pub arp_validate: Option<ArpValidate>,
    pub arp_all_targets: Option<ArpAllTargets>,
    pub num_peer_notif: Option<u8>,
    pub resend_igmp: Option<u32>,
    pub packets_per_slave: Option<u32>,
    pub lp_interval_s: Option<u32>,
}

impl BondOptions {
    pub fn new(mode: BondMode) -> Self {
        BondOptions {
            mode,
            miimon_ms: None,
            fail_over_mac: None,
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
            lp_interval_s: None,
        }
    }

    /// The IFLA_BOND_* attributes a bond is created with. `primary` is the ifindex of the
    /// primary port, resolved by the caller in the bond's namespace.
    pub fn to_netlink(&self, primary: Option<u32>) -> Vec<InfoBond> {
        let mut out = vec![InfoBond::Mode(nl_mode(self.mode))];
        let o = self;
        if let Some(v) = o.miimon_ms {
            out.push(InfoBond::MiiMon(v));
        }
        if let Some(v) = o.updelay_ms {
            out.push(InfoBond::UpDelay(v));
        }
        if let Some(v) = o.downdelay_ms {
            out.push(InfoBond::DownDelay(v));
        }
        if let Some(v) = o.fail_over_mac {
            out.push(InfoBond::FailOverMac(BondFailOverMac::from(v.number())));
        }
        if let Some(v) = o.all_slaves_active {
            out.push(InfoBond::AllPortsActive(if v {
                BondAllPortActive::Delivered
            } else {
                BondAllPortActive::Dropped
            }));
        }
        if let Some(v) = o.tlb_dynamic_lb {
            out.push(InfoBond::TlbDynamicLb(v));
        }
        if let Some(v) = o.xmit_hash_policy {
            out.push(InfoBond::XmitHashPolicy(BondXmitHashPolicy::from(
                v.number(),
            )));
        }
        if let Some(v) = o.lacp_rate {
            out.push(InfoBond::AdLacpRate(BondLacpRate::from(v.number())));
        }
        if let Some(v) = o.ad_select {
            out.push(InfoBond::AdSelect(BondAdSelect::from(v.number())));
        }
        if let Some(v) = o.min_links {
            out.push(InfoBond::MinLinks(v));
        }
        if let Some(v) = primary {
            out.push(InfoBond::Primary(v));
        }
        if let Some(v) = o.primary_reselect {
            out.push(InfoBond::PrimaryReselect(BondPrimaryReselect::from(
                v.number(),
            )));
        }
        if let Some(v) = o.arp_interval_ms {
            out.push(InfoBond::ArpInterval(v));
        }
        if !o.arp_ip_targets.is_empty() {
            out.push(InfoBond::ArpIpTarget(o.arp_ip_targets.clone()));
        }
        if let Some(v) = o.arp_validate {
            out.push(InfoBond::ArpValidate(BondArpValidate::from(u32::from(
                v.number(),
            ))));
        }
        if let Some(v) = o.arp_all_targets {
            out.push(InfoBond::ArpAllTargets(BondArpAllTargets::from(u32::from(
                v.number(),
            ))));
        }
        if let Some(v) = o.num_peer_notif {
            out.push(InfoBond::NumPeerNotif(v));
        }
        if let Some(v) = o.resend_igmp {
            out.push(InfoBond::ResendIgmp(v));
        }
        if let Some(v) = o.packets_per_slave {
            out.push(InfoBond::PacketsPerPort(v));
        }
        if let Some(v) = o.lp_interval_s {
            out.push(InfoBond::LpInterval(v));
        }
        out
    }
}

fn nl_mode(mode: BondMode) -> NlMode {
    NlMode::from(mode.number())
}

/// The bond options the kernel reports, as numbers, for CHECK to compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BondReadback {
    pub mode: Option<u8>,
    pub miimon_ms: Option<u32>,
    pub updelay_ms: Option<u32>,
    pub downdelay_ms: Option<u32>,
    pub fail_over_mac: Option<u8>,
    pub all_slaves_active: Option<bool>,
    pub tlb_dynamic_lb: Option<bool>,
    pub xmit_hash_policy: Option<u8>,
    pub lacp_rate: Option<u8>,
    pub ad_select: Option<u8>,
    pub min_links: Option<u32>,
    pub primary: Option<u32>,
    pub primary_reselect: Option<u8>,
    pub arp_interval_ms: Option<u32>,
    pub arp_ip_targets: Vec<Ipv4Addr>,
    pub arp_validate: Option<u8>,
    pub arp_all_targets: Option<u8>,
    pub num_peer_notif: Option<u8>,
    pub resend_igmp: Option<u32>,
    pub packets_per_slave: Option<u32>,
    pub lp_interval_s: Option<u32>,
    /// 802.3ad: the aggregator id the bond selected, if any.
    pub ad_aggregator: Option<u16>,
}

impl BondReadback {
    pub fn from_netlink(attrs: &[InfoBond]) -> Self {
        let mut r = BondReadback::default();
        for attr in attrs {
            match attr {
                InfoBond::Mode(m) => r.mode = Some(u8::from(*m)),
                InfoBond::MiiMon(v) => r.miimon_ms = Some(*v),
                InfoBond::UpDelay(v) => r.updelay_ms = Some(*v),
                InfoBond::DownDelay(v) => r.downdelay_ms = Some(*v),
                InfoBond::FailOverMac(v) => r.fail_over_mac = Some(u8::from(*v)),
                InfoBond::AllPortsActive(v) => {
                    r.all_slaves_active = Some(*v == BondAllPortActive::Delivered)
                }
                InfoBond::TlbDynamicLb(v) => r.tlb_dynamic_lb = Some(*v),
                InfoBond::XmitHashPolicy(v) => r.xmit_hash_policy = Some(u8::from(*v)),
                InfoBond::AdLacpRate(v) => r.lacp_rate = Some(u8::from(*v)),
                InfoBond::AdSelect(v) => r.ad_select = Some(u8::from(*v)),
                InfoBond::MinLinks(v) => r.min_links = Some(*v),
                InfoBond::Primary(v) => r.primary = Some(*v),
                InfoBond::PrimaryReselect(v) => r.primary_reselect = Some(u8::from(*v)),
                InfoBond::ArpInterval(v) => r.arp_interval_ms = Some(*v),
                InfoBond::ArpIpTarget(v) => r.arp_ip_targets = v.clone(),
                InfoBond::ArpValidate(v) => r.arp_validate = u8::try_from(u32::from(*v)).ok(),
                InfoBond::ArpAllTargets(v) => r.arp_all_targets = u8::try_from(u32::from(*v)).ok(),
                InfoBond::NumPeerNotif(v) => r.num_peer_notif = Some(*v),
                InfoBond::ResendIgmp(v) => r.resend_igmp = Some(*v),
                InfoBond::PacketsPerPort(v) => r.packets_per_slave = Some(*v),
                InfoBond::LpInterval(v) => r.lp_interval_s = Some(*v),
                InfoBond::AdInfo(info) => {
                    for i in info {
                        if let netlink_packet_route::link::BondAdInfo::Aggregator(id) = i {
                            r.ad_aggregator = Some(*id);
                        }
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// Every option the config sets that the kernel reports differently, as
    /// "option: want X, kernel has Y" sentences.
    pub fn mismatches(&self, want: &BondOptions, primary: Option<u32>) -> Vec<String> {
        let mut out = Vec::new();
        fn cmp<T: PartialEq + std::fmt::Debug>(
            out: &mut Vec<String>,
            field: &str,
            want: Option<T>,
            have: Option<T>,
        ) {
            if let Some(w) = want {
                if have.as_ref() != Some(&w) {
                    match have {
                        Some(h) => out.push(format!("{field}: want {w:?}, kernel has {h:?}")),
                        None => out.push(format!("{field}: want {w:?}, kernel reports none")),
                    }
                }
            }
        }
        let num = |v: Option<u8>| v;
        if self.mode != Some(want.mode.number()) {
            let have = self
                .mode
                .and_then(|m| BondMode::from_number(u64::from(m)))
                .map_or("unknown".to_string(), |m| m.name().to_string());
            out.push(format!("mode: want {}, kernel has {have}", want.mode));
        }
        cmp(&mut out, "miimon", want.miimon_ms, self.miimon_ms);
        cmp(&mut out, "updelay", want.updelay_ms, self.updelay_ms);
        cmp(&mut out, "downdelay", want.downdelay_ms, self.downdelay_ms);
        cmp(
            &mut out,
            "failOverMac",
            want.fail_over_mac.map(|v| v.number()),
            num(self.fail_over_mac),
        );
        cmp(
            &mut out,
            "allSlavesActive",
            want.all_slaves_active,
            self.all_slaves_active,
        );
        cmp(
            &mut out,
            "tlbDynamicLb",
            want.tlb_dynamic_lb,
            self.tlb_dynamic_lb,
        );
        cmp(
            &mut out,
            "xmitHashPolicy",
            want.xmit_hash_policy.map(|v| v.number()),
            self.xmit_hash_policy,
        );
        cmp(
            &mut out,
            "lacpRate",
            want.lacp_rate.map(|v| v.number()),
            self.lacp_rate,
        );
        cmp(
            &mut out,
            "adSelect",
            want.ad_select.map(|v| v.number()),
            self.ad_select,
        );
        cmp(&mut out, "minLinks", want.min_links, self.min_links);
        cmp(&mut out, "primary", primary, self.primary);
        cmp(
            &mut out,
            "primaryReselect",
            want.primary_reselect.map(|v| v.number()),
            self.primary_reselect,
        );
        cmp(
            &mut out,
            "arpInterval",
            want.arp_interval_ms,
            self.arp_interval_ms,
        );
        if !want.arp_ip_targets.is_empty() && want.arp_ip_targets != self.arp_ip_targets {
            out.push(format!(
                "arpIpTargets: want {:?}, kernel has {:?}",
                want.arp_ip_targets, self.arp_ip_targets
            ));
        }
        cmp(
            &mut out,
            "arpValidate",
            want.arp_validate.map(|v| v.number()),
            self.arp_validate,
        );
        cmp(
            &mut out,
            "arpAllTargets",
            want.arp_all_targets.map(|v| v.number()),
            self.arp_all_targets,
        );
        cmp(
            &mut out,
            "numPeerNotif",
            want.num_peer_notif,
            self.num_peer_notif,
        );
        cmp(&mut out, "resendIgmp", want.resend_igmp, self.resend_igmp);
        cmp(
            &mut out,
            "packetsPerSlave",
            want.packets_per_slave,
            self.packets_per_slave,
        );
        cmp(
            &mut out,
            "lpInterval",
            want.lp_interval_s,
            self.lp_interval_s,
        );
        out
    }
}

/// A locally administered, unicast MAC: for a port whose MAC another port already has.
/// The bytes come from the OS's random source; bit 1 of the first octet set (locally
/// administered), bit 0 clear (unicast).
pub fn random_local_mac() -> std::io::Result<Vec<u8>> {
    let mut mac = [0u8; 6];
    getrandom::fill(&mut mac).map_err(|e| std::io::Error::other(e.to_string()))?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac.to_vec())
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_from_names_and_numbers() {
        assert_eq!(
            BondMode::parse("active-backup"),
            Some(BondMode::ActiveBackup)
        );
        assert_eq!(BondMode::parse("802.3ad"), Some(BondMode::Lacp));
        assert_eq!(BondMode::parse("4"), Some(BondMode::Lacp));
        assert_eq!(BondMode::parse("Balance-ALB"), Some(BondMode::BalanceAlb));
        assert_eq!(BondMode::parse("lacp"), None);
        assert_eq!(BondMode::ALL.len(), 7);
    }

    #[test]
    fn every_xmit_hash_policy_the_kernel_knows_parses() {
        for name in [
            "layer2",
            "layer3+4",
            "layer2+3",
            "encap2+3",
            "encap3+4",
            "vlan+srcmac",
        ] {
            assert!(XmitHashPolicy::parse(name).is_some(), "{name}");
        }
    }

    #[test]
    fn netlink_attributes_start_with_the_mode_and_carry_each_option() {
        let mut o = BondOptions::new(BondMode::Lacp);
        o.miimon_ms = Some(100);
        o.lacp_rate = Some(LacpRate::Fast);
        o.xmit_hash_policy = Some(XmitHashPolicy::VlanSrcMac);
        let attrs = o.to_netlink(None);
        assert_eq!(attrs[0], InfoBond::Mode(NlMode::Ieee8023Ad));
        assert!(attrs.contains(&InfoBond::MiiMon(100)));
        assert!(attrs.contains(&InfoBond::AdLacpRate(BondLacpRate::Fast)));
        assert!(attrs.contains(&InfoBond::XmitHashPolicy(BondXmitHashPolicy::VlanSrcMac)));
    }

    #[test]
    fn readback_of_what_was_set_has_no_mismatches() {
        let mut o = BondOptions::new(BondMode::ActiveBackup);
        o.miimon_ms = Some(100);
        o.fail_over_mac = Some(FailOverMac::Active);
        o.updelay_ms = Some(200);
        let back = BondReadback::from_netlink(&o.to_netlink(Some(7)));
        assert!(back.mismatches(&o, Some(7)).is_empty());
    }

    #[test]
    fn readback_names_each_differing_option() {
        let mut o = BondOptions::new(BondMode::ActiveBackup);
        o.miimon_ms = Some(100);
        let mut live = BondOptions::new(BondMode::BalanceRr);
        live.miimon_ms = Some(50);
        let back = BondReadback::from_netlink(&live.to_netlink(None));
        let m = back.mismatches(&o, None);
        assert_eq!(
            m,
            vec![
                "mode: want active-backup, kernel has balance-rr".to_string(),
                "miimon: want 100, kernel has 50".to_string()
            ]
        );
    }

    #[test]
    fn random_macs_are_local_unicast() {
        for _ in 0..64 {
            let mac = random_local_mac().expect("random");
            assert_eq!(mac.len(), 6);
            assert_eq!(mac[0] & 0x01, 0, "unicast");
            assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
        }
    }
}
