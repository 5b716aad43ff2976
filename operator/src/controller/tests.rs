//! Reconcile scenarios against the mock API server: each test states, in order, every request
//! the controller must make and checks the bodies that matter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};

use super::memo::Memo;
use super::reconcile::{error_policy, reconcile, Context};
use crate::api::bond_network::BondNetwork;
use crate::api::bond_node_state::BondNodeState;
use crate::api::device_plugin::DevicePluginConfig;
use crate::api::keys;
use crate::fixtures::{network, node_with_cards};
use crate::mock::{self, MockApi};
use crate::plan::Settings;
use crate::telemetry::Metrics;

const NETWORK: &str = "/apis/bondnet.io/v1alpha1/namespaces/telco/bondnetworks/fast";
const CONFIGMAP: &str = "/api/v1/namespaces/bondnet-system/configmaps/bondnet-device-plugin-config";
const NADS: &str = "/apis/k8s.cni.cncf.io/v1/namespaces/telco/network-attachment-definitions";
const STATES: &str = "/apis/bondnet.io/v1alpha1/bondnodestates";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/telco/events";

fn store<K>(objects: &[K]) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    // A full initial list, as the watcher delivers it: the store is then ready.
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
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

fn context(client: Client, networks: &[BondNetwork], nodes: &[BondNodeState]) -> Arc<Context> {
    context_with(client, networks, nodes, false)
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

fn context_with(
    client: Client,
    networks: &[BondNetwork],
    nodes: &[BondNodeState],
    export_configmap: bool,
) -> Arc<Context> {
    Arc::new(Context {
        client: client.clone(),
        settings: Settings::default(),
        export_configmap,
        networks: store(networks),
        nodes: store(nodes),
        node_meta: store(&node_objects(nodes)),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "bondnet".into(),
                instance: Some("test".into()),
            },
        ),
        metrics: Arc::new(Metrics::default()),
        failures: Mutex::new(HashMap::new()),
        memo: Memo::default(),
        written: Mutex::new(HashMap::new()),
    })
}

fn two_nodes() -> Vec<BondNodeState> {
    vec![
        node_with_cards("n1", &[], 2, 8),
        node_with_cards("n2", &[], 2, 8),
    ]
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn nad(name: &str) -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "telco"},
        "spec": {"config": "{}"}
    })
}

fn object(network: &BondNetwork) -> Value {
    serde_json::to_value(network).expect("network JSON")
}

/// Waits for a reconcile, failing the test instead of hanging when it waits for a request
/// the test did not answer.
async fn finish(task: tokio::task::JoinHandle<crate::Result<Action>>) -> crate::Result<Action> {
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("the reconcile finished (a hang means it sent a request the test did not expect)")
        .expect("task")
}

/// Runs one reconcile in the background.
fn spawn(
    network: BondNetwork,
    ctx: Arc<Context>,
) -> tokio::task::JoinHandle<crate::Result<Action>> {
    tokio::spawn(async move { reconcile(Arc::new(network), ctx).await })
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
    state
}

fn configmap(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "bondnet-system"},
        "data": data,
    })
}

