//! Planner scenarios against the mock API server: each test fills the stores, runs planner
//! cycles and states, in order, every request the controller must make (the writer sends one
//! at a time here, unless a test is about its concurrency), checking the bodies that matter.
//! Then the planner's loop (its debounce), the writer at full concurrency, the leader that
//! loses its lease, and the whole controller pipeline (watches, stores, planner, writer),
//! serving requests in whatever order they come. No test asserts a duration: they assert
//! counts and order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future;
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer as StoreWriter, Store};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::diff::Written;
use super::lease::LeaseConfig;
use super::memo::Memo;
use super::planner::{Cycle, Planner, Stores, Timing};
use super::writer::{Writer, WriterConfig};
use crate::api::bond_network::BondNetwork;
use crate::api::bond_node_state::BondNodeState;
use crate::api::device_plugin::DevicePluginConfig;
use crate::api::keys;
use crate::api::nad::NetworkAttachmentDefinition;
use crate::fixtures::{network, node_with_cards};
use crate::mock::{self, Incoming, MockApi};
use crate::plan::Settings;
use crate::telemetry::Metrics;

const NETWORK: &str = "/apis/bondnet.io/v1alpha1/namespaces/telco/bondnetworks/fast";
const CONFIGMAP: &str = "/api/v1/namespaces/bondnet-system/configmaps/bondnet-device-plugin-config";
const NADS: &str = "/apis/k8s.cni.cncf.io/v1/namespaces/telco/network-attachment-definitions";
const STATES: &str = "/apis/bondnet.io/v1alpha1/bondnodestates";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/telco/events";

/// A store writer that has delivered a full initial list: its store is ready.
fn listed<K>(objects: &[K]) -> (Store<K>, StoreWriter<K>)
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    (reader, writer)
}

/// The network under test: telco/fast, with a UID, generation 1 and (unless `fresh`) the finalizer.
fn fast(finalized: bool) -> BondNetwork {
    let mut net = network("telco", "fast", |_| {});
    net.metadata.uid = Some("uid-fast".into());
    net.metadata.generation = Some(1);
    net.metadata.resource_version = Some("1".into());
    if finalized {
        net.metadata.finalizers = Some(vec![keys::FINALIZER.to_owned()]);
    }
    net
}

/// A second network of the test: telco/slow, finalized, with a UID.
fn slow() -> BondNetwork {
    let mut net = network("telco", "slow", |_| {});
    net.metadata.uid = Some("uid-slow".into());
    net.metadata.generation = Some(1);
    net.metadata.resource_version = Some("1".into());
    net.metadata.finalizers = Some(vec![keys::FINALIZER.to_owned()]);
    net
}

/// The Node of each BondNodeState, with UID `uid-<name>`.
fn node_objects(nodes: &[BondNodeState]) -> Vec<PartialObjectMeta<Node>> {
    nodes
        .iter()
        .map(|state| {
            let mut meta = PartialObjectMeta::<Node>::default();
            meta.metadata.name = state.metadata.name.clone();
            meta.metadata.uid = state.metadata.name.as_ref().map(|n| format!("uid-{n}"));
            meta.metadata.labels = state.metadata.labels.clone();
            meta
        })
        .collect()
}

fn two_nodes() -> Vec<BondNodeState> {
    vec![
        node_with_cards("n1", &[], 2, 8),
        node_with_cards("n2", &[], 2, 8),
    ]
}

/// A planner over stores holding these objects, and the store writers to change them.
struct Fixture {
    planner: Arc<Planner>,
    networks: StoreWriter<BondNetwork>,
    nodes: StoreWriter<BondNodeState>,
    nads: StoreWriter<NetworkAttachmentDefinition>,
    _node_meta: StoreWriter<PartialObjectMeta<Node>>,
}

/// The writer of the tests: one request at a time, so they arrive in a stable order; one
/// attempt unless a test asks for more.
fn test_writer_config() -> WriterConfig {
    WriterConfig {
        concurrency: 1,
        timeout: Duration::from_secs(5),
        attempts: 1,
        first_retry: Duration::from_millis(10),
    }
}

struct Setup<'s> {
    networks: &'s [BondNetwork],
    nodes: &'s [BondNodeState],
    node_meta: Option<Vec<PartialObjectMeta<Node>>>,
    nads: Vec<NetworkAttachmentDefinition>,
    export: bool,
    writer: WriterConfig,
    timing: Timing,
}

impl<'s> Setup<'s> {
    fn new(networks: &'s [BondNetwork], nodes: &'s [BondNodeState]) -> Self {
        Self {
            networks,
            nodes,
            node_meta: None,
            nads: Vec::new(),
            export: false,
            writer: test_writer_config(),
            timing: test_timing(),
        }
    }

    fn build(self, client: Client) -> Fixture {
        let (networks, network_writer) = listed(self.networks);
        let (nodes, node_writer) = listed(self.nodes);
        let (node_meta, meta_writer) =
            listed(&self.node_meta.unwrap_or_else(|| node_objects(self.nodes)));
        let (nads, nad_writer) = listed(&self.nads);
        let stores = Stores {
            networks,
            nodes,
            node_meta,
            nads,
        };
        let mut planner = planner(client, stores, self.export, self.writer);
        planner.timing = self.timing;
        Fixture {
            planner: Arc::new(planner),
            networks: network_writer,
            nodes: node_writer,
            nads: nad_writer,
            _node_meta: meta_writer,
        }
    }
}

fn planner(client: Client, stores: Stores, export: bool, writer: WriterConfig) -> Planner {
    let metrics = Arc::new(Metrics::default());
    let written = Arc::new(Written::default());
    Planner {
        client: client.clone(),
        settings: Settings::default(),
        export_configmap: export,
        stores,
        writer: Writer::new(
            client.clone(),
            Recorder::new(
                client,
                Reporter {
                    controller: "bondnet".into(),
                    instance: Some("test".into()),
                },
            ),
            metrics.clone(),
            written.clone(),
            writer,
        ),
        written,
        memo: Arc::new(Memo::default()),
        metrics,
        timing: test_timing(),
    }
}

