//! Tier 5: bondnet against a real, CRD-only Kubernetes API server.
//!
//! ```text
//! BONDNET_APISERVER=1 cargo test -p bondnet-tests --test apiserver
//! ```
//!
//! The server is Kubernetes' own `k8s.io/apiextensions-apiserver`, built from Debian's packages
//! by `tests/apiserver/build.sh` and started over a fresh etcd per test by
//! `tests/apiserver/start.sh` (TLS on loopback, client-certificate auth). It serves CRDs and
//! custom resources with the real structural schema, pruning, defaulting, CEL, server-side
//! apply, watch and finalizers; it serves no core types and runs no garbage collector.
//! `tests/apiserver/README.md` lists what is covered here and what only the mock tier covers.
//!
//! Without `BONDNET_APISERVER=1` every test prints `SKIPPED` and returns. With it, a server
//! that cannot be built from the archive (a missing package, a compile error) is the one
//! allowed skip: the reason is printed to stderr. Anything else that goes wrong fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use serde::Deserialize;
use serde_json::{json, Value};

const GATE: &str = "BONDNET_APISERVER";
const MANAGER: &str = "bondnet-tests";
const TIMEOUT: Duration = Duration::from_secs(60);

// === the server ===

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/apiserver").join(name)
}

/// Runs build.sh once per test binary: Ok(server binary) or Err(why it cannot be built here).
/// `BONDNET_APISERVER_BIN` names a server binary to use instead.
fn built_server() -> &'static Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        if let Some(bin) = std::env::var_os("BONDNET_APISERVER_BIN") {
            eprintln!("using BONDNET_APISERVER_BIN={}", Path::new(&bin).display());
            return Ok(PathBuf::from(bin));
        }
        let out = Command::new("bash")
            .arg(script("build.sh"))
            .output()
            .expect("run tests/apiserver/build.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprint!("{stderr}");
        match out.status.code() {
            Some(0) => {
                let stdout = String::from_utf8_lossy(&out.stdout);
                let bin = stdout
                    .lines()
                    .last()
                    .expect("build.sh prints the binary path");
                Ok(PathBuf::from(bin.trim()))
            }
            Some(2) => {
                let reason = std::fs::read_to_string(repo_root().join("target/apiserver/SKIPPED"))
                    .unwrap_or_else(|_| stderr.to_string());
                Err(reason.trim().to_string())
            }
            _ => panic!(
                "tests/apiserver/build.sh failed ({}):\n{stderr}",
                out.status
            ),
        }
    })
}

