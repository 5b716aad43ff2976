//! Tier 5: bondnet against a real Kubernetes control plane.
//!
//! ```text
//! cargo test -p bondnet-tests --test apiserver -- --ignored
//! ```
//!
//! Each test starts its own etcd, kube-apiserver, kube-controller-manager and kube-scheduler
//! (`tests/controlplane/start.sh`: TLS, client certificates, service-account signing keys,
//! `--authorization-mode=Node,RBAC`, the default admission plugins, routing to webhooks through
//! their endpoints), built from Go modules by `tests/controlplane/build.sh` (versions in
//! `tests/controlplane/go.mod`). The tests are `#[ignore]`d so that a plain `cargo test` shows
//! them as ignored, not passed; `--ignored` (scripts/test.sh) runs them, and then a control
//! plane that cannot be built or started fails the test: there is no skip.
//! `tests/controlplane/README.md` lists what each test proves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use serde::Deserialize;
use serde_json::{json, Value};

const MANAGER: &str = "bondnet-tests";
const TIMEOUT: Duration = Duration::from_secs(60);
/// Where the controller keeps its Lease (and its device-plugin ConfigMap export).
const SYSTEM_NAMESPACE: &str = "bondnet-system";

// === the control plane ===

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn script(name: &str) -> PathBuf {
    repo_root().join("tests/controlplane").join(name)
}

/// Runs build.sh once per test binary and returns the directory of the control plane's
/// binaries; `BONDNET_CONTROLPLANE_BIN` names one to use instead. A build that fails fails
/// the test that asked, with the reason.
fn control_plane_bin() -> &'static PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        if let Some(bin) = std::env::var_os("BONDNET_CONTROLPLANE_BIN") {
            eprintln!(
                "using BONDNET_CONTROLPLANE_BIN={}",
                Path::new(&bin).display()
            );
            return Ok(PathBuf::from(bin));
        }
        let out = Command::new("bash")
            .arg(script("build.sh"))
            .output()
            .expect("run tests/controlplane/build.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprint!("{stderr}");
        if out.status.success() {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let bin = stdout
                .lines()
                .last()
                .expect("build.sh prints the binaries' directory");
            Ok(PathBuf::from(bin.trim()))
        } else {
            Err(format!(
                "tests/controlplane/build.sh failed ({}): {stderr}",
                out.status
            ))
        }
    });
    match built {
        Ok(bin) => bin,
        Err(reason) => panic!("the control plane cannot be built here: {reason}"),
    }
}

/// The control plane of one test (etcd, kube-apiserver, kube-controller-manager,
/// kube-scheduler), stopped on drop; its directory, with every component's log, is removed
/// unless the test failed.
struct Server {
    dir: PathBuf,
    kubeconfig: PathBuf,
    /// When the test restarted the API server: from the stop until it was ready again.
    outages: Outages,
}

/// Periods (from, to) when the API server was down or starting, shared with the bondnet
/// processes of the test (see [`Bondnet::refusals`]).
type Outages = std::sync::Arc<std::sync::Mutex<Vec<(Timestamp, Timestamp)>>>;

