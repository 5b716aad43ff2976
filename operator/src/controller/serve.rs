//! Metrics and health over HTTP: `/metrics` (OpenMetrics text), `/healthz` (the process
//! runs), `/readyz` (this replica leads and its watches are running).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::telemetry::Metrics;

/// The answer to one path, decided without I/O.
pub fn respond(path: &str, metrics: &Metrics, ready: bool) -> (StatusCode, &'static str, String) {
    match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if ready => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not leading yet\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    }
}

/// Serves until the process ends.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| Error::Serve { address, source })?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (status, content_type, body) = respond(
                    request.uri().path(),
                    &metrics,
                    ready.load(Ordering::Relaxed),
                );
                let response = Response::builder()
                    .status(status)
                    .header("content-type", content_type)
                    .body(Full::new(Bytes::from(body)));
                async move { response }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "metrics connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_list_the_reconcile_counters() {
        let metrics = Metrics::default();
        metrics.reconciles.inc();
        metrics.count_failure("ApplyFailed");
        let (status, _, body) = respond("/metrics", &metrics, true);
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("bondnet_reconciles_total 1"), "{body}");
        assert!(
            body.contains("bondnet_reconcile_failures_total{category=\"ApplyFailed\"} 1"),
            "{body}"
        );
    }

    #[test]
    fn readiness_follows_leadership() {
        let metrics = Metrics::default();
        assert_eq!(
            respond("/readyz", &metrics, false).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(respond("/readyz", &metrics, true).0, StatusCode::OK);
        assert_eq!(respond("/healthz", &metrics, false).0, StatusCode::OK);
        assert_eq!(respond("/nope", &metrics, true).0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_server_answers_over_tcp() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = probe.local_addr().expect("addr");
        drop(probe);
        let server = tokio::spawn(serve(
            address,
            Arc::new(Metrics::default()),
            Arc::new(AtomicBool::new(true)),
        ));
        let mut reply = String::new();
        for _ in 0..50 {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .await
                    .expect("write");
                stream.read_to_string(&mut reply).await.expect("read");
                break;
            }
            tokio::task::yield_now().await;
        }
        server.abort();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.ends_with("ok\n"), "{reply}");
    }
}