/// The planner's timing in the tests: 10 ms of quiet, at most 100 ms.
fn test_timing() -> Timing {
    Timing {
        debounce: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        ..Timing::default()
    }
}

/// Runs one cycle in the background.
fn spawn(planner: &Arc<Planner>) -> tokio::task::JoinHandle<crate::Result<Cycle>> {
    let planner = planner.clone();
    tokio::spawn(async move { planner.cycle().await })
}

/// Waits for a cycle, failing the test instead of hanging when it waits for a request the
/// test did not answer.
async fn finish(task: tokio::task::JoinHandle<crate::Result<Cycle>>) -> crate::Result<Cycle> {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the cycle finished (a hang means it sent a request the test did not expect)")
        .expect("task")
}

fn nad(name: &str) -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "telco", "resourceVersion": "3",
                     "labels": {"app.kubernetes.io/managed-by": "bondnet", "bondnet.io/network": "fast"}},
        "spec": {"config": "{}"}
    })
}

fn nad_object(value: Value) -> NetworkAttachmentDefinition {
    serde_json::from_value(value).expect("a NAD")
}

fn object(network: &BondNetwork) -> Value {
    serde_json::to_value(network).expect("network JSON")
}

/// The reads of the ConfigMap layout before per-node state, while some node has no spec:
/// the base name, then `-0`, `-1`, ... up to the first missing one. `shards` answers them.
async fn expect_configmap_reads(server: &mut MockApi, base: Option<Value>, shards: Vec<Value>) {
    match base {
        Some(cm) => {
            server
                .expect(Method::GET, CONFIGMAP, StatusCode::OK, cm)
                .await
        }
        None => {
            server
                .expect(
                    Method::GET,
                    CONFIGMAP,
                    StatusCode::NOT_FOUND,
                    mock::status_error(404, "NotFound", "none"),
                )
                .await
        }
    };
    let count = shards.len();
    for (shard, cm) in shards.into_iter().enumerate() {
        server
            .expect(
                Method::GET,
                &format!("{CONFIGMAP}-{shard}"),
                StatusCode::OK,
                cm,
            )
            .await;
    }
    server
        .expect(
            Method::GET,
            &format!("{CONFIGMAP}-{count}"),
            StatusCode::NOT_FOUND,
            mock::status_error(404, "NotFound", "none"),
        )
        .await;
}

/// The BondNodeState spec applies, in node order; returns their bodies.
async fn expect_node_states(server: &mut MockApi, nodes: &[&str]) -> Vec<Value> {
    let mut bodies = Vec::new();
    for node in nodes {
        let seen = server
            .expect_echo(Method::PATCH, &format!("{STATES}/{node}"))
            .await;
        assert!(
            seen.uri
                .split(['?', '&'])
                .any(|p| p == "fieldManager=bondnet")
                && seen.uri.contains("force=true"),
            "{}",
            seen.uri
        );
        let owner = &seen.body["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Node", "{}", seen.body);
        assert_eq!(owner["uid"], format!("uid-{node}"), "{}", seen.body);
        bodies.push(seen.body);
    }
    bodies
}

/// The device-plugin config of a node state body.
fn pools(body: &Value) -> DevicePluginConfig {
    serde_json::from_value(body["spec"]["devicePlugin"].clone()).expect("spec.devicePlugin")
}

/// `state` as it reads back after the controller applied `body` to it.
fn written(mut state: BondNodeState, body: &Value) -> BondNodeState {
    state.spec.device_plugin = Some(pools(body));
    let name = state.metadata.name.clone().unwrap_or_default();
    state.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: name.clone(),
        uid: format!("uid-{name}"),
        ..OwnerReference::default()
    }]);
    state.metadata.resource_version = Some("20".into());
    state
}

fn configmap(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "bondnet-system"},
        "data": data,
    })
}

/// The NAD applies of a fresh plan of `network`: its two ports, then the bond.
async fn expect_nads_of(server: &mut MockApi, network: &str) -> Vec<Value> {
    let mut bodies = Vec::new();
    for name in [
        format!("{network}-p0"),
        format!("{network}-p1"),
        network.to_owned(),
    ] {
        let seen = server
            .expect_echo(Method::PATCH, &format!("{NADS}/{name}"))
            .await;
        assert!(
            seen.uri.contains("fieldManager=bondnet") && seen.uri.contains("force=true"),
            "{}",
            seen.uri
        );
        bodies.push(seen.body);
    }
    bodies
}

async fn expect_nads(server: &mut MockApi) -> Vec<Value> {
    expect_nads_of(server, "fast").await
}

/// The status apply of telco/fast, answered with `network`; returns the status sent.
async fn expect_status(server: &mut MockApi, network: &BondNetwork) -> Value {
    server
        .expect_with(
            Method::PATCH,
            &format!("{NETWORK}/status"),
            StatusCode::OK,
            |_| object(network),
        )
        .await
        .body["status"]
        .clone()
}

/// The pools of telco/fast on a node as the controller renders them, p0 and p1 on these PFs.
fn fast_pools(p0: &str, p1: &str) -> String {
    format!(
        r#"{{"resourceList":[{{"resourceName":"telco_fast_p0","resourcePrefix":"bondnet.io","selectors":{{"drivers":["iavf"],"pfNames":["{p0}"]}}}},{{"resourceName":"telco_fast_p1","resourcePrefix":"bondnet.io","selectors":{{"drivers":["iavf"],"pfNames":["{p1}"]}}}}]}}"#
    )
}

/// [`two_nodes`] whose states already hold the pools [`held_pools`] describes.
fn two_nodes_holding_their_pools() -> Vec<BondNodeState> {
    two_nodes()
        .into_iter()
        .map(|n| written(n, &held_pools()))
        .collect()
}

fn held_pools() -> Value {
    json!({"spec": {"devicePlugin": serde_json::from_str::<Value>(&fast_pools("ens1f0#0-3", "ens2f0#0-3")).expect("JSON")}})
}

