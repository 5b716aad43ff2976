//! `bondnet plan` input handling: bad input gets an error naming the file, document, field
//! and fix; `List` documents and Node labels are read.

use std::path::Path;

use bondnet::offline::{self, Accept, Loaded};

fn load(text: &str, accept: Accept) -> Result<Loaded, bondnet::Error> {
    let mut loaded = Loaded::default();
    offline::load_file(Path::new("input.yaml"), text, accept, &mut loaded)?;
    Ok(loaded)
}

#[test]
fn an_unknown_mode_names_the_document_and_the_modes() {
    let text = "---\napiVersion: bondnet.io/v1alpha1\nkind: BondNetwork\nmetadata: {name: a, namespace: n}\nspec: {}\n---\napiVersion: bondnet.io/v1alpha1\nkind: BondNetwork\nmetadata: {name: b}\nspec:\n  mode: round-robin\n";
    let err = load(text, Accept::Networks)
        .expect_err("bad mode")
        .to_string();
    assert!(err.starts_with("input.yaml: document 2: "), "{err}");
    assert!(
        err.contains("round-robin") && err.contains("balance-rr"),
        "{err}"
    );
}

#[test]
fn a_node_state_in_the_networks_file_is_refused_with_what_belongs_there() {
    let text =
        "apiVersion: bondnet.io/v1alpha1\nkind: BondNodeState\nmetadata: {name: n1}\nspec: {}\n";
    let err = load(text, Accept::Networks)
        .expect_err("wrong kind")
        .to_string();
    assert!(
        err.contains("\"BondNodeState\"") && err.contains("-f takes BondNetwork"),
        "{err}"
    );
}

#[test]
fn list_documents_and_node_labels_are_read() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: bondnet.io/v1alpha1\n  kind: BondNodeState\n  metadata: {name: n1}\n  spec: {}\n- apiVersion: v1\n  kind: Node\n  metadata:\n    name: n1\n    labels: {pool: a}\n---\n";
    let loaded = load(text, Accept::Nodes).expect("valid");
    assert_eq!(loaded.nodes.len(), 1);
    assert_eq!(loaded.node_labels["n1"]["pool"], "a");
}

#[test]
fn an_invalid_network_fails_the_plan_naming_the_network_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let networks = dir.path().join("nets.yaml");
    let nodes = dir.path().join("nodes.yaml");
    std::fs::write(
        &networks,
        "apiVersion: bondnet.io/v1alpha1\nkind: BondNetwork\nmetadata: {name: fast, namespace: telco}\nspec:\n  mode: active-backup\n  lacpRate: fast\n",
    )
    .expect("write");
    std::fs::write(&nodes, "").expect("write");
    let args = bondnet::cli::PlanArgs {
        networks: vec![networks],
        nodes: vec![nodes],
        previous: None,
        device_plugin: bondnet::cli::DevicePluginArgs {
            device_plugin_namespace: "ns".into(),
            device_plugin_configmap: "cm".into(),
        },
    };
    let mut out = Vec::new();
    let err = offline::run_plan(&args, &mut out, &mut Vec::new())
        .expect_err("invalid")
        .to_string();
    assert_eq!(
        err,
        "BondNetwork telco/fast: spec.lacpRate: lacpRate only applies in mode 802.3ad; remove it or change mode"
    );
    assert!(out.is_empty(), "nothing is printed for an invalid input");
}

#[test]
fn a_missing_file_is_named() {
    let args = bondnet::cli::PlanArgs {
        networks: vec!["/nonexistent/nets.yaml".into()],
        nodes: vec![],
        previous: None,
        device_plugin: bondnet::cli::DevicePluginArgs {
            device_plugin_namespace: "ns".into(),
            device_plugin_configmap: "cm".into(),
        },
    };
    let err = offline::run_plan(&args, &mut Vec::new(), &mut Vec::new())
        .expect_err("missing")
        .to_string();
    assert!(
        err.starts_with("cannot read /nonexistent/nets.yaml: "),
        "{err}"
    );
}

#[test]
fn the_previous_configmap_keeps_vf_ranges() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: ns}\ndata:\n  n1: '{\"resourceList\":[{\"resourceName\":\"a_b_p0\",\"selectors\":{\"pfNames\":[\"ens1f0#8-11\"]}}]}'\n";
    let alloc = offline::previous_allocation(Path::new("cm.yaml"), cm).expect("valid");
    let held = alloc.get("n1", "a_b_p0").expect("read back");
    assert_eq!(
        (held.pf.as_str(), held.range.first, held.range.last),
        ("ens1f0", 8, 11)
    );

    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata:\n  n1: 'not json'\n";
    let err = offline::previous_allocation(Path::new("cm.yaml"), bad)
        .expect_err("bad")
        .to_string();
    assert!(err.contains("data.n1"), "{err}");
}
