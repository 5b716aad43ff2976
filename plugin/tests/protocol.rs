//! The CNI protocol as a runtime sees it, driven in-process through `run::main_with` with a
//! fake environment: exit codes, error codes and the JSON on stdout.

use std::collections::BTreeMap;

use serde_json::Value;

fn call(env: &[(&str, &str)], stdin: &str) -> (i32, Value) {
    let map: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (out, code) = bond_cni::run::main_with(|k| map.get(k).cloned(), stdin.as_bytes());
    let json = if out.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&out).expect("stdout is JSON")
    };
    (code, json)
}

const ADD: &[(&str, &str)] = &[
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "c1"),
    ("CNI_NETNS", "/var/run/netns/none"),
    ("CNI_IFNAME", "bond0"),
];

#[test]
fn version_lists_every_supported_spec() {
    let (code, out) = call(&[("CNI_COMMAND", "VERSION")], "");
    assert_eq!(code, 0);
    assert_eq!(
        out["supportedVersions"],
        serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn broken_json_is_error_6() {
    let (code, out) = call(ADD, "{\"cniVersion\":\"1.0.0\",");
    assert_eq!(code, 1);
    assert_eq!(out["code"], 6);
    assert_eq!(
        out["cniVersion"], "1.1.0",
        "no readable version: the newest"
    );
}

#[test]
fn invalid_config_is_error_7_in_the_configs_version() {
    let (code, out) = call(
        ADD,
        r#"{"cniVersion":"0.3.1","name":"n","type":"bond","mode":"bogus","links":[{"name":"a"},{"name":"b"}]}"#,
    );
    assert_eq!(code, 1);
    assert_eq!(out["code"], 7);
    assert_eq!(out["cniVersion"], "0.3.1");
    assert!(out["msg"]
        .as_str()
        .unwrap_or("")
        .starts_with("invalid config: mode: unknown bond mode \"bogus\""));
}

#[test]
fn unsupported_version_is_error_1() {
    let (code, out) = call(
        ADD,
        r#"{"cniVersion":"0.1.0","name":"n","type":"bond","mode":"balance-rr","links":[{"name":"a"},{"name":"b"}]}"#,
    );
    assert_eq!(code, 1);
    assert_eq!(out["code"], 1);
}

#[test]
fn missing_environment_is_error_4() {
    let (code, out) = call(&[("CNI_COMMAND", "ADD")], "{}");
    assert_eq!(code, 1);
    assert_eq!(out["code"], 4);
    assert!(
        out["msg"]
            .as_str()
            .unwrap_or("")
            .contains("CNI_CONTAINERID"),
        "{out}"
    );
}

#[test]
fn check_before_0_4_0_and_status_before_1_1_0_are_error_1() {
    let mut env = ADD.to_vec();
    env[0] = ("CNI_COMMAND", "CHECK");
    let (_, out) = call(
        &env,
        r#"{"cniVersion":"0.3.1","name":"n","type":"bond","mode":"balance-rr","links":[{"name":"a"},{"name":"b"}]}"#,
    );
    assert_eq!(out["code"], 1, "{out}");
    let (_, out) = call(
        &[("CNI_COMMAND", "STATUS")],
        r#"{"cniVersion":"1.0.0","name":"n","type":"bond","mode":"balance-rr","links":[{"name":"a"},{"name":"b"}]}"#,
    );
    assert_eq!(out["code"], 1, "{out}");
}

#[test]
fn gc_forgets_only_its_own_networks_stale_attachments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf8");
    for (net, cid) in [("n", "keep"), ("n", "stale"), ("other", "stale")] {
        bond_cni::state::save(
            d,
            &bond_cni::state::Saved {
                network: net.into(),
                container_id: cid.into(),
                ifname: if net == "n" {
                    "bond0".into()
                } else {
                    "bond1".into()
                },
                links_in_container: true,
                ports: vec![],
            },
        )
        .expect("save");
    }
    let conf = format!(
        r#"{{"cniVersion":"1.1.0","name":"n","type":"bond","mode":"balance-rr","links":[{{"name":"a"}},{{"name":"b"}}],"stateDir":"{d}",
        "cni.dev/valid-attachments":[{{"containerID":"keep","ifname":"bond0"}}]}}"#
    );
    let (code, out) = call(&[("CNI_COMMAND", "GC")], &conf);
    assert_eq!(code, 0, "{out}");
    let left: Vec<(String, String)> = bond_cni::state::list(d)
        .into_iter()
        .map(|s| (s.container_id, s.ifname))
        .collect();
    assert_eq!(
        left,
        vec![
            ("keep".to_string(), "bond0".to_string()),
            ("stale".to_string(), "bond1".to_string())
        ]
    );
}