#[tokio::test]
async fn a_new_network_first_gets_the_finalizer_then_its_pools_nads_status_and_event() {
    let (client, mut server) = mock::client();
    let net = fast(false);
    let nodes = two_nodes();
    let fixture = Setup::new(std::slice::from_ref(&net), &nodes).build(client);
    let task = spawn(&fixture.planner);
    expect_configmap_reads(&mut server, None, vec![]).await;
    let patch = server
        .expect_with(Method::PATCH, NETWORK, StatusCode::OK, |_| {
            object(&fast(true))
        })
        .await;
    assert_eq!(
        patch.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [keys::FINALIZER]},
        ])
    );
    expect_node_states(&mut server, &["n1", "n2"]).await;
    expect_nads(&mut server).await;
    expect_status(&mut server, &net).await;
    server.expect_echo(Method::POST, EVENTS).await;
    let cycle = finish(task).await.expect("planned");
    assert_eq!(cycle.outcome.written, 7);
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_network_is_planned_into_node_states_nads_status_and_an_event() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let nodes = two_nodes();
    let fixture = Setup::new(std::slice::from_ref(&net), &nodes).build(client);
    let task = spawn(&fixture.planner);

    expect_configmap_reads(&mut server, None, vec![]).await;
    let states = expect_node_states(&mut server, &["n1", "n2"]).await;
    let n1 = pools(&states[0]);
    assert_eq!(n1.resource_list[0].resource_name, "telco_fast_p0");
    assert_eq!(
        n1.resource_list[0].selectors.pf_names[0].to_string(),
        "ens1f0#0-3"
    );
    let nads = expect_nads(&mut server).await;
    assert_eq!(
        nads[0]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"],
        "bondnet.io/telco_fast_p0"
    );
    assert_eq!(nads[2]["metadata"]["ownerReferences"][0]["uid"], "uid-fast");
    let status = expect_status(&mut server, &net).await;
    assert_eq!(status["eligibleNodes"], 2);
    assert_eq!(status["conditions"][0]["reason"], "Planned");
    assert!(status["conditions"][0]["lastTransitionTime"].is_string());
    let event = server.expect_echo(Method::POST, EVENTS).await;
    assert_eq!(event.body["reason"], "Planned");
    assert_eq!(event.body["type"], "Normal");

    finish(task).await.expect("planned");
    server.expect_no_more().await;
    let metrics = fixture.planner.metrics.encode();
    for line in [
        r#"bondnet_writes_total{kind="BondNodeState",verb="apply"} 2"#,
        r#"bondnet_writes_total{kind="NetworkAttachmentDefinition",verb="apply"} 3"#,
        r#"bondnet_writes_total{kind="BondNetworkStatus",verb="apply"} 1"#,
        r#"bondnet_writes_total{kind="Event",verb="create"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn unchanged_objects_cost_no_request_whether_or_not_the_stores_have_caught_up() {
    let (client, mut server) = mock::client();
    let (fast, slow) = (fast(true), slow());
    let nodes = two_nodes();
    let networks = [fast.clone(), slow.clone()];
    let mut fixture = Setup::new(&networks, &nodes).build(client);

    // The first cycle plans both networks and writes each node's state with both.
    let task = spawn(&fixture.planner);
    expect_configmap_reads(&mut server, None, vec![]).await;
    let states = expect_node_states(&mut server, &["n1", "n2"]).await;
    let resources: Vec<String> = pools(&states[0])
        .resource_list
        .into_iter()
        .map(|r| r.resource_name)
        .collect();
    assert!(
        resources.iter().any(|r| r == "telco_fast_p0")
            && resources.iter().any(|r| r == "telco_slow_p0"),
        "{resources:?}"
    );
    let mut nads = expect_nads_of(&mut server, "fast").await;
    nads.extend(expect_nads_of(&mut server, "slow").await);
    let fast_status = expect_status(&mut server, &fast).await;
    server.expect_echo(Method::POST, EVENTS).await;
    let slow_status = server
        .expect_with(
            Method::PATCH,
            "/apis/bondnet.io/v1alpha1/namespaces/telco/bondnetworks/slow/status",
            StatusCode::OK,
            |_| object(&slow),
        )
        .await
        .body["status"]
        .clone();
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("first cycle");

    // Woken again before the stores have caught up with those writes: nothing is repeated,
    // not even the read of the old layout (the node states' specs are known to be written).
    let task = spawn(&fixture.planner);
    expect_configmap_reads(&mut server, None, vec![]).await;
    let cycle = finish(task).await.expect("second cycle");
    assert_eq!(cycle.writes, 0);
    server.expect_no_more().await;

    // The stores catch up: still nothing to write, and the old layout is no longer read.
    for (node, body) in nodes.iter().zip(&states) {
        fixture
            .nodes
            .apply_watcher_event(&watcher::Event::Apply(written(node.clone(), body)));
    }
    for (i, body) in nads.into_iter().enumerate() {
        let mut nad = nad_object(body);
        nad.metadata.resource_version = Some(format!("{}", 30 + i));
        fixture
            .nads
            .apply_watcher_event(&watcher::Event::Apply(nad));
    }
    for (mut network, status) in [(fast, fast_status), (slow, slow_status)] {
        network.status = Some(serde_json::from_value(status).expect("status"));
        network.metadata.resource_version = Some("40".into());
        fixture
            .networks
            .apply_watcher_event(&watcher::Event::Apply(network));
    }
    let cycle = finish(spawn(&fixture.planner)).await.expect("third cycle");
    assert_eq!(cycle.writes, 0);
    server.expect_no_more().await;
    assert_eq!(
        fixture.planner.metrics.plans.get(),
        1,
        "one plan for all three cycles"
    );
}

