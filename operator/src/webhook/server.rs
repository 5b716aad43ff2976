//! The HTTPS server: TLS with a hot-swappable certificate, `POST /mutate` taking an
//! AdmissionReview for pods, `GET /healthz` and `GET /readyz`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::DynamicObject;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::mutate::{self, Decision, Networks, NotReadyPolicy};
use super::tls::CertResolver;
use crate::error::{Error, Result};

/// Largest AdmissionReview accepted (the API server's own request limit is 3 MiB).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What `/mutate` needs: the networks, the policy, and whether the store has synced.
pub struct Admission<N> {
    /// BondNetworks by namespace and name.
    pub networks: N,
    /// What to do with networks that are not Ready.
    pub not_ready: NotReadyPolicy,
    /// True once the BondNetwork list has been read; `/readyz` reports it.
    pub synced: Arc<AtomicBool>,
}

impl<N: Networks> Admission<N> {
    /// Answers one AdmissionReview.
    pub fn review(&self, review: AdmissionReview<Pod>) -> AdmissionReview<DynamicObject> {
        let request: AdmissionRequest<Pod> = match review.try_into() {
            Ok(request) => request,
            Err(err) => {
                return AdmissionResponse::invalid(format!("not an AdmissionReview request: {err}"))
                    .into_review()
            }
        };
        let response = AdmissionResponse::from(&request);
        if request.operation != Operation::Create {
            return response.into_review();
        }
        let Some(pod) = request.object.as_ref() else {
            return response.into_review();
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
            Decision::Allow => response.into_review(),
            Decision::Deny(message) => {
                tracing::info!(pod = %format!("{namespace}/{pod_name}"), %message, "denied");
                response.deny(message).into_review()
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
                        patched.into_review()
                    }
                    Err(err) => response
                        .deny(format!("bondnet could not render its patch: {err}"))
                        .into_review(),
                }
            }
        }
    }
}

/// Serves HTTPS on `listener` until the task is dropped. Each connection runs in its own task;
/// a failed handshake or connection is logged and forgotten.
pub async fn serve<N>(
    listener: TcpListener,
    resolver: Arc<CertResolver>,
    admission: Arc<Admission<N>>,
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
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let admission = admission.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
            };
            let service = service_fn(move |request| {
                let admission = admission.clone();
                async move { Ok::<_, Infallible>(route(request, &admission).await) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
}

async fn route<N: Networks>(
    request: Request<Incoming>,
    admission: &Admission<N>,
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
            let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes(),
                Err(err) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        &format!("cannot read the body: {err}"),
                    )
                }
            };
            let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
                Ok(review) => review,
                Err(err) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        &format!("the body is not an AdmissionReview of a Pod: {err}"),
                    )
                }
            };
            match serde_json::to_vec(&admission.review(review)) {
                Ok(json) => Response::builder()
                    .status(StatusCode::OK)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(json)))
                    .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response")),
                Err(err) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot render the AdmissionReview: {err}"),
                ),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "bondnet webhook: POST /mutate, GET /healthz, GET /readyz",
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

    /// Starts the server on loopback with a fresh CA; returns its address and the CA PEM.
    async fn start_server() -> (std::net::SocketAddr, String) {
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
        let admission = Arc::new(Admission {
            networks,
            not_ready: NotReadyPolicy::Deny,
            synced: Arc::new(AtomicBool::new(true)),
        });
        tokio::spawn(serve(listener, resolver, admission));
        (address, bundle.ca_cert)
    }

    /// One HTTPS request trusting only `ca_pem`; returns the status code and body.
    async fn https(
        address: std::net::SocketAddr,
        ca_pem: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, String) {
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
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = connector
            .connect(name, tcp)
            .await
            .expect("TLS handshake verifies the chain");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await.expect("read");
        let response = String::from_utf8(response).expect("utf-8");
        let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        (status, body.to_owned())
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
}
