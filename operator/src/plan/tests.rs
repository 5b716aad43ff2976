//! The plan, one behaviour per test, on nodes built with `crate::fixtures`.

use std::collections::BTreeMap;

use super::*;
use crate::api::bond_network::{BondMode, Diversity};
use crate::api::device_plugin::VfRange;
use crate::fixtures::{e810_pf, network, node, node_with_cards};

static NO_LABELS: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
static NO_PREVIOUS: Allocation = Allocation {
    nodes: BTreeMap::new(),
};

fn run<'a>(networks: &'a [BondNetwork], nodes: &'a [BondNodeState]) -> Plan<'a> {
    run_after(networks, nodes, &NO_PREVIOUS)
}

fn run_after<'a>(
    networks: &'a [BondNetwork],
    nodes: &'a [BondNodeState],
    previous: &'a Allocation,
) -> Plan<'a> {
    plan(&Inputs {
        networks,
        nodes,
        node_labels: &NO_LABELS,
        previous,
        settings: &Settings::default(),
    })
}

fn hosted<'a>(plan: &'a Plan<'_>, network: &str, node: &str) -> &'a [SlotAssignment<'a>] {
    let net = plan
        .networks
        .iter()
        .find(|n| n.name == network)
        .expect("network planned");
    match net.nodes.get(node).expect("node selected") {
        NodeOutcome::Hosted(slots) => slots,
        NodeOutcome::Ineligible(reason) => panic!("{network} on {node} is ineligible: {reason}"),
    }
}

fn reason<'a>(plan: &'a Plan<'_>, network: &str, node: &str) -> &'a NodeReason {
    let net = plan
        .networks
        .iter()
        .find(|n| n.name == network)
        .expect("network planned");
    match net.nodes.get(node).expect("node selected") {
        NodeOutcome::Ineligible(reason) => reason,
        NodeOutcome::Hosted(slots) => panic!("{network} on {node} is hosted: {slots:?}"),
    }
}

#[test]
fn slots_land_on_different_cards_when_diversity_is_nic() {
    let networks = [network("ns", "net", |_| {})];
    let nodes = [node_with_cards("n1", &[], 2, 8)];
    let plan = run(&networks, &nodes);
    let slots = hosted(&plan, "net", "n1");
    assert_eq!(slots.len(), 2);
    assert_ne!(slots[0].pf.nic_id, slots[1].pf.nic_id);
    assert_eq!(slots[0].slot, 0);
    assert!(
        slots[0].pf.pci_address < slots[1].pf.pci_address,
        "slots follow PCI order"
    );
}

#[test]
fn one_dual_port_card_cannot_host_nic_diversity_but_hosts_pf_diversity() {
    let nodes = [node_with_cards("n1", &[], 1, 8)];
    let networks = [network("ns", "net", |_| {})];
    let plan = run(&networks, &nodes);
    let why = reason(&plan, "net", "n1");
    assert_eq!(why.code, ReasonCode::TooFewNics);
    assert!(why.message.contains("diversity: pf"), "{why}");

    let pf_diverse = [network("ns", "net", |s| s.diversity = Diversity::Pf)];
    let plan = run(&pf_diverse, &nodes);
    let slots = hosted(&plan, "net", "n1");
    assert_ne!(slots[0].pf, slots[1].pf);
    assert_eq!(slots[0].pf.nic_id, slots[1].pf.nic_id);
}

#[test]
fn a_pf_without_vfs_is_named_in_the_reason() {
    let nodes = [node(
        "n1",
        &[],
        vec![
            e810_pf("ens1f0", "0000:18:00", 0, 8),
            e810_pf("ens2f0", "0000:38:00", 0, 0),
        ],
    )];
    let networks = [network("ns", "net", |_| {})];
    let plan = run(&networks, &nodes);
    let why = reason(&plan, "net", "n1");
    assert_eq!(why.code, ReasonCode::TooFewPfs);
    assert!(why.message.contains("ens2f0: no VFs enabled"), "{why}");
}