#[tokio::test]
async fn an_update_deletes_the_nads_of_a_removed_slot() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let nodes = two_nodes_holding_their_pools();
    // The network once had three ports, so fast-p2 exists and must go; an unmanaged NAD
    // stays.
    let mut setup = Setup::new(std::slice::from_ref(&net), &nodes);
    setup.nads = vec![nad_object(nad("fast-p2"))];
    let fixture = setup.build(client);
    let task = spawn(&fixture.planner);
    expect_nads(&mut server).await;
    server
        .expect(
            Method::DELETE,
            &format!("{NADS}/fast-p2"),
            StatusCode::OK,
            nad("fast-p2"),
        )
        .await;
    expect_status(&mut server, &net).await;
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("planned");
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_new_node_gets_its_own_state_written_and_no_other_node_is_touched() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let nodes = vec![
        written(node_with_cards("n1", &[], 2, 8), &held_pools()),
        node_with_cards("n2", &[], 2, 8),
    ];
    let fixture = Setup::new(std::slice::from_ref(&net), &nodes).build(client);
    let task = spawn(&fixture.planner);
    // n2 has no spec yet: the old layout is read for it (there is none).
    expect_configmap_reads(&mut server, None, vec![]).await;
    let states = expect_node_states(&mut server, &["n2"]).await;
    assert_eq!(
        pools(&states[0]).resource_list[0].resource_name,
        "telco_fast_p0"
    );
    expect_nads(&mut server).await;
    expect_status(&mut server, &net).await;
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("planned");
    server.expect_no_more().await;
}

/// The VF ranges of the upgrade tests, ones a fresh plan would not choose (it takes
/// ens1f0#0-3 and ens2f0#0-3): n1's and n2's pools of telco/fast.
fn legacy_pools() -> (String, String) {
    (
        fast_pools("ens1f1#4-7", "ens2f1#2-5"),
        fast_pools("ens1f0#4-7", "ens2f0#4-7"),
    )
}

/// Upgrades two nodes without a device-plugin spec from the old layout (`base`, `shards`,
/// holding [`legacy_pools`]): their node states get those pools unchanged.
async fn upgrade_keeps_every_vf_range(base: Option<Value>, shards: Vec<Value>) {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let (n1, n2) = legacy_pools();
    let nodes = two_nodes();
    let fixture = Setup::new(std::slice::from_ref(&net), &nodes).build(client);
    let task = spawn(&fixture.planner);
    expect_configmap_reads(&mut server, base, shards).await;
    let states = expect_node_states(&mut server, &["n1", "n2"]).await;
    for (state, before) in states.iter().zip([&n1, &n2]) {
        let before: DevicePluginConfig = serde_json::from_str(before).expect("JSON");
        assert_eq!(pools(state), before, "every VF range moves unchanged");
    }
    expect_nads(&mut server).await;
    expect_status(&mut server, &net).await;
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("planned");
    server.expect_no_more().await;
}

#[tokio::test]
async fn upgrading_from_sharded_configmaps_keeps_every_vf_range_in_the_node_states() {
    // The layout before per-node state, with `--device-plugin-shards 2`: each node's key in
    // one shard.
    let (n1, n2) = legacy_pools();
    let shards = vec![
        configmap("bondnet-device-plugin-config-0", json!({"n1": n1})),
        configmap("bondnet-device-plugin-config-1", json!({"n2": n2})),
    ];
    upgrade_keeps_every_vf_range(None, shards).await;
}

#[tokio::test]
async fn upgrading_from_the_single_configmap_keeps_every_vf_range_in_the_node_states() {
    // The layout before per-node state as it was by default: one ConfigMap, every node's
    // key in it, no shards.
    let (n1, n2) = legacy_pools();
    let single = configmap("bondnet-device-plugin-config", json!({"n1": n1, "n2": n2}));
    upgrade_keeps_every_vf_range(Some(single), vec![]).await;
}

