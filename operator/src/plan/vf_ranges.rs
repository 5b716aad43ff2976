//! VF index ranges: which VFs of a PF each network slot owns. Ranges of one PF never overlap,
//! and an allocation that is still valid is kept, so other networks coming and going never
//! move a network's VFs.

use std::collections::BTreeMap;

use crate::api::device_plugin::{DevicePluginConfig, VfRange};

/// A slot's VFs on one node: a PF and an index range on it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PfRange {
    /// PF interface name.
    pub pf: String,
    /// VF indices.
    pub range: VfRange,
}

/// Every slot's VFs, per node: node name -> resource name (without prefix) -> PF range.
/// The controller reads the previous one back from the device-plugin ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Node name -> resource name -> PF range.
    pub nodes: BTreeMap<String, BTreeMap<String, PfRange>>,
}

impl Allocation {
    /// The PF range a resource held on a node.
    pub fn get(&self, node: &str, resource: &str) -> Option<&PfRange> {
        self.nodes.get(node)?.get(resource)
    }

    /// Reads an allocation back from per-node device-plugin configs. Resources whose selector
    /// is not one PF with one range were not written by bondnet and are skipped.
    pub fn from_device_plugin_configs<'a>(
        configs: impl IntoIterator<Item = (&'a str, &'a DevicePluginConfig)>,
    ) -> Self {
        let mut nodes = BTreeMap::new();
        for (node, config) in configs {
            let mut resources = BTreeMap::new();
            for resource in &config.resource_list {
                if let [pf_name] = resource.selectors.pf_names.as_slice() {
                    if let Some(range) = pf_name.range {
                        resources.insert(
                            resource.resource_name.clone(),
                            PfRange {
                                pf: pf_name.pf.clone(),
                                range,
                            },
                        );
                    }
                }
            }
            nodes.insert(node.to_owned(), resources);
        }
        Self { nodes }
    }
}

/// VF ranges taken on one node's PFs while planning it.
#[derive(Debug, Default)]
pub struct UsedVfs {
    by_pf: BTreeMap<String, Vec<VfRange>>,
}

impl UsedVfs {
    /// True when `range` shares no VF with a range already taken on `pf`.
    pub fn is_free(&self, pf: &str, range: VfRange) -> bool {
        self.by_pf
            .get(pf)
            .is_none_or(|taken| taken.iter().all(|t| !t.overlaps(range)))
    }

    /// Marks `range` of `pf` as taken.
    pub fn take(&mut self, pf: &str, range: VfRange) {
        let taken = self.by_pf.entry(pf.to_owned()).or_default();
        let at = taken.partition_point(|t| t.first < range.first);
        taken.insert(at, range);
    }

    /// The lowest range of `count` free VFs among the first `num_vfs` of `pf`.
    pub fn first_fit(&self, pf: &str, num_vfs: u32, count: u32) -> Option<VfRange> {
        let mut start = 0u32;
        for taken in self.by_pf.get(pf).map(Vec::as_slice).unwrap_or_default() {
            if let Some(candidate) = VfRange::starting_at(start, count) {
                if candidate.last < taken.first {
                    return Some(candidate).filter(|r| r.last < num_vfs);
                }
            }
            start = start.max(taken.last.saturating_add(1));
        }
        VfRange::starting_at(start, count).filter(|r| r.last < num_vfs)
    }

    /// How many of the first `num_vfs` VFs of `pf` are not taken.
    pub fn free_count(&self, pf: &str, num_vfs: u32) -> u32 {
        let taken: u32 = self
            .by_pf
            .get(pf)
            .map(|ranges| {
                ranges
                    .iter()
                    .filter(|r| r.first < num_vfs)
                    .map(|r| r.last.min(num_vfs - 1) - r.first + 1)
                    .sum()
            })
            .unwrap_or(0);
        num_vfs.saturating_sub(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::device_plugin::{ResourceConfig, Selectors};

    fn r(first: u32, last: u32) -> VfRange {
        VfRange { first, last }
    }

    #[test]
    fn first_fit_fills_the_lowest_gap() {
        let mut used = UsedVfs::default();
        assert_eq!(used.first_fit("p", 8, 4), Some(r(0, 3)));
        used.take("p", r(4, 7));
        assert_eq!(used.first_fit("p", 16, 4), Some(r(0, 3)));
        used.take("p", r(0, 3));
        assert_eq!(used.first_fit("p", 16, 4), Some(r(8, 11)));
        assert_eq!(used.first_fit("p", 8, 4), None);
        assert_eq!(used.free_count("p", 16), 8);
    }

    #[test]
    fn first_fit_skips_gaps_too_small() {
        let mut used = UsedVfs::default();
        used.take("p", r(2, 3));
        assert_eq!(used.first_fit("p", 8, 4), Some(r(4, 7)));
        assert_eq!(used.first_fit("p", 8, 2), Some(r(0, 1)));
        assert!(!used.is_free("p", r(3, 4)));
        assert!(used.is_free("q", r(3, 4)));
    }

    #[test]
    fn allocation_reads_back_single_pf_ranges_only() {
        let config = DevicePluginConfig {
            resource_list: vec![
                ResourceConfig {
                    resource_name: "ns_a_p0".into(),
                    resource_prefix: None,
                    selectors: Selectors {
                        pf_names: vec!["ens1f0#4-7".parse().expect("valid")],
                        ..Selectors::default()
                    },
                },
                ResourceConfig {
                    resource_name: "foreign".into(),
                    resource_prefix: None,
                    selectors: Selectors {
                        pf_names: vec!["ens1f0".parse().expect("valid")],
                        ..Selectors::default()
                    },
                },
            ],
        };
        let alloc = Allocation::from_device_plugin_configs([("node-1", &config)]);
        assert_eq!(
            alloc.get("node-1", "ns_a_p0"),
            Some(&PfRange {
                pf: "ens1f0".into(),
                range: r(4, 7)
            })
        );
        assert_eq!(alloc.get("node-1", "foreign"), None);
    }
}
