//! Sends the differences the planner found: a [`Batch`] in its three steps (finalizers, node
//! states and the ConfigMap export; NADs; statuses, Events and finalizer releases), each step's
//! writes [`WriterConfig::concurrency`] at a time. Each request is bounded by
//! [`WriterConfig::timeout`] and retried with a doubling backoff when the failure is transient
//! (a timeout, a lost connection, 409, 429, 5xx). A network's NADs wait for the node states of
//! the nodes that host it and for its finalizer; its status waits for its NADs: a failure
//! holds back what depends on it, and the planner retries the rest of the difference later.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt};
use kube::runtime::events::Recorder;
use kube::Client;

use crate::controller::apply;
use crate::controller::diff::{Batch, Pending, Write, Written};
use crate::error::{Error, KubeStep, Result};
use crate::telemetry::Metrics;

/// How the writer sends.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Writes in flight at once.
    pub concurrency: usize,
    /// Longest wait for one request.
    pub timeout: Duration,
    /// Attempts per write, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubles for each further one.
    pub first_retry: Duration,
}

impl Default for WriterConfig {
    /// 16 in flight, 10 s per request, 3 attempts 200 ms and 400 ms apart.
    fn default() -> Self {
        Self {
            concurrency: 16,
            timeout: Duration::from_secs(10),
            attempts: 3,
            first_retry: Duration::from_millis(200),
        }
    }
}

/// What one batch came to.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Writes that succeeded.
    pub written: usize,
    /// Writes held back because one they depend on failed.
    pub held_back: usize,
    /// The writes that failed, with why; a write that cannot go at all comes first.
    pub failures: Vec<Error>,
}

/// Sends writes under the one field manager.
pub struct Writer {
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    written: Arc<Written>,
    config: WriterConfig,
}

/// True for a failure that may pass on its own: worth another attempt.
pub fn transient(err: &Error) -> bool {
    match err {
        Error::Timeout { .. } => true,
        Error::Kube {
            source: kube::Error::Api(status),
            ..
        } => status.code == 409 || status.code == 429 || status.code >= 500,
        Error::Kube { .. } => true,
        _ => false,
    }
}

