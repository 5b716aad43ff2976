//! The SR-IOV node tier: a real Kubernetes node with real VFs joins the test's control plane.
//!
//! ```text
//! cargo test -p bondnet-tests --test apiserver -- --ignored node::
//! ```
//!
//! The node is a qemu guest (`tests/vm/run.sh --node`): two of QEMU's igb PFs (Intel 82576),
//! each on its own PCIe root port, with their igbvf VFs; containerd, runc, the CNI reference
//! plugins and the kubelet built from their Go modules (`tests/node/build.sh`); images written
//! as OCI archives from this machine's binaries (`tests/node/images.sh`), nothing pulled. The
//! kubelet registers with the API server on the host's loopback through QEMU's user network,
//! whose only way out is a forward to that API server. The chart is installed with the real
//! Helm; the agent's DaemonSet runs its pod on the node, where the agent installs `bond` into
//! the node's CNI bin dir and publishes the PFs it reads from the node's real sysfs.
//!
//! Multus, sriov-cni and the SR-IOV network device plugin are not here: the Go module proxy
//! refuses every version of each (see `tests/node/README.md`), so the steps of a bonded pod
//! that need them (the pod's VFs, its bond, failover under Kubernetes) cannot run yet.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Instant;

use super::*;

/// How long the node may take to boot, start containerd and the kubelet, and post Ready:
/// qemu emulates every instruction (TCG) on two shared cores.
const NODE_READY: Duration = Duration::from_secs(600);
/// How long a pod may take on that node (sandbox, image unpacked by the native snapshotter).
const POD_RUNNING: Duration = Duration::from_secs(420);
/// VFs the node's boot enables on each PF.
const NUM_VFS: u64 = 4;

/// The `bond` binary the image carries: the one that ships (scripts/build-bond.sh), built
/// once per test run.
fn release_bond() -> PathBuf {
    static BOND: OnceLock<PathBuf> = OnceLock::new();
    BOND.get_or_init(|| {
        bondnet_tests::vm::shipped_bond().unwrap_or_else(|e| panic!("no shipped bond binary: {e}"))
    })
    .clone()
}

fn sha256_prefix(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    String::from_utf8_lossy(&out.stdout)[..16].to_string()
}

/// Runs a script to its end, failing the test with its command line and stderr if it fails.
fn run_bash(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One SR-IOV node VM, joined to `server` as Node `name`; stopped on drop, its console kept
/// in the control plane's directory (listed with the other logs when a test fails).
struct NodeVm {
    child: Child,
    console: PathBuf,
    name: String,
}

impl NodeVm {
    fn start(server: &Server, name: &str) -> NodeVm {
        // The kubelet's certificate and kubeconfig, the CA, the API server's port.
        run_bash(
            Command::new("bash")
                .arg(script("start.sh"))
                .arg(&server.dir)
                .args(["node", name])
                .env("BONDNET_CONTROLPLANE_BIN", control_plane_bin()),
        );
        let dir = server.dir.join(format!("node-{name}"));
        std::fs::write(dir.join("numvfs"), NUM_VFS.to_string()).expect("write numvfs");
        // The images the node runs.
        run_bash(
            Command::new("bash")
                .arg(repo_root().join("tests/node/images.sh"))
                .arg(dir.join("images"))
                .arg(bondnet_bin())
                .arg(release_bond()),
        );
        let console = server.dir.join(format!("node-{name}.log"));
        let log = std::fs::File::create(&console).expect("create the console log");
        let child = Command::new("bash")
            .arg(repo_root().join("tests/vm/run.sh"))
            .arg("--node")
            .arg(&dir)
            .env("BONDNET_VM_TIMEOUT", "3600")
            .env("BONDNET_BOND_BIN", release_bond())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log"))
            .stderr(log)
            .spawn()
            .expect("start tests/vm/run.sh --node");
        NodeVm {
            child,
            console,
            name: name.to_string(),
        }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Fails the test, with the console, when the VM has stopped or the node said it failed.
    fn assert_alive(&mut self) {
        let console = self.console();
        if let Some(line) = console.lines().find(|l| l.starts_with("NODE FAIL")) {
            panic!("the node failed: {line}\n--- console ---\n{console}");
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the node's VM stopped ({status})\n--- console ---\n{console}");
        }
    }

    /// Polls `f` every second until it returns Ok; fails the test, with the console, when
    /// the VM stops, the node says it failed, or `limit` passes (naming `what` and `f`'s
    /// last answer).
    async fn until<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut f: impl AsyncFnMut(&Self) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let why = match f(self).await {
                Ok(v) => return v,
                Err(why) => why,
            };
            self.assert_alive();
            assert!(
                Instant::now() < deadline,
                "not {what} within {limit:?}: {why}\n--- console ---\n{}",
                self.console()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The newest console line starting with `prefix`, waiting up to `limit` for one for which
    /// `accept` holds.
    async fn line(
        &mut self,
        prefix: &str,
        limit: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let what = format!("a console line \"{prefix}...\" as expected");
        self.until(limit, &what, async |vm: &Self| {
            BufReader::new(vm.console().as_bytes())
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.starts_with(prefix))
                .last()
                .filter(|l| accept(l))
                .ok_or_else(|| "none yet".to_string())
        })
        .await
    }
}

impl Drop for NodeVm {
    fn drop(&mut self) {
        // run.sh runs qemu under `timeout` in a pipeline: stop its children (timeout passes
        // SIGTERM on to qemu), so run.sh finishes by itself and removes its disk and initrd;
        // kill it only if it does not.
        let pid = self.child.id().to_string();
        let _ = Command::new("pkill").args(["-TERM", "-P", &pid]).status();
        let _ = Command::new("pkill")
            .args([
                "-TERM",
                "-f",
                &format!("qemu-system-x86_64.*node-disk.{pid}"),
            ])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- console of node {} ({}) ---\n{}",
                self.name,
                self.console.display(),
                self.console()
            );
        }
    }
}