#[tokio::test]
async fn deleting_a_network_removes_its_pools_and_nads_then_releases_the_finalizer() {
    let (client, mut server) = mock::client();
    let mut net = fast(true);
    net.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().expect("time")));
    let mut other = network("telco", "other", |_| {});
    other.metadata.finalizers = Some(vec![keys::FINALIZER.to_owned()]);
    let nodes = [written(node_with_cards("n1", &[], 2, 8), &held_pools())];
    let networks = [net.clone(), other];
    let mut setup = Setup::new(&networks, &nodes);
    setup.nads = vec![nad_object(nad("fast")), nad_object(nad("fast-p0"))];
    let mut fixture = setup.build(client);

    // First cycle: the pools and the NADs go; the finalizer stays while the stores show them.
    let task = spawn(&fixture.planner);
    let state = expect_node_states(&mut server, &["n1"]).await;
    let names: Vec<String> = pools(&state[0])
        .resource_list
        .into_iter()
        .map(|r| r.resource_name)
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("telco_fast_")),
        "fast's pools are gone: {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "telco_other_p0"),
        "the other network stays: {names:?}"
    );
    expect_nads_of(&mut server, "other").await;
    server
        .expect(
            Method::DELETE,
            &format!("{NADS}/fast"),
            StatusCode::NOT_FOUND,
            mock::status_error(404, "NotFound", "gone"),
        )
        .await;
    server
        .expect(
            Method::DELETE,
            &format!("{NADS}/fast-p0"),
            StatusCode::OK,
            nad("fast-p0"),
        )
        .await;
    server
        .expect_with(
            Method::PATCH,
            "/apis/bondnet.io/v1alpha1/namespaces/telco/bondnetworks/other/status",
            StatusCode::OK,
            |_| object(&networks[1]),
        )
        .await;
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("first cycle");
    server.expect_no_more().await;

    // The stores show the cleanup: the finalizer is released.
    fixture
        .nodes
        .apply_watcher_event(&watcher::Event::Apply(written(nodes[0].clone(), &state[0])));
    for name in ["fast", "fast-p0"] {
        fixture
            .nads
            .apply_watcher_event(&watcher::Event::Delete(nad_object(nad(name))));
    }
    let task = spawn(&fixture.planner);
    let release = server
        .expect_with(Method::PATCH, NETWORK, StatusCode::OK, |_| {
            object(&fast(false))
        })
        .await;
    assert_eq!(
        release.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": keys::FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    finish(task).await.expect("second cycle");
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_failed_node_state_is_retried_then_holds_back_the_nads_and_status_that_need_it() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let nodes: Vec<BondNodeState> = vec![
        written(node_with_cards("n1", &[], 2, 8), &held_pools()),
        node_with_cards("n2", &[], 2, 8),
    ];
    let mut setup = Setup::new(std::slice::from_ref(&net), &nodes);
    setup.writer.attempts = 2;
    let fixture = setup.build(client);
    let task = spawn(&fixture.planner);
    expect_configmap_reads(&mut server, None, vec![]).await;
    for _ in 0..2 {
        server
            .expect(
                Method::PATCH,
                &format!("{STATES}/n2"),
                StatusCode::INTERNAL_SERVER_ERROR,
                mock::status_error(500, "InternalError", "etcd is sad"),
            )
            .await;
    }
    let cycle = finish(task).await.expect("planned");
    server.expect_no_more().await;
    // fast is hosted on n2 too: its NADs and status wait for the next cycle.
    assert_eq!(cycle.outcome.written, 0);
    assert_eq!(cycle.outcome.held_back, 4);
    let err = &cycle.outcome.failures[0];
    assert!(err.to_string().contains("etcd is sad"), "{err}");
    assert!(err.to_string().contains("BondNodeState n2"), "{err}");
    let metrics = fixture.planner.metrics.encode();
    assert!(
        metrics.contains("bondnet_reconcile_failures_total{category=\"ApplyFailed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bondnet_writes_total{kind="BondNodeState",verb="apply"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_write_that_gets_no_answer_times_out_naming_the_object() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let nodes = two_nodes_holding_their_pools();
    let mut setup = Setup::new(std::slice::from_ref(&net), &nodes);
    setup.writer.timeout = Duration::from_millis(200);
    let fixture = setup.build(client);
    let task = spawn(&fixture.planner);
    let hung = server.next().await;
    assert_eq!(hung.path, format!("{NADS}/fast-p0"));
    server.hold(hung);
    let cycle = finish(task).await.expect("planned");
    let err = &cycle.outcome.failures[0];
    assert_eq!(err.category(), "RequestTimeout");
    assert!(
        err.to_string()
            .contains("NetworkAttachmentDefinition telco/fast-p0"),
        "{err}"
    );
    // The other NADs went; the status waits for the one that did not.
    assert_eq!(cycle.outcome.held_back, 1);
}

#[tokio::test]
async fn an_invalid_spec_writes_only_status_and_keeps_the_nads_it_had() {
    let (client, mut server) = mock::client();
    let mut net = fast(true);
    net.spec.bond.lacp_rate = Some(bondnet_bond::LacpRate::Fast);
    let nodes = two_nodes();
    let mut setup = Setup::new(std::slice::from_ref(&net), &nodes);
    setup.nads = vec![nad_object(nad("fast")), nad_object(nad("fast-p0"))];
    let fixture = setup.build(client);
    let task = spawn(&fixture.planner);
    expect_configmap_reads(&mut server, None, vec![]).await;
    // The node states still get their (empty) pools, so every node is configured.
    let states = expect_node_states(&mut server, &["n1", "n2"]).await;
    assert!(pools(&states[0]).resource_list.is_empty());
    let status = expect_status(&mut server, &net).await;
    assert_eq!(status["conditions"][0]["reason"], "InvalidSpec");
    let event = server.expect_echo(Method::POST, EVENTS).await;
    assert_eq!(event.body["type"], "Warning");
    finish(task).await.expect("planned");
    // No NAD is applied or deleted: the last good ones stay in place.
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_node_state_whose_node_is_gone_is_not_planned_or_written() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let nodes = two_nodes();
    // n2's Node is deleted: only n1 remains in the Node store.
    let mut setup = Setup::new(std::slice::from_ref(&net), &nodes);
    setup.node_meta = Some(node_objects(&nodes[..1]));
    let fixture = setup.build(client);
    let task = spawn(&fixture.planner);
    expect_configmap_reads(&mut server, None, vec![]).await;
    expect_node_states(&mut server, &["n1"]).await;
    expect_nads(&mut server).await;
    let status = expect_status(&mut server, &net).await;
    assert_eq!(status["eligibleNodes"], 1);
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("planned");
    server.expect_no_more().await;
}

#[tokio::test]
async fn the_configmap_export_is_one_configmap_when_it_fits_and_old_shards_are_emptied() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let nodes = two_nodes_holding_their_pools();
    let mut setup = Setup::new(std::slice::from_ref(&net), &nodes);
    setup.export = true;
    let fixture = setup.build(client);
    let task = spawn(&fixture.planner);
    // Two shards from `--device-plugin-shards 2`; everything fits one ConfigMap now.
    let n1 = fast_pools("ens1f0#0-3", "ens2f0#0-3");
    expect_configmap_reads(
        &mut server,
        None,
        vec![
            configmap("bondnet-device-plugin-config-0", json!({"n1": n1})),
            configmap("bondnet-device-plugin-config-1", json!({"n2": n1})),
        ],
    )
    .await;
    let cm = server.expect_echo(Method::PATCH, CONFIGMAP).await;
    let mut keys: Vec<&String> = cm.body["data"].as_object().expect("data").keys().collect();
    keys.sort();
    assert_eq!(keys, ["n1", "n2"]);
    assert_eq!(cm.body["data"]["n1"], n1.as_str());
    for shard in 0..2 {
        let emptied = server
            .expect_echo(Method::PATCH, &format!("{CONFIGMAP}-{shard}"))
            .await;
        assert_eq!(emptied.body["data"], json!({}), "shard {shard}");
    }
    expect_nads(&mut server).await;
    expect_status(&mut server, &net).await;
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("planned");
    server.expect_no_more().await;
}

#[tokio::test]
async fn nothing_is_planned_before_the_node_list_has_arrived() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let (networks, _network_writer) = listed(std::slice::from_ref(&net));
    let (node_meta, _meta_writer) = listed(&node_objects(&two_nodes()));
    let (nads, _nad_writer) = listed::<NetworkAttachmentDefinition>(&[]);
    // The node store's first list is still under way.
    let (nodes, mut writer) = reflector::store::<BondNodeState>();
    writer.apply_watcher_event(&watcher::Event::Init);
    let stores = Stores {
        networks,
        nodes,
        node_meta,
        nads,
    };
    let planner = Arc::new(planner(client, stores, false, test_writer_config()));
    let task = spawn(&planner);
    server.expect_no_more().await;
    assert!(!task.is_finished(), "the cycle waits for the store");
    for node in two_nodes() {
        writer.apply_watcher_event(&watcher::Event::InitApply(node));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    server
        .expect(
            Method::GET,
            CONFIGMAP,
            StatusCode::INTERNAL_SERVER_ERROR,
            mock::status_error(500, "InternalError", "stop here"),
        )
        .await;
    let err = finish(task).await.expect_err("the read failed");
    assert_eq!(err.category(), "GetFailed");
}

// === the planner's loop: debounce and cap ===

/// The planner of a fixture, on its own, for [`Planner::run`].
fn owned(planner: Arc<Planner>) -> Planner {
    Arc::try_unwrap(planner).unwrap_or_else(|_| panic!("the planner is shared"))
}

/// `debounce` of quiet ends a burst, at most `max_delay` after its first change; no resync.
fn timing(debounce: Duration, max_delay: Duration) -> Timing {
    Timing {
        debounce,
        max_delay,
        resync: Duration::from_secs(3600),
        ..Timing::default()
    }
}

/// Answers `incoming` with its own body, as an apply returns the object.
fn echo(incoming: Incoming) {
    let body = incoming.body.clone();
    incoming.respond(StatusCode::OK, &body);
}

#[tokio::test]
async fn a_burst_of_changes_is_planned_once_when_it_settles() {
    const CHANGES: u32 = 20;
    let (client, mut server) = mock::client();
    let net = fast(true);
    let nodes = two_nodes_holding_their_pools();
    let mut setup = Setup::new(std::slice::from_ref(&net), &nodes);
    // Half a second of quiet ends a burst; the cap is out of reach.
    setup.timing = timing(Duration::from_millis(500), Duration::from_secs(3600));
    let Fixture {
        planner,
        networks: mut network_store,
        nodes: _nodes,
        nads: _nads,
        _node_meta,
    } = setup.build(client);
    let planner = owned(planner);
    let metrics = planner.metrics.clone();
    let wake = Arc::new(Notify::new());
    let running = tokio::spawn(planner.run(wake.clone()));

    // The first cycle runs at once.
    expect_nads(&mut server).await;
    let status = expect_status(&mut server, &net).await;
    server.expect_echo(Method::POST, EVENTS).await;

    // A burst: the MTU changes CHANGES times (1401, 1402, ..., below the PFs' 1500), each
    // change in the store and a wake, as a watch delivers them.
    let mut last = fast(true);
    for change in 1..=CHANGES {
        last.spec.mtu = Some(1400 + change);
        last.metadata.generation = Some(1 + i64::from(change));
        last.metadata.resource_version = Some(format!("{}", 100 + change));
        last.status = Some(serde_json::from_value(status.clone()).expect("status"));
        network_store.apply_watcher_event(&watcher::Event::Apply(last.clone()));
        wake.notify_one();
        tokio::task::yield_now().await;
    }

    // One cycle follows, and it plans the last MTU: no write carries one from the middle of
    // the burst.
    let mut nads = Vec::new();
    loop {
        let request = server.next().await;
        if request.path == format!("{NETWORK}/status") {
            assert_eq!(
                request.body["status"]["observedGeneration"],
                json!(1 + CHANGES),
                "{}",
                request.body
            );
            request.respond(StatusCode::OK, &object(&last));
            break;
        }
        assert_eq!(request.method, Method::PATCH, "{}", request.uri);
        if let Some(mtu) = bond_mtu(&request.path, &request.body) {
            assert_eq!(mtu, json!(1400 + CHANGES), "the bond NAD has the last MTU");
        }
        nads.push(request.path.clone());
        echo(request);
    }
    assert!(nads.contains(&format!("{NADS}/fast")), "{nads:?}");
    server.expect_no_more().await;
    running.abort();
    assert_eq!(metrics.reconciles.get(), 2, "one cycle for the burst");
    assert_eq!(metrics.plans.get(), 2, "one plan for the burst");
}

#[tokio::test]
async fn a_continuous_stream_of_changes_is_still_planned_by_the_cap() {
    let (client, mut server) = mock::client();
    // Nothing to plan or write: each cycle costs no request, and counts.
    let mut setup = Setup::new(&[], &[]);
    // The quiet never comes (an hour); only the 50 ms cap can end a wait.
    setup.timing = timing(Duration::from_secs(3600), Duration::from_millis(50));
    let fixture = setup.build(client);
    let planner = owned(fixture.planner);
    let metrics = planner.metrics.clone();
    let wake = Arc::new(Notify::new());
    let running = tokio::spawn(planner.run(wake.clone()));
    // A change every 2 ms, for as long as the test runs.
    let sent = Arc::new(AtomicUsize::new(0));
    let stream = tokio::spawn({
        let sent = sent.clone();
        async move {
            loop {
                wake.notify_one();
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    // The first cycle runs at once; three more come, each ended by the cap.
    tokio::time::timeout(Duration::from_secs(60), async {
        while metrics.reconciles.get() < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the stream of changes held the planner back");
    assert!(!stream.is_finished(), "the changes still come");
    assert!(
        sent.load(Ordering::Relaxed) >= 3,
        "a change came for each cycle"
    );
    stream.abort();
    running.abort();
    server.expect_no_more().await;
}

// === the writer at full concurrency ===

#[tokio::test]
async fn writes_go_concurrently_and_a_failed_one_is_retried_while_the_others_are_in_flight() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let nodes: Vec<BondNodeState> = ["n1", "n2", "n3", "n4"]
        .into_iter()
        .map(|name| node_with_cards(name, &[], 2, 8))
        .collect();
    let mut setup = Setup::new(std::slice::from_ref(&net), &nodes);
    setup.writer = WriterConfig {
        concurrency: 16,
        // The test holds requests unanswered on purpose: none may time out meanwhile.
        timeout: Duration::from_secs(60),
        attempts: 2,
        first_retry: Duration::from_millis(10),
    };
    let fixture = setup.build(client);
    let task = spawn(&fixture.planner);
    expect_configmap_reads(&mut server, None, vec![]).await;

    // The four node states are all in flight at once: none is answered before the server
    // has seen all four.
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        let request = server.next().await;
        assert_eq!(request.method, Method::PATCH, "{}", request.uri);
        in_flight.push(request);
    }
    let mut paths: Vec<&str> = in_flight.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    let states: Vec<String> = ["n1", "n2", "n3", "n4"]
        .iter()
        .map(|n| format!("{STATES}/{n}"))
        .collect();
    assert_eq!(paths, states);

    // n1 fails. Its retry comes while n2, n3 and n4 are still unanswered: it waits for
    // none of them, and they do not wait for it.
    let position = in_flight
        .iter()
        .position(|r| r.path == states[0])
        .expect("n1");
    in_flight.swap_remove(position).respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        &mock::status_error(500, "InternalError", "etcd is sad"),
    );
    let retry = server.next().await;
    assert_eq!(retry.path, states[0], "n1's retry comes next");
    assert_eq!(in_flight.len(), 3, "n2, n3 and n4 are still in flight");
    echo(retry);
    for request in in_flight.drain(..) {
        echo(request);
    }

    // The network's NADs go together too, and may finish in any order.
    for _ in 0..3 {
        in_flight.push(server.next().await);
    }
    let mut paths: Vec<&str> = in_flight.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            format!("{NADS}/fast"),
            format!("{NADS}/fast-p0"),
            format!("{NADS}/fast-p1")
        ]
    );
    while let Some(request) = in_flight.pop() {
        echo(request);
    }
    expect_status(&mut server, &net).await;
    server.expect_echo(Method::POST, EVENTS).await;
    let cycle = finish(task).await.expect("planned");
    server.expect_no_more().await;
    assert!(cycle.outcome.failures.is_empty(), "{:?}", cycle.outcome);
    assert_eq!(cycle.outcome.held_back, 0);
    assert_eq!(cycle.outcome.written, 8, "4 node states, 3 NADs, 1 status");
    let metrics = fixture.planner.metrics.encode();
    assert!(
        metrics.contains(r#"bondnet_writes_total{kind="BondNodeState",verb="apply"} 5"#),
        "{metrics}"
    );
}

// === leadership: the writer stops with the lease ===

const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/bondnet-system/leases/bondnet-controller";

#[tokio::test]
async fn a_leader_that_cannot_renew_sends_no_write_once_its_renew_deadline_has_passed() {
    let (client, mut server) = mock::client();
    // Kept so that the mock server stays up after the leader drops its clients.
    let _client = client.clone();
    let net = fast(true);
    let nodes = two_nodes_holding_their_pools();
    let mut setup = Setup::new(std::slice::from_ref(&net), &nodes);
    // A write in flight waits for its answer well past the renew deadline.
    setup.writer.timeout = Duration::from_secs(60);
    let fixture = setup.build(client.clone());
    let planner = owned(fixture.planner);
    let lease = LeaseConfig {
        duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(2),
        renew_every: Duration::from_millis(200),
        request_timeout: Duration::from_secs(1),
        ..LeaseConfig::with_defaults(
            "bondnet-system".into(),
            "bondnet-controller".into(),
            "leader".into(),
        )
    };
    let held = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "bondnet-controller", "namespace": "bondnet-system", "resourceVersion": "7"},
        "spec": {"holderIdentity": "leader", "leaseDurationSeconds": 4,
                 "renewTime": "2026-01-01T00:00:00.000000Z"},
    });
    let wake = Arc::new(Notify::new());
    // Run as `run` does: the watches (none here), the planner and the lease, in one select.
    let leading = super::Leading {
        watches: future::pending(),
        planner,
        wake: wake.clone(),
    };
    let acquired = tokio::time::Instant::now();
    let mut leader = tokio::spawn(async move {
        super::lead(&client, &lease, acquired, leading, future::pending()).await
    });

    // The leader writes and renews its lease once; then the API server stops answering it:
    // the lease reads after that renewal, and the writes after the first two, hang.
    let (mut renewals, mut answered) = (0, 0);
    let (mut in_flight, mut hanging) = (Vec::new(), Vec::new());
    let outcome = loop {
        tokio::select! {
            biased;
            outcome = &mut leader => break outcome.expect("leader task"),
            request = server.next() => {
                if request.path != LEASE {
                    if answered < 2 {
                        answered += 1;
                        echo(request);
                    } else {
                        in_flight.push(request);
                    }
                } else if renewals > 0 {
                    hanging.push(request);
                } else if request.method == Method::GET {
                    request.respond(StatusCode::OK, &held);
                } else {
                    assert_eq!(request.method, Method::PUT, "{}", request.uri);
                    renewals += 1;
                    echo(request);
                }
            }
        }
    };
    assert!(
        matches!(outcome, Err(crate::Error::LostLease { .. })),
        "{outcome:?}"
    );
    assert_eq!(renewals, 1, "the leader renewed once");
    assert_eq!(answered, 2);
    assert_eq!(
        in_flight.len(),
        1,
        "the writer had its third write in flight when it stopped"
    );

    // The API server answers again and more changes come: no write reaches it any more,
    // only lease reads sent before the leader stopped.
    for request in in_flight {
        echo(request);
    }
    for _ in 0..3 {
        wake.notify_one();
    }
    while let Some(request) = server.next_within(Duration::from_millis(300)).await {
        assert_eq!(
            request.path, LEASE,
            "{} {} reached the API server after the leader stopped",
            request.method, request.uri
        );
        hanging.push(request);
    }
}

