//! Every bond NAD the operator's plan renders (its golden output for the shipped examples)
//! is a config this plugin accepts, with the ports the SR-IOV NADs name: the operator and
//! the plugin cannot drift apart unnoticed.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

fn plan_objects() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../operator/tests/fixtures/plan/examples.objects.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn every_bond_nad_the_plan_renders_parses_with_the_plugin() {
    let nads: Vec<Value> = plan_objects()
        .into_iter()
        .filter(|o| o["kind"] == "NetworkAttachmentDefinition")
        .collect();
    let mut bonds = 0;
    for nad in &nads {
        let config = nad["spec"]["config"]
            .as_str()
            .expect("spec.config is a string");
        let parsed: Value = serde_json::from_str(config).expect("config is JSON");
        if parsed["type"] != "bond" {
            continue;
        }
        bonds += 1;
        let name = nad["metadata"]["name"].as_str().unwrap_or("?");
        let conf = bond_cni::config::parse(config.as_bytes())
            .unwrap_or_else(|e| panic!("bond NAD {name} is refused by the plugin: {e}"));
        assert!(
            conf.links_in_container,
            "{name}: VFs arrive in the pod through Multus"
        );
        assert!(conf.links.len() >= 2, "{name}: a bond needs two ports");
        let mut distinct = conf.links.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            conf.links.len(),
            "{name}: port names are unique"
        );
    }
    assert!(bonds >= 1, "the plan's golden output has no bond NAD");
}