/// The NAD writes of a fresh plan of telco/fast: three applies, then the orphan listing.
async fn expect_nads(server: &mut MockApi, existing: Vec<Value>) -> Vec<Value> {
    let mut bodies = Vec::new();
    for name in ["fast-p0", "fast-p1", "fast"] {
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
    let listing = server
        .expect(
            Method::GET,
            NADS,
            StatusCode::OK,
            list("NetworkAttachmentDefinitionList", existing),
        )
        .await;
    assert!(
        listing.uri.contains(
            "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dbondnet%2Cbondnet.io%2Fnetwork%3Dfast"
        ),
        "{}",
        listing.uri
    );
    bodies
}

#[tokio::test]
async fn a_new_network_first_gets_the_finalizer() {
    let (client, mut server) = mock::client();
    let net = fast(false);
    let ctx = context(client, std::slice::from_ref(&net), &two_nodes());
    let task = spawn(net.clone(), ctx);
    let patch = server
        .expect_with(Method::PATCH, NETWORK, StatusCode::OK, |_| {
            object(&fast(true))
        })
        .await;
    assert!(
        patch.body.to_string().contains(keys::FINALIZER),
        "{}",
        patch.body
    );
    assert_eq!(
        finish(task).await.expect("reconciled"),
        Action::await_change()
    );
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_network_is_planned_into_node_states_nads_status_and_an_event() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let ctx = context(client, std::slice::from_ref(&net), &two_nodes());
    let task = spawn(net.clone(), ctx.clone());

    expect_configmap_reads(&mut server, None, vec![]).await;
    let states = expect_node_states(&mut server, &["n1", "n2"]).await;
    let n1 = pools(&states[0]);
    assert_eq!(n1.resource_list[0].resource_name, "telco_fast_p0");
    assert_eq!(
        n1.resource_list[0].selectors.pf_names[0].to_string(),
        "ens1f0#0-3"
    );
    let nads = expect_nads(&mut server, vec![]).await;
    assert_eq!(
        nads[0]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"],
        "bondnet.io/telco_fast_p0"
    );
    assert_eq!(nads[2]["metadata"]["ownerReferences"][0]["uid"], "uid-fast");
    let status = server
        .expect_with(
            Method::PATCH,
            &format!("{NETWORK}/status"),
            StatusCode::OK,
            |_| object(&net),
        )
        .await;
    assert_eq!(status.body["status"]["eligibleNodes"], 2);
    assert_eq!(status.body["status"]["conditions"][0]["reason"], "Planned");
    assert!(status.body["status"]["conditions"][0]["lastTransitionTime"].is_string());
    let event = server.expect_echo(Method::POST, EVENTS).await;
    assert_eq!(event.body["reason"], "Planned");
    assert_eq!(event.body["type"], "Normal");

    assert!(
        matches!(finish(task).await, Ok(action) if action == Action::requeue(super::reconcile::RESYNC))
    );
    server.expect_no_more().await;
}

#[tokio::test]
async fn an_update_deletes_the_nads_of_a_removed_slot_and_skips_unchanged_writes() {
    let (client, mut server) = mock::client();
    let nodes = two_nodes();
    // First pass: learn what the controller writes, to serve it back as the current state.
    let mut net = fast(true);
    let ctx = context(client.clone(), std::slice::from_ref(&net), &nodes);
    let task = spawn(net.clone(), ctx);
    expect_configmap_reads(&mut server, None, vec![]).await;
    let states = expect_node_states(&mut server, &["n1", "n2"]).await;
    expect_nads(&mut server, vec![]).await;
    let status = server
        .expect_with(
            Method::PATCH,
            &format!("{NETWORK}/status"),
            StatusCode::OK,
            |_| object(&net),
        )
        .await
        .body["status"]
        .clone();
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("first pass");

    // Second pass: the network once had three ports, so fast-p2 exists and must go.
    net.status = Some(serde_json::from_value(status).expect("status"));
    let nodes: Vec<BondNodeState> = nodes
        .into_iter()
        .zip(&states)
        .map(|(n, body)| written(n, body))
        .collect();
    let ctx = context(client, std::slice::from_ref(&net), &nodes);
    let task = spawn(net.clone(), ctx);
    expect_nads(
        &mut server,
        vec![nad("fast-p0"), nad("fast-p1"), nad("fast-p2"), nad("fast")],
    )
    .await;
    server
        .expect(
            Method::DELETE,
            &format!("{NADS}/fast-p2"),
            StatusCode::OK,
            nad("fast-p2"),
        )
        .await;
    finish(task).await.expect("second pass");
    // The node states and status are unchanged: no read of the old layout, no write, no event.
    server.expect_no_more().await;
}

/// The pools of telco/fast on a node as the controller renders them, p0 and p1 on these PFs.
fn fast_pools(p0: &str, p1: &str) -> String {
    format!(
        r#"{{"resourceList":[{{"resourceName":"telco_fast_p0","resourcePrefix":"bondnet.io","selectors":{{"drivers":["iavf"],"pfNames":["{p0}"]}}}},{{"resourceName":"telco_fast_p1","resourcePrefix":"bondnet.io","selectors":{{"drivers":["iavf"],"pfNames":["{p1}"]}}}}]}}"#
    )
}

#[tokio::test]
async fn a_new_node_gets_its_own_state_written_and_no_other_node_is_touched() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let planned_n1 = json!({"spec": {"devicePlugin": serde_json::from_str::<Value>(&fast_pools("ens1f0#0-3", "ens2f0#0-3")).expect("JSON")}});
    let nodes = vec![
        written(node_with_cards("n1", &[], 2, 8), &planned_n1),
        node_with_cards("n2", &[], 2, 8),
    ];
    let ctx = context(client, std::slice::from_ref(&net), &nodes);
    let task = spawn(net.clone(), ctx);
    // n2 has no spec yet: the old layout is read for it (there is none).
    expect_configmap_reads(&mut server, None, vec![]).await;
    let states = expect_node_states(&mut server, &["n2"]).await;
    assert_eq!(
        pools(&states[0]).resource_list[0].resource_name,
        "telco_fast_p0"
    );
    expect_nads(&mut server, vec![]).await;
    server
        .expect_with(
            Method::PATCH,
            &format!("{NETWORK}/status"),
            StatusCode::OK,
            |_| object(&net),
        )
        .await;
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("reconciled");
    server.expect_no_more().await;
}

