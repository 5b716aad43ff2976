//! The network config: lenient input (what upstream bond-cni accepts, and the kernel's own
//! spellings) parsed into typed values and validated before anything touches the kernel.
//! Every error names the field and says what would be accepted.

use std::net::Ipv4Addr;

use serde::Deserialize;
use serde_json::Value;

use crate::bond::{
    join_choices, AdSelect, ArpAllTargets, ArpValidate, BondMode, BondOptions, FailOverMac,
    LacpRate, PrimaryReselect, XmitHashPolicy,
};
use crate::cni::version::Version;
use crate::error::{Error, Result};

/// miimon when neither `miimon` nor `arpInterval` is given: with no link monitoring at all
/// (the kernel's default) a bond never fails over, which no user of this plugin wants.
pub const DEFAULT_MIIMON_MS: u32 = 100;
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/bondnet";
pub const DEFAULT_LOCK_DIR: &str = "/run/bondnet/locks";

/// A number that may arrive as a JSON number or as a string of digits (upstream documents
/// `miimon` as an int but only accepts a string).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Lenient {
    Num(u64),
    Bool(bool),
    Text(String),
}

impl Lenient {
    fn as_text(&self) -> String {
        match self {
            Lenient::Num(n) => n.to_string(),
            Lenient::Bool(b) => b.to_string(),
            Lenient::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct LinkRef {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq, Default)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The config as it arrives on stdin.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    ifname: Option<String>,
    mode: Option<Lenient>,
    miimon: Option<Lenient>,
    mtu: Option<Lenient>,
    fail_over_mac: Option<Lenient>,
    links_in_container: Option<Lenient>,
    links: Option<Vec<LinkRef>>,
    ipam: Option<Value>,
    ipam_timeout: Option<Lenient>,
    all_slaves_active: Option<Lenient>,
    tlb_dynamic_lb: Option<Lenient>,
    xmit_hash_policy: Option<Lenient>,
    lacp_rate: Option<Lenient>,
    ad_select: Option<Lenient>,
    min_links: Option<Lenient>,
    primary: Option<String>,
    primary_reselect: Option<Lenient>,
    updelay: Option<Lenient>,
    downdelay: Option<Lenient>,
    arp_interval: Option<Lenient>,
    arp_ip_targets: Option<ArpTargets>,
    arp_validate: Option<Lenient>,
    arp_all_targets: Option<Lenient>,
    num_peer_notif: Option<Lenient>,
    resend_igmp: Option<Lenient>,
    packets_per_slave: Option<Lenient>,
    lp_interval: Option<Lenient>,
    dns: Option<Dns>,
    prev_result: Option<Value>,
    log_file: Option<String>,
    log_level: Option<String>,
    state_dir: Option<String>,
    lock_dir: Option<String>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ArpTargets {
    List(Vec<String>),
    Text(String),
}

/// The validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: Version,
    pub name: String,
    /// Accepted for upstream configs; the bond is named by CNI_IFNAME.
    pub ifname: Option<String>,
    pub bond: BondOptions,
    pub mtu: Option<u32>,
    pub links_in_container: bool,
    pub links: Vec<String>,
    pub ipam: Option<Value>,
    /// How long one IPAM call may take (`ipamTimeout`, seconds).
    pub ipam_timeout: std::time::Duration,
    pub dns: Dns,
    pub prev_result: Option<Value>,
    pub log_file: Option<String>,
    pub log_level: Option<String>,
    pub state_dir: String,
    pub lock_dir: String,
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The config exactly as received, passed unchanged to the IPAM delegate.
    pub raw: Vec<u8>,
}

impl NetConf {
    /// The IPAM plugin's type, when `ipam` is set.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }
}

/// Only the version and logging fields: read first, so that even a config that fails to
/// parse gets its error in the version it asked for.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preamble {
    pub cni_version: Option<String>,
    pub log_file: Option<String>,
    pub log_level: Option<String>,
}

pub fn preamble(bytes: &[u8]) -> Preamble {
    serde_json::from_slice(bytes).unwrap_or_default()
}

fn field_num(field: &str, value: &Lenient, unit: &str) -> Result<u64> {
    match value {
        Lenient::Num(n) => Ok(*n),
        Lenient::Text(t) => t.trim().parse::<u64>().map_err(|_| {
            Error::config(
                field,
                format!("\"{t}\" is not a whole number{unit}; write it as a number, e.g. 100"),
            )
        }),
        Lenient::Bool(b) => Err(Error::config(
            field,
            format!("{b} is not a number{unit}; write it as a number, e.g. 100"),
        )),
    }
}

fn field_u32(field: &str, value: &Option<Lenient>, unit: &str) -> Result<Option<u32>> {
    value
        .as_ref()
        .map(|v| {
            let n = field_num(field, v, unit)?;
            u32::try_from(n).map_err(|_| {
                Error::config(field, format!("{n} is too large (at most {})", u32::MAX))
            })
        })
        .transpose()
}

fn field_bool(field: &str, value: &Option<Lenient>) -> Result<Option<bool>> {
    value
        .as_ref()
        .map(|v| match v {
            Lenient::Bool(b) => Ok(*b),
            Lenient::Num(0) => Ok(false),
            Lenient::Num(1) => Ok(true),
            Lenient::Text(t) if matches!(t.trim(), "0" | "false" | "off") => Ok(false),
            Lenient::Text(t) if matches!(t.trim(), "1" | "true" | "on") => Ok(true),
            other => Err(Error::config(
                field,
                format!(
                    "\"{}\" is not a boolean; use true or false (or 1 or 0)",
                    other.as_text()
                ),
            )),
        })
        .transpose()
}

macro_rules! field_enum {
    ($field:expr, $value:expr, $ty:ty) => {
        $value
            .as_ref()
            .map(|v: &Lenient| {
                let text = v.as_text();
                <$ty>::parse(&text).ok_or_else(|| {
                    Error::config(
                        $field,
                        format!("unknown value \"{text}\"; use {}", <$ty>::choices()),
                    )
                })
            })
            .transpose()
    };
}

/// Which modes an option needs, for the "needs mode" errors.
fn require_modes(field: &str, set: bool, mode: BondMode, allowed: &[BondMode]) -> Result<()> {
    if set && !allowed.contains(&mode) {
        let names: Vec<&str> = allowed.iter().map(|m| m.name()).collect();
        return Err(Error::config(
            field,
            format!(
                "only applies in mode {}, not {mode}; remove it or change mode",
                join_choices(&names)
            ),
        ));
    }
    Ok(())
}

pub fn parse(bytes: &[u8]) -> Result<NetConf> {
    let raw: Raw = serde_json::from_slice(bytes).map_err(|source| Error::Decode {
        what: "the network config on stdin".into(),
        source,
    })?;
    let version_text = raw
        .cni_version
        .clone()
        .ok_or_else(|| Error::config("cniVersion", "missing; set it, e.g. \"1.0.0\""))?;
    let cni_version = Version::parse(&version_text)?;
    let name = raw
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::config("name", "missing; every network config needs a name"))?;
    if let Some(t) = &raw.plugin_type {
        if t != "bond" {
            return Err(Error::config(
                "type",
                format!("is \"{t}\"; this plugin is \"bond\""),
            ));
        }
    }

