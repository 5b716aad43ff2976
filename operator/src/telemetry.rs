//! Tracing setup, once per process: logs on stderr, filtered by `RUST_LOG` (default `info`),
//! as JSON when `BONDNET_LOG_FORMAT=json` and compact text otherwise. Text carries ANSI colour
//! only when stderr is a terminal: never into files or `kubectl logs`.

use std::io::IsTerminal;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::error::{Error, Result};

/// The environment variable choosing the log format.
pub const LOG_FORMAT_VAR: &str = "BONDNET_LOG_FORMAT";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object a line.
    Json,
    /// Compact text, coloured when `ansi` is set.
    Text {
        /// Whether to write ANSI colour codes.
        ansi: bool,
    },
}

impl LogFormat {
    /// The format `BONDNET_LOG_FORMAT` asks for (`json` or `text`; unset is text), with
    /// colour only when the output is a terminal.
    pub fn from_setting(value: Option<&str>, output_is_terminal: bool) -> Result<Self> {
        match value.map(str::trim) {
            Some("json") => Ok(Self::Json),
            None | Some("" | "text") => Ok(Self::Text {
                ansi: output_is_terminal,
            }),
            Some(other) => Err(Error::LogFormat {
                value: other.to_owned(),
            }),
        }
    }
}

/// Installs the global subscriber. Logs go to stderr: stdout carries `plan`'s YAML.
pub fn init() -> Result<()> {
    let format = LogFormat::from_setting(
        std::env::var(LOG_FORMAT_VAR).ok().as_deref(),
        std::io::stderr().is_terminal(),
    )?;
    install(format, std::io::stderr);
    Ok(())
}

/// Installs the global subscriber writing `format` to `writer`. A second call (as in tests)
/// leaves the first subscriber in place.
pub fn install<W>(format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = subscriber(format, writer).try_init();
}

/// The subscriber writing `format` to `writer`, filtered by `RUST_LOG` (default `info`).
pub fn subscriber<W>(format: LogFormat, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().finish()),
        LogFormat::Text { ansi } => Box::new(builder.compact().with_ansi(ansi).finish()),
    }
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

/// Labels of the writes counter: the kind of object and the request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `NetworkAttachmentDefinition`, `BondNodeState`, `BondNetworkStatus`, `BondNetwork`
    /// (finalizers), `ConfigMap` or `Event`.
    pub kind: &'static str,
    /// `apply`, `delete`, `patch` or `create`.
    pub verb: &'static str,
}

/// The controller's metrics, registered under the `bondnet_` prefix.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Planner cycles started (each plans, or reuses the last plan, diffs and writes).
    pub reconciles: Counter,
    /// Plans computed (cycles whose inputs matched the last plan reuse it).
    pub plans: Counter,
    /// Failed writes (and cycles) by category.
    pub failures: Family<CategoryLabel, Counter>,
    /// Write requests sent, by kind and verb (each attempt counts).
    pub writes: Family<WriteLabels, Counter>,
    /// Planner cycle duration in seconds.
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
        let writes = Family::<WriteLabels, Counter>::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Planner cycles started: plan (or reuse the last plan), diff, write",
            reconciles.clone(),
        );
        registry.register(
            "plans",
            "Plans of all networks computed; cycles with unchanged inputs reuse the last",
            plans.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed writes and cycles by error category",
            failures.clone(),
        );
        registry.register(
            "writes",
            "Write requests sent by kind and verb, each attempt counted",
            writes.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per planner cycle",
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
            writes,
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

    /// Counts one write request.
    pub fn count_write(&self, kind: &'static str, verb: &'static str) {
        self.writes.get_or_create(&WriteLabels { kind, verb }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

// === the webhook's metrics ===

/// Labels of a review: its outcome and, for denials and errors, why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// `patched`, `unchanged`, `denied` or `error`.
    pub outcome: &'static str,
    /// The denial's reason (`NotReady`, `InvalidAnnotation`, ...) or the error's kind
    /// (`BadRequest`, `Deadline`, `Render`); empty otherwise.
    pub reason: &'static str,
}

/// The webhook's metrics, registered under the `bondnet_webhook_` prefix.
#[derive(Debug)]
pub struct WebhookMetrics {
    registry: Registry,
    /// Reviews answered, by outcome.
    pub reviews: Family<ReviewLabels, Counter>,
    /// Time from the request's arrival to its answer, in seconds.
    pub review_duration: Histogram,
    /// Connections being served.
    pub connections: Gauge,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("bondnet_webhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        let review_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let connections = Gauge::default();
        registry.register(
            "reviews",
            "AdmissionReviews answered, by outcome (patched, unchanged, denied, error) and reason",
            reviews.clone(),
        );
        registry.register(
            "review_duration_seconds",
            "Time from a review's arrival to its answer",
            review_duration.clone(),
        );
        registry.register(
            "connections",
            "HTTPS connections being served",
            connections.clone(),
        );
        Self {
            registry,
            reviews,
            review_duration,
            connections,
        }
    }
}

impl WebhookMetrics {
    /// Counts one review.
    pub fn count_review(&self, outcome: &'static str, reason: &'static str) {
        self.reviews
            .get_or_create(&ReviewLabels { outcome, reason })
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer, as a file or a pipe to `kubectl logs` would be.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing::subscriber::with_default(subscriber(format, move || writer.clone()), || {
            tracing::info!(network = "demo/bond-net1", "planned");
            tracing::warn!("watch failed; retrying");
        });
        let bytes = buffer.0.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn text_into_a_file_or_pipe_has_no_colour_codes() {
        let format = LogFormat::from_setting(None, false).expect("default");
        assert_eq!(format, LogFormat::Text { ansi: false });
        let text = logged(format);
        assert!(
            text.contains("planned") && text.contains("demo/bond-net1"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "ANSI escapes in {text:?}");
    }

    #[test]
    fn text_on_a_terminal_is_coloured() {
        let format = LogFormat::from_setting(Some("text"), true).expect("text");
        assert_eq!(format, LogFormat::Text { ansi: true });
        assert!(logged(format).contains("\u{1b}["));
    }

    #[test]
    fn json_is_one_object_a_line_even_on_a_terminal() {
        let format = LogFormat::from_setting(Some("json"), true).expect("json");
        let text = logged(format);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["fields"]["message"], "planned");
        assert_eq!(lines[0]["fields"]["network"], "demo/bond-net1");
        assert_eq!(lines[1]["level"], "WARN");
        assert!(!text.contains('\u{1b}'), "{text:?}");
    }

    #[test]
    fn an_unknown_format_is_refused_naming_the_variable() {
        let err = LogFormat::from_setting(Some("xml"), false).expect_err("xml");
        let message = err.to_string();
        assert!(
            message.contains("BONDNET_LOG_FORMAT") && message.contains("\"xml\""),
            "{message}"
        );
        assert_eq!(err.category(), "LogFormat");
    }
}
