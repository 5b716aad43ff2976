//! Checked-in generated files must match what the code generates: the CRDs under `crds/`,
//! and the golden plan of `examples/`. `BONDNET_BLESS=1` rewrites them instead of failing.

use std::path::{Path, PathBuf};

use bondnet::cli::{DevicePluginArgs, PlanArgs};
use bondnet::offline;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bless() -> bool {
    std::env::var("BONDNET_BLESS").is_ok_and(|v| v == "1")
}

/// Compares `actual` with the file, or rewrites the file when blessing.
fn check(path: &Path, actual: &str) {
    if bless() {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create dir");
        std::fs::write(path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run BONDNET_BLESS=1 cargo test -p bondnet-operator --test generated",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} is stale (first difference at line {}):\n  checked in: {:?}\n  generated:  {:?}\nIf the change is intended, run BONDNET_BLESS=1 cargo test -p bondnet-operator --test generated",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line),
        );
    }
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    let files = offline::render_crd_files().expect("CRDs render");
    assert_eq!(files.len(), 2);
    for (name, text) in files {
        check(&workspace().join("crds").join(name), &text);
    }
}

#[test]
fn the_examples_plan_matches_the_golden_files() {
    let root = workspace();
    let args = PlanArgs {
        networks: vec![root.join("examples/bondnetworks.yaml")],
        nodes: vec![root.join("examples/nodes.yaml")],
        previous: None,
        device_plugin: DevicePluginArgs {
            device_plugin_namespace: "bondnet-system".into(),
            device_plugin_configmap: "bondnet-device-plugin-config".into(),
        },
    };
    let mut objects = Vec::new();
    let mut summary = Vec::new();
    offline::run_plan(&args, &mut objects, &mut summary).expect("examples plan");
    let objects = String::from_utf8(objects).expect("utf-8");
    let summary = String::from_utf8(summary).expect("utf-8");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan");
    check(&fixtures.join("examples.objects.yaml"), &objects);
    check(&fixtures.join("examples.summary.txt"), &summary);
}

#[test]
fn planning_twice_gives_byte_identical_output() {
    let root = workspace();
    let args = PlanArgs {
        networks: vec![root.join("examples/bondnetworks.yaml")],
        nodes: vec![root.join("examples/nodes.yaml")],
        previous: None,
        device_plugin: DevicePluginArgs {
            device_plugin_namespace: "ns".into(),
            device_plugin_configmap: "cm".into(),
        },
    };
    let mut first = Vec::new();
    let mut second = Vec::new();
    offline::run_plan(&args, &mut first, &mut Vec::new()).expect("plan");
    offline::run_plan(&args, &mut second, &mut Vec::new()).expect("plan");
    assert!(!first.is_empty());
    assert_eq!(first, second);
}