#[tokio::test]
async fn upgrading_from_sharded_configmaps_keeps_every_vf_range_in_the_node_states() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    // The layout before per-node state, with `--device-plugin-shards 2`: each node's key in
    // one shard, on VF ranges a fresh plan would not choose (ens1f0#0-3, ens2f0#0-3).
    let n1 = fast_pools("ens1f1#4-7", "ens2f1#2-5");
    let n2 = fast_pools("ens1f0#4-7", "ens2f0#4-7");
    let shards = vec![
        configmap("bondnet-device-plugin-config-0", json!({"n1": n1})),
        configmap("bondnet-device-plugin-config-1", json!({"n2": n2})),
    ];
    let ctx = context(client, std::slice::from_ref(&net), &two_nodes());
    let task = spawn(net.clone(), ctx);
    expect_configmap_reads(&mut server, None, shards).await;
    let states = expect_node_states(&mut server, &["n1", "n2"]).await;
    for (state, before) in states.iter().zip([&n1, &n2]) {
        let before: DevicePluginConfig = serde_json::from_str(before).expect("JSON");
        assert_eq!(pools(state), before, "every VF range moves unchanged");
    }
    expect_nads(&mut server, vec![]).await;
    server
        .expect_with(
            Method::PATCH,
            &format!("{NETWORK}/status"),
            StatusCode::OK,
            |_| object(&net),
        )
        .await;
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("reconciled");
    server.expect_no_more().await;
}

