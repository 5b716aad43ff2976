//! The SR-IOV network device plugin's config file (`config.json`): a list of resources, each
//! pooling the devices its selectors match. A device goes to the first resource that matches,
//! so bondnet makes every selector name one PF and a VF range no other resource uses.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole config file for one node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevicePluginConfig {
    /// Resource pools, in the order the device plugin tries them.
    #[serde(default)]
    pub resource_list: Vec<ResourceConfig>,
}

/// One resource pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceConfig {
    /// Resource name without prefix: letters, digits, `_` and `-`.
    pub resource_name: String,
    /// Prefix of the extended resource, e.g. `bondnet.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_prefix: Option<String>,
    /// Which devices belong to the pool (every non-empty list must match).
    #[serde(default)]
    pub selectors: Selectors,
}

/// Device selectors of a resource pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Selectors {
    /// PCI vendor IDs of the VFs, hex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vendors: Vec<String>,
    /// PCI device IDs of the VFs, hex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Kernel drivers of the VFs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drivers: Vec<String>,
    /// PF names, each optionally restricted to VF indices: `ens1f0#0-3`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pf_names: Vec<PfName>,
    /// PCI addresses of PFs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_devices: Vec<String>,
}

/// An inclusive range of VF indices on one PF.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VfRange {
    /// First VF index.
    pub first: u32,
    /// Last VF index (inclusive).
    pub last: u32,
}

impl VfRange {
    /// A range of `count` VFs starting at `first`; `None` when `count` is 0 or it overflows.
    pub fn starting_at(first: u32, count: u32) -> Option<Self> {
        let last = first.checked_add(count.checked_sub(1)?)?;
        Some(Self { first, last })
    }

    /// Number of VFs in the range.
    pub fn len(self) -> u32 {
        self.last - self.first + 1
    }

    /// Never true: a range holds at least one VF.
    pub fn is_empty(self) -> bool {
        false
    }

    /// True when the two ranges share a VF.
    pub fn overlaps(self, other: Self) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for VfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A `pfNames` entry: a PF name with an optional VF range, `ens1f0` or `ens1f0#0-3`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PfName {
    /// PF interface name.
    pub pf: String,
    /// VF indices; `None` means every VF of the PF.
    pub range: Option<VfRange>,
}

impl fmt::Display for PfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.range {
            Some(range) => write!(f, "{}#{range}", self.pf),
            None => f.write_str(&self.pf),
        }
    }
}

/// A `pfNames` entry that is not `name` or `name#first-last`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pfNames entry {entry:?}: {problem}; write <pf> or <pf>#<first>-<last>, e.g. ens1f0#0-3")]
pub struct PfNameError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl FromStr for PfName {
    type Err = PfNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |problem| PfNameError {
            entry: s.to_owned(),
            problem,
        };
        let Some((pf, range)) = s.split_once('#') else {
            if s.is_empty() {
                return Err(fail("the PF name is empty"));
            }
            return Ok(Self {
                pf: s.to_owned(),
                range: None,
            });
        };
        if pf.is_empty() {
            return Err(fail("the PF name is empty"));
        }
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (a, b),
            None => (range, range),
        };
        let first: u32 = first
            .parse()
            .map_err(|_| fail("the first VF index is not a number"))?;
        let last: u32 = last
            .parse()
            .map_err(|_| fail("the last VF index is not a number"))?;
        if last < first {
            return Err(fail("the range ends before it starts"));
        }
        Ok(Self {
            pf: pf.to_owned(),
            range: Some(VfRange { first, last }),
        })
    }
}

impl Serialize for PfName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Written as a string in the schema: `ens1f0` or `ens1f0#0-3`.
impl JsonSchema for PfName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PfName".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A PF name, optionally with a VF index range: ens1f0 or ens1f0#0-3",
        })
    }
}

impl<'de> Deserialize<'de> for PfName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pf_name_with_range_round_trips() {
        let name: PfName = "ens1f0#4-7".parse().expect("valid");
        assert_eq!(name.pf, "ens1f0");
        assert_eq!(name.range, Some(VfRange { first: 4, last: 7 }));
        assert_eq!(name.to_string(), "ens1f0#4-7");
    }

    #[test]
    fn pf_name_without_range_means_every_vf() {
        let name: PfName = "ens1f0".parse().expect("valid");
        assert_eq!(name.range, None);
        assert_eq!(name.to_string(), "ens1f0");
    }

    #[test]
    fn pf_name_with_single_index_is_a_range_of_one() {
        let name: PfName = "p1#3".parse().expect("valid");
        assert_eq!(name.range, Some(VfRange { first: 3, last: 3 }));
    }

    #[test]
    fn pf_name_rejects_backwards_and_garbage_ranges_with_the_fix() {
        let err = "ens1f0#7-4".parse::<PfName>().expect_err("backwards");
        assert!(err.to_string().contains("ends before it starts"), "{err}");
        assert!(err.to_string().contains("ens1f0#0-3"), "{err}");
        assert!("ens1f0#a-3".parse::<PfName>().is_err());
        assert!("#0-3".parse::<PfName>().is_err());
    }

    #[test]
    fn vf_ranges_overlap_only_when_they_share_an_index() {
        let a = VfRange { first: 0, last: 3 };
        assert!(a.overlaps(VfRange { first: 3, last: 5 }));
        assert!(!a.overlaps(VfRange { first: 4, last: 7 }));
        assert_eq!(
            VfRange::starting_at(4, 4),
            Some(VfRange { first: 4, last: 7 })
        );
        assert_eq!(VfRange::starting_at(4, 0), None);
    }

    #[test]
    fn config_serializes_with_the_device_plugin_field_names() {
        let config = DevicePluginConfig {
            resource_list: vec![ResourceConfig {
                resource_name: "ns_net_s0".into(),
                resource_prefix: Some("bondnet.io".into()),
                selectors: Selectors {
                    drivers: vec!["iavf".into()],
                    pf_names: vec!["ens1f0#0-3".parse().expect("valid")],
                    ..Selectors::default()
                },
            }],
        };
        let json = serde_json::to_string(&config).expect("serializes");
        assert_eq!(
            json,
            r#"{"resourceList":[{"resourceName":"ns_net_s0","resourcePrefix":"bondnet.io","selectors":{"drivers":["iavf"],"pfNames":["ens1f0#0-3"]}}]}"#
        );
        let back: DevicePluginConfig = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, config);
    }
}
