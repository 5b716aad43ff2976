//! The HTTPS server: TLS with a hot-swappable certificate, `POST /mutate` taking an
//! AdmissionReview for pods, `GET /healthz` and `GET /readyz`; and `/metrics` over plain HTTP
//! on its own port, as the controller serves it.
//!
//! Limits: a TLS handshake and a request's headers must arrive within [`Limits`]' timeouts, at
//! most `max_connections` connections are served at once (past that the listener is not read,
//! so the kernel's backlog holds the rest), and a review is answered within the API server's
//! own deadline (`?timeout=10s` in the URL, from `timeoutSeconds`), or a 504 says it could not
//! be. On shutdown the listener closes, idle connections end, and reviews in flight finish
//! (for at most `drain_timeout`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::mutate::{self, Decision, Networks, NotReadyPolicy};
use super::tls::CertResolver;
use crate::error::{Error, Result};
use crate::metrics_server::{Answer, OPENMETRICS};
use crate::telemetry::WebhookMetrics;

/// Largest AdmissionReview accepted (the API server's own request limit is 3 MiB).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The server's limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time for a client to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time for a request's headers to arrive, counted from when the connection waits for
    /// them: an idle keep-alive connection is closed after as long.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Deadline of a review whose URL names none (the API server's default is 10 s).
    pub default_deadline: Duration,
    /// On shutdown, how long reviews in flight may take to finish.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
            default_deadline: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// What `/mutate` needs: the networks, the policy, and whether the store has synced.
pub struct Admission<N> {
    /// BondNetworks by namespace and name.
    pub networks: N,
    /// What to do with networks that are not Ready.
    pub not_ready: NotReadyPolicy,
    /// True once the BondNetwork list has been read; `/readyz` reports it.
    pub synced: Arc<AtomicBool>,
    /// Reviews by outcome and their latency.
    pub metrics: Arc<WebhookMetrics>,
}

/// How one review ended, for the metrics: outcome and reason.
pub type Outcome = (&'static str, &'static str);

impl<N: Networks> Admission<N> {
    /// Answers one AdmissionReview.
    pub fn review(&self, review: AdmissionReview<Pod>) -> AdmissionReview<DynamicObject> {
        self.decide(review).0
    }

    /// Answers one AdmissionReview and says how it ended.
    pub fn decide(
        &self,
        review: AdmissionReview<Pod>,
    ) -> (AdmissionReview<DynamicObject>, Outcome) {
        let request: AdmissionRequest<Pod> = match review.try_into() {
            Ok(request) => request,
            Err(err) => {
                return (
                    AdmissionResponse::invalid(format!("not an AdmissionReview request: {err}"))
                        .into_review(),
                    ("error", "BadRequest"),
                )
            }
        };
        let response = AdmissionResponse::from(&request);
        let unchanged = ("unchanged", "");
        if request.operation != Operation::Create {
            return (response.into_review(), unchanged);
        }
        let Some(pod) = request.object.as_ref() else {
            return (response.into_review(), unchanged);
        };
        let namespace = request
            .namespace
            .as_deref()
            .or(pod.metadata.namespace.as_deref())
            .unwrap_or("default");
        let pod_name = pod
            .metadata
            .name
            .as_deref()
            .or(pod.metadata.generate_name.as_deref())
            .unwrap_or("");
        match mutate::mutate(pod, namespace, &self.networks, self.not_ready) {
            Decision::Allow => (response.into_review(), unchanged),
            Decision::Deny { reason, message } => {
                tracing::info!(pod = %format!("{namespace}/{pod_name}"), reason, %message, "denied");
                (response.deny(message).into_review(), ("denied", reason))
            }
            Decision::Patch(ops) => {
                let patch =
                    serde_json::from_value::<json_patch::Patch>(serde_json::Value::Array(ops))
                        .map_err(|e| e.to_string())
                        .and_then(|patch| {
                            response
                                .clone()
                                .with_patch(patch)
                                .map_err(|e| e.to_string())
                        });
                match patch {
                    Ok(patched) => {
                        tracing::debug!(pod = %format!("{namespace}/{pod_name}"), "expanded");
                        (patched.into_review(), ("patched", ""))
                    }
                    Err(err) => (
                        response
                            .deny(format!("bondnet could not render its patch: {err}"))
                            .into_review(),
                        ("error", "Render"),
                    ),
                }
            }
        }
    }
}