#[tokio::test]
async fn deleting_a_network_removes_its_device_plugin_pools_and_nads_then_the_finalizer() {
    let (client, mut server) = mock::client();
    let mut net = fast(true);
    net.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().expect("time")));
    let other = network("telco", "other", |_| {});
    let held = json!({"spec": {"devicePlugin": serde_json::from_str::<Value>(&fast_pools("ens1f0#0-3", "ens2f0#0-3")).expect("JSON")}});
    let ctx = context(
        client,
        &[net.clone(), other],
        &[written(node_with_cards("n1", &[], 2, 8), &held)],
    );
    let task = spawn(net.clone(), ctx);
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
    server
        .expect(
            Method::GET,
            NADS,
            StatusCode::OK,
            list(
                "NetworkAttachmentDefinitionList",
                vec![nad("fast-p0"), nad("fast")],
            ),
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
        .expect(
            Method::DELETE,
            &format!("{NADS}/fast"),
            StatusCode::NOT_FOUND,
            mock::status_error(404, "NotFound", "gone"),
        )
        .await;
    let release = server
        .expect_with(Method::PATCH, NETWORK, StatusCode::OK, |_| {
            object(&fast(false))
        })
        .await;
    assert!(
        release.body.to_string().contains("remove"),
        "the finalizer is removed: {}",
        release.body
    );
    assert_eq!(
        finish(task).await.expect("cleaned up"),
        Action::await_change()
    );
    server.expect_no_more().await;
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_with_a_category_and_backs_off() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let ctx = context(client, std::slice::from_ref(&net), &two_nodes());
    let task = spawn(net.clone(), ctx.clone());
    server
        .expect(
            Method::GET,
            CONFIGMAP,
            StatusCode::INTERNAL_SERVER_ERROR,
            mock::status_error(500, "InternalError", "etcd is sad"),
        )
        .await;
    let err = finish(task).await.expect_err("API error");
    assert!(err.to_string().contains("etcd is sad"), "{err}");
    let first = error_policy(Arc::new(net.clone()), &err, ctx.clone());
    let second = error_policy(Arc::new(net), &err, ctx.clone());
    assert_eq!(first, Action::requeue(std::time::Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(std::time::Duration::from_secs(10)));
    assert!(
        ctx.metrics
            .encode()
            .contains("bondnet_reconcile_failures_total{category=\"GetFailed\"} 2"),
        "{}",
        ctx.metrics.encode()
    );
    server.expect_no_more().await;
}

#[tokio::test]
async fn an_invalid_spec_writes_only_status_and_waits_for_a_change() {
    let (client, mut server) = mock::client();
    let mut net = fast(true);
    net.spec.bond.lacp_rate = Some(bondnet_bond::LacpRate::Fast);
    let ctx = context(client, std::slice::from_ref(&net), &two_nodes());
    let task = spawn(net.clone(), ctx);
    expect_configmap_reads(&mut server, None, vec![]).await;
    // The node states still get their (empty) pools, so every node is configured.
    let states = expect_node_states(&mut server, &["n1", "n2"]).await;
    assert!(pools(&states[0]).resource_list.is_empty());
    let status = server
        .expect_with(
            Method::PATCH,
            &format!("{NETWORK}/status"),
            StatusCode::OK,
            |_| object(&net),
        )
        .await;
    assert_eq!(
        status.body["status"]["conditions"][0]["reason"],
        "InvalidSpec"
    );
    let event = server.expect_echo(Method::POST, EVENTS).await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(
        finish(task).await.expect("reconciled"),
        Action::await_change()
    );
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_node_state_whose_node_is_gone_is_not_planned_or_written() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let nodes = two_nodes();
    let ctx = context(client, std::slice::from_ref(&net), &nodes);
    // n2's Node is deleted: only n1 remains in the Node store.
    let ctx = Arc::new(Context {
        node_meta: store(&node_objects(&nodes[..1])),
        client: ctx.client.clone(),
        settings: ctx.settings.clone(),
        export_configmap: false,
        networks: ctx.networks.clone(),
        nodes: ctx.nodes.clone(),
        recorder: Recorder::new(
            ctx.client.clone(),
            Reporter {
                controller: "bondnet".into(),
                instance: None,
            },
        ),
        metrics: ctx.metrics.clone(),
        failures: Mutex::new(HashMap::new()),
        memo: Memo::default(),
        written: Mutex::new(HashMap::new()),
    });
    let task = spawn(net.clone(), ctx);
    expect_configmap_reads(&mut server, None, vec![]).await;
    expect_node_states(&mut server, &["n1"]).await;
    expect_nads(&mut server, vec![]).await;
    let status = server
        .expect_with(
            Method::PATCH,
            &format!("{NETWORK}/status"),
            StatusCode::OK,
            |_| object(&net),
        )
        .await;
    assert_eq!(status.body["status"]["eligibleNodes"], 1);
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("reconciled");
    server.expect_no_more().await;
}

#[tokio::test]
async fn the_configmap_export_is_one_configmap_when_it_fits_and_old_shards_are_emptied() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let held = json!({"spec": {"devicePlugin": serde_json::from_str::<Value>(&fast_pools("ens1f0#0-3", "ens2f0#0-3")).expect("JSON")}});
    let nodes: Vec<BondNodeState> = two_nodes().into_iter().map(|n| written(n, &held)).collect();
    let ctx = context_with(client, std::slice::from_ref(&net), &nodes, true);
    let task = spawn(net.clone(), ctx);
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
    expect_nads(&mut server, vec![]).await;
    server
        .expect_with(
            Method::PATCH,
            &format!("{NETWORK}/status"),
            StatusCode::OK,
            |_| object(&net),
        )
        .await;
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("reconciled");
    server.expect_no_more().await;
}

