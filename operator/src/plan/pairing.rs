//! Which PF serves which slot on one node: the slots of a network never share a PF, and with
//! `diversity: nic` never share a card. A slot keeps its PF and VFs while they stay valid.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::bond_network::{BondNetworkSpec, Diversity};
use crate::api::bond_node_state::PfStatus;
use crate::api::device_plugin::VfRange;
use crate::plan::reasons::{NodeReason, ReasonCode};
use crate::plan::render::SlotNames;
use crate::plan::vf_ranges::{PfRange, UsedVfs};

/// One slot of a network on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotAssignment<'a> {
    /// Slot index.
    pub slot: u32,
    /// The PF serving the slot.
    pub pf: &'a PfStatus,
    /// VF indices the slot owns on the PF.
    pub range: VfRange,
}

/// Why `pf` cannot serve `spec`, or `None` when it can.
pub fn pf_rejection(spec: &BondNetworkSpec, pf: &PfStatus) -> Option<String> {
    let sel = &spec.nic_selector;
    let listed = |list: &[String], value: &str| {
        list.is_empty() || list.iter().any(|v| v.eq_ignore_ascii_case(value))
    };
    if !listed(&sel.vendors, &pf.vendor) {
        return Some(format!("vendor {} not in nicSelector.vendors", pf.vendor));
    }
    if !listed(&sel.device_ids, &pf.device_id) {
        return Some(format!(
            "device {} not in nicSelector.deviceIds",
            pf.device_id
        ));
    }
    if !listed(&sel.drivers, &pf.driver) {
        return Some(format!("driver {} not in nicSelector.drivers", pf.driver));
    }
    if !sel.pf_names.is_empty() && !sel.pf_names.contains(&pf.name) {
        return Some("not in nicSelector.pfNames".to_owned());
    }
    if !listed(&sel.root_devices, &pf.pci_address) {
        return Some(format!("{} not in nicSelector.rootDevices", pf.pci_address));
    }
    if let Some(min) = sel.min_link_speed_mbps {
        match pf.link_speed_mbps {
            None => {
                return Some(format!(
                    "link speed unknown (link down?), nicSelector wants {min} Mb/s"
                ))
            }
            Some(speed) if speed < min => {
                return Some(format!(
                    "link speed {speed} Mb/s below nicSelector.minLinkSpeedMbps {min}"
                ))
            }
            Some(_) => {}
        }
    }
    if let (Some(want), Some(have)) = (spec.mtu, pf.mtu) {
        if have < want {
            return Some(format!("PF MTU {have} below the bond's mtu {want}"));
        }
    }
    if pf.num_vfs == 0 {
        return Some("no VFs enabled (sriov_numvfs is 0)".to_owned());
    }
    if pf.num_vfs < spec.vfs_per_pf {
        return Some(format!(
            "{} VFs enabled, the network reserves vfsPerPf {}",
            pf.num_vfs, spec.vfs_per_pf
        ));
    }
    None
}

/// The previous assignment of every slot, if each is still valid: same PF present and
/// matching, range inside the enabled VFs and of the right size, free, and the slots still
/// on distinct PFs (and cards).
pub fn keep_previous<'a>(
    spec: &BondNetworkSpec,
    held_on_node: Option<&BTreeMap<String, PfRange>>,
    slots_names: &[SlotNames],
    candidates: &[&'a PfStatus],
    used: &UsedVfs,
) -> Option<Vec<SlotAssignment<'a>>> {
    let mut slots = Vec::with_capacity(slots_names.len());
    let mut pfs = BTreeSet::new();
    let mut nics = BTreeSet::new();
    for names in slots_names {
        let held = held_on_node?.get(&names.resource)?;
        let pf: &'a PfStatus = candidates.iter().find(|pf| pf.name == held.pf)?;
        let fits = held.range.len() == spec.vfs_per_pf
            && held.range.last < pf.num_vfs
            && used.is_free(&pf.name, held.range);
        if !fits || !pfs.insert(pf.name.as_str()) {
            return None;
        }
        if spec.diversity == Diversity::Nic && !nics.insert(pf.nic_id.as_str()) {
            return None;
        }
        slots.push(SlotAssignment {
            slot: names.slot,
            pf,
            range: held.range,
        });
    }
    Some(slots)
}

/// Chooses `spec.links` PFs, one per card when diversity is `nic`, preferring the PFs with
/// the most free VFs (ties: lowest PCI address), then orders the slots by PCI address.
/// `None` when too few PFs have room; [`shortfall`] says why.
pub fn choose<'a>(
    spec: &BondNetworkSpec,
    candidates: &[&'a PfStatus],
    used: &UsedVfs,
) -> Option<Vec<SlotAssignment<'a>>> {
    let links = spec.links as usize;
    // (free VFs, PF, first free range); candidates are sorted by PCI address.
    let mut options: Vec<(u32, &'a PfStatus, VfRange)> = candidates
        .iter()
        .filter_map(|pf| {
            let range = used.first_fit(&pf.name, pf.num_vfs, spec.vfs_per_pf)?;
            Some((used.free_count(&pf.name, pf.num_vfs), *pf, range))
        })
        .collect();
    options.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1.pci_address.cmp(&b.1.pci_address))
    });
    if spec.diversity == Diversity::Nic {
        let mut nics = BTreeSet::new();
        options.retain(|(_, pf, _)| nics.insert(pf.nic_id.as_str()));
    }
    if options.len() < links {
        return None;
    }
    options.truncate(links);
    options.sort_by(|a, b| a.1.pci_address.cmp(&b.1.pci_address));
    Some(
        (0u32..)
            .zip(options)
            .map(|(slot, (_, pf, range))| SlotAssignment { slot, pf, range })
            .collect(),
    )
}

/// The reason `choose` found too few PFs, in the order a person would check. Call it once
/// the node is fully planned, so the free counts it reports are final.
pub fn shortfall(spec: &BondNetworkSpec, candidates: &[&PfStatus], used: &UsedVfs) -> NodeReason {
    let links = spec.links as usize;
    let names = |pfs: &[&PfStatus]| {
        pfs.iter()
            .map(|pf| pf.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if candidates.len() < links {
        return NodeReason::new(
            ReasonCode::TooFewPfs,
            format!(
                "needs {links} PFs, {} match{}",
                candidates.len(),
                if candidates.is_empty() {
                    "".to_owned()
                } else {
                    format!(": {}", names(candidates))
                }
            ),
        );
    }
    let nics: BTreeSet<&str> = candidates.iter().map(|pf| pf.nic_id.as_str()).collect();
    if spec.diversity == Diversity::Nic && nics.len() < links {
        return NodeReason::new(
            ReasonCode::TooFewNics,
            format!(
                "needs ports on {links} different NICs (diversity: nic), but the matching PFs {} sit on {} NIC{} ({}); add a card or set diversity: pf",
                names(candidates),
                nics.len(),
                if nics.len() == 1 { "" } else { "s" },
                nics.into_iter().collect::<Vec<_>>().join(", "),
            ),
        );
    }
    let free = candidates
        .iter()
        .map(|pf| {
            format!(
                "{} {} of {}",
                pf.name,
                used.free_count(&pf.name, pf.num_vfs),
                pf.num_vfs
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    NodeReason::new(
        ReasonCode::NoFreeVfs,
        format!(
            "needs {} free VFs in a row on each of {links} {}, other networks hold the rest (free: {free})",
            spec.vfs_per_pf,
            if spec.diversity == Diversity::Nic { "NICs" } else { "PFs" },
        ),
    )
}
