//! The pod expansion, one test per annotation form and rule.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::mutate::{mutate, parse_networks, Decision, NotReadyPolicy};
use crate::api::bond_network::{
    BondNetwork, BondNetworkCondition, BondNetworkSpec, BondNetworkStatus, SlotStatus,
};
use crate::plan::render;

type Store = BTreeMap<(String, String), BondNetwork>;

/// A BondNetwork with the status the plan writes when it is Ready.
fn ready_network(namespace: &str, name: &str, spec: Value) -> BondNetwork {
    let spec: BondNetworkSpec = serde_json::from_value(spec).expect("spec parses");
    let slots = render::slot_names(namespace, name, &spec);
    let status = BondNetworkStatus {
        observed_generation: Some(1),
        conditions: vec![condition(
            "True",
            "Planned",
            "2 of 2 selected nodes can host the bond",
        )],
        slots: slots
            .iter()
            .map(|s| SlotStatus {
                index: s.slot,
                interface: s.ifname.clone(),
                resource_name: s.qualified_resource.clone(),
                nad_name: s.nad.clone(),
            })
            .collect(),
        bond_nad: Some(name.to_owned()),
        pod_annotation: Some(render::pod_annotation(namespace, name, &spec, &slots)),
        ..Default::default()
    };
    let mut network = BondNetwork::new(name, spec);
    network.metadata.namespace = Some(namespace.to_owned());
    network.metadata.generation = Some(1);
    network.status = Some(status);
    network
}

fn not_ready_network(namespace: &str, name: &str) -> BondNetwork {
    let mut network = ready_network(namespace, name, json!({}));
    network.status = Some(BondNetworkStatus {
        observed_generation: Some(1),
        conditions: vec![condition(
            "False",
            "NoEligibleNode",
            "none of the 3 selected nodes can host the bond",
        )],
        ..Default::default()
    });
    network
}

fn condition(status: &str, reason: &str, message: &str) -> BondNetworkCondition {
    BondNetworkCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: None,
        observed_generation: Some(1),
    }
}

fn store(networks: Vec<BondNetwork>) -> Store {
    networks
        .into_iter()
        .map(|n| {
            let key = (
                n.metadata.namespace.clone().unwrap_or_default(),
                n.metadata.name.clone().unwrap_or_default(),
            );
            (key, n)
        })
        .collect()
}

fn pod(annotations: Value, containers: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "app-", "annotations": annotations},
        "spec": {"containers": containers},
    }))
    .expect("pod parses")
}

fn app_pod(networks: &str) -> Pod {
    pod(
        json!({"k8s.v1.cni.cncf.io/networks": networks}),
        json!([{"name": "app", "image": "app", "resources": {"requests": {"cpu": "1"}}}]),
    )
}

/// Applies a JSONPatch of `add`/`replace` ops on object members (all the webhook emits).
fn apply(pod: &Pod, patch: &[Value]) -> Pod {
    let mut doc = serde_json::to_value(pod).expect("pod serializes");
    for op in patch {
        assert!(matches!(op["op"].as_str(), Some("add" | "replace")), "{op}");
        let path = op["path"].as_str().expect("path");
        let mut parts: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"))
            .collect();
        let last = parts.pop().expect("non-empty path");
        let mut target = &mut doc;
        for part in parts {
            target = match target {
                Value::Array(items) => &mut items[part.parse::<usize>().expect("index")],
                other => other.get_mut(&part).expect("path exists"),
            };
        }
        target
            .as_object_mut()
            .expect("object")
            .insert(last, op["value"].clone());
    }
    serde_json::from_value(doc).expect("patched pod parses")
}

fn admitted(pod: &Pod, networks: &Store) -> Pod {
    match mutate(pod, "demo", networks, NotReadyPolicy::Deny) {
        Decision::Patch(patch) => apply(pod, &patch),
        other => panic!("expected a patch, got {other:?}"),
    }
}