impl Server {
    /// Starts a fresh control plane for `test`, or fails the test saying why it cannot.
    fn start(test: &str) -> Server {
        let bin = control_plane_bin();
        let dir = repo_root()
            .join("target/controlplane/run")
            .join(format!("{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the control plane's directory");
        let server = Server {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            outages: Outages::default(),
        };
        server.run("start.sh", "all", bin);
        server
    }

    fn run(&self, script_name: &str, what: &str, bin: &Path) {
        let out = Command::new("bash")
            .arg(script(script_name))
            .arg(&self.dir)
            .arg(what)
            .env("BONDNET_CONTROLPLANE_BIN", bin)
            .output()
            .expect("run a tests/controlplane script");
        assert!(
            out.status.success(),
            "{script_name} {what} failed: {}\n(logs in {})",
            String::from_utf8_lossy(&out.stderr),
            self.dir.display()
        );
    }

    /// Stops the API server alone (etcd keeps the data): gracefully, or by SIGKILL as in a
    /// crash; then starts it again on the same port, and returns once it is ready (`/readyz`,
    /// which waits for its informers, RBAC's included). The period is recorded as an outage.
    fn restart_api_server(&self, crash: bool, down_for: Duration) {
        let bin = control_plane_bin();
        let from = Timestamp::now();
        self.run(
            "stop.sh",
            if crash {
                "apiserver-crash"
            } else {
                "apiserver"
            },
            bin,
        );
        std::thread::sleep(down_for);
        self.run("start.sh", "apiserver", bin);
        self.outages
            .lock()
            .expect("the outages")
            .push((from, Timestamp::now()));
    }

    async fn client(&self) -> Client {
        client_from(&self.kubeconfig).await
    }
}

async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("load the kubeconfig");
    Client::try_from(config).expect("build a client")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script("stop.sh"))
            .arg(&self.dir)
            .arg("all")
            .status();
        if std::thread::panicking() {
            let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
            logs.sort();
            eprintln!(
                "the control plane's directory is kept: {}\nlogs:",
                self.dir.display()
            );
            for log in logs {
                eprintln!("  {}", log.display());
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Creates the namespace unless it exists (the NamespaceLifecycle admission plugin refuses
/// objects in a namespace that does not).
async fn ensure_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.expect("get a namespace").is_some() {
        return;
    }
    let ns: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": name } })).expect("a Namespace");
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("create namespace {name}: {e}"),
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
    let mut files = yaml_files(&repo_root().join("crds"));
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
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn crds_and_the_nad_crd_install_and_become_established() {
    let server = Server::start("crds");
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
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn every_example_applies_under_strict_field_validation_and_reads_back_unchanged() {
    let server = Server::start("examples");
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
            let (resource, caps) = discovery
                .resolve_gvk(&gvk)
                .unwrap_or_else(|| panic!("{what}: kind {gvk:?} is not served"));
            let api: Api<DynamicObject> = match (caps.scope, doc["metadata"]["namespace"].as_str())
            {
                (Scope::Namespaced, Some(ns)) => {
                    ensure_namespace(&client, ns).await;
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
            // What was sent reads back (the server may add to it: a Node gets its taints).
            for part in ["spec", "metadata"] {
                let sent = match part {
                    "metadata" => json!({ "labels": doc["metadata"]["labels"].clone() })
                        .as_object()
                        .filter(|_| !doc["metadata"]["labels"].is_null())
                        .map(|m| Value::Object(m.clone())),
                    _ => doc.get(part).cloned(),
                };
                let Some(sent) = sent else { continue };
                assert!(
                    contains(&live[part], &sent),
                    "{what}: the server pruned or changed the {part}:\nsent {sent}\nread {}",
                    live[part]
                );
            }
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
            "balance-xor-over-untrusted-vfs",
            json!({ "mode": "balance-xor", "sriov": { "trust": "off" } }),
            "balance-rr and balance-xor change the ports' MAC address, which a VF allows only when trusted: set sriov.trust to on or leave it unset",
        ),
        (
            "fail-over-mac-in-balance-tlb",
            json!({ "mode": "balance-tlb", "failOverMac": 1 }),
            "failOverMac only applies in mode active-backup; remove it or change mode",
        ),
        (
            "tlb-dynamic-lb-in-active-backup",
            json!({ "tlbDynamicLb": 1 }),
            "tlbDynamicLb only applies in mode balance-tlb or balance-alb; remove it or change mode",
        ),
        (
            "xmit-hash-policy-in-active-backup",
            json!({ "xmitHashPolicy": "layer2" }),
            "xmitHashPolicy only applies in mode balance-xor, 802.3ad or balance-tlb; remove it or change mode",
        ),
        (
            "lacp-rate-in-active-backup",
            json!({ "lacpRate": "fast" }),
            "lacpRate only applies in mode 802.3ad; remove it or change mode",
        ),
        (
            "ad-select-in-active-backup",
            json!({ "adSelect": "stable" }),
            "adSelect only applies in mode 802.3ad; remove it or change mode",
        ),
        (
            "min-links-in-active-backup",
            json!({ "minLinks": 1 }),
            "minLinks only applies in mode 802.3ad; remove it or change mode",
        ),
        (
            "primary-in-balance-rr",
            json!({ "mode": "balance-rr", "primary": "bond0p0" }),
            "primary only applies in mode active-backup, balance-tlb or balance-alb; remove it or change mode",
        ),
        (
            "primary-reselect-in-802-3ad",
            json!({ "mode": "802.3ad", "primaryReselect": "always" }),
            "primaryReselect only applies in mode active-backup, balance-tlb or balance-alb; remove it or change mode",
        ),
        (
            "arp-monitor-in-802-3ad",
            json!({ "mode": "802.3ad", "arpInterval": 100, "arpIpTargets": ["192.0.2.1"], "miimon": 0 }),
            "arpInterval only applies in mode balance-rr, active-backup, balance-xor or broadcast; remove it or change mode",
        ),
        (
            "num-peer-notif-in-broadcast",
            json!({ "mode": "broadcast", "numPeerNotif": 2 }),
            "numPeerNotif only applies in mode active-backup; remove it or change mode",
        ),
        (
            "resend-igmp-in-balance-xor",
            json!({ "mode": "balance-xor", "resendIgmp": 2 }),
            "resendIgmp only applies in mode balance-rr, active-backup, balance-tlb or balance-alb; remove it or change mode",
        ),
        (
            "packets-per-slave-in-active-backup",
            json!({ "packetsPerSlave": 1 }),
            "packetsPerSlave only applies in mode balance-rr; remove it or change mode",
        ),
        (
            "lp-interval-in-active-backup",
            json!({ "lpInterval": 1 }),
            "lpInterval only applies in mode balance-tlb or balance-alb; remove it or change mode",
        ),
        (
            "primary-not-a-port",
            json!({ "primary": "eth0" }),
            "primary must name one of the bond's ports: <ifname>p<slot>, e.g. bond0p0; set it to one of them or remove it",
        ),
        (
            "arp-and-mii-monitor",
            json!({ "arpInterval": 100, "arpIpTargets": ["192.0.2.1"], "miimon": 100 }),
            "arpInterval cannot be combined with miimon: choose ARP monitoring (arpInterval and arpIpTargets) or MII monitoring (miimon), and set the other to 0 or remove it",
        ),
        (
            "arp-interval-without-targets",
            json!({ "arpInterval": 100 }),
            "arpInterval needs arpIpTargets: list at least one IPv4 address to probe",
        ),
        (
            "arp-targets-without-interval",
            json!({ "arpIpTargets": ["192.0.2.1"] }),
            "arpIpTargets only applies with ARP monitoring: set arpInterval (and drop miimon) or remove it",
        ),
        (
            "arp-validate-without-interval",
            json!({ "arpValidate": "all" }),
            "arpValidate only applies with ARP monitoring: set arpInterval (and drop miimon) or remove it",
        ),
        (
            "arp-all-targets-without-interval",
            json!({ "arpAllTargets": "all" }),
            "arpAllTargets only applies with ARP monitoring: set arpInterval (and drop miimon) or remove it",
        ),
        (
            "updelay-not-a-multiple",
            json!({ "miimon": 100, "updelay": 150 }),
            "updelay needs MII monitoring and must be a multiple of miimon (100 when unset): change it, or set it to 0",
        ),
        (
            "downdelay-with-arp-monitor",
            json!({ "arpInterval": 100, "arpIpTargets": ["192.0.2.1"], "downdelay": 200 }),
            "downdelay needs MII monitoring and must be a multiple of miimon (100 when unset): change it, or set it to 0",
        ),
        (
            "min-links-over-links",
            json!({ "mode": "802.3ad", "links": 2, "minLinks": 3 }),
            "minLinks must not exceed the number of ports: lower it",
        ),
        (
            "primary-reselect-without-primary",
            json!({ "primaryReselect": "always" }),
            "primaryReselect needs primary: set primary or remove primaryReselect",
        ),
        (
            "xmit-hash-policy-in-dynamic-balance-tlb",
            json!({ "mode": "balance-tlb", "xmitHashPolicy": "layer3+4" }),
            "xmitHashPolicy in balance-tlb only applies with tlbDynamicLb: 0; set that too or remove xmitHashPolicy",
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
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn cel_rules_reject_each_invalid_bond_network_with_its_message() {
    let server = Server::start("cel");
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, "cel").await;
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

// === one contract for the API server, `bondnet plan` and the plugin ===

/// The table of the dry-run test: every mode with every sample value of every option, every
/// mode with every pair of sample values of two options, and every value the schema refuses.
fn option_table() -> Vec<Value> {
    use bondnet::api::bond_network::BondMode;
    let samples: Vec<(&str, Value)> = bondnet_bond::samples::values()
        .into_iter()
        .flat_map(|(name, values)| values.into_iter().map(move |v| (name, v)))
        .collect();
    let mut table = Vec::new();
    for mode in BondMode::ALL {
        let base = json!({"mode": mode, "links": 2});
        for (i, (a, va)) in samples.iter().enumerate() {
            let mut one = base.clone();
            one[*a] = va.clone();
            table.push(one);
            for (b, vb) in &samples[i + 1..] {
                if a != b {
                    let mut two = base.clone();
                    two[*a] = va.clone();
                    two[*b] = vb.clone();
                    table.push(two);
                }
            }
        }
    }
    for (name, value) in bondnet_bond::samples::schema_invalid() {
        let mut spec = json!({"mode": "active-backup", "links": 2});
        spec[name] = value;
        table.push(spec);
    }
    table
}

/// What `bondnet plan` says of a spec; for an accepted one, the bond NAD it renders is read by
/// the plugin's own config reader (cmd ADD's first step: JSON, mode, links, every option and
/// rule) and encoded to netlink. Err carries the message, which names the field.
fn plan_and_plugin_verdict(spec: &Value) -> Result<(), String> {
    use bondnet::api::bond_network::BondNetworkSpec;
    use bondnet::plan::render;
    let parsed: BondNetworkSpec =
        serde_json::from_value(spec.clone()).map_err(|e| e.to_string())?;
    parsed
        .validate()
        .map_err(|e| format!("{}: {}", e.field, e.message))?;
    let slots = render::slot_names("contract", "net", &parsed);
    let config = render::bond_config("net", &parsed, &slots);
    let conf = bond_cni::config::parse(config.as_bytes())
        .unwrap_or_else(|e| panic!("{spec}: accepted, but the plugin refuses its NAD: {e}"));
    let attrs = conf
        .bond
        .to_netlink(conf.bond.options.primary.as_ref().map(|_| 1));
    assert_eq!(
        attrs.len(),
        1 + conf.bond.options.to_map().len(),
        "{spec}: every option reaches netlink: {attrs:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn every_mode_and_option_pair_dry_runs_on_the_server_as_bondnet_plan_judges_it_and_each_accepted_spec_reaches_the_plugin(
) {
    use futures::{stream, StreamExt};
    let server = Server::start("contract");
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, "contract").await;
    let api = bond_networks(&client, "contract");
    // A dry-run create: server-side apply would answer a value of the wrong type with a 500
    // ("failed to create typed patch object") before validation runs.
    let params = PostParams {
        dry_run: true,
        field_manager: Some(MANAGER.to_owned()),
    };

    let table = option_table();
    let verdicts: Vec<(Value, Result<(), String>)> = stream::iter(table.iter().enumerate())
        .map(|(i, spec)| {
            let api = api.clone();
            let params = params.clone();
            async move {
                let name = format!("c{i}");
                let object: DynamicObject =
                    serde_json::from_value(bond_network(&name, spec.clone()))
                        .expect("a BondNetwork");
                let verdict = match api.create(&params, &object).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 422 => Err(status.message),
                    Err(e) => panic!("{spec}: the dry run failed for another reason: {e}"),
                };
                (spec.clone(), verdict)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let (mut accepted, mut refused) = (0, 0);
    let mut failures = Vec::new();
    for (spec, server) in &verdicts {
        match (server, plan_and_plugin_verdict(spec)) {
            (Ok(()), Ok(())) => accepted += 1,
            (Err(said), Err(ours)) => {
                refused += 1;
                // The server prefixes the field's path (spec.<field>) and adds the value; the
                // field and our message must both be in what it says.
                let field = ours.split(':').next().unwrap_or_default();
                let message = ours[field.len()..].trim_start_matches(':').trim();
                let named =
                    said.contains(&format!("spec.{field}")) || said.contains(&format!("{field} "));
                let explained = said.contains(message) || schema_refusal(said);
                if !named || !explained {
                    failures.push(format!(
                        "{spec}: the server says \"{said}\", bondnet plan says \"{ours}\""
                    ));
                }
            }
            (server, ours) => failures.push(format!(
                "{spec}: the server says {server:?}, bondnet plan says {ours:?}"
            )),
        }
    }
    eprintln!(
        "{} specs dry-run: {accepted} accepted (each read by the plugin), {refused} refused by both",
        verdicts.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

/// A refusal of the structural schema (type, enum, range, list length): its wording is the API
/// server's, not a CEL message, so only the field is compared.
fn schema_refusal(message: &str) -> bool {
    [
        "Unsupported value",
        "must be of type",
        "should be less than or equal to",
        "should be greater than or equal to",
        "Too many",
        "must have at most",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn schema_defaults_fill_an_empty_bond_network_and_unknown_fields_are_refused() {
    let server = Server::start("defaults");
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, "defaults").await;
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

// === the bondnet binary, and the kinds the controller needs ===

/// The `bondnet` binary: `BONDNET_BIN`, or target/debug/bondnet, built here when it is missing
/// or older than the operator's sources.
fn bondnet_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("BONDNET_BIN") {
            return PathBuf::from(bin);
        }
        let bin = target_dir().join("debug/bondnet");
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let sources = newest_mtime(&repo_root().join("operator/src"));
        if built.is_none() || built < sources {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "bondnet-operator", "--bin", "bondnet"])
                .current_dir(repo_root())
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build -p bondnet-operator failed");
        }
        bin
    })
}

/// Where cargo puts what it builds: CARGO_TARGET_DIR when set (relative to the workspace),
/// else target/.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| repo_root().join(d))
        .unwrap_or_else(|| repo_root().join("target"))
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// A `bondnet` subcommand running against the test's server, logging to a file in its
/// directory; stopped with SIGTERM (then SIGKILL) on drop. On drop, a refusal by the API
/// server (403, forbidden) in its log fails the test, unless the test said it expects one
/// ([`Bondnet::expect_refusals`]): every test of the tier runs with exactly the chart's RBAC.
struct Bondnet {
    child: std::process::Child,
    log: PathBuf,
    refusals_expected: bool,
    outages: Outages,
}

impl Bondnet {
    /// Starts `bondnet <args>` as the chart's own ServiceAccount for that subcommand
    /// (`bondnet-controller`, `bondnet-agent` or `bondnet-webhook`), with a TokenRequest token,
    /// under exactly the chart's RBAC: installed first ([`install_chart_rbac`]) unless the
    /// test installed the chart already.
    fn start(server: &Server, name: &str, args: &[&str]) -> Bondnet {
        let account = match args.first() {
            Some(&command @ ("controller" | "agent" | "webhook")) => format!("bondnet-{command}"),
            other => panic!("no chart ServiceAccount runs bondnet {other:?}"),
        };
        let kubeconfig = chart_service_account(server, &account);
        Self::start_as(server, &kubeconfig, name, args)
    }

    /// Starts `bondnet <args>` as the test's admin (`system:masters`), bypassing RBAC. Only
    /// the benchmarks do (see [`start_controller_as_admin`]).
    fn start_as_admin(server: &Server, name: &str, args: &[&str]) -> Bondnet {
        Self::start_as(server, &server.kubeconfig, name, args)
    }

    /// Starts `bondnet <args>` authenticating with `kubeconfig` (e.g. a ServiceAccount's
    /// token from [`service_account_kubeconfig`]).
    fn start_as(server: &Server, kubeconfig: &Path, name: &str, args: &[&str]) -> Bondnet {
        let log = server.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create a log file");
        let child = Command::new(bondnet_bin())
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,bondnet=debug")
            .stdout(file.try_clone().expect("clone the log file"))
            .stderr(file)
            .spawn()
            .expect("start bondnet");
        Bondnet {
            child,
            log,
            refusals_expected: false,
            outages: server.outages.clone(),
        }
    }

    /// From here on refusals are what the test wants to see (it removed a rule): the drop
    /// no longer fails the test for them.
    fn expect_refusals(&mut self) {
        self.refusals_expected = true;
    }

    /// The lines of its log where the API server refused a request ([`forbidden_lines`]),
    /// except while the test had the API server restarting: until a restarted server is ready,
    /// its RBAC authorizer has not loaded the roles yet and refuses ServiceAccounts (a second
    /// or so after it starts serving), which says nothing about the chart's rules. A line
    /// whose time cannot be read counts.
    fn refusals(&self) -> Vec<String> {
        let outages = self.outages.lock().expect("the outages").clone();
        forbidden_lines(&self.log())
            .into_iter()
            .filter(|line| {
                let at = line
                    .split_whitespace()
                    .next()
                    .and_then(|t| t.parse::<Timestamp>().ok());
                !at.is_some_and(|at| outages.iter().any(|(from, to)| *from <= at && at <= *to))
            })
            .map(str::to_owned)
            .collect()
    }

    /// Fails the test if the API server refused any of its requests (see [`Bondnet::refusals`]).
    fn assert_not_refused(&self) {
        let log = self.log();
        let refused = self.refusals();
        assert!(
            refused.is_empty(),
            "{} was refused by the API server under the chart's RBAC (a missing rule?):\n{}\n\
             --- {} ---\n{log}",
            self.log.display(),
            refused.join("\n"),
            self.log.display(),
        );
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port its metrics server bound (the log line of `metrics_server::bind`).
    fn metrics_port(&mut self) -> u16 {
        self.bound_port("serving /metrics")
    }

    /// The port of the first log line containing `what` and `address=HOST:PORT` (a server that
    /// was given port 0 logs the one it bound); waits for it, and fails the test with the log
    /// if the process exits first.
    fn bound_port(&mut self, what: &str) -> u16 {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let log = self.log();
            let port = log
                .lines()
                .filter(|l| l.contains(what))
                .find_map(|l| {
                    let (_, rest) = l.split_once("address=")?;
                    let address = rest.split_whitespace().next()?.trim_matches('"');
                    address.parse::<std::net::SocketAddr>().ok()
                })
                .map(|a| a.port());
            if let Some(port) = port {
                return port;
            }
            self.assert_running();
            assert!(
                std::time::Instant::now() < deadline,
                "no \"{what}\" with an address in the log after {TIMEOUT:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running (a crash shows here, with its log).
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("bondnet exited ({status}):\n{}", self.log());
        }
    }

    /// Peak resident memory so far, in KiB (VmHWM).
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bondnet {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log());
        } else if !self.refusals_expected {
            // Not already failing: a refusal anywhere in the process's life fails the test
            // (and the control plane's directory, with every log, is kept).
            self.assert_not_refused();
        }
    }
}

fn dynamic_api(
    client: &Client,
    gvk: &GroupVersionKind,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(gvk, plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

fn node_states(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("bondnet.io", "v1alpha1", "BondNodeState");
    dynamic_api(client, &gvk, "bondnodestates", None)
}

fn nads(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition");
    dynamic_api(client, &gvk, "network-attachment-definitions", Some(ns))
}

/// Applies one object (and its status, through the status subresource) from a document.
async fn apply_document(client: &Client, doc: &Value) {
    let gvk = gvk_of(doc);
    let name = doc["metadata"]["name"].as_str().expect("a name");
    let (plural, namespaced) = match gvk.kind.as_str() {
        "Node" => ("nodes", false),
        "BondNodeState" => ("bondnodestates", false),
        "BondNetwork" => ("bondnetworks", true),
        "EndpointSlice" => ("endpointslices", true),
        other => panic!("no plural known for {other}"),
    };
    let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
    if namespaced {
        ensure_namespace(client, ns).await;
    }
    let api = dynamic_api(client, &gvk, plural, namespaced.then_some(ns));
    let params = PatchParams::apply(MANAGER).force();
    api.patch(name, &params, &Patch::Apply(doc))
        .await
        .unwrap_or_else(|e| panic!("apply {} {name}: {e}", gvk.kind));
    if let Some(status) = doc.get("status").filter(|s| !s.is_null()) {
        let status_doc =
            json!({ "apiVersion": doc["apiVersion"], "kind": doc["kind"], "status": status });
        api.patch_status(name, &params, &Patch::Apply(&status_doc))
            .await
            .unwrap_or_else(|e| panic!("apply the status of {} {name}: {e}", gvk.kind));
    }
}

/// Waits (on a watch, with a timeout) until `check` holds for the object, or panics with `what`.
async fn wait_for(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    check: impl Fn(Option<&Value>) -> bool,
) -> Option<Value> {
    let found = tokio::time::timeout(
        TIMEOUT,
        await_condition(api.clone(), name, move |o: Option<&DynamicObject>| {
            let v = o.map(|o| serde_json::to_value(o).expect("JSON"));
            check(v.as_ref())
        }),
    )
    .await;
    match found {
        Ok(Ok(o)) => o.map(|o| serde_json::to_value(o).expect("JSON")),
        Ok(Err(e)) => panic!("watching {name} for {what}: {e}"),
        Err(_) => {
            let now = api.get_opt(name).await.ok().flatten();
            panic!(
                "{name}: not {what} within {TIMEOUT:?}; now: {}",
                serde_json::to_string_pretty(&now).unwrap_or_default()
            )
        }
    }
}

fn condition<'a>(object: Option<&'a Value>, type_: &str) -> Option<&'a Value> {
    object?["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Polls `f` every 200 ms until it returns Ok, or panics with `what` after TIMEOUT. For
/// collections (lists by label), where a single-object watch does not apply.
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    eventually_within(TIMEOUT, what, f).await
}

/// [`eventually`] with its own limit.
async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() > deadline => {
                panic!("not {what} within {limit:?}: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

// === a fixture sysfs tree for the agent ===

/// Writes a sysfs tree under `root/sys` shaped like the kernel's: PCI functions under
/// bus/pci/devices with driver, virtfn0 and physfn links, netdevs under class/net.
struct SysfsTree {
    root: PathBuf,
}

impl SysfsTree {
    fn new(root: PathBuf) -> Self {
        std::fs::create_dir_all(root.join("sys/class/net")).expect("mkdir");
        std::fs::create_dir_all(root.join("sys/bus/pci/devices")).expect("mkdir");
        SysfsTree { root }
    }

    fn write(path: &Path, content: &str) {
        std::fs::write(path, format!("{content}\n")).expect("write a sysfs file");
    }

    fn function(&self, address: &str, vendor: &str, device: &str, driver: &str) -> PathBuf {
        let dir = self.root.join("sys/bus/pci/devices").join(address);
        std::fs::create_dir_all(&dir).expect("mkdir");
        Self::write(&dir.join("vendor"), &format!("0x{vendor}"));
        Self::write(&dir.join("device"), &format!("0x{device}"));
        std::os::unix::fs::symlink(
            format!("../../../../bus/pci/drivers/{driver}"),
            dir.join("driver"),
        )
        .expect("driver link");
        dir
    }

    fn netdev(&self, name: &str, address: &str, speed_mbps: u32) {
        let dir = self.root.join("sys/class/net").join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::os::unix::fs::symlink(
            format!("../../../bus/pci/devices/{address}"),
            dir.join("device"),
        )
        .expect("device link");
        Self::write(&dir.join("speed"), &speed_mbps.to_string());
        Self::write(&dir.join("mtu"), "1500");
        Self::write(&dir.join("address"), "02:00:00:00:10:01");
    }

    /// An SR-IOV PF with `num_vfs` of `total` VFs enabled, its first VF bound to `vf_driver`.
    #[allow(clippy::too_many_arguments)]
    fn pf(
        &self,
        name: &str,
        address: &str,
        ids: (&str, &str, &str),
        vf: (&str, &str, &str),
        total: u32,
        num_vfs: u32,
    ) {
        let (vendor, device, driver) = ids;
        let dir = self.function(address, vendor, device, driver);
        Self::write(&dir.join("sriov_totalvfs"), &total.to_string());
        Self::write(&dir.join("sriov_numvfs"), &num_vfs.to_string());
        Self::write(&dir.join("numa_node"), "0");
        let (vf_address, vf_device, vf_driver) = vf;
        let vf_dir = self.function(vf_address, vendor, vf_device, vf_driver);
        std::os::unix::fs::symlink(format!("../{address}"), vf_dir.join("physfn")).expect("physfn");
        std::os::unix::fs::symlink(format!("../{vf_address}"), dir.join("virtfn0"))
            .expect("virtfn0");
        self.netdev(name, address, 25000);
    }

    /// Two cards: an E810 port (ens1f0, ice, 8 of 128 VFs enabled) and an X710 port (ens2f0,
    /// i40e, `x710_vfs` of 64), each with iavf VFs.
    fn two_cards(&self, x710_vfs: u32) {
        self.pf(
            "ens1f0",
            "0000:3b:00.0",
            ("8086", "159b", "ice"),
            ("0000:3b:01.0", "1889", "iavf"),
            128,
            8,
        );
        self.pf(
            "ens2f0",
            "0000:5e:00.0",
            ("8086", "1572", "i40e"),
            ("0000:5e:02.0", "154c", "iavf"),
            64,
            x710_vfs,
        );
    }

    fn set_num_vfs(&self, address: &str, num_vfs: u32) {
        let path = self
            .root
            .join("sys/bus/pci/devices")
            .join(address)
            .join("sriov_numvfs");
        Self::write(&path, &num_vfs.to_string());
    }
}

// === agent and controller ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn the_agent_publishes_its_bond_node_state_from_a_sysfs_tree_and_follows_changes() {
    let server = Server::start("agent");
    let client = server.client().await;
    install_crds(&client).await;

    // Two cards: an E810 port (ice, iavf VFs) and an X710 port (i40e, iavf VFs). The agent
    // runs as the chart's bondnet-agent ServiceAccount, under the chart's RBAC.
    let sysfs = SysfsTree::new(server.dir.join("host"));
    sysfs.two_cards(4);
    let root = sysfs.root.to_str().expect("a UTF-8 path").to_string();
    let mut agent = Bondnet::start(
        &server,
        "agent",
        &[
            "agent",
            "--node-name",
            "worker-a",
            "--sysfs-root",
            &root,
            "--interval-seconds",
            "1",
        ],
    );

    let api = node_states(&client);
    let state = wait_for(&api, "worker-a", "published with 2 PFs", |o| {
        o.and_then(|o| o["status"]["pfs"].as_array())
            .is_some_and(|p| p.len() == 2)
    })
    .await
    .expect("the BondNodeState");
    agent.assert_running();
    let pfs = &state["status"]["pfs"];
    let expected = json!([
        { "name": "ens1f0", "pciAddress": "0000:3b:00.0", "nicId": "0000:3b:00", "vendor": "8086",
          "deviceId": "159b", "driver": "ice", "vfDeviceId": "1889", "vfDriver": "iavf",
          "totalVfs": 128, "numVfs": 8, "linkSpeedMbps": 25000 },
        { "name": "ens2f0", "pciAddress": "0000:5e:00.0", "nicId": "0000:5e:00", "vendor": "8086",
          "deviceId": "1572", "driver": "i40e", "vfDeviceId": "154c", "vfDriver": "iavf",
          "totalVfs": 64, "numVfs": 4, "linkSpeedMbps": 25000 },
    ]);
    assert!(
        contains(pfs, &expected),
        "published PFs differ:\nexpected {expected}\nread {pfs}"
    );
    assert!(state["status"]["pluginVersion"].is_string(), "{state}");

    // The admin changes the VF count: the next scan publishes it.
    sysfs.set_num_vfs("0000:5e:00.0", 2);
    wait_for(&api, "worker-a", "updated to numVfs 2 on ens2f0", |o| {
        o.and_then(|o| o["status"]["pfs"].as_array())
            .is_some_and(|p| {
                p.iter()
                    .any(|pf| pf["name"] == "ens2f0" && pf["numVfs"] == 2)
            })
    })
    .await;
    agent.assert_running();
}

/// Everything of examples/nodes.yaml: the Nodes and the BondNodeStates with status.
async fn apply_example_nodes(client: &Client) -> usize {
    let mut states = 0;
    for doc in yaml_documents(&repo_root().join("examples/nodes.yaml")) {
        if doc["kind"] == "BondNodeState" {
            states += 1;
        }
        apply_document(client, &doc).await;
    }
    assert!(states > 0, "examples/nodes.yaml has no BondNodeState");
    states
}

fn example_network(name: &str) -> Value {
    yaml_documents(&repo_root().join("examples/bondnetworks.yaml"))
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("examples/bondnetworks.yaml has no BondNetwork {name}"))
}

/// The NADs of one network, by name.
async fn network_nads(client: &Client, ns: &str, network: &str) -> Vec<Value> {
    let list = nads(client, ns)
        .list(&kube::api::ListParams::default().labels(&format!("bondnet.io/network={network}")))
        .await
        .expect("list NADs");
    let mut items: Vec<Value> = list
        .items
        .into_iter()
        .map(|o| serde_json::to_value(o).expect("JSON"))
        .collect();
    items.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    items
}

/// Starts a controller as the chart's `bondnet-controller` ServiceAccount, under exactly the
/// chart's RBAC (see [`Bondnet::start`]), whose metrics server binds a port of the kernel's
/// choice (port 0: no probe for a free port, so no race for it); returns it with that port.
fn start_controller(server: &Server, name: &str) -> (Bondnet, u16) {
    let mut controller = Bondnet::start(server, name, &controller_args(name));
    let port = controller.metrics_port();
    (controller, port)
}

/// [`start_controller`] as the test's admin, for the benchmarks only: their figures are
/// compared with a floor that the test's own (admin) client writes and with the figures in
/// README.md, all measured without token authentication and RBAC in the path, so the
/// controller is measured the same way. The chart's RBAC is proved by every other test.
fn start_controller_as_admin(server: &Server, name: &str) -> (Bondnet, u16) {
    let mut controller = Bondnet::start_as_admin(server, name, &controller_args(name));
    let port = controller.metrics_port();
    (controller, port)
}

/// The Lease timing of the tests that restart the API server: a 40 s lease given up 30 s
/// after the last renewal. Under load a crashed API server here takes up to 8 s to answer
/// again, after a renewal up to 2 s old: within the default 10 s deadline, but only just.
const RESTART_LEASE: [&str; 4] = [
    "--lease-duration-seconds",
    "40",
    "--lease-renew-deadline-seconds",
    "30",
];

/// [`start_controller`] with more flags.
fn start_controller_with(server: &Server, name: &str, extra: &[&str]) -> (Bondnet, u16) {
    let mut args = controller_args(name).to_vec();
    args.extend_from_slice(extra);
    let mut controller = Bondnet::start(server, name, &args);
    let port = controller.metrics_port();
    (controller, port)
}

fn controller_args(identity: &str) -> [&str; 5] {
    [
        "controller",
        "--identity",
        identity,
        "--metrics-address",
        "127.0.0.1:0",
    ]
}

/// Checks the NADs of a ready network: one port NAD per link, each with its device-plugin
/// resource, one bond NAD over the slot interfaces, all owned by (controller-referenced to)
/// the network.
fn assert_nads(network: &Value, nads: &[Value]) {
    let uid = network["metadata"]["uid"].as_str().expect("a uid");
    let links = network["spec"]["links"].as_u64().expect("links defaulted");
    let slots = network["status"]["slots"].as_array().expect("status.slots");
    assert_eq!(
        slots.len() as u64,
        links,
        "status.slots: {}",
        network["status"]
    );
    let ports: Vec<&Value> = nads
        .iter()
        .filter(|n| n["metadata"]["labels"]["bondnet.io/role"] == "port")
        .collect();
    let bonds: Vec<&Value> = nads
        .iter()
        .filter(|n| n["metadata"]["labels"]["bondnet.io/role"] == "bond")
        .collect();
    assert_eq!(ports.len() as u64, links, "port NADs: {nads:#?}");
    assert_eq!(bonds.len(), 1, "bond NADs: {nads:#?}");
    for nad in nads {
        let owners = nad["metadata"]["ownerReferences"]
            .as_array()
            .expect("ownerReferences");
        assert!(
            owners
                .iter()
                .any(|o| o["uid"] == uid && o["kind"] == "BondNetwork" && o["controller"] == true),
            "NAD {} is not controlled by its BondNetwork: {owners:?}",
            nad["metadata"]["name"]
        );
    }
    for slot in slots {
        let nad = ports
            .iter()
            .find(|n| n["metadata"]["name"] == slot["nadName"])
            .unwrap_or_else(|| panic!("no NAD for slot {slot}"));
        assert_eq!(
            nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"], slot["resourceName"],
            "slot {slot}"
        );
    }
    let config: Value =
        serde_json::from_str(bonds[0]["spec"]["config"].as_str().expect("spec.config"))
            .expect("bond config JSON");
    assert_eq!(config["type"], "bond", "{config}");
    assert_eq!(config["linksInContainer"], true, "{config}");
    let interfaces: Vec<Value> = slots
        .iter()
        .map(|s| json!({ "name": s["interface"] }))
        .collect();
    assert_eq!(config["links"], Value::Array(interfaces), "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn the_controller_writes_owned_nads_and_status_follows_updates_and_cleans_up_on_delete() {
    let server = Server::start("controller");
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, SYSTEM_NAMESPACE).await;
    apply_example_nodes(&client).await;
    let (mut controller, _) = start_controller_with(&server, "controller-1", &RESTART_LEASE);

    let doc = example_network("fast-failover");
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .expect("a namespace")
        .to_string();
    apply_document(&client, &doc).await;
    let api = bond_networks(&client, &ns);
    let ready = |o: Option<&Value>| condition(o, "Ready").is_some_and(|c| c["status"] == "True");
    let network = wait_for(&api, "fast-failover", "Ready", ready)
        .await
        .expect("the network");
    controller.assert_running();
    assert!(
        network["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "bondnet.io/cleanup")),
        "no finalizer: {}",
        network["metadata"]
    );
    assert_eq!(
        network["status"]["observedGeneration"],
        network["metadata"]["generation"]
    );
    let eligible = network["status"]["eligibleNodes"]
        .as_u64()
        .expect("eligibleNodes");
    assert!(eligible > 0, "{}", network["status"]);
    let written = eventually("all NADs written", || {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let n = network_nads(&client, &ns, "fast-failover").await;
            if n.len() == 3 {
                Ok(n)
            } else {
                Err(format!("{} NADs", n.len()))
            }
        }
    })
    .await;
    assert_nads(&network, &written);

    // Every node's BondNodeState carries its device-plugin pools in its spec, owned by its
    // Node; exactly the eligible nodes have pools.
    let pooled = eventually("the node states' device-plugin pools", || {
        let client = client.clone();
        async move { node_state_pools(&client).await }
    })
    .await;
    assert_eq!(pooled as u64, eligible);

    // An update of the network: the bond NAD follows.
    let mut changed = doc.clone();
    changed["spec"]["mtu"] = json!(1500);
    apply_document(&client, &changed).await;
    eventually("the bond NAD follows mtu 1500", || {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let n = network_nads(&client, &ns, "fast-failover").await;
            let bond = n
                .iter()
                .find(|n| n["metadata"]["labels"]["bondnet.io/role"] == "bond")
                .ok_or("no bond NAD")?;
            let config: Value =
                serde_json::from_str(bond["spec"]["config"].as_str().unwrap_or("{}"))
                    .map_err(|e| e.to_string())?;
            if config["mtu"] == 1500 {
                Ok(())
            } else {
                Err(format!("bond config {config}"))
            }
        }
    })
    .await;

    // An update of a node: an eligible node loses its PFs, and the status counts it out.
    let hosting = network["status"]["ineligibleNodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let states = node_states(&client)
        .list(&Default::default())
        .await
        .expect("list node states");
    let victim = states
        .items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap_or_default())
        .find(|n| !hosting.iter().any(|h| h["node"] == n.as_str()))
        .expect("an eligible node");
    let emptied = json!({ "apiVersion": "bondnet.io/v1alpha1", "kind": "BondNodeState", "status": { "pfs": [] } });
    node_states(&client)
        .patch_status(
            &victim,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&emptied),
        )
        .await
        .expect("empty a node's PFs");
    wait_for(
        &api,
        "fast-failover",
        &format!("counting {victim} out"),
        move |o| o.is_some_and(|o| o["status"]["eligibleNodes"].as_u64() == Some(eligible - 1)),
    )
    .await;
    controller.assert_running();

    // Delete: the finalizer runs, the NADs go and the network is released. (The garbage
    // collector alone, with the controller stopped, is proved by its own test.)
    api.delete("fast-failover", &Default::default())
        .await
        .expect("delete");
    wait_for(&api, "fast-failover", "gone", |o| o.is_none()).await;
    eventually("the NADs deleted", || {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let n = network_nads(&client, &ns, "fast-failover").await;
            if n.is_empty() {
                Ok(())
            } else {
                Err(format!("{} NADs left", n.len()))
            }
        }
    })
    .await;
    controller.assert_running();
}

/// How many BondNodeStates have device-plugin pools in their spec, once every one has a spec
/// and an owner reference to its Node.
async fn node_state_pools(client: &Client) -> Result<usize, String> {
    let states = node_states(client)
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut pooled = 0;
    for state in &states.items {
        let name = state.metadata.name.clone().unwrap_or_default();
        let owned = state
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Node" && o.name == name);
        let Some(pools) = state.data["spec"]["devicePlugin"]["resourceList"].as_array() else {
            return Err(format!("{name} has no spec.devicePlugin yet"));
        };
        if !owned {
            return Err(format!("{name} has no owner reference to its Node"));
        }
        if !pools.is_empty() {
            pooled += 1;
        }
    }
    Ok(pooled)
}

/// One sample of a controller's /metrics (Prometheus text), by metric name.
async fn metric(port: u16, name: &str) -> Option<f64> {
    let body = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        Ok(body)
    })
    .await
    .ok()?
    .ok()?;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn lease_holder(lease: Option<&Value>) -> Option<String> {
    lease?["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

fn leases(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease");
    dynamic_api(client, &gvk, "leases", Some("bondnet-system"))
}

async fn bond_nad_mtu(client: &Client, ns: &str, network: &str) -> Result<Value, String> {
    let n = network_nads(client, ns, network).await;
    let bond = n
        .iter()
        .find(|n| n["metadata"]["labels"]["bondnet.io/role"] == "bond")
        .ok_or("no bond NAD")?;
    let config: Value = serde_json::from_str(bond["spec"]["config"].as_str().unwrap_or("{}"))
        .map_err(|e| e.to_string())?;
    Ok(config["mtu"].clone())
}

/// Waits for the bond NAD to carry `mtu`. Allows 120 s: after an API server restart, kube-runtime
/// re-lists with a backoff of up to 30 s per watch.
async fn wait_for_mtu(client: &Client, ns: &str, network: &str, mtu: u64) {
    let what = format!("the bond NAD of {network} at mtu {mtu}");
    eventually_within(Duration::from_secs(120), &what, || {
        let client = client.clone();
        async move {
            match bond_nad_mtu(&client, ns, network).await? {
                v if v == mtu => Ok(()),
                v => Err(format!("mtu {v}")),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn two_controllers_elect_one_leader_only_it_writes_and_the_other_takes_over() {
    let server = Server::start("leader");
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, SYSTEM_NAMESPACE).await;
    apply_example_nodes(&client).await;

    let (mut first, first_port) = start_controller(&server, "controller-a");
    let lease = wait_for(
        &leases(&client),
        "bondnet-controller",
        "held by controller-a",
        |o| lease_holder(o).as_deref() == Some("controller-a"),
    )
    .await;
    assert!(lease.is_some());
    let (mut second, second_port) = start_controller(&server, "controller-b");
    eventually("controller-b serving metrics", || async {
        metric(second_port, "bondnet_leader")
            .await
            .ok_or_else(|| "no metrics yet".to_string())
    })
    .await;

    let doc = example_network("fast-failover");
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .expect("a namespace")
        .to_string();
    apply_document(&client, &doc).await;
    let api = bond_networks(&client, &ns);
    wait_for(&api, "fast-failover", "Ready", |o| {
        condition(o, "Ready").is_some_and(|c| c["status"] == "True")
    })
    .await;
    assert_eq!(metric(first_port, "bondnet_leader").await, Some(1.0));
    assert!(
        metric(first_port, "bondnet_reconciles_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(metric(second_port, "bondnet_leader").await, Some(0.0));
    assert_eq!(
        metric(second_port, "bondnet_reconciles_total").await,
        Some(0.0),
        "the follower reconciled:\n{}",
        second.log()
    );
    let lease = leases(&client)
        .get("bondnet-controller")
        .await
        .expect("the Lease");
    assert_eq!(
        lease_holder(Some(&serde_json::to_value(lease).expect("JSON"))).as_deref(),
        Some("controller-a")
    );

    // The leader goes away: the follower takes the Lease and follows the next change.
    first.stop();
    wait_for(
        &leases(&client),
        "bondnet-controller",
        "taken over by controller-b",
        |o| lease_holder(o).as_deref() == Some("controller-b"),
    )
    .await;
    let mut changed = doc.clone();
    changed["spec"]["mtu"] = json!(1500);
    apply_document(&client, &changed).await;
    wait_for_mtu(&client, &ns, "fast-failover", 1500).await;
    second.assert_running();
    assert_eq!(metric(second_port, "bondnet_leader").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn the_controller_recovers_from_an_api_server_restart_without_losing_or_duplicating_anything()
{
    let server = Server::start("restart");
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, SYSTEM_NAMESPACE).await;
    apply_example_nodes(&client).await;
    let (mut controller, _) = start_controller_with(&server, "controller-1", &RESTART_LEASE);

    let doc = example_network("fast-failover");
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .expect("a namespace")
        .to_string();
    apply_document(&client, &doc).await;
    let api = bond_networks(&client, &ns);
    let ready = |o: Option<&Value>| condition(o, "Ready").is_some_and(|c| c["status"] == "True");
    wait_for(&api, "fast-failover", "Ready", ready).await;
    let before = eventually("all NADs written", || {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let n = network_nads(&client, &ns, "fast-failover").await;
            if n.len() == 3 {
                Ok(n)
            } else {
                Err(format!("{} NADs", n.len()))
            }
        }
    })
    .await;

    // A crash of the server, back within the renew deadline (RESTART_LEASE): the controller
    // rides it out and follows a change made after it.
    server.restart_api_server(true, Duration::from_secs(1));
    let client = server.client().await;
    let mut changed = doc.clone();
    changed["spec"]["mtu"] = json!(1500);
    apply_document(&client, &changed).await;
    wait_for_mtu(&client, &ns, "fast-failover", 1500).await;
    controller.assert_running();

    // An outage longer than the Lease: the controller cannot renew it and exits rather than
    // write without it; its replacement takes over and follows changes.
    server.restart_api_server(false, Duration::from_secs(32));
    let client = server.client().await;
    let exited = eventually("the controller to exit on the lost Lease", || {
        let exited = controller.child.try_wait().ok().flatten();
        async move { exited.ok_or_else(|| "still running".to_string()) }
    })
    .await;
    assert!(!exited.success(), "exit status {exited}");
    assert!(
        controller.log().contains("lost the leader lease"),
        "{}",
        controller.log()
    );
    let (mut replacement, _) = start_controller(&server, "controller-2");
    changed["spec"]["mtu"] = json!(9000);
    apply_document(&client, &changed).await;
    wait_for_mtu(&client, &ns, "fast-failover", 9000).await;
    let other = example_network("lacp");
    apply_document(&client, &other).await;
    let other_ns = other["metadata"]["namespace"]
        .as_str()
        .expect("a namespace")
        .to_string();
    wait_for(&bond_networks(&client, &other_ns), "lacp", "Ready", ready).await;

    // Nothing lost, nothing duplicated: the same NADs (same uids), and no extra ones.
    let after = network_nads(&client, &ns, "fast-failover").await;
    let uids = |nads: &[Value]| -> Vec<String> {
        nads.iter()
            .map(|n| {
                n["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(
        uids(&before),
        uids(&after),
        "the NADs were recreated or lost"
    );
    let all = nads(&client, &ns)
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=bondnet"))
        .await
        .expect("list NADs");
    let lacp = network_nads(&client, &other_ns, "lacp").await;
    let expected = if other_ns == ns {
        after.len() + lacp.len()
    } else {
        after.len()
    };
    assert_eq!(all.items.len(), expected, "NADs in {ns}");
    assert_eq!(lacp.len(), 3, "NADs of lacp");
    replacement.assert_running();
}

/// The benchmark of issue 5, gated separately (it takes minutes): 500 BondNetworks over 100
/// BondNodeStates; the time from the first apply until every network is Ready and all its NADs
/// exist, and the controller's peak resident memory. Each node has two dual-port cards with 128
/// VFs per port; nodes are in 20 groups of 5, and each network selects one group, so every node
/// hosts 25 networks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark (minutes): cargo test -p bondnet-tests --test apiserver -- --ignored benchmark --nocapture"]
async fn benchmark_500_networks_over_100_nodes() {
    let server = Server::start("bench");
    const NODES: usize = 100;
    const NETWORKS: usize = 500;
    const GROUPS: usize = 20;
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, SYSTEM_NAMESPACE).await;
    for i in 0..NODES {
        let name = format!("node-{i:03}");
        let group = format!("g{:02}", i % GROUPS);
        synthetic_node(&client, &name, json!({ "bench.bondnet.io/group": group })).await;
    }
    // As admin, not the chart's ServiceAccount: see start_controller_as_admin.
    let (controller, _) = start_controller_as_admin(&server, "controller-1");
    wait_for(&leases(&client), "bondnet-controller", "held", |o| {
        lease_holder(o).is_some()
    })
    .await;

    let started = std::time::Instant::now();
    for i in 0..NETWORKS {
        apply_document(&client, &json!({
            "apiVersion": "bondnet.io/v1alpha1", "kind": "BondNetwork",
            "metadata": { "name": format!("net-{i:03}"), "namespace": "bench" },
            "spec": { "mode": "active-backup", "vfsPerPf": 1,
                      "nodeSelector": { "bench.bondnet.io/group": format!("g{:02}", i % GROUPS) } },
        }))
        .await;
    }
    let applied = started.elapsed();
    let api = bond_networks(&client, "bench");
    let deadline = Duration::from_secs(900);
    let (ready, nad_count) = loop {
        let list = api.list(&Default::default()).await.expect("list networks");
        let ready = list
            .items
            .iter()
            .filter(|n| {
                let v = serde_json::to_value(n).expect("JSON");
                condition(Some(&v), "Ready").is_some_and(|c| c["status"] == "True")
            })
            .count();
        let nad_count = nads(&client, "bench")
            .list_metadata(
                &kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=bondnet"),
            )
            .await
            .expect("list NADs")
            .items
            .len();
        if (ready == NETWORKS && nad_count == 3 * NETWORKS) || started.elapsed() > deadline {
            break (ready, nad_count);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let elapsed = started.elapsed();
    let peak = controller.peak_rss_kib();
    let pooled = node_state_pools(&client).await.unwrap_or(0);
    eprintln!(
        "BENCH apiserver: {NETWORKS} BondNetworks over {NODES} BondNodeStates: applied in {:.1} s; \
         after {:.1} s {ready}/{NETWORKS} Ready and {nad_count}/{} NADs; controller peak RSS {} MiB; \
         {pooled} node states with pools",
        applied.as_secs_f64(),
        elapsed.as_secs_f64(),
        3 * NETWORKS,
        peak.map(|k| k / 1024).unwrap_or(0),
    );
    assert_eq!(ready, NETWORKS, "networks Ready after {elapsed:?}");
    assert_eq!(nad_count, 3 * NETWORKS, "NADs after {elapsed:?}");
}

// === the garbage collector and the scheduler ===

/// Waits for the network to be Ready with all its NADs; returns the network and the NADs.
async fn ready_network_with_nads(
    client: &Client,
    ns: &str,
    name: &str,
    count: usize,
) -> (Value, Vec<Value>) {
    let ready = |o: Option<&Value>| condition(o, "Ready").is_some_and(|c| c["status"] == "True");
    let network = wait_for(&bond_networks(client, ns), name, "Ready", ready)
        .await
        .expect("the network");
    let written = eventually("all NADs written", || {
        let client = client.clone();
        async move {
            let n = network_nads(&client, ns, name).await;
            if n.len() == count {
                Ok(n)
            } else {
                Err(format!("{} NADs", n.len()))
            }
        }
    })
    .await;
    (network, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn the_garbage_collector_deletes_a_networks_nads_through_owner_references_while_the_controller_is_stopped(
) {
    let server = Server::start("gc");
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, SYSTEM_NAMESPACE).await;
    apply_example_nodes(&client).await;
    let (mut controller, _) = start_controller(&server, "controller-1");
    let doc = example_network("fast-failover");
    let ns = doc["metadata"]["namespace"].as_str().expect("a namespace");
    apply_document(&client, &doc).await;
    let (network, written) = ready_network_with_nads(&client, ns, "fast-failover", 3).await;
    assert_nads(&network, &written);

    // No controller from here on: whatever deletes the NADs is Kubernetes itself.
    controller.stop();
    let api = bond_networks(&client, ns);
    api.delete("fast-failover", &kube::api::DeleteParams::foreground())
        .await
        .expect("delete with foreground propagation");
    // The garbage collector finds new resource types by discovery every 30 s, so allow for
    // it to start watching the NAD CRD.
    eventually_within(
        Duration::from_secs(120),
        "the NADs deleted by the garbage collector",
        || {
            let client = client.clone();
            async move {
                let n = network_nads(&client, ns, "fast-failover").await;
                if n.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{} NADs left", n.len()))
                }
            }
        },
    )
    .await;
    // The network itself waits for its own finalizer, which only the controller runs.
    let held = api
        .get("fast-failover")
        .await
        .expect("the network is still there");
    let finalizers = held.metadata.finalizers.clone().unwrap_or_default();
    assert!(
        finalizers.iter().any(|f| f == "bondnet.io/cleanup"),
        "the network lost its finalizer without the controller: {finalizers:?}"
    );
    let (mut controller, _) = start_controller(&server, "controller-2");
    wait_for(
        &api,
        "fast-failover",
        "gone once the controller is back",
        |o| o.is_none(),
    )
    .await;
    controller.assert_running();
}

/// Posts a Node's status as its kubelet would: capacity and allocatable (plus `extra`
/// resources, e.g. the VF pools its device plugin advertises) and a Ready condition.
async fn post_node_status(client: &Client, name: &str, extra: Value) {
    let nodes: Api<DynamicObject> = dynamic_api(
        client,
        &GroupVersionKind::gvk("", "v1", "Node"),
        "nodes",
        None,
    );
    let mut resources = json!({ "cpu": "8", "memory": "32Gi", "pods": "110" });
    resources
        .as_object_mut()
        .expect("an object")
        .extend(extra.as_object().cloned().unwrap_or_default());
    let now = "2026-01-01T00:00:00Z";
    let status = json!({
        "apiVersion": "v1", "kind": "Node",
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady",
                             "message": "kubelet is posting ready status",
                             "lastHeartbeatTime": now, "lastTransitionTime": now }],
            "nodeInfo": { "architecture": "amd64", "operatingSystem": "linux",
                          "kubeletVersion": "v1.37.2", "containerRuntimeVersion": "containerd://2.1.0",
                          "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12",
                          "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": "" },
        },
    });
    nodes
        .patch_status(
            name,
            &PatchParams::apply("kubelet").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap_or_else(|e| panic!("post the status of Node {name}: {e}"));
}

/// Waits until the namespace's `default` ServiceAccount exists (made by the controller
/// manager; the ServiceAccount admission plugin refuses pods before that).
async fn wait_for_default_service_account(client: &Client, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    eventually(&format!("the default ServiceAccount of {ns}"), || {
        let api = api.clone();
        async move {
            match api.get_opt("default").await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("not yet".to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
}

fn pods(client: &Client, ns: &str) -> Api<k8s_openapi::api::core::v1::Pod> {
    Api::namespaced(client.clone(), ns)
}

/// A pod requesting one VF of each slot of `network` (as the webhook's expansion does).
fn pod_requesting_slots(name: &str, network: &Value) -> Value {
    let mut resources = serde_json::Map::new();
    for slot in network["status"]["slots"].as_array().expect("status.slots") {
        let resource = slot["resourceName"].as_str().expect("a resourceName");
        resources.insert(resource.to_string(), json!("1"));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name },
        "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1",
                                   "resources": { "requests": resources, "limits": resources } }] },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn the_scheduler_binds_a_pod_only_to_a_node_offering_its_vf_resources_and_says_why_otherwise()
{
    let server = Server::start("scheduler");
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, SYSTEM_NAMESPACE).await;
    apply_example_nodes(&client).await;
    let (mut controller, _) = start_controller(&server, "controller-1");
    let doc = example_network("fast-failover");
    let ns = doc["metadata"]["namespace"].as_str().expect("a namespace");
    apply_document(&client, &doc).await;
    let (network, _) = ready_network_with_nads(&client, ns, "fast-failover", 3).await;

    // The device plugin on one node advertises the network's pools; on the others it does not.
    let slots = network["status"]["slots"]
        .as_array()
        .expect("slots")
        .clone();
    let offer: serde_json::Map<String, Value> = slots
        .iter()
        .map(|s| {
            (
                s["resourceName"].as_str().expect("a name").to_string(),
                json!("4"),
            )
        })
        .collect();
    post_node_status(&client, "worker-1", Value::Object(offer)).await;
    for other in ["worker-2", "worker-3", "worker-4", "worker-5"] {
        post_node_status(&client, other, json!({})).await;
    }
    wait_for_default_service_account(&client, ns).await;

    let api = pods(&client, ns);
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(pod_requesting_slots("bonded", &network)).expect("a Pod");
    api.create(&PostParams::default(), &pod)
        .await
        .expect("create the pod");
    let bound = eventually("the pod bound by the scheduler", || {
        let api = api.clone();
        async move {
            let p = api.get("bonded").await.map_err(|e| e.to_string())?;
            p.spec
                .and_then(|s| s.node_name)
                .ok_or_else(|| "not bound yet".to_string())
        }
    })
    .await;
    assert_eq!(
        bound, "worker-1",
        "bound to a node that does not offer the VFs"
    );

    // Five more than one node offers: the fifth stays Pending, with the scheduler's reason.
    for i in 0..4 {
        let mut more = pod_requesting_slots(&format!("bonded-{i}"), &network);
        more["metadata"]["name"] = json!(format!("bonded-{i}"));
        let more: k8s_openapi::api::core::v1::Pod = serde_json::from_value(more).expect("a Pod");
        api.create(&PostParams::default(), &more)
            .await
            .expect("create a pod");
    }
    let message = eventually("one pod unschedulable with the scheduler's reason", || {
        let api = api.clone();
        async move {
            let list = api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let unschedulable: Vec<String> = list
                .items
                .iter()
                .filter_map(|p| {
                    let c = p
                        .status
                        .as_ref()?
                        .conditions
                        .as_ref()?
                        .iter()
                        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
                    (c.reason.as_deref() == Some("Unschedulable"))
                        .then(|| c.message.clone().unwrap_or_default())
                })
                .collect();
            let bound = list
                .items
                .iter()
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("worker-1")
                })
                .count();
            match (bound, unschedulable.as_slice()) {
                (4, [message]) => Ok(message.clone()),
                _ => Err(format!(
                    "{bound} bound to worker-1, unschedulable: {unschedulable:?}"
                )),
            }
        }
    })
    .await;
    let first = slots[0]["resourceName"].as_str().expect("a name");
    assert!(
        message.contains("0/5 nodes are available")
            && message.contains(&format!("Insufficient {first}")),
        "the scheduler's reason: {message}"
    );
    controller.assert_running();
}

// === Helm and RBAC ===

/// Runs one of the control plane's tools (`helm`, `kubectl`) against the test's server as
/// its admin; returns stdout, or fails the test with stderr.
fn tool(server: &Server, name: &str, args: &[&str]) -> String {
    tool_result(server, name, args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a control plane tool (kubectl, helm) against the test's server; Err holds the command
/// and what it printed.
fn tool_result(server: &Server, name: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(control_plane_bin().join(name))
        .args(args)
        .env("KUBECONFIG", &server.kubeconfig)
        .env("HELM_CACHE_HOME", server.dir.join("helm/cache"))
        .env("HELM_CONFIG_HOME", server.dir.join("helm/config"))
        .env("HELM_DATA_HOME", server.dir.join("helm/data"))
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Appended, so a failing test keeps every call's output, not only the last one's.
    {
        use std::io::Write;
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(server.dir.join(format!("{name}.log")))
            .and_then(|mut log| {
                writeln!(
                    log,
                    "$ {name} {} ({})\n{stdout}{stderr}",
                    args.join(" "),
                    out.status
                )
            });
    }
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{name} {} failed ({}):\n{stdout}{stderr}",
            args.join(" "),
            out.status
        ))
    }
}

fn chart_dir() -> String {
    repo_root()
        .join("charts/bondnet")
        .to_str()
        .expect("a UTF-8 path")
        .to_string()
}

/// `helm install bondnet charts/bondnet` into bondnet-system, with `extra` arguments.
fn helm_install(server: &Server, extra: &[&str]) {
    let chart = chart_dir();
    let mut args = vec![
        "install",
        "bondnet",
        &chart,
        "--namespace",
        SYSTEM_NAMESPACE,
        "--create-namespace",
    ];
    args.extend_from_slice(extra);
    tool(server, "helm", &args);
}

/// A kubeconfig authenticating as ServiceAccount `name` of bondnet-system, with a token from
/// the TokenRequest API (`kubectl create token`).
fn service_account_kubeconfig(server: &Server, name: &str) -> PathBuf {
    let token = tool(
        server,
        "kubectl",
        &[
            "create",
            "token",
            name,
            "-n",
            SYSTEM_NAMESPACE,
            "--duration",
            "2h",
        ],
    );
    let admin: Value = serde_yaml::from_str(
        &std::fs::read_to_string(&server.kubeconfig).expect("read the kubeconfig"),
    )
    .expect("a kubeconfig");
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{ "name": "test", "cluster": cluster }],
        "users": [{ "name": name, "user": { "token": token.trim() } }],
        "contexts": [{ "name": "test", "context": { "cluster": "test", "user": name } }],
        "current-context": "test",
    });
    let path = server.dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, serde_json::to_string(&config).expect("JSON")).expect("write");
    path
}

/// Installs only the chart's ServiceAccounts and RBAC into bondnet-system: `helm template`
/// with the default values for the server's version, `--show-only` those two templates,
/// applied with kubectl. For the tests that run bondnet's processes without the whole chart
/// (its Deployments and DaemonSets would only add Pending pods, and its webhook configuration
/// would send bonded pods to a webhook that is not running); the RBAC is the same objects
/// `helm install` makes.
fn install_chart_rbac(server: &Server) {
    let chart = chart_dir();
    // `helm template` renders for an old default Kubernetes version unless told the server's,
    // and the chart's kubeVersion refuses that.
    let version: Value = serde_json::from_str(&tool(server, "kubectl", &["version", "-o", "json"]))
        .expect("kubectl version's JSON");
    let kube_version = version["serverVersion"]["gitVersion"]
        .as_str()
        .expect("the server's version");
    let rendered = tool(
        server,
        "helm",
        &[
            "template",
            "bondnet",
            &chart,
            "--kube-version",
            kube_version,
            "--namespace",
            SYSTEM_NAMESPACE,
            "--show-only",
            "templates/serviceaccounts.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ],
    );
    let file = server.dir.join("chart-rbac.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {SYSTEM_NAMESPACE}\n---\n{rendered}"
        ),
    )
    .expect("write the chart's RBAC");
    let path = file.to_str().expect("a UTF-8 path");
    tool(
        server,
        "kubectl",
        &[
            "apply",
            "--server-side",
            "--field-manager",
            MANAGER,
            "-f",
            path,
        ],
    );
}

/// A kubeconfig for the chart's ServiceAccount `account` (see [`service_account_kubeconfig`]).
/// Installs the chart's ServiceAccounts and RBAC first unless the test installed the chart,
/// and waits until the API server's authorizer has the account's bindings: a process started
/// before would see its first requests refused.
fn chart_service_account(server: &Server, account: &str) -> PathBuf {
    let found = tool(
        server,
        "kubectl",
        &[
            "get",
            "serviceaccount",
            account,
            "--namespace",
            SYSTEM_NAMESPACE,
            "--ignore-not-found",
            "--output",
            "name",
        ],
    );
    if found.trim().is_empty() {
        install_chart_rbac(server);
    }
    // One rule of each of the account's roles (its ClusterRole, and its Role in the release
    // namespace where the default values give it one).
    let user = format!("system:serviceaccount:{SYSTEM_NAMESPACE}:{account}");
    let rules: &[&[&str]] = match account {
        "bondnet-controller" => &[
            &["list", "bondnetworks.bondnet.io"],
            &[
                "create",
                "leases.coordination.k8s.io",
                "-n",
                SYSTEM_NAMESPACE,
            ],
        ],
        "bondnet-agent" => &[&["patch", "bondnodestates.bondnet.io"]],
        "bondnet-webhook" => &[
            &["list", "bondnetworks.bondnet.io"],
            &["create", "secrets", "-n", SYSTEM_NAMESPACE],
        ],
        other => panic!("{other} is not one of the chart's ServiceAccounts"),
    };
    let deadline = std::time::Instant::now() + TIMEOUT;
    for rule in rules {
        let mut args = vec!["auth", "can-i"];
        args.extend_from_slice(rule);
        args.extend_from_slice(&["--as", &user]);
        while let Err(said) = tool_result(server, "kubectl", &args) {
            assert!(
                std::time::Instant::now() < deadline,
                "{account} is not granted {rule:?} within {TIMEOUT:?}: {said}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    service_account_kubeconfig(server, account)
}

/// The pods of one chart component (`app.kubernetes.io/component`) in bondnet-system.
async fn component_pods(client: &Client, component: &str) -> Vec<k8s_openapi::api::core::v1::Pod> {
    pods(client, SYSTEM_NAMESPACE)
        .list(&kube::api::ListParams::default().labels(&format!(
            "app.kubernetes.io/instance=bondnet,app.kubernetes.io/component={component}"
        )))
        .await
        .expect("list pods")
        .items
}

fn env_of(pod: &k8s_openapi::api::core::v1::Pod, name: &str) -> Option<String> {
    pod.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

/// Confirms the end of every terminating pod in bondnet-system, as a node's kubelet does once
/// the containers are gone (there is no kubelet here, so deleted pods would wait forever).
async fn confirm_terminations(client: &Client) {
    let api = pods(client, SYSTEM_NAMESPACE);
    let list = api.list(&Default::default()).await.expect("list pods");
    for pod in list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
    {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => panic!("confirm the end of pod {name}: {e}"),
        }
    }
}

async fn wait_for_pods(
    client: &Client,
    component: &str,
    count: usize,
    check: impl Fn(&k8s_openapi::api::core::v1::Pod) -> bool + Copy,
) {
    eventually_within(
        Duration::from_secs(120),
        &format!("{count} {component} pods"),
        || async move {
            confirm_terminations(client).await;
            let all = component_pods(client, component).await;
            let live: Vec<_> = all
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            if live.len() == count && live.iter().all(|p| check(p)) {
                Ok(())
            } else {
                Err(format!(
                    "{} pods ({} matching)",
                    live.len(),
                    live.iter().filter(|p| check(p)).count()
                ))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn helm_installs_the_chart_the_controllers_make_its_pods_upgrade_rolls_them_and_uninstall_leaves_only_the_crds(
) {
    let server = Server::start("helm");
    let client = server.client().await;
    helm_install(&server, &[]);
    // The CRDs came with the chart; the Nodes register as kubelets would.
    apply_example_nodes(&client).await;
    let nodes = yaml_documents(&repo_root().join("examples/nodes.yaml"))
        .into_iter()
        .filter(|d| d["kind"] == "Node")
        .count();
    for doc in yaml_documents(&repo_root().join("examples/nodes.yaml")) {
        if doc["kind"] == "Node" {
            post_node_status(
                &client,
                doc["metadata"]["name"].as_str().expect("a name"),
                json!({}),
            )
            .await;
        }
    }

    // The Deployment and DaemonSet controllers make the pods (Pending: there is no kubelet).
    wait_for_pods(&client, "controller", 2, |_| true).await;
    wait_for_pods(&client, "webhook", 2, |_| true).await;
    wait_for_pods(&client, "agent", nodes, |p| {
        env_of(p, "BONDNET_SCAN_INTERVAL_SECONDS").as_deref() == Some("60")
    })
    .await;

    // An upgrade with changed values: the Deployment scales, the DaemonSet rolls its pods.
    let chart = chart_dir();
    tool(
        &server,
        "helm",
        &[
            "upgrade",
            "bondnet",
            &chart,
            "--namespace",
            SYSTEM_NAMESPACE,
            "--reuse-values",
            "--set",
            "controller.replicas=3",
            "--set",
            "agent.scanIntervalSeconds=30",
        ],
    );
    wait_for_pods(&client, "controller", 3, |_| true).await;
    wait_for_pods(&client, "agent", nodes, |p| {
        env_of(p, "BONDNET_SCAN_INTERVAL_SECONDS").as_deref() == Some("30")
    })
    .await;

    // Every kind the chart renders with its default values is there before the uninstall, so
    // that "none left" below means something.
    let installed = release_objects(&client).await.expect("list the release");
    let missing: Vec<&str> = installed
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(kind, _)| *kind)
        .collect();
    assert!(
        missing.is_empty(),
        "the release has no {missing:?}: {installed:?}"
    );

    // Uninstall: everything of the release goes, its pods through the garbage collector;
    // the CRDs stay (docs/install.md says so).
    tool(
        &server,
        "helm",
        &[
            "uninstall",
            "bondnet",
            "--namespace",
            SYSTEM_NAMESPACE,
            "--wait",
        ],
    );
    eventually_within(
        Duration::from_secs(120),
        "nothing of the release left",
        || {
            let client = client.clone();
            async move {
                confirm_terminations(&client).await;
                let left: Vec<String> = release_objects(&client)
                    .await?
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(kind, n)| format!("{n} {kind}"))
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(left.join(", "))
                }
            }
        },
    )
    .await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in ["bondnetworks.bondnet.io", "bondnodestates.bondnet.io"] {
        assert!(
            crds.get_opt(name).await.expect("get a CRD").is_some(),
            "helm uninstall removed CRD {name}"
        );
    }
}

/// How many objects of the release (`app.kubernetes.io/instance=bondnet`) there are of each
/// kind the chart renders with its default values (the device-plugin DaemonSet is off; its
/// pods count as Pods).
async fn release_objects(
    client: &Client,
) -> Result<std::collections::BTreeMap<&'static str, usize>, String> {
    let selector = kube::api::ListParams::default().labels("app.kubernetes.io/instance=bondnet");
    let rbac = "rbac.authorization.k8s.io";
    let mut counts = std::collections::BTreeMap::new();
    for (group, version, kind, plural, namespaced) in [
        ("apps", "v1", "Deployment", "deployments", true),
        ("apps", "v1", "DaemonSet", "daemonsets", true),
        ("", "v1", "Pod", "pods", true),
        ("", "v1", "Service", "services", true),
        ("", "v1", "ServiceAccount", "serviceaccounts", true),
        (rbac, "v1", "ClusterRole", "clusterroles", false),
        (
            rbac,
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        (rbac, "v1", "Role", "roles", true),
        (rbac, "v1", "RoleBinding", "rolebindings", true),
        (
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
        ),
    ] {
        let api = dynamic_api(
            client,
            &GroupVersionKind::gvk(group, version, kind),
            plural,
            namespaced.then_some(SYSTEM_NAMESPACE),
        );
        let n = api
            .list_metadata(&selector)
            .await
            .map_err(|e| format!("list {kind}: {e}"))?
            .items
            .len();
        counts.insert(kind, n);
    }
    Ok(counts)
}

/// Lines of a bondnet log where the API server refused a request: kube's error names the
/// reason (`is forbidden: User ... cannot ...`, `reason: "Forbidden"`, `code: 403`). A bare
/// " 403" is not enough: durations and counts print it too.
fn forbidden_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("forbidden")
                || l.contains("Forbidden")
                || l.contains("code: 403")
                || l.contains("403 Forbidden")
        })
        .collect()
}

// === restarts under load ===

/// Registers a Node and its BondNodeState as an agent would publish it: two dual-port cards
/// (four PFs of 128 VFs each), so a test's pools never run out.
async fn synthetic_node(client: &Client, name: &str, labels: Value) {
    apply_document(
        client,
        &json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name, "labels": labels } }),
    )
    .await;
    let pf = |name: &str, address: &str, driver: &str, device: &str, vf: &str| {
        json!({
            "name": name, "pciAddress": address, "nicId": &address[..10], "vendor": "8086",
            "deviceId": device, "driver": driver, "vfDeviceId": vf, "vfDriver": "iavf",
            "totalVfs": 128, "numVfs": 128, "linkSpeedMbps": 25000, "mtu": 9000,
        })
    };
    apply_document(
        client,
        &json!({
            "apiVersion": "bondnet.io/v1alpha1", "kind": "BondNodeState",
            "metadata": { "name": name }, "spec": {},
            "status": { "pluginVersion": "test", "pfs": [
                pf("ens1f0", "0000:3b:00.0", "ice", "159b", "1889"),
                pf("ens1f1", "0000:3b:00.1", "ice", "159b", "1889"),
                pf("ens2f0", "0000:5e:00.0", "i40e", "1572", "154c"),
                pf("ens2f1", "0000:5e:00.1", "i40e", "1572", "154c"),
            ] },
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn the_api_server_crashing_while_networks_are_applied_loses_and_duplicates_nothing() {
    const NETWORKS: usize = 24;
    let server = Server::start("load");
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, SYSTEM_NAMESPACE).await;
    ensure_namespace(&client, "load").await;
    for i in 0..3 {
        synthetic_node(&client, &format!("node-{i}"), json!({})).await;
    }
    let (mut controller, _) = start_controller_with(&server, "controller-1", &RESTART_LEASE);
    let network = |i: usize, mtu: u32| {
        json!({
            "apiVersion": "bondnet.io/v1alpha1", "kind": "BondNetwork",
            "metadata": { "name": format!("net-{i:02}"), "namespace": "load" },
            "spec": { "mode": "active-backup", "vfsPerPf": 1, "mtu": mtu },
        })
    };
    let first = network(0, 1500);
    apply_document(&client, &first).await;
    let (_, before) = ready_network_with_nads(&client, "load", "net-00", 3).await;

    // The load: a client that keeps creating networks and changing the MTU of earlier ones,
    // retrying each write through the outage, as kubectl users and GitOps tools do.
    let kubeconfig = server.kubeconfig.clone();
    let load = tokio::spawn(async move {
        let mut client = client_from(&kubeconfig).await;
        let mut writes = 0;
        for i in 1..NETWORKS {
            for doc in [network(i, 1500), network(i - 1, 9000)] {
                let api = bond_networks(&client, "load");
                let name = doc["metadata"]["name"].as_str().expect("a name").to_owned();
                let params = PatchParams::apply(MANAGER).force();
                loop {
                    match api.patch(&name, &params, &Patch::Apply(&doc)).await {
                        Ok(_) => break,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            client = client_from(&kubeconfig).await;
                        }
                    }
                }
                writes += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        writes
    });

    // Two crashes while the load runs, each back within the Lease.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let server = &server;
        tokio::task::block_in_place(|| server.restart_api_server(true, Duration::from_secs(1)));
    }
    let writes = load.await.expect("the load task");
    assert_eq!(writes, 2 * (NETWORKS - 1));
    let client = server.client().await;
    network_mtu_and_nads_converge(&client, NETWORKS).await;

    // Nothing lost or duplicated: net-00's NADs are the ones written before the crashes, and
    // there are exactly three per network.
    let after = network_nads(&client, "load", "net-00").await;
    let uids = |nads: &[Value]| -> Vec<String> {
        nads.iter()
            .map(|n| n["metadata"]["uid"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(uids(&before), uids(&after), "net-00's NADs were recreated");
    let all = nads(&client, "load")
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=bondnet"))
        .await
        .expect("list NADs");
    assert_eq!(all.items.len(), 3 * NETWORKS, "NADs in load");
    controller.assert_running();
    controller.stop();
}

/// Waits until every network `net-00` .. is Ready with its three NADs and its bond NAD has the
/// MTU last written (9000, but 1500 for the newest network).
async fn network_mtu_and_nads_converge(client: &Client, networks: usize) {
    eventually_within(
        Duration::from_secs(180),
        "every network converged",
        || async move {
            let mut behind = Vec::new();
            for i in 0..networks {
                let name = format!("net-{i:02}");
                let want = if i + 1 == networks { 1500 } else { 9000 };
                let ready = bond_networks(client, "load")
                    .get_opt(&name)
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|o| serde_json::to_value(o).expect("JSON"));
                let is_ready =
                    condition(ready.as_ref(), "Ready").is_some_and(|c| c["status"] == "True");
                let count = network_nads(client, "load", &name).await.len();
                let mtu = bond_nad_mtu(client, "load", &name).await.ok();
                if !is_ready || count != 3 || mtu != Some(json!(want)) {
                    behind.push(format!(
                        "{name}: ready {is_ready}, {count} NADs, mtu {mtu:?}"
                    ));
                }
            }
            if behind.is_empty() {
                Ok(())
            } else {
                Err(behind.join("; "))
            }
        },
    )
    .await
}

// === device-plugin restarts, node by node ===

/// Whether the agent has restarted the device plugin for the config file's current content:
/// the file holds `needle` and the agent's restart marker was written after it.
fn restarted_for(config: &Path, needle: &str) -> Result<(), String> {
    let content =
        std::fs::read_to_string(config).map_err(|e| format!("{}: {e}", config.display()))?;
    if !content.contains(needle) {
        return Err(format!("{} has no {needle}: {content}", config.display()));
    }
    let mut marker = config.as_os_str().to_owned();
    marker.push(".restarted");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(config), modified(Path::new(&marker))) {
        (Some(file), Some(mark)) if mark >= file => Ok(()),
        _ => Err(format!(
            "no restart recorded after {} changed",
            config.display()
        )),
    }
}

/// The live (not terminating) device-plugin pod bound to `node`.
async fn device_plugin_pod(client: &Client, node: &str) -> Option<k8s_openapi::api::core::v1::Pod> {
    component_pods(client, "device-plugin")
        .await
        .into_iter()
        .find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn a_changed_pool_restarts_the_device_plugin_on_its_node_only_as_the_agents_service_account()
{
    let server = Server::start("device-plugin");
    let client = server.client().await;
    helm_install(&server, &["--set", "devicePlugin.enabled=true"]);
    install_crds(&client).await;
    let agent_config = chart_service_account(&server, "bondnet-agent");
    let selector = "app.kubernetes.io/instance=bondnet,app.kubernetes.io/component=device-plugin";

    // Two nodes, each with two PFs on two cards, each with its agent (the chart's
    // ServiceAccount) rendering its own device-plugin config file.
    let mut agents = Vec::new();
    let mut configs = Vec::new();
    for node in ["worker-a", "worker-b"] {
        apply_document(
            &client,
            &json!({ "apiVersion": "v1", "kind": "Node",
                     "metadata": { "name": node, "labels": { "kubernetes.io/hostname": node } } }),
        )
        .await;
        post_node_status(&client, node, json!({})).await;
        let sysfs = SysfsTree::new(server.dir.join(node));
        sysfs.two_cards(8);
        let root = sysfs.root.to_str().expect("a UTF-8 path").to_string();
        let config = server.dir.join(node).join("device-plugin/config.json");
        let file = config.to_str().expect("a UTF-8 path").to_string();
        agents.push(Bondnet::start_as(
            &server,
            &agent_config,
            &format!("agent-{node}"),
            &[
                "agent",
                "--node-name",
                node,
                "--sysfs-root",
                &root,
                "--interval-seconds",
                "1",
                "--device-plugin-config-file",
                &file,
                "--device-plugin-selector",
                selector,
            ],
        ));
        configs.push(config);
    }
    // The DaemonSet controller and the scheduler give each node its device-plugin pod.
    wait_for_pods(&client, "device-plugin", 2, |p| {
        p.spec.as_ref().is_some_and(|s| s.node_name.is_some())
    })
    .await;
    let (mut controller, _) = start_controller(&server, "controller-1");
    ensure_namespace(&client, "dp").await;
    let network = |name: &str, selector: Value| {
        json!({
            "apiVersion": "bondnet.io/v1alpha1", "kind": "BondNetwork",
            "metadata": { "name": name, "namespace": "dp" },
            "spec": { "mode": "active-backup", "links": 2, "vfsPerPf": 2, "nodeSelector": selector },
        })
    };

    // A network on both nodes: both pools change, both agents restart their own node's plugin
    // (a delete; the test confirms the end of the pod as the kubelet would, and the DaemonSet
    // makes a new one).
    apply_document(&client, &network("everywhere", json!({}))).await;
    for config in &configs {
        eventually("the device plugin restarted for the new pools", || async {
            restarted_for(config, "everywhere")
        })
        .await;
    }
    wait_for_pods(&client, "device-plugin", 2, |p| {
        p.spec.as_ref().is_some_and(|s| s.node_name.is_some())
    })
    .await;
    let pod_a = device_plugin_pod(&client, "worker-a")
        .await
        .expect("worker-a's pod");
    let pod_b = device_plugin_pod(&client, "worker-b")
        .await
        .expect("worker-b's pod");
    let config_b = std::fs::read(&configs[1]).expect("worker-b's config");
    let states = node_states(&client);
    let spec_b = states.get("worker-b").await.expect("worker-b's state").data["spec"].clone();

    // A network on worker-a only: worker-a's plugin restarts, worker-b's is left alone (its
    // pools, its file, its pod: nothing changed there).
    apply_document(
        &client,
        &network("only-a", json!({ "kubernetes.io/hostname": "worker-a" })),
    )
    .await;
    eventually("worker-a's device plugin restarted for only-a", || async {
        restarted_for(&configs[0], "only-a")
    })
    .await;
    let pods_api = pods(&client, SYSTEM_NAMESPACE);
    let name_a = pod_a.metadata.name.clone().expect("a name");
    eventually("worker-a's old device-plugin pod deleted", || async {
        match pods_api.get_opt(&name_a).await {
            Ok(Some(p))
                if p.metadata.uid == pod_a.metadata.uid
                    && p.metadata.deletion_timestamp.is_none() =>
            {
                Err("still live".to_string())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let network_a = wait_for(&bond_networks(&client, "dp"), "only-a", "Ready", |o| {
        condition(o, "Ready").is_some_and(|c| c["status"] == "True")
    })
    .await
    .expect("only-a");
    assert_eq!(network_a["status"]["eligibleNodes"], 1, "{network_a}");
    let now_b = device_plugin_pod(&client, "worker-b")
        .await
        .expect("worker-b's pod");
    assert_eq!(
        now_b.metadata.uid, pod_b.metadata.uid,
        "worker-b's device plugin was restarted"
    );
    assert_eq!(
        std::fs::read(&configs[1]).expect("worker-b's config"),
        config_b,
        "worker-b's config file changed"
    );
    let spec_now = states.get("worker-b").await.expect("worker-b's state").data["spec"].clone();
    assert_eq!(spec_now, spec_b, "worker-b's pools changed");
    for agent in &mut agents {
        agent.assert_running();
        assert!(forbidden_lines(&agent.log()).is_empty(), "{}", agent.log());
    }
    controller.assert_running();
}

// === admission for real: the API server's own webhook client ===

/// An IPv4 address outside 127.0.0.0/8 on this host's `lo`, removed again on drop. The API
/// server reaches a webhook through its Service's EndpointSlice, and EndpointSlices refuse
/// loopback addresses; one from TEST-NET-1 (192.0.2.0/24, never routed) on `lo` is local to
/// this host and reaches nothing else. Needs root, as the netns tier does.
struct HostAddress {
    address: String,
}

impl HostAddress {
    fn add(last_octet: u8) -> HostAddress {
        let address = format!("192.0.2.{last_octet}");
        let out = Command::new("ip")
            .args(["addr", "replace", &format!("{address}/32"), "dev", "lo"])
            .output()
            .expect("run ip (iproute2)");
        assert!(
            out.status.success(),
            "cannot add {address}/32 to lo (this test needs root, as the netns tier does): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        HostAddress { address }
    }
}

impl Drop for HostAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.address), "dev", "lo"])
            .output();
    }
}

/// Creates the pod in `file` with `kubectl create`; Err holds what kubectl printed.
fn kubectl_create(server: &Server, file: &Path) -> Result<String, String> {
    let path = file.to_str().expect("a UTF-8 path");
    tool_result(server, "kubectl", &["create", "-f", path])
}

/// An EndpointSlice of the Service `service` (in the system namespace) naming one ready
/// endpoint, `address:port`, under the Service's port name.
fn endpoint_slice(service: &str, address: &str, port: u16) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-test"),
            "namespace": SYSTEM_NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": MANAGER,
            },
        },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": [address], "conditions": { "ready": true } }],
        "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
    })
}

fn write_pod(server: &Server, ns: &str, name: &str, networks: Option<&str>) -> PathBuf {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": ns },
        "spec": { "containers": [{ "name": "app", "image": "registry.invalid/app:1" }] },
    });
    if let Some(networks) = networks {
        pod["metadata"]["annotations"] = json!({ "k8s.v1.cni.cncf.io/networks": networks });
    }
    let file = server.dir.join(format!("pod-{name}.json"));
    std::fs::write(&file, pod.to_string()).expect("write the pod");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn the_api_servers_webhook_client_expands_bonded_pods_refuses_not_ready_ones_and_needs_no_webhook_for_the_rest(
) {
    let server = Server::start("admission");
    let client = server.client().await;
    helm_install(&server, &[]);
    install_crds(&client).await;
    apply_example_nodes(&client).await;
    let webhook = "bondnet-webhook";

    // The webhook, as bondnet-webhook (the chart's ServiceAccount), on a non-loopback address
    // of this host and a port of the kernel's choice; it makes its certificate, keeps it in its
    // Secret and writes the caBundle into the chart's MutatingWebhookConfiguration itself.
    let host = HostAddress::add(17);
    let listen = format!("{}:0", host.address);
    let webhook_config = chart_service_account(&server, webhook);
    let start_webhook = |log_name: &str| {
        let mut process = Bondnet::start_as(
            &server,
            &webhook_config,
            log_name,
            &[
                "webhook",
                "--listen",
                &listen,
                "--metrics-address",
                "127.0.0.1:0",
            ],
        );
        let port = process.bound_port("serving admission reviews");
        (process, port)
    };
    let (mut process, port) = start_webhook("webhook");
    // The chart's Service selects the webhook's pods, which stay Pending here (no kubelet):
    // an EndpointSlice of our own names the process instead, as kube-proxy-less clusters and
    // external webhooks do.
    apply_document(&client, &endpoint_slice(webhook, &host.address, port)).await;
    let configurations = dynamic_api(
        &client,
        &GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        ),
        "mutatingwebhookconfigurations",
        None,
    );
    wait_for(
        &configurations,
        webhook,
        "given a caBundle by the webhook",
        |o| {
            o.and_then(|o| o["webhooks"][0]["clientConfig"]["caBundle"].as_str())
                .is_some_and(|b| !b.is_empty())
        },
    )
    .await;

    // A Ready network, from the controller.
    let (mut controller, _) = start_controller(&server, "controller-1");
    let doc = example_network("fast-failover");
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .expect("a namespace")
        .to_owned();
    apply_document(&client, &doc).await;
    let (network, _) = ready_network_with_nads(&client, &ns, "fast-failover", 3).await;
    wait_for_default_service_account(&client, &ns).await;

    // kubectl creates a pod naming the network; the API server's webhook client calls the
    // webhook and applies its patch: the stored pod has the full ordered network list and the
    // VF requests, exactly as the network's status says a pod without the webhook needs them.
    let created = eventually("a bonded pod created through the webhook", || {
        let file = write_pod(&server, &ns, "bonded", Some("fast-failover"));
        let server = &server;
        async move { kubectl_create(server, &file) }
    })
    .await;
    assert!(created.contains("pod/bonded created"), "{created}");
    let stored = pods(&client, &ns)
        .get("bonded")
        .await
        .expect("the stored pod");
    let annotations = stored.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("k8s.v1.cni.cncf.io/networks")
            .map(String::as_str),
        network["status"]["podAnnotation"].as_str(),
        "the stored pod's networks are the expansion: {annotations:?}"
    );
    let resources = stored.spec.as_ref().expect("a spec").containers[0]
        .resources
        .clone()
        .unwrap_or_default();
    let wanted = network["status"]["podResources"]
        .as_object()
        .expect("podResources");
    assert!(!wanted.is_empty(), "{network}");
    for (resource, quantity) in wanted {
        for (what, list) in [
            ("requests", &resources.requests),
            ("limits", &resources.limits),
        ] {
            let got = list
                .as_ref()
                .and_then(|l| l.get(resource))
                .map(|q| q.0.as_str());
            assert_eq!(
                got,
                quantity.as_str(),
                "{what} of {resource}: {resources:?}"
            );
        }
    }

    // A network that cannot be Ready (no node matches): kubectl shows the webhook's reason.
    let mut nowhere = example_network("fast-failover");
    nowhere["metadata"] = json!({ "name": "nowhere", "namespace": ns });
    nowhere["spec"]["nodeSelector"] = json!({ "bondnet.io/no-such-label": "x" });
    apply_document(&client, &nowhere).await;
    wait_for(&bond_networks(&client, &ns), "nowhere", "not Ready", |o| {
        condition(o, "Ready").is_some_and(|c| c["status"] == "False")
    })
    .await;
    let refused = eventually("a pod naming a not-Ready network refused", || {
        let file = write_pod(&server, &ns, "waits", Some("nowhere"));
        let server = &server;
        async move {
            match kubectl_create(server, &file) {
                Ok(out) => panic!("a pod naming a not-Ready network was admitted: {out}"),
                Err(said) if said.contains("denied the request") => Ok(said),
                Err(said) => Err(said),
            }
        }
    })
    .await;
    assert!(
        refused.contains("pods.bondnet.io")
            && refused.contains("nowhere")
            && refused.contains("Ready"),
        "kubectl shows which webhook refused and why: {refused}"
    );

    // The webhook down: a pod naming no network is created (matchConditions keep it from the
    // webhook), while a pod naming one is refused, fail-closed (it would start unbonded).
    process.stop();
    let plain = write_pod(&server, &ns, "plain", None);
    let created = kubectl_create(&server, &plain).expect("a pod without networks needs no webhook");
    assert!(created.contains("pod/plain created"), "{created}");
    let empty = write_pod(&server, &ns, "empty", Some(""));
    kubectl_create(&server, &empty).expect("an empty networks annotation needs no webhook");
    let bonded = write_pod(&server, &ns, "bonded-2", Some("fast-failover"));
    let said = kubectl_create(&server, &bonded).expect_err("fail-closed for bonded pods");
    assert!(said.contains("failed calling webhook"), "{said}");

    // Back up: bonded pods are admitted again, with no change to the configuration.
    let (mut process, port) = start_webhook("webhook-2");
    apply_document(&client, &endpoint_slice(webhook, &host.address, port)).await;
    eventually("a bonded pod admitted after the webhook restarts", || {
        let file = write_pod(&server, &ns, "bonded-2", Some("fast-failover"));
        let server = &server;
        async move { kubectl_create(server, &file) }
    })
    .await;
    process.assert_running();
    process.stop();
    controller.assert_running();
    controller.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 5, the real control plane: cargo test -p bondnet-tests --test apiserver -- --ignored"]
async fn the_controller_and_the_agent_work_with_exactly_the_charts_rbac_and_a_removed_rule_is_caught(
) {
    let server = Server::start("rbac");
    let client = server.client().await;
    helm_install(&server, &[]);
    // The NAD CRD comes with Multus, not with the chart.
    install_crds(&client).await;
    apply_example_nodes(&client).await;
    let controller_config = chart_service_account(&server, "bondnet-controller");
    let agent_config = chart_service_account(&server, "bondnet-agent");

    // The agent, as bondnet-agent, publishes its node's inventory.
    apply_document(
        &client,
        &json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "worker-a" } }),
    )
    .await;
    let sysfs = SysfsTree::new(server.dir.join("host"));
    sysfs.pf(
        "ens1f0",
        "0000:3b:00.0",
        ("8086", "159b", "ice"),
        ("0000:3b:01.0", "1889", "iavf"),
        128,
        8,
    );
    let root = sysfs.root.to_str().expect("a UTF-8 path").to_string();
    let mut agent = Bondnet::start_as(
        &server,
        &agent_config,
        "agent",
        &[
            "agent",
            "--node-name",
            "worker-a",
            "--sysfs-root",
            &root,
            "--interval-seconds",
            "1",
        ],
    );
    wait_for(
        &node_states(&client),
        "worker-a",
        "published by the agent's ServiceAccount",
        |o| {
            o.and_then(|o| o["status"]["pfs"].as_array())
                .is_some_and(|p| p.len() == 1)
        },
    )
    .await;
    agent.assert_running();

    // The controller, as bondnet-controller: NADs, ConfigMap, status, its Lease and Events.
    let mut controller = Bondnet::start_as(
        &server,
        &controller_config,
        "controller",
        &[
            "controller",
            "--identity",
            "controller-rbac",
            "--metrics-address",
            "127.0.0.1:0",
        ],
    );
    let doc = example_network("fast-failover");
    let ns = doc["metadata"]["namespace"].as_str().expect("a namespace");
    apply_document(&client, &doc).await;
    let (network, written) = ready_network_with_nads(&client, ns, "fast-failover", 3).await;
    assert_nads(&network, &written);
    // The device-plugin pools, in the BondNodeStates' spec (a patch by the controller's token).
    let pooled = eventually("device-plugin pools in the BondNodeStates", || {
        let client = client.clone();
        async move {
            match node_state_pools(&client).await? {
                0 => Err("no node has pools".to_string()),
                n => Ok(n),
            }
        }
    })
    .await;
    assert!(pooled > 0);
    let lease = leases(&client)
        .get("bondnet-controller")
        .await
        .expect("the Lease");
    assert_eq!(
        lease_holder(Some(&serde_json::to_value(lease).expect("JSON"))).as_deref(),
        Some("controller-rbac")
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let recorded = eventually("an Event on the BondNetwork", || {
        let events = events.clone();
        async move {
            let list = events
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let on_network: Vec<_> = list
                .items
                .into_iter()
                .filter(|e| {
                    e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("BondNetwork")
                })
                .collect();
            if on_network.is_empty() {
                Err("none yet".to_string())
            } else {
                Ok(on_network)
            }
        }
    })
    .await;
    assert!(
        recorded.iter().all(|e| e.reporting_controller.is_some()),
        "{recorded:?}"
    );
    controller.assert_running();
    agent.assert_running();
    for (who, log) in [("controller", controller.log()), ("agent", agent.log())] {
        let refused = forbidden_lines(&log);
        assert!(
            refused.is_empty(),
            "the {who} was refused with the chart's RBAC:\n{}",
            refused.join("\n")
        );
    }

    // Without one of the chart's rules (status of BondNetworks) the same flow fails, and the
    // tier sees it: the next network never becomes Ready and the refusal is in the log (which
    // would fail the test on the controller's drop, were it not expected here).
    controller.expect_refusals();
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    let mut role = roles
        .get("bondnet-controller")
        .await
        .expect("the controller's ClusterRole");
    let rules = role.rules.take().unwrap_or_default();
    let kept: Vec<_> = rules
        .into_iter()
        .filter(|r| {
            !r.resources
                .as_ref()
                .is_some_and(|res| res.iter().any(|x| x == "bondnetworks/status"))
        })
        .collect();
    role.rules = Some(kept);
    role.metadata.managed_fields = None;
    roles
        .replace("bondnet-controller", &PostParams::default(), &role)
        .await
        .expect("drop the rule");
    let other = example_network("lacp");
    let other_ns = other["metadata"]["namespace"]
        .as_str()
        .expect("a namespace");
    apply_document(&client, &other).await;
    eventually("the missing rule refused in the controller's log", || {
        let log = controller.log();
        async move {
            if forbidden_lines(&log)
                .iter()
                .any(|l| l.contains("bondnetworks"))
            {
                Ok(())
            } else {
                Err("no refusal logged yet".to_string())
            }
        }
    })
    .await;
    let status = bond_networks(&client, other_ns)
        .get("lacp")
        .await
        .expect("lacp");
    let status = serde_json::to_value(status).expect("JSON");
    assert!(
        condition(Some(&status), "Ready").is_none_or(|c| c["status"] != "True"),
        "lacp became Ready without the status rule: {}",
        status["status"]
    );
}

// === issue 10: the planner at cluster scale, against the floor ===

/// A `usize` from the environment, or `default`.
fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a count")),
        Err(_) => default,
    }
}

