//! `bondnet webhook`: mutating admission for pods.
//!
//! ```text
//!  BondNetwork watch ──> reflector store ─┐
//!  AdmissionReview (HTTPS) ─> server.rs ──┴─> mutate.rs (pure) ─> JSONPatch | denial
//!  tls.rs: Secret with CA + serving cert ─> rotating resolver; caBundle of the
//!          MutatingWebhookConfiguration kept current (or files from cert-manager)
//! ```

pub mod cert;
pub mod mutate;
pub mod server;
#[cfg(test)]
mod tests;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Client;

use crate::api::bond_network::BondNetwork;
use crate::error::{Error, Result};
pub use mutate::NotReadyPolicy;

/// Everything `bondnet webhook` is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the HTTPS server (`/mutate`, `/healthz`, `/readyz`).
    pub listen: SocketAddr,
    /// What to do with pods naming a BondNetwork that is not Ready.
    pub not_ready: NotReadyPolicy,
    /// Where the serving certificate comes from.
    pub tls: tls::TlsSource,
    /// How often the certificate is checked (renewed, reloaded, caBundle re-asserted).
    pub cert_check_interval: Duration,
    /// Address of the plain-HTTP `/metrics` and `/healthz`.
    pub metrics_listen: SocketAddr,
    /// Timeouts, the connection limit and the drain time.
    pub limits: server::Limits,
}

/// The BondNetworks the webhook reads, from a reflector store.
impl mutate::Networks for Store<BondNetwork> {
    fn get(&self, namespace: &str, name: &str) -> Option<BondNetwork> {
        Store::get(self, &ObjectRef::new(name).within(namespace)).map(|n| (*n).clone())
    }
}

/// Runs the webhook until the process is stopped.
pub async fn run(client: Client, config: Config) -> Result<()> {
    let (store, writer) = reflector::store::<BondNetwork>();
    let synced = Arc::new(AtomicBool::new(false));
    let watch = watcher(
        Api::<BondNetwork>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .for_each({
        let synced = synced.clone();
        move |event| {
            match event {
                Ok(watcher::Event::InitDone) => synced.store(true, Ordering::Relaxed),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "BondNetwork watch failed; retrying"),
            }
            futures::future::ready(())
        }
    });
    tokio::spawn(watch);

    let resolver = Arc::new(tls::CertResolver::default());
    tls::load_first(&client, &config.tls, &resolver).await?;
    tokio::spawn(tls::maintain(
        client,
        config.tls.clone(),
        resolver.clone(),
        config.cert_check_interval,
    ));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::WebhookListen {
            address: config.listen,
            source,
        })?;
    let metrics_listener =
        crate::metrics_server::bind(config.metrics_listen, "/metrics and /healthz").await?;
    let metrics = Arc::new(crate::telemetry::WebhookMetrics::default());

    // SIGTERM stops both servers; the HTTPS one finishes reviews in flight first.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::telemetry::shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    tokio::spawn({
        let metrics = metrics.clone();
        crate::metrics_server::serve(
            metrics_listener,
            move |path| server::metrics_answer(path, &metrics),
            until_stopped(stopped.clone()),
        )
    });
    tracing::info!(address = %listener.local_addr().unwrap_or(config.listen), "serving admission reviews");
    server::serve(
        listener,
        resolver,
        Arc::new(server::Admission {
            networks: store,
            not_ready: config.not_ready,
            synced,
            metrics,
        }),
        config.limits,
        until_stopped(stopped),
    )
    .await
}