fn networks_of(pod: &Pod) -> Value {
    let raw =
        &pod.metadata.annotations.as_ref().expect("annotations")["k8s.v1.cni.cncf.io/networks"];
    serde_json::from_str(raw).expect("the webhook writes the JSON form")
}

fn resources_of(pod: &Pod, container: usize) -> Value {
    serde_json::to_value(&pod.spec.as_ref().expect("spec").containers[container].resources)
        .expect("resources serialize")
}

fn bond_net1_expanded() -> Value {
    json!([
        {"name": "bond-net1-p0", "namespace": "demo", "interface": "bond0p0"},
        {"name": "bond-net1-p1", "namespace": "demo", "interface": "bond0p1"},
        {"name": "bond-net1", "namespace": "demo", "interface": "bond0"},
    ])
}

// === annotation forms ===

#[test]
fn a_bare_name_expands_to_the_sriov_nads_then_the_bond() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    let out = admitted(&app_pod("bond-net1"), &networks);
    assert_eq!(networks_of(&out), bond_net1_expanded());
}

#[test]
fn the_expansion_is_exactly_the_annotation_in_the_status() {
    let network = ready_network("demo", "bond-net1", json!({"links": 3, "ifname": "uplink"}));
    let status_annotation: Value = serde_json::from_str(
        network
            .status
            .as_ref()
            .and_then(|s| s.pod_annotation.as_deref())
            .expect("set"),
    )
    .expect("json");
    let out = admitted(&app_pod("bond-net1"), &store(vec![network]));
    assert_eq!(networks_of(&out), status_annotation);
}

#[test]
fn namespace_and_interface_in_the_short_form_are_honoured() {
    let networks = store(vec![ready_network("infra", "bond-net1", json!({}))]);
    let out = admitted(&app_pod("infra/bond-net1@fast0"), &networks);
    assert_eq!(
        networks_of(&out),
        json!([
            {"name": "bond-net1-p0", "namespace": "infra", "interface": "bond0p0"},
            {"name": "bond-net1-p1", "namespace": "infra", "interface": "bond0p1"},
            {"name": "bond-net1", "namespace": "infra", "interface": "fast0"},
        ])
    );
}

#[test]
fn a_comma_list_keeps_other_networks_in_place_with_the_names_multus_gave_them() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    let out = admitted(
        &app_pod(" mgmt , bond-net1, storage@stor0 ,other/data"),
        &networks,
    );
    assert_eq!(
        networks_of(&out),
        json!([
            {"name": "mgmt", "interface": "net1"},
            {"name": "bond-net1-p0", "namespace": "demo", "interface": "bond0p0"},
            {"name": "bond-net1-p1", "namespace": "demo", "interface": "bond0p1"},
            {"name": "bond-net1", "namespace": "demo", "interface": "bond0"},
            {"name": "storage", "interface": "stor0"},
            {"name": "data", "namespace": "other", "interface": "net4"},
        ])
    );
}

#[test]
fn the_json_form_keeps_every_field_multus_reads() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    let annotation = json!([
        {"name": "bond-net1", "ips": ["10.0.0.5/24"], "default-route": ["10.0.0.1"]},
        {"name": "mgmt", "mac": "02:00:00:00:00:01"},
    ])
    .to_string();
    let out = admitted(&app_pod(&annotation), &networks);
    assert_eq!(
        networks_of(&out),
        json!([
            {"name": "bond-net1-p0", "namespace": "demo", "interface": "bond0p0"},
            {"name": "bond-net1-p1", "namespace": "demo", "interface": "bond0p1"},
            {"name": "bond-net1", "namespace": "demo", "interface": "bond0", "ips": ["10.0.0.5/24"], "default-route": ["10.0.0.1"]},
            {"name": "mgmt", "interface": "net2", "mac": "02:00:00:00:00:01"},
        ])
    );
}