/// The controller's /metrics text.
async fn metrics_text(port: u16) -> String {
    tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        Ok(body)
    })
    .await
    .expect("the scrape task")
    .unwrap_or_default()
}

/// `bondnet_writes_total` by its labels (`kind="...",verb="..."`).
fn writes_by_kind(metrics: &str) -> std::collections::BTreeMap<String, u64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("bondnet_writes_total{"))
        .filter_map(|l| {
            let (labels, value) = l.split_once("} ")?;
            Some((labels.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The controller's write counters once they have stopped moving (two scrapes a second apart
/// agree).
async fn settled_writes(port: u16) -> std::collections::BTreeMap<String, u64> {
    let mut last = writes_by_kind(&metrics_text(port).await);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = writes_by_kind(&metrics_text(port).await);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Server-side applies `docs` (and each one's status, through the status subresource), at most
/// `in_flight` at once; returns how long it took.
async fn apply_many(client: &Client, docs: Vec<Value>, in_flight: usize) -> Duration {
    use futures::{stream, StreamExt};
    let started = std::time::Instant::now();
    stream::iter(docs)
        .for_each_concurrent(in_flight, |doc| {
            let client = client.clone();
            async move {
                let gvk = gvk_of(&doc);
                let (plural, namespaced) = match gvk.kind.as_str() {
                    "Node" => ("nodes", false),
                    "BondNodeState" => ("bondnodestates", false),
                    "BondNetwork" => ("bondnetworks", true),
                    "NetworkAttachmentDefinition" => ("network-attachment-definitions", true),
                    other => panic!("no plural known for {other}"),
                };
                let name = doc["metadata"]["name"].as_str().expect("a name");
                let ns = doc["metadata"]["namespace"].as_str();
                let api = dynamic_api(&client, &gvk, plural, namespaced.then_some(ns).flatten());
                let params = PatchParams::apply(MANAGER).force();
                api.patch(name, &params, &Patch::Apply(&doc))
                    .await
                    .unwrap_or_else(|e| panic!("apply {} {name}: {e}", gvk.kind));
                if let Some(status) = doc.get("status").filter(|s| !s.is_null()) {
                    let status_doc = json!({ "apiVersion": doc["apiVersion"], "kind": doc["kind"], "status": status });
                    api.patch_status(name, &params, &Patch::Apply(&status_doc))
                        .await
                        .unwrap_or_else(|e| panic!("apply the status of {} {name}: {e}", gvk.kind));
                }
            }
        })
        .await;
    started.elapsed()
}

/// A synthesised node: its Node (labelled with its group) and its BondNodeState with two
/// dual-port cards, 128 VFs on each port.
fn bench_node(name: &str, group: Option<String>) -> [Value; 2] {
    let labels = match group {
        Some(group) => json!({ "bench.bondnet.io/group": group }),
        None => json!({}),
    };
    let pf = |name: &str, address: &str, driver: &str, device: &str, vf: &str| {
        json!({
            "name": name, "pciAddress": address, "nicId": &address[..10], "vendor": "8086",
            "deviceId": device, "driver": driver, "vfDeviceId": vf, "vfDriver": "iavf",
            "totalVfs": 128, "numVfs": 128, "linkSpeedMbps": 25000, "mtu": 9000,
        })
    };
    [
        json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name, "labels": labels } }),
        json!({
            "apiVersion": "bondnet.io/v1alpha1", "kind": "BondNodeState",
            "metadata": { "name": name }, "spec": {},
            "status": { "pluginVersion": "bench", "pfs": [
                pf("ens1f0", "0000:3b:00.0", "ice", "159b", "1889"),
                pf("ens1f1", "0000:3b:00.1", "ice", "159b", "1889"),
                pf("ens2f0", "0000:5e:00.0", "i40e", "1572", "154c"),
                pf("ens2f1", "0000:5e:00.1", "i40e", "1572", "154c"),
            ] },
        }),
    ]
}

/// A BondNetwork of the benchmark: in node group `group`, or on every node.
fn bench_network(name: &str, group: Option<String>) -> Value {
    let selector = match group {
        Some(group) => json!({ "bench.bondnet.io/group": group }),
        None => json!({}),
    };
    json!({
        "apiVersion": "bondnet.io/v1alpha1", "kind": "BondNetwork",
        "metadata": { "name": name, "namespace": "bench" },
        "spec": { "mode": "active-backup", "vfsPerPf": 1, "nodeSelector": selector },
    })
}

/// A NAD like the controller's port NADs, without bondnet's label (the controller leaves it
/// alone), for the floor.
fn floor_nad(name: &str) -> Value {
    let config = json!({"cniVersion": "1.0.0", "type": "sriov", "name": name, "spoofchk": "on", "trust": "off"});
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": name, "namespace": "floor",
                      "labels": { "bench.bondnet.io/floor": "true", "bondnet.io/role": "port" },
                      "annotations": { "k8s.v1.cni.cncf.io/resourceName": format!("bondnet.io/floor_{name}") } },
        "spec": { "config": config.to_string() },
    })
}