// === the watches ===

#[tokio::test]
async fn objects_enter_the_stores_without_their_managed_fields() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    let mut state = node_with_cards("n1", &[], 2, 8);
    state.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some("bondnet-agent".into()),
        operation: Some("Apply".into()),
        ..ManagedFieldsEntry::default()
    }]);
    let mut changed = state.clone();
    changed.metadata.resource_version = Some("2".into());
    let events = futures::stream::iter([
        Ok(watcher::Event::Init),
        Ok(watcher::Event::InitApply(state)),
        Ok(watcher::Event::InitDone),
        Ok(watcher::Event::Apply(changed)),
    ]);
    let (store, writer) = reflector::store::<BondNodeState>();
    let wake = Arc::new(Notify::new());
    super::watch(
        events,
        writer,
        super::triggers::ChangeFilter::new(super::triggers::node_state_property),
        wake,
    )
    .await;
    let held = store.state();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].metadata.resource_version.as_deref(), Some("2"));
    assert_eq!(held[0].metadata.managed_fields, None);
}

// === the whole pipeline: watches, stores, planner, writer ===

fn list_of(kind: &str, items: Vec<Value>, version: &str) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": version}, "items": items})
}

/// The watch event of a resource version the API server no longer has.
fn too_old() -> Value {
    json!({"type": "ERROR", "object": mock::status_error(410, "Expired", "too old resource version: 1 (9)")})
}

