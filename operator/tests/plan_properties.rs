//! Properties of the plan on generated clusters: ports never share a PF (or a card with
//! `diversity: nic`), VF ranges never overlap, input order does not matter, the output is
//! deterministic, and networks coming and going never move another network's VFs.

use std::collections::BTreeMap;

use bondnet::api::bond_network::{BondNetwork, Diversity};
use bondnet::api::bond_node_state::BondNodeState;
use bondnet::api::device_plugin::VfRange;
use bondnet::fixtures::{e810_pf, network, node};
use bondnet::offline;
use bondnet::plan::{self, Allocation, Inputs, NodeOutcome, Plan, Settings};
use proptest::prelude::*;

/// (network key, node) -> the PF and VF range of each slot.
type Placement = BTreeMap<(String, String), Vec<(String, VfRange)>>;

fn placement(plan: &Plan<'_>) -> Placement {
    let mut out = BTreeMap::new();
    for network in &plan.networks {
        for (node, outcome) in &network.nodes {
            if let NodeOutcome::Hosted(slots) = outcome {
                out.insert(
                    (network.key(), (*node).to_owned()),
                    slots.iter().map(|s| (s.pf.name.clone(), s.range)).collect(),
                );
            }
        }
    }
    out
}

fn run<'a>(
    networks: &'a [BondNetwork],
    nodes: &'a [BondNodeState],
    previous: &Allocation,
) -> Plan<'a> {
    plan::plan(&Inputs {
        networks,
        nodes,
        node_labels: &BTreeMap::new(),
        previous,
        settings: &Settings::default(),
    })
}

fn rendered(plan: &Plan<'_>) -> String {
    offline::render_objects(plan).expect("renders") + &offline::render_summary(plan)
}

/// A node: a pool label and 1-4 cards of 1-2 ports, each port with 0-12 VFs.
fn arb_node(index: usize) -> impl Strategy<Value = BondNodeState> {
    (
        prop::bool::ANY,
        prop::collection::vec(prop::collection::vec(0u32..=12, 1..=2), 1..=4),
    )
        .prop_map(move |(pool_a, cards)| {
            let mut pfs = Vec::new();
            for (card, ports) in cards.iter().enumerate() {
                let nic = format!("0000:{:02x}:00", 0x10 + card * 0x10);
                for (port, vfs) in ports.iter().enumerate() {
                    let port = u8::try_from(port).expect("at most 2 ports");
                    pfs.push(e810_pf(&format!("ens{card}f{port}"), &nic, port, *vfs));
                }
            }
            let pool = if pool_a { "a" } else { "b" };
            node(&format!("node-{index}"), &[("pool", pool)], pfs)
        })
}

fn arb_nodes() -> impl Strategy<Value = Vec<BondNodeState>> {
    (1usize..=5).prop_flat_map(|n| (0..n).map(arb_node).collect::<Vec<_>>())
}

/// A network: 2-3 links, either diversity, 1-4 VFs per PF, maybe pinned to pool `a`.
fn arb_network(index: usize) -> impl Strategy<Value = BondNetwork> {
    (2u32..=3, prop::bool::ANY, 1u32..=4, prop::bool::ANY).prop_map(
        move |(links, nic, vfs, pinned)| {
            network(
                &format!("ns{}", index % 2),
                &format!("net-{index}"),
                |spec| {
                    spec.links = links;
                    spec.diversity = if nic { Diversity::Nic } else { Diversity::Pf };
                    spec.vfs_per_pf = vfs;
                    if pinned {
                        spec.node_selector.insert("pool".into(), "a".into());
                    }
                },
            )
        },
    )
}

