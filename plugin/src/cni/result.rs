//! The result of ADD (and the prevResult of CHECK and DEL): one internal shape, parsed from
//! any supported version and printed in the shape of the config's version.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::cni::version::Version;
use crate::config::Dns;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RouteEntry {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    #[serde(default)]
    pub dns: Dns,
}

impl CniResult {
    /// Parse a result of any supported version (0.3.x/0.4.0 "version" keys are ignored).
    pub fn from_value(what: &str, value: &Value) -> Result<Self> {
        serde_json::from_value(value.clone()).map_err(|source| Error::Decode {
            what: what.to_string(),
            source,
        })
    }

    /// The result as the spec's `version` shapes it.
    pub fn to_json(&self, version: Version) -> Value {
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut v = json!({ "name": i.name });
                let obj = as_object(&mut v);
                if !i.mac.is_empty() {
                    obj.insert("mac".into(), json!(i.mac));
                }
                if !i.sandbox.is_empty() {
                    obj.insert("sandbox".into(), json!(i.sandbox));
                }
                if version.interfaces_carry_mtu() {
                    if let Some(m) = i.mtu {
                        obj.insert("mtu".into(), json!(m));
                    }
                }
                v
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut v = json!({ "address": ip.address.to_string() });
                let obj = as_object(&mut v);
                if version.ips_carry_version() {
                    let family = if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    obj.insert("version".into(), json!(family));
                }
                if let Some(gw) = ip.gateway {
                    obj.insert("gateway".into(), json!(gw.to_string()));
                }
                if let Some(i) = ip.interface {
                    obj.insert("interface".into(), json!(i));
                }
                v
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if version < Version::V110 {
                    r.mtu = None;
                    r.advmss = None;
                    r.priority = None;
                    r.table = None;
                    r.scope = None;
                }
                serde_json::to_value(r).unwrap_or(Value::Null)
            })
            .collect();
        let mut out = json!({
            "cniVersion": version.as_str(),
            "interfaces": interfaces,
            "ips": ips,
        });
        let obj = as_object(&mut out);
        if !routes.is_empty() {
            obj.insert("routes".into(), Value::Array(routes));
        }
        if !self.dns.is_empty() {
            obj.insert(
                "dns".into(),
                serde_json::to_value(&self.dns).unwrap_or(Value::Null),
            );
        }
        out
    }
}

fn as_object(v: &mut Value) -> &mut Map<String, Value> {
    match v {
        Value::Object(m) => m,
        // Every caller builds `v` with json!({...}).
        _ => unreachable!("built as an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![Interface {
                name: "bond0".into(),
                mac: "02:00:00:00:00:01".into(),
                sandbox: "/var/run/netns/p".into(),
                mtu: Some(9000),
            }],
            ips: vec![IpConfig {
                address: "10.56.217.66/24".parse().expect("net"),
                gateway: Some("10.56.217.1".parse().expect("ip")),
                interface: Some(0),
            }],
            routes: vec![RouteEntry {
                dst: "0.0.0.0/0".parse().expect("net"),
                gw: None,
                mtu: None,
                advmss: None,
                priority: Some(10),
                table: None,
                scope: None,
            }],
            dns: Dns::default(),
        }
    }

    #[test]
    fn old_versions_carry_ip_versions_and_drop_new_fields() {
        let v = sample().to_json(Version::V031);
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(v["ips"][0]["version"], "4");
        assert!(v["interfaces"][0].get("mtu").is_none());
        assert!(v["routes"][0].get("priority").is_none());
    }

    #[test]
    fn v1_results_have_no_ip_versions() {
        let v = sample().to_json(Version::V100);
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["ips"][0]["interface"], 0);
        assert!(v["interfaces"][0].get("mtu").is_none());
        let v = sample().to_json(Version::V110);
        assert_eq!(v["interfaces"][0]["mtu"], 9000);
        assert_eq!(v["routes"][0]["priority"], 10);
    }

    #[test]
    fn results_of_any_version_parse() {
        let old = json!({"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.1.0.5/16","gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}});
        let r = CniResult::from_value("ipam result", &old).expect("parses");
        assert_eq!(r.ips[0].address.to_string(), "10.1.0.5/16");
        let round = CniResult::from_value("again", &r.to_json(Version::V100)).expect("parses");
        assert_eq!(round.ips, r.ips);
    }
}
