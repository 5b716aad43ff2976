//! Tracing setup, once per process: compact logs on stderr, filtered by `RUST_LOG`
//! (default `info`), JSON when `BONDNET_LOG_FORMAT=json`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Logs go to stderr: stdout carries `plan`'s YAML.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("BONDNET_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (as in tests) leaves the first subscriber in place.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Resolves on SIGTERM (as a pod is stopped) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

// === metrics ===

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of the failure counter: the error's category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    /// `Error::category()`.
    pub category: String,
}

/// The controller's metrics, registered under the `bondnet_` prefix.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles started.
    pub reconciles: Counter,
    /// Plans computed (reconciles whose inputs matched the last plan reuse it).
    pub plans: Counter,
    /// Reconcile failures by category.
    pub failures: Family<CategoryLabel, Counter>,
    /// Reconcile duration in seconds.
    pub reconcile_duration: Histogram,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("bondnet");
        let reconciles = Counter::default();
        let plans = Counter::default();
        let failures = Family::<CategoryLabel, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "BondNetwork reconciles started",
            reconciles.clone(),
        );
        registry.register(
            "plans",
            "Plans of all networks computed; reconciles with unchanged inputs reuse the last",
            plans.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles by error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            plans,
            failures,
            reconcile_duration,
            leader,
        }
    }
}

impl Metrics {
    /// Counts a failure under its category.
    pub fn count_failure(&self, category: &str) {
        self.failures
            .get_or_create(&CategoryLabel {
                category: category.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