/// How many of the bench namespace's networks are Ready, and how many NADs bondnet wrote there.
async fn bench_progress(client: &Client) -> (usize, usize) {
    let list = bond_networks(client, "bench")
        .list(&Default::default())
        .await
        .expect("list networks");
    let ready = list
        .items
        .iter()
        .filter(|n| {
            let v = serde_json::to_value(n).expect("JSON");
            condition(Some(&v), "Ready").is_some_and(|c| c["status"] == "True")
        })
        .count();
    let nad_count = nads(client, "bench")
        .list_metadata(
            &kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=bondnet"),
        )
        .await
        .expect("list NADs")
        .items
        .len();
    (ready, nad_count)
}

/// Issue 10's benchmark, gated (minutes): N BondNetworks over M synthesised nodes, in G node
/// groups (each network selects one; G=0 puts every network on every node), against the floor:
/// the time one client takes to server-side apply the same number of NADs (3 per network), 16
/// at a time as the controller's writer sends them, and one at a time. Then one more network
/// on the converged cluster: time to Ready and the write requests it causes, by kind (from the
/// controller's `bondnet_writes_total`). Sizes from `BONDNET_BENCH_NETWORKS` (500),
/// `BONDNET_BENCH_NODES` (100) and `BONDNET_BENCH_GROUPS` (20); a node hosts at most 256
/// networks (4 PFs of 128 VFs, two per network). Run with a release binary:
///
/// ```text
/// cargo build --release -p bondnet-operator --bin bondnet
/// BONDNET_BIN=$PWD/target/release/bondnet cargo test -p bondnet-tests --test apiserver -- \
///   --ignored benchmark_planner --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark (minutes): cargo test -p bondnet-tests --test apiserver -- --ignored benchmark --nocapture"]
async fn benchmark_planner_n_networks_over_m_nodes_against_the_floor_and_one_more_network() {
    let networks = env_usize("BONDNET_BENCH_NETWORKS", 500);
    let node_count = env_usize("BONDNET_BENCH_NODES", 100);
    let groups = env_usize("BONDNET_BENCH_GROUPS", 20);
    let group_of = |i: usize| (groups > 0).then(|| format!("g{:03}", i % groups));
    assert!(
        networks.div_ceil(groups.max(1)) <= 256,
        "{networks} networks in {groups} groups: a node hosts at most 256"
    );
    let server = Server::start("bench-planner");
    let client = server.client().await;
    install_crds(&client).await;
    ensure_namespace(&client, SYSTEM_NAMESPACE).await;
    for ns in ["bench", "floor"] {
        ensure_namespace(&client, ns).await;
    }
    let nodes: Vec<Value> = (0..node_count)
        .flat_map(|i| bench_node(&format!("node-{i:04}"), group_of(i)))
        .collect();
    let made = apply_many(&client, nodes, 16).await;
    eprintln!(
        "BENCH planner: {node_count} Nodes and BondNodeStates made in {:.1} s",
        made.as_secs_f64()
    );

    // The floor: the same number of NADs, applied by one client.
    let nad_total = 3 * networks;
    let floor_16 = apply_many(
        &client,
        (0..nad_total)
            .map(|i| floor_nad(&format!("a{i:05}")))
            .collect(),
        16,
    )
    .await;
    let floor_1 = apply_many(
        &client,
        (0..nad_total)
            .map(|i| floor_nad(&format!("b{i:05}")))
            .collect(),
        1,
    )
    .await;

    // As admin, not the chart's ServiceAccount: see start_controller_as_admin.
    let (mut controller, port) = start_controller_as_admin(&server, "controller-1");
    wait_for(&leases(&client), "bondnet-controller", "held", |o| {
        lease_holder(o).is_some()
    })
    .await;

    let started = std::time::Instant::now();
    let applied = apply_many(
        &client,
        (0..networks)
            .map(|i| bench_network(&format!("net-{i:04}"), group_of(i)))
            .collect(),
        16,
    )
    .await;
    let deadline = Duration::from_secs(1800);
    let (ready, nad_count) = loop {
        let (ready, nad_count) = bench_progress(&client).await;
        if (ready == networks && nad_count == nad_total) || started.elapsed() > deadline {
            break (ready, nad_count);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let converged = started.elapsed();
    controller.assert_running();
    let plans = metric(port, "bondnet_plans_total").await.unwrap_or(0.0);
    let cycles = metric(port, "bondnet_reconciles_total")
        .await
        .unwrap_or(0.0);
    let before = settled_writes(port).await;
    let placement = match node_count.checked_div(groups) {
        Some(each) => format!("{groups} node groups, {each} nodes each"),
        None => "every network on every node".to_owned(),
    };
    eprintln!(
        "BENCH planner: {networks} BondNetworks over {node_count} nodes ({placement}): applied in {:.1} s; \
         {ready}/{networks} Ready with {nad_count}/{nad_total} NADs after {:.1} s; \
         floor ({nad_total} NADs by one client): {:.1} s 16 in flight, {:.1} s one at a time; \
         ratio {:.2} (16 in flight), {:.2} (one at a time); {cycles} cycles, {plans} plans; \
         writes {before:?}",
        applied.as_secs_f64(),
        converged.as_secs_f64(),
        floor_16.as_secs_f64(),
        floor_1.as_secs_f64(),
        converged.as_secs_f64() / floor_16.as_secs_f64(),
        converged.as_secs_f64() / floor_1.as_secs_f64(),
    );
    assert_eq!(ready, networks, "networks Ready after {converged:?}");
    assert_eq!(nad_count, nad_total, "NADs after {converged:?}");

    // One more network on the converged cluster.
    let extra = bench_network("net-extra", group_of(0));
    let started = std::time::Instant::now();
    apply_many(&client, vec![extra], 1).await;
    // Every node may be affected (every network everywhere): allow longer than `wait_for`.
    let networks_api = bond_networks(&client, "bench");
    eventually_within(Duration::from_secs(900), "net-extra Ready", || {
        let api = networks_api.clone();
        async move {
            let network = api.get_opt("net-extra").await.map_err(|e| e.to_string())?;
            let value = network.map(|n| serde_json::to_value(n).unwrap_or_default());
            match condition(value.as_ref(), "Ready") {
                Some(c) if c["status"] == "True" => Ok(()),
                other => Err(format!("Ready is {other:?}")),
            }
        }
    })
    .await;
    let extra_ready = started.elapsed();
    let extra_nads = network_nads(&client, "bench", "net-extra").await.len();
    let after = settled_writes(port).await;
    let delta: std::collections::BTreeMap<&String, u64> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect();
    let total: u64 = delta.values().sum();
    let hosts = node_count.checked_div(groups).unwrap_or(node_count);
    eprintln!(
        "BENCH planner: one more network (on {hosts} nodes) in a converged cluster of {networks}: \
         Ready after {:.2} s with {extra_nads} NADs; {total} write requests: {delta:?}; \
         controller peak RSS {} MiB",
        extra_ready.as_secs_f64(),
        controller.peak_rss_kib().map(|k| k / 1024).unwrap_or(0),
    );
    assert_eq!(extra_nads, 3, "NADs of net-extra");
}

// === the SR-IOV node: a real kubelet over real VFs ===

#[path = "apiserver/node.rs"]
mod node;
