//! The network config: lenient input (what upstream bond-cni accepts, and the kernel's own
//! spellings) parsed into typed values and validated before anything touches the kernel.
//! Every error names the field and says what would be accepted.

use bondnet_bond::{OptionError, OptionValue, Ports};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::bond::{Bond, BondMode, BondOptions};
use crate::cni::version::Version;
use crate::error::{Error, Result};

pub use bondnet_bond::DEFAULT_MIIMON_MS;
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/bondnet";
pub const DEFAULT_LOCK_DIR: &str = "/run/bondnet/locks";

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
    mode: Option<Value>,
    mtu: Option<Value>,
    links_in_container: Option<Value>,
    links: Option<Vec<LinkRef>>,
    ipam: Option<Value>,
    ipam_timeout: Option<Value>,
    dns: Option<Dns>,
    prev_result: Option<Value>,
    log_file: Option<String>,
    log_level: Option<String>,
    state_dir: Option<String>,
    lock_dir: Option<String>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
    /// The bond options, and whatever else the config carries.
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// The validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: Version,
    pub name: String,
    /// Accepted for upstream configs; the bond is named by CNI_IFNAME.
    pub ifname: Option<String>,
    pub bond: Bond,
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

fn config_error(e: OptionError) -> Error {
    Error::config(e.field, e.message)
}

/// A field outside the bond options, read as leniently as they are.
fn lenient<T: OptionValue>(field: &str, value: &Option<Value>) -> Result<Option<T>> {
    value
        .as_ref()
        .map(|v| T::from_json(v).map_err(|msg| Error::config(field, msg)))
        .transpose()
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
    let mode = lenient::<BondMode>("mode", &raw.mode)?.unwrap_or(BondMode::BalanceRr);

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

    let mut options = BondOptions::from_map(&raw.rest).map_err(config_error)?;
    let ports = Ports {
        names: &links,
        hint: "the names in links",
    };
    bondnet_bond::validate(mode, &options, &ports).map_err(config_error)?;
    options.miimon = options.effective_miimon();

    let mtu = lenient::<u32>("mtu", &raw.mtu)?;
    if let Some(m) = mtu {
        if !(68..=65535).contains(&m) {
            return Err(Error::config(
                "mtu",
                format!("{m} is out of range; use 68 to 65535, or omit it to take the smallest port MTU"),
            ));
        }
    }
    let links_in_container =
        lenient::<bool>("linksInContainer", &raw.links_in_container)?.unwrap_or(false);

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
        bond: Bond { mode, options },
        mtu,
        links_in_container,
        links,
        ipam: raw.ipam,
        ipam_timeout: crate::ipam::timeout_from_config(lenient::<u32>(
            "ipamTimeout",
            &raw.ipam_timeout,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bond::FailOverMac;

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
        assert_eq!(a.bond.options.miimon, Some(100));
        assert_eq!(a.bond, b.bond);
    }

    #[test]
    fn miimon_defaults_to_100_without_arp_monitoring() {
        let c = conf(&with(r#""mode":"balance-rr""#)).expect("ok");
        assert_eq!(c.bond.options.miimon, Some(DEFAULT_MIIMON_MS));
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
        assert!(err(&with(r#""mode":7"#)).contains("mode: unknown value 7; use balance-rr"));
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
            assert_eq!(c.bond.options.fail_over_mac, Some(want), "{v}");
        }
    }

    #[test]
    fn unknown_mode_names_the_field_and_the_choices() {
        assert_eq!(
            err(&with(r#""mode":"lacp""#)),
            "invalid config: mode: unknown value \"lacp\"; use balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb or balance-alb (or 0 to 6)"
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
            "invalid config: miimon: \"fast\" is not a whole number; write it as a number, e.g. 100"
        );
    }

    #[test]
    fn options_for_another_mode_say_which_mode_they_need() {
        assert_eq!(
            err(&with(r#""mode":"active-backup","lacpRate":"fast""#)),
            "invalid config: lacpRate: only applies in mode 802.3ad; remove it or change mode"
        );
        assert_eq!(
            err(&with(r#""mode":"balance-rr","failOverMac":1"#)),
            "invalid config: failOverMac: only applies in mode active-backup; remove it or change mode"
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
            .contains("arpInterval: needs arpIpTargets"));
        assert!(err(&with(r#""mode":"active-backup","arpValidate":"all""#))
            .contains("arpValidate: only applies with ARP monitoring"));
        let c = conf(&with(r#""mode":"active-backup","arpInterval":200,"arpIpTargets":"10.0.0.1, 10.0.0.2","arpValidate":"all""#)).expect("ok");
        assert_eq!(c.bond.options.miimon, None);
        assert_eq!(c.bond.options.arp_ip_targets.map(|t| t.0.len()), Some(2));
        assert!(err(&with(
            r#""mode":"active-backup","arpInterval":200,"arpIpTargets":["10.0.0"]"#
        ))
        .contains("\"10.0.0\" is not an IPv4 address"));
    }

    #[test]
    fn delays_must_be_multiples_of_miimon() {
        assert_eq!(
            err(&with(r#""mode":"active-backup","miimon":100,"updelay":150"#)),
            "invalid config: updelay: needs MII monitoring and must be a multiple of miimon (100 when unset): change it, or set it to 0"
        );
        conf(&with(
            r#""mode":"active-backup","miimon":100,"updelay":200,"downdelay":300"#,
        ))
        .expect("ok");
    }

    #[test]
    fn primary_must_be_one_of_the_links() {
        assert!(err(&with(r#""mode":"active-backup","primary":"eth9""#))
            .contains("primary: must name one of the bond's ports: the names in links; set it to one of them or remove it"));
    }

    #[test]
    fn xmit_hash_policy_in_tlb_needs_static_balancing() {
        assert!(
            err(&with(r#""mode":"balance-tlb","xmitHashPolicy":"layer3+4""#))
                .contains("xmitHashPolicy: in balance-tlb only applies with tlbDynamicLb: 0")
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