/// Serves HTTPS on `listener` until `shutdown` resolves, then stops accepting, lets reviews in
/// flight finish (up to `limits.drain_timeout`) and returns. Each connection runs in its own
/// task; a failed handshake or connection is logged and forgotten.
pub async fn serve<N>(
    listener: TcpListener,
    resolver: Arc<CertResolver>,
    admission: Arc<Admission<N>>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<()>
where
    N: Networks + Send + Sync + 'static,
{
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_no_client_auth().with_cert_resolver(resolver));
    let mut config = config.map_err(|source| Error::Tls {
        what: "TLS configuration",
        source,
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (drain, draining) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Biased: once shutdown is asked for, nothing more is accepted.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let admission = admission.clone();
        let limits = limits.clone();
        let draining = draining.clone();
        connections.spawn(async move {
            let _permit = permit;
            let metrics = admission.metrics.clone();
            metrics.connections.inc();
            connection(stream, peer, acceptor, admission, &limits, draining).await;
            metrics.connections.dec();
        });
    }
    drop(listener);
    let in_flight = connections.len();
    tracing::info!(
        connections = in_flight,
        "stopped accepting; finishing reviews in flight"
    );
    let _ = drain.send(true);
    let finished = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "connections still open after the drain timeout; closing them"
        );
        connections.abort_all();
    }
    Ok(())
}

/// One connection: the handshake within its timeout, then HTTP/1.1 until the client closes,
/// an idle timeout passes, or the server drains.
async fn connection<N>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    admission: Arc<Admission<N>>,
    limits: &Limits,
    mut draining: watch::Receiver<bool>,
) where
    N: Networks + Send + Sync + 'static,
{
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, timeout = ?limits.handshake_timeout, "TLS handshake timed out");
            return;
        }
    };
    let default_deadline = limits.default_deadline;
    let service = service_fn(move |request| {
        let admission = admission.clone();
        async move { Ok::<_, Infallible>(route(request, &admission, default_deadline).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = async { let _ = draining.wait_for(|d| *d).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}

/// The deadline the API server set in the URL (`timeout=10s`, a Go duration), less a tenth
/// so the answer is back before the API server gives up.
pub fn deadline(query: Option<&str>, default: Duration) -> Duration {
    let timeout = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(go_duration)
        .unwrap_or(default);
    timeout.saturating_sub(timeout / 10)
}

/// A Go duration string such as `10s`, `1m30s`, `1.5s` or `500ms`.
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = 0.0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

async fn route<N: Networks>(
    request: Request<Incoming>,
    admission: &Admission<N>,
    default_deadline: Duration,
) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") if admission.synced.load(Ordering::Relaxed) => {
            text(StatusCode::OK, "ok")
        }
        (&Method::GET, "/readyz") => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the BondNetwork list has not been read yet",
        ),
        (&Method::POST, "/mutate") => {
            let started = Instant::now();
            let deadline = deadline(request.uri().query(), default_deadline);
            let (response, (outcome, reason)) =
                match tokio::time::timeout(deadline, mutate_route(request, admission)).await {
                    Ok(answered) => answered,
                    Err(_) => (
                        text(
                            StatusCode::GATEWAY_TIMEOUT,
                            &format!(
                                "the AdmissionReview did not arrive within {deadline:?}, \
                                 inside the API server's timeout"
                            ),
                        ),
                        ("error", "Deadline"),
                    ),
                };
            admission.metrics.count_review(outcome, reason);
            admission
                .metrics
                .review_duration
                .observe(started.elapsed().as_secs_f64());
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "bondnet webhook: POST /mutate, GET /healthz, GET /readyz",
        ),
    }
}

async fn mutate_route<N: Networks>(
    request: Request<Incoming>,
    admission: &Admission<N>,
) -> (Response<Full<Bytes>>, Outcome) {
    let bad_request = ("error", "BadRequest");
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(err) => {
            return (
                text(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the body: {err}"),
                ),
                bad_request,
            )
        }
    };
    let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(err) => {
            return (
                text(
                    StatusCode::BAD_REQUEST,
                    &format!("the body is not an AdmissionReview of a Pod: {err}"),
                ),
                bad_request,
            )
        }
    };
    let (review, outcome) = admission.decide(review);
    match serde_json::to_vec(&review) {
        Ok(json) => (
            Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(json)))
                .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response")),
            outcome,
        ),
        Err(err) => (
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot render the AdmissionReview: {err}"),
            ),
            ("error", "Render"),
        ),
    }
}