/// The bond NAD's `mtu` in an apply body, if it is the bond NAD.
fn bond_mtu(path: &str, body: &Value) -> Option<Value> {
    if path != format!("{NADS}/fast") {
        return None;
    }
    let config: Value = serde_json::from_str(body["spec"]["config"].as_str()?).ok()?;
    Some(config["mtu"].clone())
}

#[tokio::test]
async fn after_a_too_old_resource_version_the_store_lists_again_and_the_planner_acts_on_the_change()
{
    let (client, mut server) = mock::client();
    let wake = Arc::new(Notify::new());
    let (stores, watches) = super::stores(&client, &wake);
    let planner = planner(client, stores, false, test_writer_config());
    let running = tokio::spawn(async move {
        tokio::join!(watches, planner.run(wake));
    });

    let before = fast(true);
    let mut after = fast(true);
    after.spec.mtu = Some(1500);
    after.metadata.generation = Some(2);
    after.metadata.resource_version = Some("7".into());
    let nodes: Vec<Value> = two_nodes()
        .iter()
        .map(|n| serde_json::to_value(n).expect("JSON"))
        .collect();
    let node_meta: Vec<Value> = node_objects(&two_nodes())
        .iter()
        .map(|n| {
            let mut v = serde_json::to_value(n).expect("JSON");
            v["apiVersion"] = json!("meta.k8s.io/v1");
            v["kind"] = json!("PartialObjectMetadata");
            v
        })
        .collect();

    // Serve every request in the order it comes. The BondNetwork watch is held until the
    // first plan's bond NAD is written, then told its resource version is too old; the list
    // that follows shows the network changed meanwhile.
    let mut network_lists = 0;
    let mut network_watch = None;
    let mut expired = false;
    let mut first_mtu = None;
    let mut relisted_mtu = None;
    for _ in 0..200 {
        let request = server.next().await;
        let path = request.path.clone();
        if path == "/apis/bondnet.io/v1alpha1/bondnetworks" {
            if request.is_watch() {
                if expired {
                    server.hold(request);
                } else if first_mtu.is_some() {
                    request.respond_events(&[too_old()]);
                    expired = true;
                } else {
                    network_watch = Some(request);
                }
            } else {
                network_lists += 1;
                let network = if network_lists == 1 { &before } else { &after };
                request.respond(
                    StatusCode::OK,
                    &list_of("BondNetworkList", vec![object(network)], "1"),
                );
            }
        } else if request.is_watch() {
            server.hold(request);
        } else if request.method == Method::GET && path == STATES {
            request.respond(
                StatusCode::OK,
                &list_of("BondNodeStateList", nodes.clone(), "1"),
            );
        } else if request.method == Method::GET && path == "/api/v1/nodes" {
            request.respond(
                StatusCode::OK,
                &list_of("PartialObjectMetadataList", node_meta.clone(), "1"),
            );
        } else if request.method == Method::GET
            && path == "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions"
        {
            request.respond(
                StatusCode::OK,
                &list_of("NetworkAttachmentDefinitionList", vec![], "1"),
            );
        } else if request.method == Method::GET {
            request.respond(
                StatusCode::NOT_FOUND,
                &mock::status_error(404, "NotFound", "none"),
            );
        } else {
            let mtu = bond_mtu(&path, &request.body);
            let body = if path.ends_with("/status") {
                object(if network_lists > 1 { &after } else { &before })
            } else {
                request.body.clone()
            };
            request.respond(StatusCode::OK, &body);
            match (mtu, first_mtu.is_some()) {
                (Some(mtu), false) => {
                    first_mtu = Some(mtu);
                    if let Some(watch) = network_watch.take() {
                        watch.respond_events(&[too_old()]);
                        expired = true;
                    }
                }
                (Some(mtu), true) => {
                    relisted_mtu = Some(mtu);
                    break;
                }
                (None, _) => {}
            }
        }
    }
    running.abort();
    assert!(
        expired,
        "the BondNetwork watch was told its resource version is too old"
    );
    assert_ne!(first_mtu, Some(json!(1500)), "the first plan saw mtu unset");
    assert_eq!(network_lists, 2, "the BondNetworks were listed again");
    assert_eq!(
        relisted_mtu,
        Some(json!(1500)),
        "the change seen by the second list reached the bond NAD"
    );
}
