//! `bondnet controller`: kube-runtime's Controller on BondNetwork. It owns the NADs it
//! writes, writes each node's device-plugin pools into that node's BondNodeState spec,
//! re-plans every network when BondNodeStates or Nodes change, and runs only while it holds
//! the leader Lease.
//!
//! ```text
//!  watches: BondNetwork ─┐            ┌─ reconcile.rs: stores -> plan -> apply
//!           NADs (owned) ├─ Controller┤
//!  BondNodeState, Node ──┘ (all)      └─ error_policy: count, back off
//! ```

pub mod apply;
pub mod lease;
pub mod memo;
pub mod reconcile;
pub mod serve;
pub mod status;
pub mod triggers;
pub mod watch_backoff;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{future, stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Client;

use crate::api::bond_network::BondNetwork;
use crate::api::bond_node_state::BondNodeState;
use crate::api::keys;
use crate::api::nad::NetworkAttachmentDefinition;
use crate::error::Result;
use crate::plan::Settings;
use crate::telemetry::Metrics;
use watch_backoff::WatchBackoff;

pub use reconcile::Context;

/// Everything `bondnet controller` is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the device-plugin ConfigMaps go.
    pub settings: Settings,
    /// Also export the device-plugin config as ConfigMaps, sharded by size.
    pub export_configmap: bool,
    /// The leader Lease.
    pub lease: lease::LeaseConfig,
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    pub metrics_address: SocketAddr,
}

/// Runs the controller until a shutdown signal or the loss of the lease.
pub async fn run(client: Client, config: Config) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener =
        crate::metrics_server::bind(config.metrics_address, "/metrics, /healthz and /readyz")
            .await?;
    let server = tokio::spawn({
        let (metrics, ready) = (metrics.clone(), ready.clone());
        crate::metrics_server::serve(
            listener,
            move |path| serve::respond(path, &metrics, ready.load(Ordering::Relaxed)),
            future::pending(),
        )
    });

    let acquired = lease::acquire(&client, &config.lease).await?;
    metrics.leader.set(1);
    tracing::info!(identity = %config.lease.identity, "leading");

    let (nodes, node_writer) = reflector::store::<BondNodeState>();
    let mut pf_filter = triggers::ChangeFilter::new(triggers::node_state_property);
    let node_changes = watcher(
        Api::<BondNodeState>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::default())
    .reflect(node_writer)
    .filter_map(move |event| {
        future::ready(event.ok().filter(|e| pf_filter.observe(e)).map(|_| ()))
    });
    let (node_meta, meta_writer) = reflector::store();
    let mut label_filter = triggers::ChangeFilter::new(triggers::node_labels_property);
    let label_changes = watcher(
        Api::<PartialObjectMeta<Node>>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::default())
    .reflect(meta_writer)
    .filter_map(move |event| {
        future::ready(event.ok().filter(|e| label_filter.observe(e)).map(|_| ()))
    });

    let controller = Controller::new(
        Api::<BondNetwork>::all(client.clone()),
        watcher::Config::default(),
    )
    .trigger_backoff(WatchBackoff::default())
    .with_config(
        // One reconcile at a time: each plans every network and writes the node states.
        ControllerConfig::default()
            .debounce(Duration::from_secs(1))
            .concurrency(1),
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: config.settings.clone(),
        export_configmap: config.export_configmap,
        networks: controller.store(),
        nodes,
        node_meta,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: keys::FIELD_MANAGER.to_owned(),
                instance: Some(config.lease.identity.clone()),
            },
        ),
        metrics: metrics.clone(),
        failures: Mutex::new(HashMap::new()),
        memo: memo::Memo::default(),
        written: Mutex::new(HashMap::new()),
    });
    let managed = format!("{}={}", keys::LABEL_MANAGED_BY, keys::MANAGED_BY);
    let running = controller
        .owns(
            Api::<NetworkAttachmentDefinition>::all(client.clone()),
            watcher::Config::default().labels(&managed),
        )
        .reconcile_all_on(stream::select(node_changes, label_changes))
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(bond_network = %object, "reconciled"),
                Err(err) => tracing::debug!(error = %err, "reconcile request failed"),
            }
        });
    ready.store(true, Ordering::Relaxed);
    let outcome = tokio::select! {
        () = running => Ok(()),
        // `hold` returns before the lease can expire for another replica; dropping `running`
        // here stops every write of this one.
        lost = lease::hold(&client, &config.lease, acquired) => Err(lost),
    };
    ready.store(false, Ordering::Relaxed);
    metrics.leader.set(0);
    server.abort();
    outcome
}

#[cfg(test)]
mod tests;
