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

/// Every string under a `format` key anywhere in `v`, with its path. A property that is
/// itself named `format` maps to a schema, not a string, so it is walked into, not taken.
fn formats(v: &serde_yaml::Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                let key = k.as_str().unwrap_or("?");
                let here = format!("{path}.{key}");
                match (key, v) {
                    ("format", serde_yaml::Value::String(f)) => out.push((here, f.clone())),
                    _ => formats(v, &here, out),
                }
            }
        }
        serde_yaml::Value::Sequence(s) => {
            for (i, v) in s.iter().enumerate() {
                formats(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The API server warns on (and ignores) a `format` it does not know, such as the `uint32`
/// and `uint8` schemars writes for unsigned integers; the CRDs as checked in (and as the
/// chart ships them) carry only formats Kubernetes knows, so such a format cannot come back
/// unnoticed.
#[test]
fn checked_in_crds_use_only_formats_kubernetes_knows() {
    let mut seen = 0;
    for dir in ["crds", "charts/bondnet/crds"] {
        let dir = workspace().join(dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no CRDs in {}", dir.display());
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read CRD");
            let crd: serde_yaml::Value =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let mut found = Vec::new();
            formats(&crd, "", &mut found);
            let unknown: Vec<_> = found
                .iter()
                .filter(|(_, f)| !bondnet::api::KNOWN_FORMATS.contains(&f.as_str()))
                .collect();
            assert!(
                unknown.is_empty(),
                "{}: formats Kubernetes does not know: {unknown:?}",
                file.display()
            );
            seen += found.len();
        }
    }
    // The walk finds the formats there are (ipv4, int64, date-time, ...), not nothing.
    assert!(seen > 0, "no format found in any CRD");
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