#[test]
fn a_node_without_pfs_says_so() {
    let networks = [network("ns", "net", |_| {})];
    let nodes = [node("n1", &[], vec![])];
    let plan = run(&networks, &nodes);
    assert_eq!(reason(&plan, "net", "n1").code, ReasonCode::NoPfs);
}

#[test]
fn networks_sharing_a_pf_get_disjoint_vf_ranges() {
    let networks = [network("ns", "a", |_| {}), network("ns", "b", |_| {})];
    let nodes = [node_with_cards("n1", &[], 2, 8)];
    let plan = run(&networks, &nodes);
    let a = hosted(&plan, "a", "n1");
    let b = hosted(&plan, "b", "n1");
    for x in a {
        for y in b {
            assert!(
                x.pf != y.pf || !x.range.overlaps(y.range),
                "{x:?} overlaps {y:?}"
            );
        }
    }
}

#[test]
fn exhausted_vfs_are_reported_with_what_is_free() {
    // Two cards of two ports, 4 VFs each: two networks of 4 VFs per PF fill all four PFs.
    let networks = [
        network("ns", "a", |_| {}),
        network("ns", "b", |_| {}),
        network("ns", "c", |_| {}),
    ];
    let nodes = [node_with_cards("n1", &[], 2, 4)];
    let plan = run(&networks, &nodes);
    hosted(&plan, "a", "n1");
    hosted(&plan, "b", "n1");
    let why = reason(&plan, "c", "n1");
    assert_eq!(why.code, ReasonCode::NoFreeVfs);
    assert!(why.message.contains("ens1f0 0 of 4"), "{why}");
}

#[test]
fn a_network_keeps_its_vfs_when_another_network_is_added_before_it() {
    let nodes = [node_with_cards("n1", &[], 2, 16)];
    let before_networks = [network("ns", "m", |_| {})];
    let before = run(&before_networks, &nodes);
    let previous = before.allocation();
    let networks = [network("ns", "a", |_| {}), network("ns", "m", |_| {})];
    let after = run_after(&networks, &nodes, &previous);
    assert_eq!(hosted(&before, "m", "n1"), hosted(&after, "m", "n1"));
    // Without the previous allocation "a" would have taken m's VFs.
    let fresh = run(&networks, &nodes);
    assert_ne!(hosted(&before, "m", "n1"), hosted(&fresh, "m", "n1"));
}

#[test]
fn a_previous_range_that_no_longer_fits_is_planned_again() {
    let nodes = [node_with_cards("n1", &[], 2, 16)];
    let mut previous = Allocation::default();
    previous.nodes.insert(
        "n1".into(),
        BTreeMap::from([
            (
                "ns_net_p0".into(),
                PfRange {
                    pf: "ens1f0".into(),
                    range: VfRange {
                        first: 14,
                        last: 17,
                    },
                },
            ),
            (
                "ns_net_p1".into(),
                PfRange {
                    pf: "ens2f0".into(),
                    range: VfRange { first: 0, last: 3 },
                },
            ),
        ]),
    );
    let networks = [network("ns", "net", |_| {})];
    let plan = run_after(&networks, &nodes, &previous);
    let slots = hosted(&plan, "net", "n1");
    assert!(slots.iter().all(|s| s.range.last < 16), "{slots:?}");
}

#[test]
fn node_selector_reads_node_labels_before_the_node_state_labels() {
    let nodes = [
        node_with_cards("n1", &[("pool", "a")], 2, 8),
        node_with_cards("n2", &[("pool", "b")], 2, 8),
    ];
    let networks = [network("ns", "net", |s| {
        s.node_selector.insert("pool".into(), "a".into());
    })];
    let plan = run(&networks, &nodes);
    let keys: Vec<&str> = plan.networks[0].nodes.keys().copied().collect();
    assert_eq!(keys, ["n1"]);

    let labels = BTreeMap::from([(
        "n2".to_owned(),
        BTreeMap::from([("pool".to_owned(), "a".to_owned())]),
    )]);
    let plan = super::plan(&Inputs {
        networks: &networks,
        nodes: &nodes,
        node_labels: &labels,
        previous: &NO_PREVIOUS,
        settings: &Settings::default(),
    });
    let keys: Vec<&str> = plan.networks[0].nodes.keys().copied().collect();
    assert_eq!(keys, ["n1", "n2"]);
}