    // No mode is the kernel's default, balance-rr, as upstream gives it. An unknown mode is
    // refused (upstream silently falls back to balance-rr).
    let mode_text = raw
        .mode
        .as_ref()
        .map_or_else(|| BondMode::BalanceRr.name().to_string(), Lenient::as_text);
    let mode = BondMode::parse(&mode_text).ok_or_else(|| {
        Error::config(
            "mode",
            format!(
                "unknown bond mode \"{mode_text}\"; use {} (or 0 to 6)",
                BondMode::choices()
            ),
        )
    })?;

    let links: Vec<String> = raw
        .links
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.name)
        .collect();
    if links.len() < 2 {
        return Err(Error::config(
            "links",
            format!(
                "has {} port(s); a bond needs at least two, e.g. [{{\"name\": \"net1\"}}, {{\"name\": \"net2\"}}]",
                links.len()
            ),
        ));
    }
    for (i, l) in links.iter().enumerate() {
        crate::names::ifname(l).map_err(|why| Error::config(format!("links[{i}].name"), why))?;
        if links[..i].contains(l) {
            return Err(Error::config(
                format!("links[{i}].name"),
                format!("\"{l}\" is listed twice; each port must be a different link"),
            ));
        }
    }

    let mut bond = BondOptions::new(mode);
    bond.miimon_ms = field_u32("miimon", &raw.miimon, " of milliseconds")?;
    bond.fail_over_mac = field_enum!("failOverMac", raw.fail_over_mac, FailOverMac)?;
    bond.all_slaves_active = field_bool("allSlavesActive", &raw.all_slaves_active)?;
    bond.tlb_dynamic_lb = field_bool("tlbDynamicLb", &raw.tlb_dynamic_lb)?;
    bond.xmit_hash_policy = field_enum!("xmitHashPolicy", raw.xmit_hash_policy, XmitHashPolicy)?;
    bond.lacp_rate = field_enum!("lacpRate", raw.lacp_rate, LacpRate)?;
    bond.ad_select = field_enum!("adSelect", raw.ad_select, AdSelect)?;
    bond.min_links = field_u32("minLinks", &raw.min_links, "")?;
    bond.primary = raw.primary.clone();
    bond.primary_reselect = field_enum!("primaryReselect", raw.primary_reselect, PrimaryReselect)?;
    bond.updelay_ms = field_u32("updelay", &raw.updelay, " of milliseconds")?;
    bond.downdelay_ms = field_u32("downdelay", &raw.downdelay, " of milliseconds")?;
    bond.arp_interval_ms = field_u32("arpInterval", &raw.arp_interval, " of milliseconds")?;
    bond.arp_validate = field_enum!("arpValidate", raw.arp_validate, ArpValidate)?;
    bond.arp_all_targets = field_enum!("arpAllTargets", raw.arp_all_targets, ArpAllTargets)?;
    bond.num_peer_notif = field_u32("numPeerNotif", &raw.num_peer_notif, "")?
        .map(|n| {
            u8::try_from(n)
                .map_err(|_| Error::config("numPeerNotif", format!("{n} is out of range 0 to 255")))
        })
        .transpose()?;
    bond.resend_igmp = field_u32("resendIgmp", &raw.resend_igmp, "")?;
    bond.packets_per_slave = field_u32("packetsPerSlave", &raw.packets_per_slave, "")?;
    bond.lp_interval_s = field_u32("lpInterval", &raw.lp_interval, " of seconds")?;
    bond.arp_ip_targets = match &raw.arp_ip_targets {
        None => Vec::new(),
        Some(t) => {
            let items: Vec<String> = match t {
                ArpTargets::List(v) => v.clone(),
                ArpTargets::Text(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
            };
            items
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<Ipv4Addr>().map_err(|_| {
                        Error::config(
                            "arpIpTargets",
                            format!("\"{s}\" is not an IPv4 address; list IPv4 addresses, e.g. [\"10.0.0.1\"]"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?
        }
    };

    validate_bond(&mut bond, &links)?;

    let mtu = field_u32("mtu", &raw.mtu, "")?;
    if let Some(m) = mtu {
        if !(68..=65535).contains(&m) {
            return Err(Error::config(
                "mtu",
                format!("{m} is out of range; use 68 to 65535, or omit it to take the smallest port MTU"),
            ));
        }
    }
    let links_in_container =
        field_bool("linksInContainer", &raw.links_in_container)?.unwrap_or(false);

    if let Some(ipam) = &raw.ipam {
        match ipam.get("type").and_then(Value::as_str) {
            Some(t) if !t.is_empty() && !t.contains('/') => {}
            Some(t) if !t.is_empty() => {
                return Err(Error::config(
                    "ipam.type",
                    format!("\"{t}\" must be a plugin name, not a path"),
                ))
            }
            _ => {
                return Err(Error::config(
                    "ipam.type",
                    "missing; name the IPAM plugin, e.g. \"host-local\" or \"static\"",
                ))
            }
        }
    }

    if let Some(level) = &raw.log_level {
        if crate::log::parse_level(level).is_none() {
            return Err(Error::config(
                "logLevel",
                format!("unknown level \"{level}\"; use error, warn, info, debug or trace"),
            ));
        }
    }

    crate::names::check_config_paths(
        raw.state_dir.as_deref(),
        raw.lock_dir.as_deref(),
        raw.log_file.as_deref(),
    )?;

    Ok(NetConf {
        cni_version,
        name,
        ifname: raw.ifname.clone(),
        bond,
        mtu,
        links_in_container,
        links,
        ipam: raw.ipam,
        ipam_timeout: crate::ipam::timeout_from_config(field_u32(
            "ipamTimeout",
            &raw.ipam_timeout,
            " of seconds",
        )?)?,
        dns: raw.dns.unwrap_or_default(),
        prev_result: raw.prev_result,
        log_file: raw.log_file,
        log_level: raw.log_level,
        state_dir: raw
            .state_dir
            .unwrap_or_else(|| DEFAULT_STATE_DIR.to_string()),
        lock_dir: raw.lock_dir.unwrap_or_else(|| DEFAULT_LOCK_DIR.to_string()),
        valid_attachments: raw.valid_attachments,
        raw: bytes.to_vec(),
    })
}

/// The mode rules of the kernel's bonding documentation, checked before any kernel call.
fn validate_bond(b: &mut BondOptions, links: &[String]) -> Result<()> {
    use BondMode::*;
    let mode = b.mode;
    if let Some(fom) = b.fail_over_mac {
        require_modes(
            "failOverMac",
            fom != FailOverMac::None,
            mode,
            &[ActiveBackup],
        )?;
    }
    require_modes("lacpRate", b.lacp_rate.is_some(), mode, &[Lacp])?;
    require_modes("adSelect", b.ad_select.is_some(), mode, &[Lacp])?;
    require_modes("minLinks", b.min_links.is_some(), mode, &[Lacp])?;
    require_modes(
        "xmitHashPolicy",
        b.xmit_hash_policy.is_some(),
        mode,
        &[BalanceXor, Lacp, BalanceTlb],
    )?;
    require_modes(
        "primary",
        b.primary.is_some(),
        mode,
        &[ActiveBackup, BalanceTlb, BalanceAlb],
    )?;
    require_modes(
        "primaryReselect",
        b.primary_reselect.is_some(),
        mode,
        &[ActiveBackup, BalanceTlb, BalanceAlb],
    )?;
    require_modes(
        "tlbDynamicLb",
        b.tlb_dynamic_lb.is_some(),
        mode,
        &[BalanceTlb, BalanceAlb],
    )?;
    require_modes(
        "packetsPerSlave",
        b.packets_per_slave.is_some(),
        mode,
        &[BalanceRr],
    )?;
    require_modes(
        "lpInterval",
        b.lp_interval_s.is_some(),
        mode,
        &[BalanceTlb, BalanceAlb],
    )?;
    require_modes(
        "numPeerNotif",
        b.num_peer_notif.is_some(),
        mode,
        &[ActiveBackup],
    )?;
    require_modes(
        "resendIgmp",
        b.resend_igmp.is_some(),
        mode,
        &[BalanceRr, ActiveBackup, BalanceTlb, BalanceAlb],
    )?;
    let arp_set = b.arp_interval_ms.is_some_and(|v| v > 0);
    require_modes(
        "arpInterval",
        arp_set,
        mode,
        &[BalanceRr, ActiveBackup, BalanceXor, Broadcast],
    )?;
    if let Some(policy) = b.xmit_hash_policy {
        if mode == BalanceTlb && b.tlb_dynamic_lb != Some(false) {
            return Err(Error::config(
                "xmitHashPolicy",
                format!("in balance-tlb it only applies with tlbDynamicLb: false; set that too or remove xmitHashPolicy ({policy})"),
            ));
        }
    }
    if let Some(primary) = &b.primary {
        if !links.contains(primary) {
            return Err(Error::config(
                "primary",
                format!(
                    "\"{primary}\" is not one of links ({}); name one of them",
                    links.join(", ")
                ),
            ));
        }
    }
    if arp_set {
        if b.miimon_ms.is_some_and(|v| v > 0) {
            return Err(Error::config(
                "arpInterval",
                "cannot be combined with miimon; choose ARP monitoring (arpInterval and arpIpTargets) or MII monitoring (miimon)",
            ));
        }
        if b.arp_ip_targets.is_empty() {
            return Err(Error::config(
                "arpIpTargets",
                "missing; arpInterval needs at least one IPv4 target to probe",
            ));
        }
        if b.arp_ip_targets.len() > 16 {
            return Err(Error::config(
                "arpIpTargets",
                "the kernel accepts at most 16 targets",
            ));
        }
    } else {
        for (field, set) in [
            ("arpIpTargets", !b.arp_ip_targets.is_empty()),
            ("arpValidate", b.arp_validate.is_some()),
            ("arpAllTargets", b.arp_all_targets.is_some()),
        ] {
            if set {
                return Err(Error::config(
                    field,
                    "only applies with ARP monitoring; set arpInterval (and drop miimon) or remove it",
                ));
            }
        }
        if b.miimon_ms.is_none() {
            b.miimon_ms = Some(DEFAULT_MIIMON_MS);
        }
    }
    if let Some(miimon) = b.miimon_ms.filter(|m| *m > 0) {
        for (field, delay) in [("updelay", b.updelay_ms), ("downdelay", b.downdelay_ms)] {
            if let Some(d) = delay {
                if d % miimon != 0 {
                    return Err(Error::config(
                        field,
                        format!("{d} is not a multiple of miimon ({miimon}); the kernel would round it down to {}", d / miimon * miimon),
                    ));
                }
            }
        }
    } else {
        for (field, delay) in [("updelay", b.updelay_ms), ("downdelay", b.downdelay_ms)] {
            if delay.is_some_and(|d| d > 0) {
                return Err(Error::config(
                    field,
                    "only applies with MII monitoring; set miimon",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: &str) -> Result<NetConf> {
        parse(json.as_bytes())
    }

    fn err(json: &str) -> String {
        match conf(json) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    const BASE: &str = r#""cniVersion":"1.0.0","name":"n","type":"bond","links":[{"name":"net1"},{"name":"net2"}]"#;

    fn with(extra: &str) -> String {
        format!("{{{BASE},{extra}}}")
    }

    #[test]
    fn miimon_accepts_a_string_or_a_number() {
        let a = conf(&with(r#""mode":"active-backup","miimon":"100""#)).expect("string");
        let b = conf(&with(r#""mode":"active-backup","miimon":100"#)).expect("number");
        assert_eq!(a.bond.miimon_ms, Some(100));
        assert_eq!(a.bond, b.bond);
    }

    #[test]
    fn miimon_defaults_to_100_without_arp_monitoring() {
        let c = conf(&with(r#""mode":"balance-rr""#)).expect("ok");
        assert_eq!(c.bond.miimon_ms, Some(DEFAULT_MIIMON_MS));
    }

    #[test]
    fn mode_accepts_numbers_0_to_6() {
        for (n, name) in ["0", "1", "2", "3", "4", "5", "6"]
            .iter()
            .zip(BondMode::ALL)
        {
            let c = conf(&with(&format!(r#""mode":{n}"#))).expect("number");
            assert_eq!(c.bond.mode, *name);
        }
        assert!(err(&with(r#""mode":7"#)).contains("unknown bond mode \"7\""));
    }

    #[test]
    fn fail_over_mac_accepts_numbers_and_names() {
        for (v, want) in [
            ("1", FailOverMac::Active),
            ("\"active\"", FailOverMac::Active),
            ("2", FailOverMac::Follow),
            ("\"none\"", FailOverMac::None),
        ] {
            let c = conf(&with(&format!(
                r#""mode":"active-backup","failOverMac":{v}"#
            )))
            .expect("ok");
            assert_eq!(c.bond.fail_over_mac, Some(want), "{v}");
        }
    }

    #[test]
    fn unknown_mode_names_the_field_and_the_choices() {
        assert_eq!(
            err(&with(r#""mode":"lacp""#)),
            "invalid config: mode: unknown bond mode \"lacp\"; use balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb or balance-alb (or 0 to 6)"
        );
    }

    #[test]
    fn missing_mode_is_balance_rr_as_upstream() {
        let c = conf(&format!("{{{BASE}}}")).expect("no mode");
        assert_eq!(c.bond.mode, BondMode::BalanceRr);
    }

    #[test]
    fn miimon_that_is_not_a_number_is_refused() {
        assert_eq!(
            err(&with(r#""mode":"active-backup","miimon":"fast""#)),
            "invalid config: miimon: \"fast\" is not a whole number of milliseconds; write it as a number, e.g. 100"
        );
    }

    #[test]
    fn options_for_another_mode_say_which_mode_they_need() {
        assert_eq!(
            err(&with(r#""mode":"active-backup","lacpRate":"fast""#)),
            "invalid config: lacpRate: only applies in mode 802.3ad, not active-backup; remove it or change mode"
        );
        assert_eq!(
            err(&with(r#""mode":"balance-rr","failOverMac":1"#)),
            "invalid config: failOverMac: only applies in mode active-backup, not balance-rr; remove it or change mode"
        );
        assert!(err(&with(r#""mode":"802.3ad","primary":"net1""#))
            .contains("primary: only applies in mode active-backup, balance-tlb or balance-alb"));
        assert!(err(&with(
            r#""mode":"802.3ad","arpInterval":100,"arpIpTargets":["10.0.0.1"],"miimon":0"#
        ))
        .contains("arpInterval: only applies in mode"));
        assert!(err(&with(r#""mode":"active-backup","packetsPerSlave":2"#))
            .contains("packetsPerSlave: only applies in mode balance-rr"));
    }

    #[test]
    fn arp_monitoring_needs_targets_and_excludes_miimon() {
        assert!(err(&with(
            r#""mode":"active-backup","arpInterval":100,"miimon":"100","arpIpTargets":["10.0.0.1"]"#
        ))
        .contains("arpInterval: cannot be combined with miimon"));
        assert!(err(&with(r#""mode":"active-backup","arpInterval":100"#))
            .contains("arpIpTargets: missing"));
        assert!(err(&with(r#""mode":"active-backup","arpValidate":"all""#))
            .contains("arpValidate: only applies with ARP monitoring"));
        let c = conf(&with(r#""mode":"active-backup","arpInterval":200,"arpIpTargets":"10.0.0.1, 10.0.0.2","arpValidate":"all""#)).expect("ok");
        assert_eq!(c.bond.miimon_ms, None);
        assert_eq!(c.bond.arp_ip_targets.len(), 2);
        assert!(err(&with(
            r#""mode":"active-backup","arpInterval":200,"arpIpTargets":["10.0.0"]"#
        ))
        .contains("\"10.0.0\" is not an IPv4 address"));
    }

    #[test]
    fn delays_must_be_multiples_of_miimon() {
        assert_eq!(
            err(&with(r#""mode":"active-backup","miimon":100,"updelay":150"#)),
            "invalid config: updelay: 150 is not a multiple of miimon (100); the kernel would round it down to 100"
        );
        conf(&with(
            r#""mode":"active-backup","miimon":100,"updelay":200,"downdelay":300"#,
        ))
        .expect("ok");
    }

    #[test]
    fn primary_must_be_one_of_the_links() {
        assert!(err(&with(r#""mode":"active-backup","primary":"eth9""#))
            .contains("primary: \"eth9\" is not one of links (net1, net2)"));
    }

    #[test]
    fn xmit_hash_policy_in_tlb_needs_static_balancing() {
        assert!(
            err(&with(r#""mode":"balance-tlb","xmitHashPolicy":"layer3+4""#))
                .contains("tlbDynamicLb: false")
        );
        conf(&with(
            r#""mode":"balance-tlb","xmitHashPolicy":"layer3+4","tlbDynamicLb":0"#,
        ))
        .expect("ok");
    }

    #[test]
    fn links_must_be_present_valid_and_distinct() {
        assert_eq!(
            err(r#"{"cniVersion":"1.0.0","name":"n","mode":"balance-rr"}"#),
            "invalid config: links: has 0 port(s); a bond needs at least two, e.g. [{\"name\": \"net1\"}, {\"name\": \"net2\"}]"
        );
        assert!(err(
            r#"{"cniVersion":"1.0.0","name":"n","mode":"balance-rr","links":[{"name":"a"}]}"#
        )
        .contains("has 1 port(s)"));
        assert!(err(r#"{"cniVersion":"1.0.0","name":"n","mode":"balance-rr","links":[{"name":"a"},{"name":"a"}]}"#).contains("links[1].name: \"a\" is listed twice"));
        assert!(err(r#"{"cniVersion":"1.0.0","name":"n","mode":"balance-rr","links":[{"name":"averyveryverylongname"},{"name":"b"}]}"#).contains("links[0].name"));
    }

    #[test]
    fn mtu_range_is_checked() {
        assert!(err(&with(r#""mode":"balance-rr","mtu":20"#)).contains("mtu: 20 is out of range"));
        assert_eq!(
            conf(&with(r#""mode":"balance-rr","mtu":9000"#))
                .expect("ok")
                .mtu,
            Some(9000)
        );
        assert_eq!(conf(&with(r#""mode":"balance-rr""#)).expect("ok").mtu, None);
    }

    #[test]
    fn version_must_be_supported() {
        let e =
            conf(r#"{"cniVersion":"0.2.0","name":"n","mode":"balance-rr","links":[{"name":"a"},{"name":"b"}]}"#)
                .expect_err("old");
        assert_eq!(e.code(), crate::cni::error::Code::IncompatibleVersion);
        assert!(e.to_string().contains("0.2.0"), "{e}");
    }

    #[test]
    fn ipam_needs_a_type() {
        assert!(err(&with(
            r#""mode":"balance-rr","ipam":{"subnet":"10.0.0.0/24"}"#
        ))
        .contains("ipam.type: missing"));
        assert!(err(&with(
            r#""mode":"balance-rr","ipam":{"type":"../../bin/sh"}"#
        ))
        .contains("must be a plugin name"));
    }

    #[test]
    fn broken_json_is_a_decode_error() {
        let e = conf("{\"cniVersion\": ").expect_err("broken");
        assert_eq!(e.code(), crate::cni::error::Code::Decode);
    }

    #[test]
    fn wrong_type_of_field_is_a_decode_error_that_names_it() {
        let e = conf(&with(r#""mode":"balance-rr","links":"net1""#)).expect_err("bad");
        assert_eq!(e.code(), crate::cni::error::Code::Decode);
    }
}