impl Writer {
    /// A writer remembering its writes in `written`.
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        written: Arc<Written>,
        config: WriterConfig,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            written,
            config,
        }
    }

    /// Sends every write of `batch` whose dependencies succeeded.
    pub async fn write(&self, batch: Batch) -> Outcome {
        let mut outcome = Outcome::default();
        let mut pools_failed = batch.blocked.is_some();
        if let Some(err) = batch.blocked {
            self.metrics.count_failure(err.category());
            outcome.failures.push(err);
        }
        let mut failed_nodes = BTreeSet::new();
        let mut failed_networks = BTreeSet::new();
        for (pending, result) in self.send_all(batch.first).await {
            match result {
                Ok(()) => outcome.written += 1,
                Err(err) => {
                    match &pending.write {
                        Write::NodeState { node, .. } => {
                            failed_nodes.insert(node.clone());
                        }
                        Write::ConfigMap(_) => pools_failed = true,
                        other => {
                            if let Some(network) = other.network() {
                                failed_networks.insert(network.to_owned());
                            }
                        }
                    }
                    outcome.failures.push(err);
                }
            }
        }
        let held = |pending: &Pending, failed_networks: &BTreeSet<String>| {
            pending
                .write
                .network()
                .is_some_and(|n| failed_networks.contains(n))
                || (!pending.hosts.is_empty() && pools_failed)
                || pending.hosts.iter().any(|h| failed_nodes.contains(h))
        };
        for step in [batch.nads, batch.last] {
            let (go, wait): (Vec<Pending>, Vec<Pending>) =
                step.into_iter().partition(|p| !held(p, &failed_networks));
            for pending in wait {
                if let Some(network) = pending.write.network() {
                    failed_networks.insert(network.to_owned());
                }
                outcome.held_back += 1;
            }
            for (pending, result) in self.send_all(go).await {
                match result {
                    Ok(()) => outcome.written += 1,
                    Err(err) => {
                        if let Some(network) = pending.write.network() {
                            failed_networks.insert(network.to_owned());
                        }
                        outcome.failures.push(err);
                    }
                }
            }
        }
        outcome
    }

    /// Sends `writes` at most `concurrency` at a time; results in completion order.
    async fn send_all(&self, writes: Vec<Pending>) -> Vec<(Pending, Result<()>)> {
        stream::iter(writes)
            .map(|pending| async move {
                let result = self.send(&pending.write).await;
                if result.is_ok() {
                    self.written.record(&pending);
                }
                (pending, result)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await
    }

    /// One write, retried while its failure is transient.
    async fn send(&self, write: &Write) -> Result<()> {
        let mut wait = self.config.first_retry;
        let mut attempt = 1;
        loop {
            self.metrics.count_write(write.kind(), write.verb());
            match self.send_once(write).await {
                Ok(()) => break,
                Err(err) if attempt < self.config.attempts && transient(&err) => {
                    tracing::debug!(object = %write.object(), attempt, error = %err, "write failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
                Err(err) => {
                    self.metrics.count_failure(err.category());
                    return Err(err);
                }
            }
        }
        if let Write::Status {
            network,
            event: Some(event),
            reference,
            ..
        } = write
        {
            // The status is written; an Event that cannot be published is logged, not retried
            // by the next plan (the status no longer differs).
            self.metrics.count_write("Event", "create");
            let published =
                self.bounded(KubeStep::Event, format!("BondNetwork {network}"), async {
                    self.recorder
                        .publish(event, reference)
                        .await
                        .map_err(Error::kube(
                            KubeStep::Event,
                            format!("BondNetwork {network}"),
                        ))
                });
            if let Err(err) = published.await {
                self.metrics.count_failure(err.category());
                tracing::warn!(error = %err, "cannot publish the readiness event");
            }
        }
        Ok(())
    }

    async fn send_once(&self, write: &Write) -> Result<()> {
        let client = &self.client;
        let object = write.object();
        match write {
            Write::AddFinalizer { network, patch } | Write::RemoveFinalizer { network, patch } => {
                let (namespace, name) = network.split_once('/').unwrap_or(("", network));
                self.bounded(
                    KubeStep::Update,
                    object,
                    apply::patch_finalizers(client, namespace, name, patch.clone()),
                )
                .await
            }
            Write::NodeState { node, uid, config } => {
                self.bounded(
                    KubeStep::Apply,
                    object,
                    apply::apply_node_state(client, node, uid, config),
                )
                .await
            }
            Write::ConfigMap(configmap) => {
                self.bounded(
                    KubeStep::Apply,
                    object,
                    apply::apply_configmap(client, configmap),
                )
                .await
            }
            Write::ApplyNad { nad, .. } => {
                self.bounded(KubeStep::Apply, object, apply::apply_nad(client, nad))
                    .await
            }
            Write::DeleteNad { namespace, name } => {
                self.bounded(
                    KubeStep::Delete,
                    object,
                    apply::delete_nad(client, namespace, name),
                )
                .await
            }
            Write::Status {
                network, status, ..
            } => {
                let (namespace, name) = network.split_once('/').unwrap_or(("", network));
                self.bounded(
                    KubeStep::Apply,
                    object,
                    apply::apply_status(client, namespace, name, status),
                )
                .await
            }
        }
    }

    /// `request`, failing with [`Error::Timeout`] past the writer's timeout.
    async fn bounded(
        &self,
        step: KubeStep,
        object: String,
        request: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        bounded(self.config.timeout, step, object, request).await
    }
}

/// `request`, failing with [`Error::Timeout`] after `timeout`.
pub async fn bounded<T>(
    timeout: Duration,
    step: KubeStep,
    object: String,
    request: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            step,
            object,
            after: timeout,
        }),
    }
}