#[test]
fn two_bonds_in_one_pod_each_get_their_ports_and_resources() {
    let networks = store(vec![
        ready_network("demo", "fast", json!({})),
        ready_network("demo", "slow", json!({"ifname": "bond1", "links": 3})),
    ]);
    let out = admitted(&app_pod("fast,slow"), &networks);
    assert_eq!(
        networks_of(&out),
        json!([
            {"name": "fast-p0", "namespace": "demo", "interface": "bond0p0"},
            {"name": "fast-p1", "namespace": "demo", "interface": "bond0p1"},
            {"name": "fast", "namespace": "demo", "interface": "bond0"},
            {"name": "slow-p0", "namespace": "demo", "interface": "bond1p0"},
            {"name": "slow-p1", "namespace": "demo", "interface": "bond1p1"},
            {"name": "slow-p2", "namespace": "demo", "interface": "bond1p2"},
            {"name": "slow", "namespace": "demo", "interface": "bond1"},
        ])
    );
    let limits = &resources_of(&out, 0)["limits"];
    for resource in [
        "bondnet.io/demo_fast_p0",
        "bondnet.io/demo_fast_p1",
        "bondnet.io/demo_slow_p0",
        "bondnet.io/demo_slow_p1",
        "bondnet.io/demo_slow_p2",
    ] {
        assert_eq!(limits[resource], "1", "{resource}: {limits}");
    }
}

#[test]
fn a_pod_without_bondnet_networks_is_left_alone() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    assert_eq!(
        mutate(
            &app_pod("mgmt,storage"),
            "demo",
            &networks,
            NotReadyPolicy::Deny
        ),
        Decision::Allow
    );
    let plain = pod(json!({}), json!([{"name": "app"}]));
    assert_eq!(
        mutate(&plain, "demo", &networks, NotReadyPolicy::Deny),
        Decision::Allow
    );
}

#[test]
fn a_bond_nad_in_another_namespace_is_not_confused_with_the_pods() {
    let networks = store(vec![ready_network("infra", "bond-net1", json!({}))]);
    assert_eq!(
        mutate(
            &app_pod("bond-net1"),
            "demo",
            &networks,
            NotReadyPolicy::Deny
        ),
        Decision::Allow
    );
}

// === idempotence ===

#[test]
fn re_admitting_an_expanded_pod_changes_nothing() {
    let networks = store(vec![
        ready_network("demo", "fast", json!({})),
        ready_network("demo", "slow", json!({"ifname": "bond1"})),
    ]);
    for annotation in ["fast", "mgmt,fast,slow@b9", "demo/slow,fast@x"] {
        let once = admitted(&app_pod(annotation), &networks);
        assert_eq!(
            mutate(&once, "demo", &networks, NotReadyPolicy::Deny),
            Decision::Allow,
            "{annotation}"
        );
    }
}

#[test]
fn a_hand_written_partial_expansion_is_completed_and_reordered() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    let annotation = json!([
        {"name": "bond-net1"},
        {"name": "bond-net1-p1", "interface": "wrong", "mac": "02:00:00:00:00:02"},
    ])
    .to_string();
    let out = admitted(&app_pod(&annotation), &networks);
    assert_eq!(
        networks_of(&out),
        json!([
            {"name": "bond-net1-p0", "namespace": "demo", "interface": "bond0p0"},
            {"name": "bond-net1-p1", "namespace": "demo", "interface": "bond0p1", "mac": "02:00:00:00:00:02"},
            {"name": "bond-net1", "namespace": "demo", "interface": "bond0"},
        ])
    );
}

// === resources ===

#[test]
fn the_first_container_gets_one_vf_per_slot_on_top_of_what_it_asks() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    let pod = pod(
        json!({"k8s.v1.cni.cncf.io/networks": "bond-net1"}),
        json!([
            {"name": "app", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi", "example.com/gpu": "2"}}},
            {"name": "sidecar"},
        ]),
    );
    let out = admitted(&pod, &networks);
    assert_eq!(
        resources_of(&out, 0),
        json!({
            "requests": {"cpu": "1", "memory": "1Gi", "bondnet.io/demo_bond-net1_p0": "1", "bondnet.io/demo_bond-net1_p1": "1"},
            "limits": {"memory": "1Gi", "example.com/gpu": "2", "bondnet.io/demo_bond-net1_p0": "1", "bondnet.io/demo_bond-net1_p1": "1"},
        })
    );
    assert_eq!(resources_of(&out, 1), Value::Null);
}