async fn node_ready(client: &Client, name: &str) -> Result<Value, String> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let node = nodes
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("not registered")?;
    let node = serde_json::to_value(node).expect("JSON");
    match condition(Some(&node), "Ready") {
        Some(c) if c["status"] == "True" => Ok(node),
        Some(c) => Err(format!("Ready {}: {}", c["status"], c["message"])),
        None => Err("no Ready condition yet".into()),
    }
}

/// The agent's pod on `node`, once Running with its container ready.
async fn agent_running_on(client: &Client, node: &str) -> Result<String, String> {
    let pods = component_pods(client, "agent").await;
    let pod = pods
        .iter()
        .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .ok_or("no agent pod bound to the node")?;
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .container_statuses
        .as_ref()
        .is_some_and(|c| c.iter().all(|c| c.ready));
    if status.phase.as_deref() == Some("Running") && ready {
        Ok(pod.metadata.name.clone().unwrap_or_default())
    } else {
        Err(format!(
            "phase {:?}, containers {}",
            status.phase,
            serde_json::to_string(&status.container_statuses).unwrap_or_default()
        ))
    }
}

/// The test's network: active-backup over two ports, `vfs` VFs on each chosen PF.
fn node_network(name: &str, vfs: u64) -> Value {
    let mut network = bond_network(
        name,
        json!({ "mode": "active-backup", "links": 2, "diversity": "nic", "vfsPerPf": vfs }),
    );
    network["metadata"]["namespace"] = json!("telco");
    network
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the SR-IOV node (qemu, minutes): cargo test -p bondnet-tests --test apiserver -- --ignored node::"]
async fn a_real_sriov_node_joins_the_agent_installs_bond_publishes_its_real_pfs_and_networks_get_disjoint_vfs(
) {
    let server = Server::start("node");
    let client = server.client().await;
    // The NAD CRD (Multus's) and bondnet's; Helm leaves CRDs that exist alone.
    install_crds(&client).await;
    // The chart, with the real Helm. The agent's DaemonSet runs on the node; the controller
    // and the webhook run here on the host (their pods would need the node's pod network to
    // reach them from the API server, which only the host has), so their Deployments are
    // pinned to no node.
    helm_install(
        &server,
        &[
            "--set",
            "image.repository=bondnet",
            "--set",
            "image.tag=test",
            "--set",
            "image.pullPolicy=Never",
            "--set-string",
            "controller.nodeSelector.bondnet\\.io/host-process=true",
            "--set",
            "webhook.enabled=false",
        ],
    );
    let mut vm = NodeVm::start(&server, "sriov-1");

    // 1. The node registers and becomes Ready.
    let started = Instant::now();
    let node = vm
        .until(NODE_READY, "node sriov-1 Ready", async |_: &NodeVm| {
            node_ready(&client, "sriov-1").await
        })
        .await;
    eprintln!("node Ready after {:?}", started.elapsed());
    assert_eq!(
        node["status"]["nodeInfo"]["kubeletVersion"], "v1.37.2",
        "{node}"
    );
    assert!(
        node["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("containerd://")),
        "{node}"
    );

    // 2. The agent's pod runs there, from the image the node holds.
    eventually_within(POD_RUNNING, "the agent running on sriov-1", || {
        let client = client.clone();
        async move { agent_running_on(&client, "sriov-1").await }
    })
    .await;
    eprintln!("agent Running after {:?}", started.elapsed());

    // 3. It installed `bond` into the node's CNI bin dir: the very binary of the image.
    let want = sha256_prefix(&release_bond());
    vm.line("NODE CNI-BIN bond", Duration::from_secs(120), |l| {
        l.ends_with(&want)
    })
    .await;

    // 4. It published the node's PFs as the guest's own sysfs shows them: two igb PFs (82576),
    // NUM_VFS igbvf VFs each, each its own card.
    let pf_lines: Vec<String> = vm
        .console()
        .lines()
        .filter(|l| l.starts_with("NODE PF "))
        .map(str::to_string)
        .collect();
    assert_eq!(
        pf_lines.len(),
        2,
        "the node's boot reports two PFs: {pf_lines:?}"
    );
    let states = node_states(&client);
    let state = wait_for(&states, "sriov-1", "published with both PFs", |s| {
        s.and_then(|s| s["status"]["pfs"].as_array())
            .is_some_and(|pfs| pfs.len() == 2)
    })
    .await
    .expect("the node's BondNodeState");
    let pfs = state["status"]["pfs"].as_array().expect("pfs");
    let mut cards = BTreeSet::new();
    for pf in pfs {
        let name = pf["name"].as_str().expect("a PF name");
        let line = pf_lines
            .iter()
            .find(|l| l.split_whitespace().nth(2) == Some(name))
            .unwrap_or_else(|| {
                panic!("PF {name} is not one the node's boot reported: {pf_lines:?}")
            });
        let pci = line.split_whitespace().nth(3).expect("a PCI address");
        assert_eq!(pf["pciAddress"], pci, "{pf}");
        assert_eq!(pf["vendor"], "8086", "{pf}");
        assert_eq!(pf["deviceId"], "10c9", "{pf}");
        assert_eq!(pf["driver"], "igb", "{pf}");
        assert_eq!(pf["vfDeviceId"], "10ca", "{pf}");
        assert_eq!(pf["vfDriver"], "igbvf", "{pf}");
        assert_eq!(pf["totalVfs"], 7, "{pf}");
        assert_eq!(pf["numVfs"], NUM_VFS, "{pf}");
        cards.insert(pf["nicId"].as_str().expect("a card").to_string());
    }
    assert_eq!(cards.len(), 2, "each emulated PF is its own card: {pfs:?}");

    // 5. Networks over those PFs: the controller, with the chart's ServiceAccount token, plans
    // them; the node is eligible; the agent on the node renders both networks' pools into the
    // device plugin's config file; the two networks' VF ranges on each PF are disjoint.
    let kubeconfig = service_account_kubeconfig(&server, "bondnet-controller");
    let mut controller = Bondnet::start_as(
        &server,
        &kubeconfig,
        "controller",
        &[
            "controller",
            "--identity",
            "host",
            "--metrics-address",
            "127.0.0.1:0",
        ],
    );
    let networks = bond_networks(&client, "telco");
    for (name, vfs) in [("fast", 2), ("slow", 1)] {
        apply_document(&client, &node_network(name, vfs)).await;
        let network = wait_for(&networks, name, "Ready", |n| {
            condition(n, "Ready").is_some_and(|c| c["status"] == "True")
        })
        .await
        .expect("the network");
        assert_eq!(
            network["status"]["eligibleNodes"], 1,
            "{name}: {}",
            network["status"]
        );
    }
    let line = vm
        .line("NODE DEVICE-PLUGIN-CONFIG", Duration::from_secs(180), |l| {
            [
                "telco_fast_p0",
                "telco_fast_p1",
                "telco_slow_p0",
                "telco_slow_p1",
            ]
            .iter()
            .all(|r| l.contains(r))
        })
        .await;
    eprintln!("{line}");
    let state = node_states(&client)
        .get("sriov-1")
        .await
        .expect("the node's BondNodeState");
    let state = serde_json::to_value(state).expect("JSON");
    let pools = state["spec"]["devicePlugin"]["resourceList"]
        .as_array()
        .expect("the node's pools");
    assert_eq!(pools.len(), 4, "two networks of two ports: {pools:?}");
    // Every (PF, VF index) belongs to one pool at most, and each pool holds the VFs its
    // network asked for.
    let mut taken: BTreeMap<(String, u64), String> = BTreeMap::new();
    for pool in pools {
        let resource = pool["resourceName"].as_str().expect("a resource name");
        let want = if resource.contains("fast") { 2 } else { 1 };
        let mut count = 0;
        for pf_name in pool["selectors"]["pfNames"].as_array().expect("pfNames") {
            let pf_name = pf_name.as_str().expect("a PF name");
            let (pf, range) = pf_name.split_once('#').expect("a VF range");
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let index = |s: &str| -> u64 {
                s.parse()
                    .unwrap_or_else(|_| panic!("{pf_name}: {s} is not a VF index"))
            };
            let (first, last) = (index(first), index(last));
            assert!(last < NUM_VFS, "{pf_name} is beyond the node's VFs");
            for vf in first..=last {
                count += 1;
                if let Some(other) = taken.insert((pf.to_string(), vf), resource.to_string()) {
                    panic!("VF {vf} of {pf} is in both {other} and {resource}");
                }
            }
        }
        assert_eq!(count, want, "{resource}: {pool}");
    }
    controller.assert_running();
    assert!(
        forbidden_lines(&controller.log()).is_empty(),
        "the controller was refused something under the chart's RBAC:\n{}",
        controller.log()
    );
}