/// etcd and the API server of one test, stopped (and their directory removed, unless the test
/// failed) on drop.
struct Server {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Server {
    /// Starts a fresh server for `test`, or says loudly why the tier is skipped and returns None.
    fn start(test: &str) -> Option<Server> {
        if std::env::var(GATE).as_deref() != Ok("1") {
            eprintln!(
                "SKIPPED: {test}: the real-API-server tier is off; set {GATE}=1 to build and run it"
            );
            return None;
        }
        let bin = match built_server() {
            Ok(bin) => bin,
            Err(reason) => {
                eprintln!(
                    "SKIPPED: {test}: the CRD-only API server cannot be built here: {reason}"
                );
                return None;
            }
        };
        let dir = repo_root()
            .join("target/apiserver/run")
            .join(format!("{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let server = Server {
            kubeconfig: dir.join("kubeconfig"),
            dir,
        };
        server.run("start.sh", "all", bin);
        Some(server)
    }

    fn run(&self, script_name: &str, what: &str, bin: &Path) {
        let out = Command::new("bash")
            .arg(script(script_name))
            .arg(&self.dir)
            .arg(what)
            .env("BONDNET_APISERVER_BIN", bin)
            .output()
            .expect("run a tests/apiserver script");
        assert!(
            out.status.success(),
            "{script_name} {what} failed: {}\n(logs in {})",
            String::from_utf8_lossy(&out.stderr),
            self.dir.display()
        );
    }

    async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read the kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("load the kubeconfig");
        Client::try_from(config).expect("build a client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script("stop.sh"))
            .arg(&self.dir)
            .arg("all")
            .status();
        if std::thread::panicking() {
            eprintln!("server logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// === files ===

/// Every non-empty YAML document in `path`, as JSON.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("parse YAML in {}: {e}", path.display()));
            serde_json::to_value(value).expect("YAML converts to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

/// The CRDs this tier installs: every one under crds/, then the NAD CRD.
fn crd_documents() -> Vec<CustomResourceDefinition> {
    let mut files = yaml_files(
        &std::env::var_os("TMP_CRDS")
            .map(PathBuf::from)
            .unwrap_or(repo_root().join("crds")),
    );
    assert!(!files.is_empty(), "crds/ holds no CRD");
    files.push(script("nad-crd.yaml"));
    files
        .iter()
        .flat_map(|f| yaml_documents(f))
        .map(|doc| serde_json::from_value(doc).expect("a CustomResourceDefinition"))
        .collect()
}

// === API helpers ===

/// Applies every CRD and waits until each is Established. Returns their names.
async fn install_crds(client: &Client) -> Vec<String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for crd in crd_documents() {
        let name = crd.metadata.name.clone().expect("a CRD has a name");
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force().validation_strict(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("the API server refused CRD {name}: {e}"));
        names.push(name);
    }
    for name in &names {
        tokio::time::timeout(
            TIMEOUT,
            await_condition(api.clone(), name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not Established within {TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("watch CRD {name}: {e}"));
    }
    names
}

fn gvk_of(object: &Value) -> GroupVersionKind {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let kind = object["kind"].as_str().expect("kind");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

fn bond_networks(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("bondnet.io", "v1alpha1", "BondNetwork");
    Api::namespaced_with(client.clone(), namespace, &ApiResource::from_gvk(&gvk))
}

fn bond_network(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "bondnet.io/v1alpha1",
        "kind": "BondNetwork",
        "metadata": { "name": name },
        "spec": spec,
    })
}

/// Whether every field of `expected` is in `actual` with the same value (objects may have more).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(av, ev)| contains(av, ev))
        }
        (Value::Number(a), Value::Number(e)) => a.as_f64() == e.as_f64(),
        _ => actual == expected,
    }
}

/// Every `message` of every x-kubernetes-validations rule under `schema`.
fn cel_messages(schema: &Value, found: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for rule in rules {
                    let message = rule["message"]
                        .as_str()
                        .or(rule["rule"].as_str())
                        .expect("a rule has a rule");
                    found.insert(message.to_string());
                }
            }
            map.values().for_each(|v| cel_messages(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| cel_messages(v, found)),
        _ => {}
    }
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_and_the_nad_crd_install_and_become_established() {
    let Some(server) = Server::start("crds") else {
        return;
    };
    let client = server.client().await;
    let names = install_crds(&client).await;
    assert!(names.contains(&"bondnetworks.bondnet.io".to_string()));
    assert!(names.contains(&"bondnodestates.bondnet.io".to_string()));
    assert!(names.contains(&"network-attachment-definitions.k8s.cni.cncf.io".to_string()));

    // Discovery now serves each kind, with the scope the CRD declares.
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    for crd in crd_documents() {
        let spec = &crd.spec;
        for version in spec.versions.iter().filter(|v| v.served) {
            let gvk = GroupVersionKind::gvk(&spec.group, &version.name, &spec.names.kind);
            let (resource, caps) = discovery
                .resolve_gvk(&gvk)
                .unwrap_or_else(|| panic!("{gvk:?} is not served after its CRD was Established"));
            assert_eq!(resource.plural, spec.names.plural);
            let namespaced = spec.scope == "Namespaced";
            assert_eq!(caps.scope == Scope::Namespaced, namespaced, "{gvk:?} scope");
        }
    }

    // Applying the same CRDs again is a no-op, not a conflict.
    let again = install_crds(&client).await;
    assert_eq!(names, again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_applies_under_strict_field_validation_and_reads_back_unchanged() {
    let Some(server) = Server::start("examples") else {
        return;
    };
    let client = server.client().await;
    install_crds(&client).await;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");

    let files = yaml_files(&repo_root().join("examples"));
    assert!(!files.is_empty(), "examples/ holds no YAML file");
    let mut applied = 0;
    for file in &files {
        for doc in yaml_documents(file) {
            let gvk = gvk_of(&doc);
            let name = doc["metadata"]["name"]
                .as_str()
                .expect("a name")
                .to_string();
            let what = format!("{} {name} from {}", gvk.kind, file.display());
            let Some((resource, caps)) = discovery.resolve_gvk(&gvk) else {
                assert!(
                    gvk.group.is_empty(),
                    "{what}: kind {gvk:?} is not served, and it is not a core type"
                );
                eprintln!("not applied (core types are not served by this server): {what}");
                continue;
            };
            let api: Api<DynamicObject> = match (caps.scope, doc["metadata"]["namespace"].as_str())
            {
                (Scope::Namespaced, Some(ns)) => {
                    Api::namespaced_with(client.clone(), ns, &resource)
                }
                (Scope::Namespaced, None) => {
                    Api::default_namespaced_with(client.clone(), &resource)
                }
                (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
            };
            let params = PatchParams::apply(MANAGER).validation_strict();
            let live = api
                .patch(&name, &params, &Patch::Apply(&doc))
                .await
                .unwrap_or_else(|e| panic!("{what} was refused: {e}"));
            let live = serde_json::to_value(live).expect("JSON");
            assert!(
                contains(&live["spec"], &doc["spec"]),
                "{what}: the server pruned or changed the spec:\nsent {}\nread {}",
                doc["spec"],
                live["spec"]
            );
            // Status goes through the status subresource only (as the agent and the
            // controller write it), and then reads back as sent.
            if let Some(status) = doc.get("status").filter(|s| !s.is_null()) {
                let status_doc = json!({
                    "apiVersion": doc["apiVersion"],
                    "kind": doc["kind"],
                    "status": status,
                });
                let live = api
                    .patch_status(&name, &params, &Patch::Apply(&status_doc))
                    .await
                    .unwrap_or_else(|e| panic!("{what}: status was refused: {e}"));
                let live = serde_json::to_value(live).expect("JSON");
                assert!(
                    contains(&live["status"], status),
                    "{what}: the server pruned or changed the status:\nsent {status}\nread {}",
                    live["status"]
                );
            }
            applied += 1;
        }
    }
    assert!(applied > 0, "no example object was applied");
}

/// One invalid BondNetwork per CEL rule: the spec (over `mode: active-backup`) and the message
/// the server must answer with. A rule in crds/ without a case here fails the test.
fn invalid_bond_networks() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "one-link",
            json!({ "links": 1 }),
            "links must be at least 2: a bond of one port has no redundancy",
        ),
        (
            "lacp-rate-in-active-backup",
            json!({ "lacpRate": "fast" }),
            "lacpRate needs mode 802.3ad",
        ),
        (
            "ad-select-in-active-backup",
            json!({ "adSelect": "stable" }),
            "adSelect needs mode 802.3ad",
        ),
        (
            "min-links-in-active-backup",
            json!({ "minLinks": 1 }),
            "minLinks needs mode 802.3ad",
        ),
        (
            "min-links-over-links",
            json!({ "mode": "802.3ad", "links": 2, "minLinks": 3 }),
            "minLinks must not exceed links",
        ),
        (
            "primary-in-balance-rr",
            json!({ "mode": "balance-rr", "primary": "bond0p0" }),
            "primary needs mode active-backup, balance-tlb or balance-alb",
        ),
        (
            "primary-not-a-port",
            json!({ "primary": "eth0" }),
            "primary must name a port: <ifname>p<slot>, e.g. bond0p0",
        ),
        (
            "primary-reselect-without-primary",
            json!({ "primaryReselect": "always" }),
            "primaryReselect needs primary",
        ),
        (
            "xmit-hash-policy-in-active-backup",
            json!({ "xmitHashPolicy": "layer2" }),
            "xmitHashPolicy needs mode balance-xor, 802.3ad or balance-tlb",
        ),
        (
            "fail-over-mac-in-balance-tlb",
            json!({ "mode": "balance-tlb", "failOverMac": 1 }),
            "failOverMac needs mode active-backup",
        ),
        (
            "tlb-dynamic-lb-in-active-backup",
            json!({ "tlbDynamicLb": 1 }),
            "tlbDynamicLb needs mode balance-tlb",
        ),
        (
            "packets-per-slave-in-active-backup",
            json!({ "packetsPerSlave": 1 }),
            "packetsPerSlave needs mode balance-rr",
        ),
        (
            "lp-interval-in-active-backup",
            json!({ "lpInterval": 1 }),
            "lpInterval needs mode balance-tlb or balance-alb",
        ),
        (
            "arp-and-mii-monitor",
            json!({ "arpInterval": 100, "arpIpTargets": ["192.0.2.1"], "miimon": 100 }),
            "arpInterval and miimon exclude each other: keep one link monitor",
        ),
        (
            "arp-monitor-in-802-3ad",
            json!({ "mode": "802.3ad", "arpInterval": 100, "arpIpTargets": ["192.0.2.1"] }),
            "arpInterval does not work with mode 802.3ad, balance-tlb or balance-alb: use miimon",
        ),
        (
            "arp-interval-without-targets",
            json!({ "arpInterval": 100 }),
            "arpInterval needs arpIpTargets",
        ),
        (
            "arp-targets-without-interval",
            json!({ "arpIpTargets": ["192.0.2.1"] }),
            "arpIpTargets needs arpInterval",
        ),
        (
            "arp-validate-without-interval",
            json!({ "arpValidate": "all" }),
            "arpValidate needs arpInterval",
        ),
        (
            "arp-all-targets-without-interval",
            json!({ "arpAllTargets": "all" }),
            "arpAllTargets needs arpInterval",
        ),
        (
            "updelay-with-arp-monitor",
            json!({ "arpInterval": 100, "arpIpTargets": ["192.0.2.1"], "updelay": 200 }),
            "updelay and downdelay work with miimon, not arpInterval",
        ),
        (
            "updelay-not-a-multiple",
            json!({ "miimon": 100, "updelay": 150 }),
            "updelay must be a multiple of miimon (100 when unset)",
        ),
        (
            "downdelay-not-a-multiple",
            json!({ "downdelay": 150 }),
            "downdelay must be a multiple of miimon (100 when unset)",
        ),
        (
            "balance-xor-over-untrusted-vfs",
            json!({ "mode": "balance-xor", "sriov": { "trust": "off" } }),
            "balance-rr and balance-xor change the ports' MAC address, which a VF allows only when trusted: set sriov.trust to on or leave it unset",
        ),
        (
            "vlan-qos-without-vlan",
            json!({ "sriov": { "vlanQoS": 3 } }),
            "sriov.vlanQoS needs sriov.vlan",
        ),
        (
            "min-tx-rate-over-max",
            json!({ "sriov": { "minTxRate": 200, "maxTxRate": 100 } }),
            "sriov.minTxRate must not exceed sriov.maxTxRate",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cel_rules_reject_each_invalid_bond_network_with_its_message() {
    let Some(server) = Server::start("cel") else {
        return;
    };
    let client = server.client().await;
    install_crds(&client).await;
    let api = bond_networks(&client, "cel");

    let cases = invalid_bond_networks();
    let mut failures = Vec::new();
    for (name, spec, message) in &cases {
        let mut full = json!({ "mode": "active-backup" });
        full.as_object_mut()
            .expect("an object")
            .extend(spec.as_object().expect("an object").clone());
        let object: DynamicObject =
            serde_json::from_value(bond_network(name, full)).expect("a BondNetwork");
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => failures.push(format!("{name}: accepted, expected \"{message}\"")),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                if !status.message.contains(message) {
                    failures.push(format!(
                        "{name}: rejected with \"{}\", expected \"{message}\"",
                        status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }

    // The valid base passes, so each rejection above is the rule's own doing.
    let base: DynamicObject =
        serde_json::from_value(bond_network("valid", json!({ "mode": "active-backup" })))
            .expect("a BondNetwork");
    api.create(&PostParams::default(), &base)
        .await
        .expect("the valid base BondNetwork is accepted");

    // Every rule the CRDs declare has a case above.
    let mut declared = BTreeSet::new();
    for crd in crd_documents() {
        cel_messages(
            &serde_json::to_value(&crd.spec).expect("JSON"),
            &mut declared,
        );
    }
    let tested: BTreeSet<String> = cases.iter().map(|(_, _, m)| m.to_string()).collect();
    for message in declared.difference(&tested) {
        failures.push(format!(
            "the CRDs declare a CEL rule with no rejection case here: \"{message}\""
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_defaults_fill_an_empty_bond_network_and_unknown_fields_are_refused() {
    let Some(server) = Server::start("defaults") else {
        return;
    };
    let client = server.client().await;
    install_crds(&client).await;
    let api = bond_networks(&client, "defaults");

    let object: DynamicObject =
        serde_json::from_value(bond_network("empty", json!({}))).expect("a BondNetwork");
    let live = api
        .create(&PostParams::default(), &object)
        .await
        .expect("an empty spec is valid");
    let spec = &serde_json::to_value(live).expect("JSON")["spec"];
    let defaults = json!({
        "mode": "active-backup",
        "links": 2,
        "diversity": "nic",
        "ifname": "bond0",
        "resourcePrefix": "bondnet.io",
    });
    assert!(
        contains(spec, &defaults),
        "the server's defaults differ:\nexpected {defaults}\nread {spec}"
    );

    // A misspelt field is refused under strict validation, not silently pruned.
    let typo = bond_network("typo", json!({ "mode": "active-backup", "miimonn": 100 }));
    let err = api
        .patch(
            "typo",
            &PatchParams::apply(MANAGER).validation_strict(),
            &Patch::Apply(&typo),
        )
        .await
        .expect_err("an unknown field is refused");
    assert!(err.to_string().contains("miimonn"), "{err}");
}
