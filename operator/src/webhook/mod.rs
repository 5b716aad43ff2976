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
use std::path::PathBuf;
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
}

/// A failure of the webhook that stops it.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}: {source}; set --listen to a free address")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The certificate could not be made or read.
    #[error(transparent)]
    Cert(#[from] cert::CertError),
    /// A certificate file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// rustls refused the certificate or key.
    #[error("the serving certificate or key is unusable: {0}")]
    Tls(String),
    /// The certificate Secret changed under every attempt to write it.
    #[error("{secret} kept changing under three attempts to write it; is another program writing it? Give the webhook a Secret of its own with --tls-secret")]
    SecretContended { secret: String },
    /// An API request failed; `step` says which.
    #[error("cannot {step} {object}: {source}")]
    Kube {
        step: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
}

/// The BondNetworks the webhook reads, from a reflector store.
impl mutate::Networks for Store<BondNetwork> {
    fn get(&self, namespace: &str, name: &str) -> Option<BondNetwork> {
        Store::get(self, &ObjectRef::new(name).within(namespace)).map(|n| (*n).clone())
    }
}

/// Runs the webhook until the process is stopped.
pub async fn run(client: Client, config: Config) -> Result<(), WebhookError> {
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
        .map_err(|source| WebhookError::Bind {
            address: config.listen,
            source,
        })?;
    tracing::info!(address = %config.listen, "serving admission reviews");
    server::serve(
        listener,
        resolver,
        Arc::new(server::Admission {
            networks: store,
            not_ready: config.not_ready,
            synced,
        }),
    )
    .await;
    Ok(())
}
