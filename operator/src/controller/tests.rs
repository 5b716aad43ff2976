//! Reconcile scenarios against the mock API server: each test states, in order, every request
//! the controller must make and checks the bodies that matter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
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
use crate::api::keys;
use crate::fixtures::{network, node_with_cards};
use crate::mock::{self, MockApi};
use crate::plan::Settings;
use crate::telemetry::Metrics;

const NETWORK: &str = "/apis/bondnet.io/v1alpha1/namespaces/telco/bondnetworks/fast";
const CONFIGMAP: &str = "/api/v1/namespaces/bondnet-system/configmaps/bondnet-device-plugin-config";
const NADS: &str = "/apis/k8s.cni.cncf.io/v1/namespaces/telco/network-attachment-definitions";
const PODS: &str = "/api/v1/namespaces/bondnet-system/pods";
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
    context_with(client, networks, nodes, Settings::default())
}

fn context_with(
    client: Client,
    networks: &[BondNetwork],
    nodes: &[BondNodeState],
    settings: Settings,
) -> Arc<Context> {
    Arc::new(Context {
        client: client.clone(),
        settings,
        device_plugin_selector: Some("app=sriov-device-plugin".into()),
        networks: store(networks),
        nodes: store(nodes),
        node_meta: store(&[]),
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
async fn a_network_is_planned_into_configmap_nads_status_and_an_event() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let ctx = context(client, std::slice::from_ref(&net), &two_nodes());
    let task = spawn(net.clone(), ctx.clone());

    server
        .expect(
            Method::GET,
            CONFIGMAP,
            StatusCode::NOT_FOUND,
            mock::status_error(404, "NotFound", "none"),
        )
        .await;
    let cm = server.expect_echo(Method::PATCH, CONFIGMAP).await;
    let n1: Value =
        serde_json::from_str(cm.body["data"]["n1"].as_str().expect("n1 key")).expect("n1 JSON");
    assert_eq!(n1["resourceList"][0]["resourceName"], "telco_fast_p0");
    assert_eq!(
        n1["resourceList"][0]["selectors"]["pfNames"][0],
        "ens1f0#0-3"
    );
    for node in ["n1", "n2"] {
        let restart = server
            .expect(
                Method::DELETE,
                PODS,
                StatusCode::OK,
                list("PodList", vec![]),
            )
            .await;
        assert!(
            restart
                .uri
                .contains(&format!("fieldSelector=spec.nodeName%3D{node}")),
            "{}",
            restart.uri
        );
        assert!(
            restart
                .uri
                .contains("labelSelector=app%3Dsriov-device-plugin"),
            "{}",
            restart.uri
        );
    }
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
    server
        .expect(
            Method::GET,
            CONFIGMAP,
            StatusCode::NOT_FOUND,
            mock::status_error(404, "NotFound", "none"),
        )
        .await;
    let cm = server.expect_echo(Method::PATCH, CONFIGMAP).await.body;
    for _ in 0..2 {
        server
            .expect(
                Method::DELETE,
                PODS,
                StatusCode::OK,
                list("PodList", vec![]),
            )
            .await;
    }
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
    let ctx = context(client, std::slice::from_ref(&net), &nodes);
    let task = spawn(net.clone(), ctx);
    server
        .expect(Method::GET, CONFIGMAP, StatusCode::OK, cm)
        .await;
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
    // The ConfigMap and status are unchanged: no write, no restart, no event.
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_new_node_changes_only_its_own_key_and_restarts_only_its_device_plugin() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let one_node = vec![node_with_cards("n1", &[], 2, 8)];
    let current = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bondnet-device-plugin-config", "namespace": "bondnet-system"},
        "data": {"n1": r#"{"resourceList":[{"resourceName":"telco_fast_p0","resourcePrefix":"bondnet.io","selectors":{"drivers":["iavf"],"pfNames":["ens1f0#0-3"]}},{"resourceName":"telco_fast_p1","resourcePrefix":"bondnet.io","selectors":{"drivers":["iavf"],"pfNames":["ens2f0#0-3"]}}]}"#}
    });
    let mut nodes = one_node;
    nodes.push(node_with_cards("n2", &[], 2, 8));
    let ctx = context(client, std::slice::from_ref(&net), &nodes);
    let task = spawn(net.clone(), ctx);
    server
        .expect(Method::GET, CONFIGMAP, StatusCode::OK, current.clone())
        .await;
    let cm = server.expect_echo(Method::PATCH, CONFIGMAP).await;
    assert_eq!(
        cm.body["data"]["n1"], current["data"]["n1"],
        "n1 keeps its VFs"
    );
    assert!(cm.body["data"]["n2"]
        .as_str()
        .expect("n2")
        .contains("telco_fast_p0"));
    let restart = server
        .expect(
            Method::DELETE,
            PODS,
            StatusCode::OK,
            list("PodList", vec![]),
        )
        .await;
    assert!(
        restart.uri.contains("spec.nodeName%3Dn2"),
        "{}",
        restart.uri
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
async fn deleting_a_network_removes_its_device_plugin_entries_and_nads_then_the_finalizer() {
    let (client, mut server) = mock::client();
    let mut net = fast(true);
    net.metadata.deletion_timestamp = Some(Time("2026-01-01T00:00:00Z".parse().expect("time")));
    let other = network("telco", "other", |_| {});
    let ctx = context(
        client,
        &[net.clone(), other],
        &[node_with_cards("n1", &[], 2, 8)],
    );
    let current = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bondnet-device-plugin-config", "namespace": "bondnet-system"},
        "data": {"n1": r#"{"resourceList":[{"resourceName":"telco_fast_p0","selectors":{"pfNames":["ens1f0#0-3"]}},{"resourceName":"telco_fast_p1","selectors":{"pfNames":["ens2f0#0-3"]}}]}"#}
    });
    let task = spawn(net.clone(), ctx);
    server
        .expect(Method::GET, CONFIGMAP, StatusCode::OK, current)
        .await;
    let cm = server.expect_echo(Method::PATCH, CONFIGMAP).await;
    let n1 = cm.body["data"]["n1"].as_str().expect("n1");
    assert!(!n1.contains("telco_fast_"), "fast's entries are gone: {n1}");
    assert!(
        n1.contains("telco_other_p0"),
        "the other network stays: {n1}"
    );
    server
        .expect(
            Method::DELETE,
            PODS,
            StatusCode::OK,
            list("PodList", vec![]),
        )
        .await;
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
    net.spec.lacp_rate = Some(crate::api::bond_network::LacpRate::Fast);
    let ctx = context(client, std::slice::from_ref(&net), &two_nodes());
    let task = spawn(net.clone(), ctx);
    server
        .expect(
            Method::GET,
            CONFIGMAP,
            StatusCode::NOT_FOUND,
            mock::status_error(404, "NotFound", "none"),
        )
        .await;
    // The ConfigMap is still written (with empty per-node lists), so nodes are configured.
    server.expect_echo(Method::PATCH, CONFIGMAP).await;
    for _ in 0..2 {
        server
            .expect(
                Method::DELETE,
                PODS,
                StatusCode::OK,
                list("PodList", vec![]),
            )
            .await;
    }
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
async fn a_configmap_over_the_size_limit_is_refused_before_any_write_naming_the_shard_count() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    // About 280 bytes of config per node: 4,000 nodes pass 1 MB.
    let nodes: Vec<BondNodeState> = (0..4000)
        .map(|i| node_with_cards(&format!("worker-node-with-a-long-name-{i:04}"), &[], 2, 8))
        .collect();
    let ctx = context(client, std::slice::from_ref(&net), &nodes);
    let task = spawn(net.clone(), ctx);
    server
        .expect(
            Method::GET,
            CONFIGMAP,
            StatusCode::NOT_FOUND,
            mock::status_error(404, "NotFound", "none"),
        )
        .await;
    let err = finish(task).await.expect_err("too large");
    assert_eq!(err.category(), "ConfigMapTooLarge");
    assert!(
        err.to_string()
            .contains("set --device-plugin-shards to 2 or more"),
        "{err}"
    );
    server.expect_no_more().await;
}

#[tokio::test]
async fn sharded_configmaps_are_read_and_written_shard_by_shard() {
    let (client, mut server) = mock::client();
    let net = fast(true);
    let settings = Settings {
        device_plugin_shards: 2,
        ..Settings::default()
    };
    let ctx = context_with(client, std::slice::from_ref(&net), &two_nodes(), settings);
    let task = spawn(net.clone(), ctx);
    for shard in 0..2 {
        server
            .expect(
                Method::GET,
                &format!("{CONFIGMAP}-{shard}"),
                StatusCode::NOT_FOUND,
                mock::status_error(404, "NotFound", "none"),
            )
            .await;
    }
    let mut keys = Vec::new();
    for shard in 0..2 {
        let cm = server
            .expect_echo(Method::PATCH, &format!("{CONFIGMAP}-{shard}"))
            .await;
        keys.extend(cm.body["data"].as_object().expect("data").keys().cloned());
    }
    keys.sort();
    assert_eq!(keys, ["n1", "n2"], "each node in exactly one shard");
    for _ in 0..2 {
        server
            .expect(
                Method::DELETE,
                PODS,
                StatusCode::OK,
                list("PodList", vec![]),
            )
            .await;
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
        device_plugin_selector: None,
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
async fn two_networks_reconciled_after_one_change_share_one_plan_and_one_configmap_write() {
    let (client, mut server) = mock::client();
    let (fast, slow) = (fast(true), slow());
    let ctx = context(client, &[fast.clone(), slow.clone()], &two_nodes());

    // The first reconcile plans both networks and writes the ConfigMap with both.
    let task = spawn(fast.clone(), ctx.clone());
    server
        .expect(
            Method::GET,
            CONFIGMAP,
            StatusCode::NOT_FOUND,
            mock::status_error(404, "NotFound", "none"),
        )
        .await;
    let cm = server.expect_echo(Method::PATCH, CONFIGMAP).await.body;
    let n1: Value =
        serde_json::from_str(cm["data"]["n1"].as_str().expect("n1 key")).expect("n1 JSON");
    let resources: Vec<&str> = n1["resourceList"]
        .as_array()
        .expect("resourceList")
        .iter()
        .filter_map(|r| r["resourceName"].as_str())
        .collect();
    assert!(
        resources.contains(&"telco_fast_p0") && resources.contains(&"telco_slow_p0"),
        "{resources:?}"
    );
    for _ in 0..2 {
        server
            .expect(
                Method::DELETE,
                PODS,
                StatusCode::OK,
                list("PodList", vec![]),
            )
            .await;
    }
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

    // The second reads back that ConfigMap, reuses the plan, and writes only its own objects:
    // no ConfigMap apply and no device-plugin restart.
    let task = spawn(slow.clone(), ctx.clone());
    server
        .expect(Method::GET, CONFIGMAP, StatusCode::OK, cm)
        .await;
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