#[test]
fn a_pf_below_the_bond_mtu_is_rejected_by_name() {
    let networks = [network("ns", "net", |s| s.mtu = Some(9000))];
    let nodes = [node_with_cards("n1", &[], 2, 8)];
    let plan = run(&networks, &nodes);
    let why = reason(&plan, "net", "n1");
    assert_eq!(why.code, ReasonCode::NoMatchingPf);
    assert!(
        why.message
            .contains("PF MTU 1500 below the bond's mtu 9000"),
        "{why}"
    );
}

#[test]
fn an_invalid_spec_gets_an_invalid_spec_condition_and_no_objects() {
    let networks = [network("ns", "net", |s| {
        s.bond.lacp_rate = Some(bondnet_bond::LacpRate::Fast)
    })];
    let nodes = [node_with_cards("n1", &[], 2, 8)];
    let plan = run(&networks, &nodes);
    let net = &plan.networks[0];
    assert_eq!(
        net.invalid.as_ref().map(|e| e.field.as_str()),
        Some("lacpRate")
    );
    assert!(net.nads.is_empty());
    assert_eq!(net.status.conditions[0].reason, "InvalidSpec");
    assert!(plan.device_plugin["n1"].resource_list.is_empty());
}

#[test]
fn the_bond_nad_config_has_the_plugin_shape() {
    let networks = [network("ns", "net", |s| {
        s.ipam = Some(serde_json::json!({"type": "static"}))
    })];
    let nodes = [node_with_cards("n1", &[], 2, 8)];
    let plan = run(&networks, &nodes);
    let bond = plan.networks[0].nads.last().expect("bond NAD");
    assert_eq!(bond.metadata.name.as_deref(), Some("net"));
    assert_eq!(
        bond.spec.config,
        r#"{"cniVersion":"1.0.0","type":"bond","name":"net","mode":"active-backup","linksInContainer":true,"links":[{"name":"bond0p0"},{"name":"bond0p1"}],"ipam":{"type":"static"},"failOverMac":1,"miimon":"100"}"#
    );
}