#[test]
fn the_annotated_container_gets_the_vfs() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    let pod = pod(
        json!({"k8s.v1.cni.cncf.io/networks": "bond-net1", "bondnet.io/resources-container": "dpdk"}),
        json!([{"name": "init-ish"}, {"name": "dpdk"}]),
    );
    let out = admitted(&pod, &networks);
    assert_eq!(resources_of(&out, 0), Value::Null);
    assert_eq!(
        resources_of(&out, 1)["requests"]["bondnet.io/demo_bond-net1_p1"],
        "1"
    );
}

#[test]
fn a_container_that_already_asks_for_the_vfs_is_not_given_more() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    let pod = pod(
        json!({"k8s.v1.cni.cncf.io/networks": "bond-net1"}),
        json!([{"name": "app", "resources": {"limits": {
            "bondnet.io/demo_bond-net1_p0": "1", "bondnet.io/demo_bond-net1_p1": "1"}}}]),
    );
    let out = admitted(&pod, &networks);
    let resources = resources_of(&out, 0);
    assert_eq!(resources["limits"]["bondnet.io/demo_bond-net1_p0"], "1");
    assert_eq!(resources["requests"]["bondnet.io/demo_bond-net1_p0"], "1");
}

// === denials ===

#[test]
fn a_network_that_is_not_ready_is_denied_with_its_reason() {
    let networks = store(vec![not_ready_network("demo", "bond-net1")]);
    let Decision::Deny { message, .. } = mutate(
        &app_pod("bond-net1"),
        "demo",
        &networks,
        NotReadyPolicy::Deny,
    ) else {
        panic!("must deny");
    };
    assert!(
        message.contains("BondNetwork demo/bond-net1 is not Ready"),
        "{message}"
    );
    assert!(message.contains("NoEligibleNode"), "{message}");
    assert!(message.contains("webhook.allowNotReady"), "{message}");
}

#[test]
fn a_network_never_planned_is_denied_naming_the_controller() {
    let mut network = ready_network("demo", "bond-net1", json!({}));
    network.status = None;
    let Decision::Deny { message, .. } = mutate(
        &app_pod("bond-net1"),
        "demo",
        &store(vec![network]),
        NotReadyPolicy::Deny,
    ) else {
        panic!("must deny");
    };
    assert!(message.contains("controller"), "{message}");
}

#[test]
fn a_stale_status_is_not_trusted() {
    let mut network = ready_network("demo", "bond-net1", json!({}));
    network.metadata.generation = Some(2);
    let decision = mutate(
        &app_pod("bond-net1"),
        "demo",
        &store(vec![network]),
        NotReadyPolicy::Deny,
    );
    assert!(
        matches!(&decision, Decision::Deny { message: m, .. } if m.contains("StatusStale")),
        "{decision:?}"
    );
}

#[test]
fn allowing_not_ready_networks_expands_from_the_spec_with_the_plans_names() {
    let networks = store(vec![not_ready_network("demo", "bond-net1")]);
    let pod = app_pod("bond-net1");
    let Decision::Patch(patch) = mutate(&pod, "demo", &networks, NotReadyPolicy::Allow) else {
        panic!("must patch");
    };
    assert_eq!(networks_of(&apply(&pod, &patch)), bond_net1_expanded());
}

#[test]
fn two_bonds_with_the_same_ifname_are_denied() {
    let networks = store(vec![
        ready_network("demo", "fast", json!({})),
        ready_network("demo", "slow", json!({})),
    ]);
    let decision = mutate(
        &app_pod("fast,slow"),
        "demo",
        &networks,
        NotReadyPolicy::Deny,
    );
    assert!(
        matches!(&decision, Decision::Deny { message: m, .. } if m.contains("bond0p0") && m.contains("spec.ifname")),
        "{decision:?}"
    );
}