#[tokio::test]
async fn nothing_is_planned_before_the_node_list_has_arrived() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let ctx = context(client, std::slice::from_ref(&net), &two_nodes());
    // Replace the node store with one whose first list is still under way.
    let (pending, mut writer) = reflector::store::<BondNodeState>();
    writer.apply_watcher_event(&watcher::Event::Init);
    let ctx = Arc::new(Context {
        nodes: pending,
        client: ctx.client.clone(),
        settings: ctx.settings.clone(),
        export_configmap: false,
        networks: ctx.networks.clone(),
        node_meta: ctx.node_meta.clone(),
        recorder: Recorder::new(
            ctx.client.clone(),
            Reporter {
                controller: "bondnet".into(),
                instance: None,
            },
        ),
        metrics: ctx.metrics.clone(),
        failures: Mutex::new(HashMap::new()),
        memo: Memo::default(),
        written: Mutex::new(HashMap::new()),
    });
    let task = spawn(net, ctx);
    server.expect_no_more().await;
    assert!(!task.is_finished(), "the reconcile waits for the store");
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
    assert!(finish(task).await.is_err());
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

#[tokio::test]
async fn two_networks_reconciled_after_one_change_share_one_plan_and_one_write_per_node() {
    let (client, mut server) = mock::client();
    let (fast, slow) = (fast(true), slow());
    let ctx = context(client, &[fast.clone(), slow.clone()], &two_nodes());

    // The first reconcile plans both networks and writes each node's state with both.
    let task = spawn(fast.clone(), ctx.clone());
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
    expect_nads(&mut server, vec![]).await;
    server
        .expect_with(
            Method::PATCH,
            &format!("{NETWORK}/status"),
            StatusCode::OK,
            |_| object(&fast),
        )
        .await;
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("fast reconciled");
    assert_eq!(ctx.metrics.plans.get(), 1);

    // The second runs before the store has caught up with those writes: it reuses the plan
    // and writes only its own objects, no node state a second time.
    let task = spawn(slow.clone(), ctx.clone());
    expect_configmap_reads(&mut server, None, vec![]).await;
    for name in ["slow-p0", "slow-p1", "slow"] {
        server
            .expect_echo(Method::PATCH, &format!("{NADS}/{name}"))
            .await;
    }
    server
        .expect(
            Method::GET,
            NADS,
            StatusCode::OK,
            list("NetworkAttachmentDefinitionList", vec![]),
        )
        .await;
    let status = server
        .expect_with(
            Method::PATCH,
            "/apis/bondnet.io/v1alpha1/namespaces/telco/bondnetworks/slow/status",
            StatusCode::OK,
            |_| object(&slow),
        )
        .await;
    assert_eq!(status.body["status"]["eligibleNodes"], 2);
    server.expect_echo(Method::POST, EVENTS).await;
    finish(task).await.expect("slow reconciled");
    server.expect_no_more().await;
    assert_eq!(ctx.metrics.plans.get(), 1, "one plan for both reconciles");
}