#[test]
fn each_slot_gets_an_sriov_nad_annotated_with_its_resource() {
    let networks = [network("ns", "net", |_| {})];
    let nodes = [node_with_cards("n1", &[], 2, 8)];
    let plan = run(&networks, &nodes);
    let nads = &plan.networks[0].nads;
    assert_eq!(nads.len(), 3);
    for (slot, nad) in nads[..2].iter().enumerate() {
        assert_eq!(
            nad.metadata.name.as_deref(),
            Some(format!("net-p{slot}").as_str())
        );
        let annotations = nad.metadata.annotations.as_ref().expect("annotated");
        assert_eq!(
            annotations[keys::ANNOTATION_RESOURCE_NAME],
            format!("bondnet.io/ns_net_p{slot}")
        );
        assert!(nad.spec.config.contains(r#""type":"sriov""#));
    }
}

#[test]
fn the_device_plugin_gets_one_resource_per_slot_naming_one_pf_range() {
    let networks = [network("ns", "net", |_| {})];
    let nodes = [node_with_cards("n1", &[], 2, 8)];
    let plan = run(&networks, &nodes);
    let resources = &plan.device_plugin["n1"].resource_list;
    assert_eq!(resources.len(), 2);
    let slots = hosted(&plan, "net", "n1");
    for (resource, slot) in resources.iter().zip(slots) {
        assert_eq!(resource.selectors.pf_names.len(), 1);
        assert_eq!(resource.selectors.pf_names[0].pf, slot.pf.name);
        assert_eq!(resource.selectors.pf_names[0].range, Some(slot.range));
        assert_eq!(resource.selectors.drivers, ["iavf"]);
    }
}

#[test]
fn the_pod_annotation_lists_the_sriov_nads_before_the_bond() {
    let networks = [network("ns", "net", |s| s.links = 3)];
    let nodes = [node_with_cards("n1", &[], 3, 8)];
    let plan = run(&networks, &nodes);
    assert_eq!(
        plan.networks[0].status.pod_annotation.as_deref(),
        Some(
            r#"[{"name":"net-p0","namespace":"ns","interface":"bond0p0"},{"name":"net-p1","namespace":"ns","interface":"bond0p1"},{"name":"net-p2","namespace":"ns","interface":"bond0p2"},{"name":"net","namespace":"ns","interface":"bond0"}]"#
        )
    );
    assert_eq!(plan.networks[0].status.pod_resources.len(), 3);
}

#[test]
fn conditions_say_ready_and_degraded_with_counts() {
    let nodes = [
        node_with_cards("n1", &[], 2, 8),
        node_with_cards("n2", &[], 1, 8),
    ];
    let networks = [network("ns", "net", |_| {})];
    let plan = run(&networks, &nodes);
    let status = &plan.networks[0].status;
    assert_eq!(status.eligible_nodes, 1);
    assert_eq!(status.ineligible_node_count, 1);
    assert_eq!(status.ineligible_nodes[0].node, "n2");
    assert_eq!(status.conditions[0].status, "True");
    assert_eq!(
        status.conditions[0].message,
        "1 of 2 selected nodes can host the bond"
    );
    assert_eq!(status.conditions[1].reason, "SomeNodesIneligible");
}

#[test]
fn no_selected_node_is_not_ready() {
    let networks = [network("ns", "net", |s| {
        s.node_selector.insert("pool".into(), "none".into());
    })];
    let nodes = [node_with_cards("n1", &[], 2, 8)];
    let plan = run(&networks, &nodes);
    assert_eq!(
        plan.networks[0].status.conditions[0].reason,
        "NoNodeSelected"
    );
}

#[test]
fn lacp_with_several_vfs_per_pf_carries_a_note() {
    let networks = [network("ns", "net", |s| s.mode = BondMode::Ieee8023ad)];
    let nodes = [node_with_cards("n1", &[], 2, 8)];
    let plan = run(&networks, &nodes);
    assert!(plan.networks[0].status.conditions[0]
        .message
        .contains("one pod per PF"));
}

#[test]
fn a_wider_bond_takes_one_pf_per_card_across_cards() {
    let networks = [network("ns", "net", |s| s.links = 4)];
    let nodes = [node_with_cards("n1", &[], 4, 8)];
    let plan = run(&networks, &nodes);
    let slots = hosted(&plan, "net", "n1");
    let nics: std::collections::BTreeSet<_> = slots.iter().map(|s| &s.pf.nic_id).collect();
    assert_eq!(nics.len(), 4);
}

#[test]
fn the_allocation_reads_back_from_the_configmap_it_renders() {
    let networks = [network("ns", "a", |_| {}), network("ns", "b", |_| {})];
    let nodes = [
        node_with_cards("n1", &[], 2, 8),
        node_with_cards("n2", &[], 2, 8),
    ];
    let plan = run(&networks, &nodes);
    let cms = device_plugin_configmaps(&plan);
    assert_eq!(cms.len(), 1);
    assert_eq!(
        cms[0].metadata.name.as_deref(),
        Some(keys::DEVICE_PLUGIN_CONFIGMAP)
    );
    let data = cms[0].data.clone().expect("data");
    let configs: BTreeMap<String, DevicePluginConfig> = data
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_str(v).expect("json")))
        .collect();
    let back = Allocation::from_device_plugin_configs(configs.iter().map(|(k, v)| (k.as_str(), v)));
    assert_eq!(back, plan.allocation());
}