#[test]
fn the_same_bond_twice_is_denied() {
    let networks = store(vec![ready_network("demo", "fast", json!({}))]);
    let decision = mutate(
        &app_pod("fast@a,demo/fast@b"),
        "demo",
        &networks,
        NotReadyPolicy::Deny,
    );
    assert!(
        matches!(&decision, Decision::Deny { message: m, .. } if m.contains("twice")),
        "{decision:?}"
    );
}

#[test]
fn an_unknown_resources_container_is_denied_listing_the_containers() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    let pod = pod(
        json!({"k8s.v1.cni.cncf.io/networks": "bond-net1", "bondnet.io/resources-container": "nope"}),
        json!([{"name": "app"}]),
    );
    let decision = mutate(&pod, "demo", &networks, NotReadyPolicy::Deny);
    assert!(
        matches!(&decision, Decision::Deny { message: m, .. } if m.contains("\"nope\"") && m.contains("[\"app\"]")),
        "{decision:?}"
    );
}

#[test]
fn malformed_annotations_are_denied_saying_what_is_wrong() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    for (annotation, expected) in [
        ("[{\"name\": ", "JSON list does not parse"),
        ("a/b/c", "at most one '/'"),
        ("net@", "one non-empty interface"),
        ("/net", "at most one '/'"),
    ] {
        let decision = mutate(
            &app_pod(annotation),
            "demo",
            &networks,
            NotReadyPolicy::Deny,
        );
        assert!(
            matches!(&decision, Decision::Deny { message: m, .. } if m.contains(expected) && m.contains("k8s.v1.cni.cncf.io/networks")),
            "{annotation}: {decision:?}"
        );
    }
}

#[test]
fn a_fractional_vf_request_is_denied_naming_the_container_and_field() {
    let networks = store(vec![ready_network("demo", "bond-net1", json!({}))]);
    let pod = pod(
        json!({"k8s.v1.cni.cncf.io/networks": "bond-net1"}),
        json!([{"name": "app", "resources": {"requests": {"bondnet.io/demo_bond-net1_p0": "500m"}}}]),
    );
    let decision = mutate(&pod, "demo", &networks, NotReadyPolicy::Deny);
    assert!(
        matches!(&decision, Decision::Deny { message: m, .. } if m.contains("resources.requests") && m.contains("\"app\"")),
        "{decision:?}"
    );
}

