//! What the controller answers on its metrics address (served by `crate::metrics_server`):
//! `/metrics` (OpenMetrics text), `/healthz` (the process runs), `/readyz` (this replica leads
//! and its watches are running).

use http::StatusCode;

use crate::metrics_server::{Answer, OPENMETRICS};
use crate::telemetry::Metrics;

/// The answer to one path, decided without I/O.
pub fn respond(path: &str, metrics: &Metrics, ready: bool) -> Answer {
    match path {
        "/metrics" => (StatusCode::OK, OPENMETRICS, metrics.encode()),
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
}
