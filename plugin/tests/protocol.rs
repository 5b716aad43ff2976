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
        .starts_with("invalid config: mode: unknown value \"bogus\""));
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

const CONF_LIC: &str = r#""cniVersion":"1.0.0","name":"n","type":"bond","mode":"balance-rr","linksInContainer":true,"links":[{"name":"a"},{"name":"b"}]"#;

#[test]
fn a_container_id_that_climbs_out_of_state_dir_is_error_4_and_touches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf8");
    // What DEL with CNI_CONTAINERID=../outside would read and remove without the check.
    let outside = dir.path().join("outside@bond0.json");
    let saved = r#"{"network":"n","containerID":"outside","ifname":"bond0","links_in_container":true,"ports":[]}"#;
    std::fs::write(&outside, saved).expect("write");
    let conf = format!(r#"{{{CONF_LIC},"stateDir":"{d}/state","lockDir":"{d}/locks"}}"#);
    for command in ["ADD", "DEL", "CHECK"] {
        let (code, out) = call(
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", "../outside"),
                (
                    "CNI_NETNS",
                    if command == "DEL" {
                        ""
                    } else {
                        "/proc/self/ns/net"
                    },
                ),
                ("CNI_IFNAME", "bond0"),
            ],
            &conf,
        );
        assert_eq!(
            (code, &out["code"]),
            (1, &Value::from(4)),
            "{command}: {out}"
        );
        let msg = out["msg"].as_str().unwrap_or("");
        assert!(
            msg.starts_with(
                "invalid environment: CNI_CONTAINERID: \"../outside\" is not a valid container ID"
            ),
            "{command}: {out}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&outside).expect("still there"),
        saved
    );
    assert!(!dir.path().join("state").exists(), "nothing created");
    assert!(!dir.path().join("locks").exists(), "nothing created");
}

#[test]
fn an_ifname_the_kernel_refuses_is_error_4() {
    for bad in ["a/b", "../x", "à", "abcdefghijklmnop", ".."] {
        let (_, out) = call(
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", bad),
            ],
            &format!("{{{CONF_LIC}}}"),
        );
        assert_eq!(out["code"], 4, "{bad:?}: {out}");
        assert!(
            out["msg"]
                .as_str()
                .unwrap_or("")
                .starts_with("invalid environment: CNI_IFNAME:"),
            "{out}"
        );
    }
}

#[test]
fn state_lock_and_log_paths_must_be_absolute_without_dot_dot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf8");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    for (field, value) in [
        ("stateDir", "relative/state".to_string()),
        ("stateDir", format!("{d}/sub/../state")),
        ("lockDir", "locks".to_string()),
        ("lockDir", format!("{d}/sub/../../locks")),
        ("logFile", format!("{d}/sub/../escaped.log")),
        ("logFile", "bond.log".to_string()),
    ] {
        let conf = format!(r#"{{{CONF_LIC},"{field}":"{value}"}}"#);
        let (code, out) = call(ADD, &conf);
        assert_eq!(
            (code, &out["code"]),
            (1, &Value::from(7)),
            "{field}={value}: {out}"
        );
        let msg = out["msg"].as_str().unwrap_or("");
        assert!(
            msg.starts_with(&format!("invalid config: {field}: ")),
            "{field}={value}: {out}"
        );
    }
    assert!(!dir.path().join("escaped.log").exists(), "logFile opened");
    assert!(!std::path::Path::new("bond.log").exists(), "logFile opened");
}

#[test]
fn gc_never_follows_a_state_file_whose_names_lead_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("state");
    std::fs::create_dir(&d).expect("mkdir");
    let victim = dir.path().join("victim@bond0.json");
    std::fs::write(&victim, "precious").expect("write");
    // A state file (written by hand or by an older plugin) whose names climb out of stateDir.
    std::fs::write(
        d.join("x@bond0.json"),
        r#"{"network":"n","containerID":"../victim","ifname":"bond0","links_in_container":true,"ports":[]}"#,
    )
    .expect("write");
    let conf = format!(
        r#"{{"cniVersion":"1.1.0","name":"n","type":"bond","mode":"balance-rr","links":[{{"name":"a"}},{{"name":"b"}}],"stateDir":"{}","cni.dev/valid-attachments":[]}}"#,
        d.display()
    );
    let (code, out) = call(&[("CNI_COMMAND", "GC")], &conf);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim kept"),
        "precious"
    );
}

#[test]
fn a_hung_ipam_plugin_is_stopped_at_ipam_timeout_and_the_answer_is_code_11() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf8");
    let plugin = dir.path().join("hang");
    // Its child sleeps too: killing the script alone would leave stdout open.
    std::fs::write(&plugin, "#!/bin/sh\nsleep 600 &\nwait\n").expect("write");
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let conf = format!(
        r#"{{{CONF_LIC},"ipam":{{"type":"hang"}},"ipamTimeout":1,"stateDir":"{d}/state","lockDir":"{d}/locks"}}"#
    );
    let (code, out) = call(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "bond0"),
            ("CNI_PATH", d),
        ],
        &conf,
    );
    assert_eq!((code, &out["code"]), (1, &Value::from(11)), "{out}");
    assert_eq!(
        out["msg"],
        "IPAM plugin hang did not answer DEL within 1 s and was stopped; try again later, or raise ipamTimeout if it is only slow"
    );
}