#[test]
fn every_short_form_parses() {
    let parsed = parse_networks("a, ns/b, c@if1, ns/d@if2,,").expect("parses");
    let simple: Vec<(Option<&str>, &str, Option<&str>)> = parsed
        .iter()
        .map(|e| {
            (
                e.namespace.as_deref(),
                e.name.as_str(),
                e.interface.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        simple,
        vec![
            (None, "a", None),
            (Some("ns"), "b", None),
            (None, "c", Some("if1")),
            (Some("ns"), "d", Some("if2")),
        ]
    );
}

// === against the real plan ===

#[test]
fn the_webhook_writes_exactly_what_the_real_plan_publishes_in_status() {
    use crate::fixtures::{network, node_with_cards};
    use crate::plan::{plan, Allocation, Inputs, Settings};

    let mut networks = vec![
        network("demo", "fast", |_| {}),
        network("demo", "wide", |s| {
            s.links = 3;
            s.ifname = "uplink".into();
            s.resource_prefix = "example.com".into();
        }),
    ];
    let nodes = [node_with_cards("n1", &[], 3, 8)];
    let labels = BTreeMap::new();
    let previous = Allocation::default();
    let settings = Settings::default();
    let statuses: Vec<BondNetworkStatus> = plan(&Inputs {
        networks: &networks,
        nodes: &nodes,
        node_labels: &labels,
        previous: &previous,
        settings: &settings,
    })
    .networks
    .into_iter()
    .map(|n| n.status)
    .collect();
    let mut expected_networks = Vec::new();
    let mut expected_resources = BTreeMap::new();
    for (network, status) in networks.iter_mut().zip(statuses) {
        let listed: Vec<Value> =
            serde_json::from_str(status.pod_annotation.as_deref().expect("annotation"))
                .expect("JSON list");
        expected_networks.extend(listed);
        expected_resources.extend(status.pod_resources.clone());
        network.metadata.generation = status.observed_generation;
        network.status = Some(status);
    }
    let out = admitted(&app_pod("fast, wide"), &store(networks));
    assert_eq!(networks_of(&out), Value::Array(expected_networks));
    let limits: BTreeMap<String, String> =
        serde_json::from_value(resources_of(&out, 0)["limits"].clone()).expect("limits");
    assert_eq!(limits, expected_resources);
}

// === the chart's matchConditions against the parser ===

mod match_condition {
    //! The MutatingWebhookConfiguration sends a pod to the webhook only when the chart's
    //! `matchConditions` expression holds (charts/bondnet/webhook-match-condition.cel, rendered
    //! into templates/webhook.yaml). Here it runs in a CEL evaluator against the pod as the API
    //! server presents it, so the condition and the parser provably agree: every annotation the
    //! parser would expand passes, and pods naming no network are never sent.

    use kube::core::cel::{cel, KubeCelExt};
    use proptest::prelude::*;

    use super::*;

    const EXPRESSION: &str = include_str!("../../../charts/bondnet/webhook-match-condition.cel");

    /// Whether the API server would send the pod with these metadata to the webhook; an
    /// evaluation error is an `Err` (with `failurePolicy: Fail` it would refuse the pod).
    ///
    /// The pod is bound as `object` with its keys as they are: the API server escapes only
    /// schema property names, never the keys of a map such as `metadata.annotations` (kube's
    /// VapEvaluator escapes every key, so it is not used here).
    fn sent(metadata: Value) -> Result<bool, String> {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"containers": [{"name": "app", "image": "app"}]},
        });
        let program = cel::Program::compile(EXPRESSION.trim()).map_err(|e| e.to_string())?;
        let mut context = cel::Context::default().with_all();
        context
            .add_variable("object", cel::to_value(&pod).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        context
            .add_variable("oldObject", cel::Value::Null)
            .map_err(|e| e.to_string())?;
        match program.execute(&context) {
            Ok(cel::Value::Bool(sent)) => Ok(sent),
            other => Err(format!(
                "{EXPRESSION} does not evaluate to a bool: {other:?}"
            )),
        }
    }

    fn sent_with(annotation: &str) -> bool {
        sent(json!({"generateName": "app-", "annotations": {"k8s.v1.cni.cncf.io/networks": annotation}}))
            .unwrap_or_else(|e| panic!("{annotation:?}: {e}"))
    }

    /// A name a BondNetwork can have (a DNS-1123 subdomain).
    fn is_object_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
    }

    #[test]
    fn pods_that_name_no_network_are_never_sent() {
        assert_eq!(
            sent(json!({"name": "plain"})),
            Ok(false),
            "no annotations at all"
        );
        assert_eq!(
            sent(
                json!({"name": "plain", "annotations": {"team": "payments", "k8s.v1.cni.cncf.io/networks-status": "x"}})
            ),
            Ok(false),
            "other annotations only"
        );
        for empty in ["", "   ", " , ,", "[]", " [ ] ", "\t\n"] {
            assert!(!sent_with(empty), "{empty:?} names no network");
            assert_eq!(
                parse_networks(empty).map(|e| e.len()).unwrap_or(0),
                0,
                "{empty:?}"
            );
        }
    }

    #[test]
    fn every_annotation_form_that_names_a_bond_network_is_sent() {
        let store = store(vec![ready_network("demo", "bond-net1", json!({}))]);
        for form in [
            "bond-net1",
            " bond-net1 ",
            "demo/bond-net1",
            "bond-net1@fast0",
            "demo/bond-net1@fast0",
            "mgmt, bond-net1",
            "mgmt,demo/bond-net1@fast0,other",
            r#"[{"name":"bond-net1"}]"#,
            r#"[{"name":"bond-net1","namespace":"demo","interface":"fast0"}]"#,
            r#" [ {"name" : "mgmt"}, {"namespace": "demo", "name": "bond-net1"} ]"#,
            r#"[{"\u006eame":"\u0062\u006f\u006e\u0064-\u006e\u0065\u0074\u0031"}]"#,
        ] {
            assert!(
                matches!(
                    mutate(&app_pod(form), "demo", &store, NotReadyPolicy::Deny),
                    Decision::Patch(_)
                ),
                "{form:?} is expanded by the parser"
            );
            assert!(
                sent_with(form),
                "{form:?} is expanded but the chart would not send it"
            );
        }
    }

    /// One entry in the short form, with random spacing.
    fn short_entry() -> impl Strategy<Value = String> {
        (
            prop::option::of("[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?"),
            "[a-z0-9]([-a-z0-9.]{0,12}[a-z0-9])?",
            prop::option::of("[a-zA-Z0-9_-]{1,15}"),
            " {0,2}",
        )
            .prop_map(|(namespace, name, interface, pad)| {
                let mut entry = pad.clone();
                if let Some(namespace) = namespace {
                    entry.push_str(&namespace);
                    entry.push('/');
                }
                entry.push_str(&name);
                if let Some(interface) = interface {
                    entry.push('@');
                    entry.push_str(&interface);
                }
                entry.push_str(&pad);
                entry
            })
    }

    /// JSON-escapes every character of `text` as `\u00XX` where `mask` says so.
    fn escaped(text: &str, mask: &[bool]) -> String {
        text.chars()
            .zip(mask.iter().cycle())
            .map(|(c, &escape)| {
                if escape {
                    format!("\\u{:04x}", u32::from(c))
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    /// One entry of the JSON list form, names and keys partly `\u`-escaped.
    fn json_entry() -> impl Strategy<Value = String> {
        (
            "[a-z0-9]([-a-z0-9.]{0,12}[a-z0-9])?",
            prop::option::of("[a-z0-9]{1,8}"),
            prop::collection::vec(any::<bool>(), 1..6),
        )
            .prop_map(|(name, namespace, mask)| {
                let mut entry = format!(
                    "{{\"{}\": \"{}\"",
                    escaped("name", &mask),
                    escaped(&name, &mask)
                );
                if let Some(namespace) = namespace {
                    entry.push_str(&format!(", \"namespace\": \"{namespace}\""));
                }
                entry.push('}');
                entry
            })
    }

    fn annotation() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(prop_oneof![short_entry(), Just(String::new())], 0..5)
                .prop_map(|entries| entries.join(",")),
            prop::collection::vec(json_entry(), 0..4)
                .prop_map(|entries| format!(" [{}] ", entries.join(","))),
            // Anything at all, malformed included.
            "\\PC{0,30}",
            "[ ,/@\\[\\]{}\":A-Z_]{0,20}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the annotation: a pod the parser would expand is sent, and so is one
        /// with any entry that could name a BondNetwork; the condition never fails to evaluate.
        #[test]
        fn every_annotation_the_parser_would_expand_passes_the_condition(value in annotation()) {
            let is_sent = sent_with(&value);
            let Ok(entries) = parse_networks(&value) else {
                return Ok(());
            };
            let candidates: Vec<_> = entries
                .iter()
                .filter(|e| is_object_name(&e.name) && e.namespace.as_deref().is_none_or(is_object_name))
                .collect();
            if !candidates.is_empty() {
                prop_assert!(is_sent, "{value:?} names {:?} but is not sent", candidates[0].name);
            }
            // Make every candidate a Ready BondNetwork: what the parser expands must be sent.
            let networks = store(
                candidates
                    .iter()
                    .map(|e| ready_network(e.namespace.as_deref().unwrap_or("demo"), &e.name, json!({})))
                    .collect(),
            );
            if let Decision::Patch(_) = mutate(&app_pod(&value), "demo", &networks, NotReadyPolicy::Deny) {
                prop_assert!(is_sent, "{value:?} is expanded but not sent");
            }
        }
    }
}