/// The webhook's answer on its plain-HTTP metrics address (served by
/// `crate::metrics_server`): `/metrics` (OpenMetrics text) and `/healthz`.
pub fn metrics_answer(path: &str, metrics: &WebhookMetrics) -> Answer {
    match path {
        "/metrics" => (StatusCode::OK, OPENMETRICS, metrics.encode()),
        "/healthz" => (StatusCode::OK, "text/plain", "ok".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "GET /metrics, GET /healthz".to_owned(),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::api::bond_network::BondNetwork;
    use crate::webhook::cert;

    fn ready_network() -> BondNetwork {
        serde_json::from_value(json!({
            "apiVersion": "bondnet.io/v1alpha1",
            "kind": "BondNetwork",
            "metadata": {"name": "bond-net1", "namespace": "demo", "generation": 1},
            "spec": {},
            "status": {
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Planned", "message": "2 of 2"}],
                "slots": [
                    {"index": 0, "interface": "bond0p0", "resourceName": "bondnet.io/demo_bond-net1_p0", "nadName": "bond-net1-p0"},
                    {"index": 1, "interface": "bond0p1", "resourceName": "bondnet.io/demo_bond-net1_p1", "nadName": "bond-net1-p1"},
                ],
                "bondNad": "bond-net1",
                "podAnnotation": "[{\"name\":\"bond-net1-p0\",\"namespace\":\"demo\",\"interface\":\"bond0p0\"},{\"name\":\"bond-net1-p1\",\"namespace\":\"demo\",\"interface\":\"bond0p1\"},{\"name\":\"bond-net1\",\"namespace\":\"demo\",\"interface\":\"bond0\"}]",
            },
        }))
        .expect("network parses")
    }

    fn review(uid: &str, annotation: &str) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "demo",
                "operation": "CREATE",
                "userInfo": {"username": "alice"},
                "object": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"generateName": "app-", "annotations": {"k8s.v1.cni.cncf.io/networks": annotation}},
                    "spec": {"containers": [{"name": "app", "image": "app"}]},
                },
                "oldObject": null,
                "dryRun": false,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            },
        })
    }

    /// A running server on loopback with a fresh CA.
    struct Running {
        address: std::net::SocketAddr,
        ca: String,
        metrics: Arc<WebhookMetrics>,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<()>>,
    }

    async fn start_with(limits: Limits) -> Running {
        let bundle = cert::new_bundle(&["localhost".to_owned()], time::OffsetDateTime::now_utc())
            .expect("bundle");
        let resolver = Arc::new(CertResolver::default());
        resolver
            .set(&bundle.cert, &bundle.key)
            .expect("certificate loads");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let networks: BTreeMap<(String, String), BondNetwork> =
            BTreeMap::from([(("demo".to_owned(), "bond-net1".to_owned()), ready_network())]);
        let metrics = Arc::new(WebhookMetrics::default());
        let admission = Arc::new(Admission {
            networks,
            not_ready: NotReadyPolicy::Deny,
            synced: Arc::new(AtomicBool::new(true)),
            metrics: metrics.clone(),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, resolver, admission, limits, async move {
            let _ = stopped.await;
        }));
        Running {
            address,
            ca: bundle.ca_cert,
            metrics,
            stop,
            task,
        }
    }

    /// Starts the server with the default limits; returns its address and the CA PEM.
    async fn start_server() -> (std::net::SocketAddr, String) {
        let running = start_with(Limits::default()).await;
        std::mem::forget(running.stop);
        (running.address, running.ca)
    }

    /// A TLS connection trusting only `ca_pem`.
    async fn connect(
        address: std::net::SocketAddr,
        ca_pem: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(ca.expect("ca parses")).expect("ca added");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(address).await?;
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        connector.connect(name, tcp).await
    }

    /// Reads a whole `Connection: close` response; returns the status and the body.
    async fn read_response(
        tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) -> (u16, String) {
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8(response).expect("utf-8");
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, body.to_owned())
    }

    /// One HTTPS request trusting only `ca_pem`; returns the status code and body.
    async fn https(
        address: std::net::SocketAddr,
        ca_pem: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, String) {
        let mut tls = connect(address, ca_pem)
            .await
            .expect("TLS handshake verifies the chain");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await.expect("write");
        read_response(&mut tls).await
    }

    /// The patch bytes: kube-core writes them as a JSON array of bytes, which the API server's
    /// decoder accepts as well as base64.
    fn decode_patch(response: &Value) -> Value {
        let bytes: Vec<u8> = match &response["response"]["patch"] {
            Value::String(encoded) => {
                serde_json::from_value::<k8s_openapi::ByteString>(Value::String(encoded.clone()))
                    .expect("base64")
                    .0
            }
            other => serde_json::from_value(other.clone()).expect("patch is bytes"),
        };
        serde_json::from_slice(&bytes).expect("patch is JSON")
    }

    #[tokio::test]
    async fn the_running_webhook_answers_a_real_admission_review_over_https() {
        let (address, ca) = start_server().await;
        let (status, body) = https(
            address,
            &ca,
            "POST",
            "/mutate",
            &review("uid-1", "bond-net1").to_string(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let response: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(response["kind"], "AdmissionReview");
        assert_eq!(response["response"]["uid"], "uid-1");
        assert_eq!(response["response"]["allowed"], true);
        assert_eq!(response["response"]["patchType"], "JSONPatch");
        let patch = decode_patch(&response);
        assert_eq!(
            patch[0]["path"],
            "/metadata/annotations/k8s.v1.cni.cncf.io~1networks"
        );
        let networks: Value =
            serde_json::from_str(patch[0]["value"].as_str().expect("string")).expect("list");
        assert_eq!(
            networks[2],
            json!({"name": "bond-net1", "namespace": "demo", "interface": "bond0"})
        );
        assert_eq!(patch[1]["path"], "/spec/containers/0/resources");
        assert_eq!(
            patch[1]["value"]["limits"]["bondnet.io/demo_bond-net1_p1"],
            "1"
        );
    }

    #[tokio::test]
    async fn a_denial_travels_back_with_its_message() {
        let (address, ca) = start_server().await;
        let (status, body) = https(
            address,
            &ca,
            "POST",
            "/mutate",
            &review("uid-2", "a/b/c").to_string(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let response: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(response["response"]["uid"], "uid-2");
        assert_eq!(response["response"]["allowed"], false);
        let message = response["response"]["status"]["message"]
            .as_str()
            .expect("message");
        assert!(message.contains("at most one '/'"), "{message}");
    }

    #[tokio::test]
    async fn health_and_bad_requests_are_answered_plainly() {
        let (address, ca) = start_server().await;
        assert_eq!(https(address, &ca, "GET", "/healthz", "").await.0, 200);
        assert_eq!(https(address, &ca, "GET", "/readyz", "").await.0, 200);
        let (status, body) =
            https(address, &ca, "POST", "/mutate", "{\"not\": \"a review\"}").await;
        assert_eq!(status, 400);
        assert!(body.contains("not an AdmissionReview"), "{body}");
        assert_eq!(https(address, &ca, "GET", "/nope", "").await.0, 404);
    }

    /// Headers of a review whose body is `length` bytes, sent separately.
    fn review_head(query: &str, length: usize) -> String {
        format!(
            "POST /mutate{query} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        )
    }

    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

    #[test]
    fn the_deadline_is_the_api_servers_timeout_less_a_tenth() {
        let default = Duration::from_secs(10);
        assert_eq!(
            deadline(Some("timeout=5s"), default),
            Duration::from_millis(4500)
        );
        assert_eq!(
            deadline(Some("a=b&timeout=1m30s"), default),
            Duration::from_secs(81)
        );
        assert_eq!(
            deadline(Some("timeout=500ms"), default),
            Duration::from_millis(450)
        );
        assert_eq!(deadline(None, default), Duration::from_secs(9));
        assert_eq!(
            deadline(Some("timeout=soon"), default),
            Duration::from_secs(9)
        );
    }

    #[tokio::test]
    async fn a_review_that_cannot_arrive_before_the_api_servers_deadline_is_answered_in_time() {
        let running = start_with(Limits::default()).await;
        let body = review("uid-slow", "bond-net1").to_string();
        let mut tls = connect(running.address, &running.ca)
            .await
            .expect("connect");
        // The API server allows 1 s; the body never comes.
        tls.write_all(review_head("?timeout=1s", body.len()).as_bytes())
            .await
            .expect("write");
        tls.write_all(&body.as_bytes()[..10]).await.expect("write");
        let started = std::time::Instant::now();
        let (status, text) = tokio::time::timeout(PATIENCE, read_response(&mut tls))
            .await
            .expect("the webhook answered instead of waiting for the body");
        eprintln!("answered after {:?}", started.elapsed());
        assert_eq!(status, 504, "{text}");
        assert!(text.contains("did not arrive within 900ms"), "{text}");
        let metrics = running.metrics.encode();
        assert!(
            metrics
                .contains("bondnet_webhook_reviews_total{outcome=\"error\",reason=\"Deadline\"} 1"),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_handshake_is_dropped() {
        let running = start_with(Limits {
            handshake_timeout: Duration::from_millis(200),
            ..Limits::default()
        })
        .await;
        let mut tcp = tokio::net::TcpStream::connect(running.address)
            .await
            .expect("connect");
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(PATIENCE, tcp.read(&mut buffer))
            .await
            .expect("the server closed the silent connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_header_timeout_and_frees_its_slot() {
        let running = start_with(Limits {
            header_read_timeout: Duration::from_millis(200),
            max_connections: 1,
            ..Limits::default()
        })
        .await;
        let mut idle = connect(running.address, &running.ca)
            .await
            .expect("connect");
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(PATIENCE, idle.read(&mut buffer))
            .await
            .expect("the server closed the idle connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let (status, _) = tokio::time::timeout(
            PATIENCE,
            https(running.address, &running.ca, "GET", "/healthz", ""),
        )
        .await
        .expect("the only slot is free again");
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn past_the_connection_limit_new_connections_wait_for_a_free_slot() {
        let running = start_with(Limits {
            max_connections: 1,
            ..Limits::default()
        })
        .await;
        let first = connect(running.address, &running.ca).await.expect("first");
        let second = tokio::spawn({
            let (address, ca) = (running.address, running.ca.clone());
            async move { connect(address, &ca).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !second.is_finished(),
            "a second connection was served past the limit of 1"
        );
        drop(first);
        let second = tokio::time::timeout(PATIENCE, second)
            .await
            .expect("the freed slot serves the waiting connection")
            .expect("task");
        assert!(second.is_ok(), "{:?}", second.err());
    }

    #[tokio::test]
    async fn on_shutdown_a_review_in_flight_finishes_and_new_connections_are_refused() {
        let running = start_with(Limits::default()).await;
        let body = review("uid-drain", "bond-net1").to_string();
        let mut tls = connect(running.address, &running.ca)
            .await
            .expect("connect");
        tls.write_all(review_head("", body.len()).as_bytes())
            .await
            .expect("write");
        let (head, tail) = body.as_bytes().split_at(20);
        tls.write_all(head).await.expect("write");
        tls.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(100)).await;

        running.stop.send(()).expect("server runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            connect(running.address, &running.ca).await.is_err(),
            "a new connection was accepted after shutdown began"
        );

        tls.write_all(tail)
            .await
            .expect("the review in flight is still read");
        let (status, text) = tokio::time::timeout(PATIENCE, read_response(&mut tls))
            .await
            .expect("answered");
        assert_eq!(status, 200, "{text}");
        let answer: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(answer["response"]["uid"], "uid-drain");
        assert_eq!(answer["response"]["allowed"], true);
        tokio::time::timeout(PATIENCE, running.task)
            .await
            .expect("serve returned after draining")
            .expect("task")
            .expect("clean shutdown");
    }

    #[tokio::test]
    async fn reviews_are_counted_by_outcome_and_timed() {
        let running = start_with(Limits::default()).await;
        for (uid, annotation) in [
            ("a", "bond-net1"),
            ("b", "mgmt"),
            ("c", "a/b/c"),
            ("d", "bond-net1"),
        ] {
            let (status, _) = https(
                running.address,
                &running.ca,
                "POST",
                "/mutate",
                &review(uid, annotation).to_string(),
            )
            .await;
            assert_eq!(status, 200);
        }
        let (status, _) = https(running.address, &running.ca, "POST", "/mutate", "{}").await;
        assert_eq!(status, 400);
        let text = running.metrics.encode();
        for line in [
            "bondnet_webhook_reviews_total{outcome=\"patched\",reason=\"\"} 2",
            "bondnet_webhook_reviews_total{outcome=\"unchanged\",reason=\"\"} 1",
            "bondnet_webhook_reviews_total{outcome=\"denied\",reason=\"InvalidAnnotation\"} 1",
            "bondnet_webhook_reviews_total{outcome=\"error\",reason=\"BadRequest\"} 1",
            "bondnet_webhook_review_duration_seconds_count 5",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn metrics_are_answered_on_the_metrics_address() {
        let metrics = WebhookMetrics::default();
        metrics.count_review("denied", "NotReady");
        let (status, content_type, body) = metrics_answer("/metrics", &metrics);
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(
            body.contains(
                "bondnet_webhook_reviews_total{outcome=\"denied\",reason=\"NotReady\"} 1"
            ),
            "{body}"
        );
        assert_eq!(metrics_answer("/healthz", &metrics).0, StatusCode::OK);
        assert_eq!(metrics_answer("/readyz", &metrics).0, StatusCode::NOT_FOUND);
    }
}