#[test]
fn only_the_first_50_ineligible_nodes_are_kept_but_all_are_counted() {
    let nodes: Vec<BondNodeState> = (0..60)
        .map(|i| node_with_cards(&format!("n{i:02}"), &[], 1, 8))
        .collect();
    let networks = [network("ns", "net", |_| {})];
    let plan = run(&networks, &nodes);
    let net = &plan.networks[0];
    assert_eq!(net.nodes.len(), MAX_LISTED_INELIGIBLE);
    assert_eq!(
        net.nodes.keys().last(),
        Some(&"n49"),
        "the first by name are kept"
    );
    assert_eq!(net.status.ineligible_node_count, 60);
    assert_eq!(net.status.ineligible_nodes.len(), MAX_LISTED_INELIGIBLE);
    assert_eq!(
        net.status.conditions[1].message,
        "60 of 60 selected nodes cannot host the bond; see status.ineligibleNodes"
    );
    let summary = crate::offline::render_summary(&plan);
    assert!(
        summary.ends_with("  ... and 10 more nodes that cannot host the bond\n"),
        "{summary}"
    );
}

#[test]
fn a_small_export_is_one_configmap_under_the_configured_name() {
    let networks = [network("ns", "a", |_| {})];
    let nodes: Vec<BondNodeState> = (0..20)
        .map(|i| node_with_cards(&format!("n{i:02}"), &[], 2, 8))
        .collect();
    let plan = super::plan(&Inputs {
        networks: &networks,
        nodes: &nodes,
        node_labels: &NO_LABELS,
        previous: &NO_PREVIOUS,
        settings: &Settings::default(),
    });
    let cms = device_plugin_configmaps(&plan);
    assert_eq!(cms.len(), 1);
    assert_eq!(
        cms[0].metadata.name.as_deref(),
        Some("bondnet-device-plugin-config")
    );
    assert_eq!(cms[0].data.as_ref().map(BTreeMap::len), Some(20));
}

#[test]
fn a_large_export_is_sharded_by_size_each_shard_under_the_limit_and_reads_back_whole() {
    let networks = [network("ns", "a", |_| {})];
    // About 280 bytes of config per node: 8,000 nodes hold about 2.2 MB.
    let nodes: Vec<BondNodeState> = (0..8000)
        .map(|i| node_with_cards(&format!("worker-node-with-a-long-name-{i:04}"), &[], 2, 8))
        .collect();
    let plan = super::plan(&Inputs {
        networks: &networks,
        nodes: &nodes,
        node_labels: &NO_LABELS,
        previous: &NO_PREVIOUS,
        settings: &Settings::default(),
    });
    let cms = device_plugin_configmaps(&plan);
    assert_eq!(cms.len(), 4, "2.2 MB over 750 kB shards, a power of two");
    let names: Vec<_> = cms.iter().filter_map(|c| c.metadata.name.clone()).collect();
    assert_eq!(names[0], "bondnet-device-plugin-config-0");
    assert_eq!(names[3], "bondnet-device-plugin-config-3");
    let mut configs = BTreeMap::new();
    for cm in &cms {
        assert!(
            configmap_data_bytes(cm) <= MAX_CONFIGMAP_DATA_BYTES,
            "{:?} holds {} bytes",
            cm.metadata.name,
            configmap_data_bytes(cm)
        );
        for (node, json) in cm.data.iter().flatten() {
            let config: DevicePluginConfig = serde_json::from_str(json).expect("json");
            assert!(
                configs.insert(node.clone(), config).is_none(),
                "{node} in two shards"
            );
        }
    }
    assert_eq!(configs.len(), 8000);
    let back = Allocation::from_device_plugin_configs(configs.iter().map(|(k, v)| (k.as_str(), v)));
    assert_eq!(back, plan.allocation());
}