fn arb_networks() -> impl Strategy<Value = Vec<BondNetwork>> {
    (1usize..=6).prop_flat_map(|n| (0..n).map(arb_network).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn slots_of_one_network_never_share_a_pf_or_with_nic_diversity_a_card(
        networks in arb_networks(),
        nodes in arb_nodes(),
    ) {
        let plan = run(&networks, &nodes, &Allocation::default());
        for network in &plan.networks {
            let spec = &networks.iter().find(|n| n.metadata.name.as_deref() == Some(network.name)).expect("input").spec;
            for outcome in network.nodes.values() {
                if let NodeOutcome::Hosted(slots) = outcome {
                    prop_assert_eq!(slots.len(), spec.links as usize);
                    for (i, a) in slots.iter().enumerate() {
                        for b in &slots[i + 1..] {
                            prop_assert_ne!(&a.pf.name, &b.pf.name);
                            if spec.diversity == Diversity::Nic {
                                prop_assert_ne!(&a.pf.nic_id, &b.pf.nic_id);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn vf_ranges_on_a_pf_never_overlap_and_stay_within_enabled_vfs(
        networks in arb_networks(),
        nodes in arb_nodes(),
    ) {
        let plan = run(&networks, &nodes, &Allocation::default());
        // node -> pf -> ranges
        let mut taken: BTreeMap<(&str, &str), Vec<VfRange>> = BTreeMap::new();
        for network in &plan.networks {
            for (node, outcome) in &network.nodes {
                if let NodeOutcome::Hosted(slots) = outcome {
                    for slot in slots {
                        prop_assert!(slot.range.last < slot.pf.num_vfs);
                        let ranges = taken.entry((node, slot.pf.name.as_str())).or_default();
                        for other in ranges.iter() {
                            prop_assert!(!other.overlaps(slot.range), "{:?} overlaps {:?} on {} {}", other, slot.range, node, slot.pf.name);
                        }
                        ranges.push(slot.range);
                    }
                }
            }
        }
    }

    #[test]
    fn input_order_does_not_change_the_output(
        (networks, shuffled_networks) in arb_networks().prop_flat_map(|n| (Just(n.clone()), Just(n).prop_shuffle())),
        (nodes, shuffled_nodes) in arb_nodes().prop_flat_map(|n| (Just(n.clone()), Just(n).prop_shuffle())),
    ) {
        let a = rendered(&run(&networks, &nodes, &Allocation::default()));
        let b = rendered(&run(&shuffled_networks, &shuffled_nodes, &Allocation::default()));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn the_same_input_gives_the_same_bytes_and_replanning_changes_nothing(
        networks in arb_networks(),
        nodes in arb_nodes(),
    ) {
        let first = run(&networks, &nodes, &Allocation::default());
        let second = run(&networks, &nodes, &Allocation::default());
        prop_assert_eq!(rendered(&first), rendered(&second));
        let previous = first.allocation();
        let replanned = run(&networks, &nodes, &previous);
        prop_assert_eq!(rendered(&first), rendered(&replanned));
    }

    #[test]
    fn removing_a_network_never_moves_another_networks_vfs(
        networks in arb_networks(),
        nodes in arb_nodes(),
        removed in any::<prop::sample::Index>(),
    ) {
        let before = run(&networks, &nodes, &Allocation::default());
        let previous = before.allocation();
        let mut remaining = networks.clone();
        let gone = remaining.remove(removed.index(networks.len()));
        let after = run(&remaining, &nodes, &previous);
        let gone_key = format!("{}/{}", gone.metadata.namespace.as_deref().unwrap_or_default(), gone.metadata.name.as_deref().unwrap_or_default());
        let after_placement = placement(&after);
        for (key, slots) in placement(&before) {
            if key.0 != gone_key {
                prop_assert_eq!(after_placement.get(&key), Some(&slots), "{:?} moved", key);
            }
        }
    }

    #[test]
    fn adding_a_network_never_moves_the_existing_networks_vfs(
        networks in arb_networks(),
        nodes in arb_nodes(),
        added in arb_network(99),
    ) {
        let before = run(&networks, &nodes, &Allocation::default());
        let previous = before.allocation();
        let mut more = networks.clone();
        more.insert(0, added);
        let after = run(&more, &nodes, &previous);
        let after_placement = placement(&after);
        for (key, slots) in placement(&before) {
            prop_assert_eq!(after_placement.get(&key), Some(&slots), "{:?} moved", key);
        }
    }
}
