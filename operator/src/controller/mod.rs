//! `bondnet controller`: one planner over the reflector stores, a writer, and the leader
//! Lease. The plan is global, so the controller plans globally: every change wakes the one
//! [`planner`], which plans all networks at once, diffs the plan against the stores and hands
//! only the differences to the [`writer`] (server-side apply under one field manager). A
//! network's finalizer is a per-object step of the same diff ([`finalizer`]).
//!
//! ```text
//!  watches ─► stores: BondNetwork, BondNodeState, Node (metadata), NADs (bondnet's)
//!     │ (a change that matters: triggers.rs)
//!     ▼
//!  planner.rs: debounce ─► spawn_blocking(plan (memo.rs) ─► diff.rs) ─► writer.rs ─► API
//! ```
//!
//! Every request has a deadline: writes and ConfigMap reads [`writer::WriterConfig::timeout`],
//! the Lease its own ([`lease`]), watches [`WATCH_TIMEOUT_S`] on the server and the same plus
//! 5 s on the client, and lists the client's read timeout ([`READ_TIMEOUT`], which `main.rs`
//! sets).

pub mod apply;
pub mod diff;
pub mod finalizer;
pub mod lease;
pub mod memo;
pub mod planner;
pub mod serve;
pub mod status;
pub mod triggers;
pub mod watch_backoff;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{future, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer as StoreWriter};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource};
use tokio::sync::Notify;

use crate::api::bond_network::BondNetwork;
use crate::api::bond_node_state::BondNodeState;
use crate::api::keys;
use crate::api::nad::NetworkAttachmentDefinition;
use crate::error::Result;
use crate::plan::Settings;
use crate::telemetry::Metrics;
use planner::{Planner, Stores, Timing};
use triggers::ChangeFilter;
use watch_backoff::WatchBackoff;
use writer::{Writer, WriterConfig};

pub mod writer;

/// How long the API server keeps one watch open before the watcher opens the next.
pub const WATCH_TIMEOUT_S: u32 = 60;
/// The client's read timeout: a list (or any response) that sends nothing for this long fails.
/// Longer than a watch, whose idle stream the watcher itself ends after
/// [`WATCH_TIMEOUT_S`] plus 5 s.
pub const READ_TIMEOUT: Duration = Duration::from_secs(75);

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

/// Runs `watch` into `writer`, waking `wake` on each event `filter` lets through; runs until
/// the process ends (a failing watch backs off and lists again). Objects enter the store
/// without their managed fields: nothing bondnet reads, and on a NAD or a node state applied
/// by two managers they are a good part of the object.
pub async fn watch<K>(
    watch: impl futures::Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
    writer: StoreWriter<K>,
    mut filter: ChangeFilter<K>,
    wake: Arc<Notify>,
) where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    watch
        .backoff(WatchBackoff::default())
        .modify(|object| object.meta_mut().managed_fields = None)
        .reflect(writer)
        .for_each(move |event| {
            match event {
                Ok(event) => {
                    if filter.observe(&event) {
                        wake.notify_one();
                    }
                }
                Err(err) => tracing::debug!(kind = %K::kind(&()), error = %err, "watch failed; it lists again after a backoff"),
            }
            future::ready(())
        })
        .await;
}

/// The planner's stores and the watches that fill them (run them all, for ever).
pub fn stores(
    client: &Client,
    wake: &Arc<Notify>,
) -> (Stores, impl std::future::Future<Output = ()>) {
    let (networks, network_writer) = reflector::store::<BondNetwork>();
    let (nodes, node_writer) = reflector::store::<BondNodeState>();
    let (node_meta, meta_writer) = reflector::store::<PartialObjectMeta<Node>>();
    let (nads, nad_writer) = reflector::store::<NetworkAttachmentDefinition>();
    let managed = format!("{}={}", keys::LABEL_MANAGED_BY, keys::MANAGED_BY);
    let config = || watcher::Config::default().timeout(WATCH_TIMEOUT_S);
    let watches = future::join4(
        watch(
            watcher(Api::<BondNetwork>::all(client.clone()), config()),
            network_writer,
            ChangeFilter::new(triggers::network_property),
            wake.clone(),
        ),
        watch(
            watcher(Api::<BondNodeState>::all(client.clone()), config()),
            node_writer,
            ChangeFilter::new(triggers::node_state_property),
            wake.clone(),
        ),
        watch(
            watcher(
                Api::<PartialObjectMeta<Node>>::all(client.clone()),
                config(),
            ),
            meta_writer,
            ChangeFilter::new(triggers::node_labels_property),
            wake.clone(),
        ),
        watch(
            watcher(
                Api::<NetworkAttachmentDefinition>::all(client.clone()),
                config().labels(&managed),
            ),
            nad_writer,
            ChangeFilter::new(triggers::nad_property),
            wake.clone(),
        ),
    );
    let stores = Stores {
        networks,
        nodes,
        node_meta,
        nads,
    };
    (stores, async move {
        watches.await;
    })
}

/// What runs while this replica leads: the watches that fill the stores, and the planner they
/// wake.
pub struct Leading<W> {
    /// The watches ([`stores`]).
    pub watches: W,
    /// The planner, with its writer.
    pub planner: Planner,
    /// Woken by the watches.
    pub wake: Arc<Notify>,
}

/// Runs `leading` while holding the lease acquired at `acquired`: returns when the watches or
/// the planner end, when `shutdown` completes, or, with `LostLease`, when the lease is lost.
/// [`lease::hold`] returns before the lease can expire for another replica, and returning
/// drops the planner with its writer and every request in flight: no write of this replica
/// goes after that. `hold` is polled first, so once it is done nothing else runs.
pub async fn lead<W: std::future::Future<Output = ()>>(
    client: &Client,
    lease: &lease::LeaseConfig,
    acquired: tokio::time::Instant,
    leading: Leading<W>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let Leading {
        watches,
        planner,
        wake,
    } = leading;
    tokio::select! {
        biased;
        lost = lease::hold(client, lease, acquired) => Err(lost),
        () = shutdown => {
            tracing::info!("shutting down");
            Ok(())
        }
        () = watches => Ok(()),
        () = planner.run(wake) => Ok(()),
    }
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

    let wake = Arc::new(Notify::new());
    let (stores, watches) = stores(&client, &wake);
    let written = Arc::new(diff::Written::default());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: keys::FIELD_MANAGER.to_owned(),
            instance: Some(config.lease.identity.clone()),
        },
    );
    let planner = Planner {
        client: client.clone(),
        settings: config.settings.clone(),
        export_configmap: config.export_configmap,
        stores,
        writer: Writer::new(
            client.clone(),
            recorder,
            metrics.clone(),
            written.clone(),
            WriterConfig::default(),
        ),
        written,
        memo: Arc::new(memo::Memo::default()),
        metrics: metrics.clone(),
        timing: Timing::default(),
    };
    ready.store(true, Ordering::Relaxed);
    let outcome = lead(
        &client,
        &config.lease,
        acquired,
        Leading {
            watches,
            planner,
            wake,
        },
        crate::telemetry::shutdown_signal(),
    )
    .await;
    ready.store(false, Ordering::Relaxed);
    metrics.leader.set(0);
    server.abort();
    outcome
}

#[cfg(test)]
mod tests;
