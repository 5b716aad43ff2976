//! The crate's one error type. Each variant names the step that failed and carries what a
//! person needs to act; `category()` is a stable label for metrics and Event reasons.

use std::path::PathBuf;

use crate::api::bond_network::SpecError;

/// Everything that can fail in bondnet's operator binary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A YAML document did not parse as the resource its `kind` names.
    #[error("{path}: document {document}: {source}")]
    ParseYaml {
        path: PathBuf,
        document: usize,
        #[source]
        source: serde_yaml::Error,
    },

    /// A YAML document has a kind this input does not take.
    #[error("{path}: document {document}: kind {kind:?} is not expected here; {expected}")]
    UnexpectedKind {
        path: PathBuf,
        document: usize,
        kind: String,
        expected: &'static str,
    },

    /// A BondNetwork that the API server's CEL rules would refuse.
    #[error("BondNetwork {network}: {source}")]
    InvalidSpec {
        network: String,
        #[source]
        source: SpecError,
    },

    /// Output could not be rendered or written.
    #[error("cannot write output: {0}")]
    Write(#[source] std::io::Error),

    /// sysfs could not be listed.
    #[error("cannot scan {root}/sys/class/net: {source}")]
    Sysfs {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The bond plugin could not be installed.
    #[error(transparent)]
    Install(#[from] crate::agent::install::InstallError),

    /// The node's BondNodeState could not be written.
    #[error("cannot publish BondNodeState {node}: {source}")]
    Publish {
        node: String,
        #[source]
        source: kube::Error,
    },

    /// No Kubernetes client could be built (no kubeconfig, no in-cluster service account).
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),

    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),

    /// An API request of the controller failed; `step` says which (get, list, apply, delete).
    #[error("cannot {step} {object}: {source}")]
    Kube {
        step: KubeStep,
        object: String,
        #[source]
        source: kube::Error,
    },

    /// An API request of the controller did not answer in time.
    #[error("cannot {step} {object}: no answer within {after:?}")]
    Timeout {
        step: KubeStep,
        object: String,
        after: std::time::Duration,
    },

    /// The planner's blocking task ended without a plan (it panicked or was cancelled).
    #[error("the plan did not finish: {0}")]
    Planner(#[source] tokio::task::JoinError),

    /// The metrics and health server could not start.
    #[error("cannot serve metrics on {address}: {source}")]
    Serve {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// A device-plugin ConfigMap shard would pass Kubernetes' object size limit.
    #[error("device-plugin ConfigMap {name} would hold {bytes} bytes, over the 1 MiB object limit, even with the export spread over {shards} shards; turn off --device-plugin-configmap-export and let each node's agent render its own config")]
    ConfigMapTooLarge {
        name: String,
        bytes: usize,
        shards: u32,
    },

    /// A watch store's writer went away before its first full list.
    #[error("the {kind} watch stopped before its first full list")]
    StoreClosed { kind: &'static str },

    /// Leadership was lost; the process exits so another replica takes over.
    #[error("lost the leader lease {lease}")]
    LostLease { lease: String },

    /// The leader Lease's timing cannot keep two leaders apart.
    #[error("--lease-renew-deadline-seconds ({renew_deadline:?}) must be shorter than --lease-duration-seconds ({duration:?}) and longer than {floor:?} (a renewal period and a request's timeout); lower the deadline or raise the duration")]
    LeaseTiming {
        duration: std::time::Duration,
        renew_deadline: std::time::Duration,
        floor: std::time::Duration,
    },

    /// A request on the leader Lease did not answer in time.
    #[error("the {step} of the leader lease {lease} did not answer within {after:?}")]
    LeaseTimeout {
        lease: String,
        step: &'static str,
        after: std::time::Duration,
    },

    /// An object could not be rendered as YAML.
    #[error("cannot render {what} as YAML: {source}")]
    RenderYaml {
        what: String,
        #[source]
        source: serde_yaml::Error,
    },

    /// `BONDNET_LOG_FORMAT` names no format.
    #[error("BONDNET_LOG_FORMAT is {value:?}; set it to json or text (the chart's logFormat)")]
    LogFormat { value: String },

    /// The webhook's HTTPS listener could not be opened.
    #[error("cannot listen on {address}: {source}; set --listen to a free address")]
    WebhookListen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The webhook's CA or serving certificate could not be made or read.
    #[error(transparent)]
    Cert(#[from] crate::webhook::cert::CertError),

    /// rustls refused the serving certificate, its key, or the server configuration.
    #[error("the serving {what} is unusable: {source}")]
    Tls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },

    /// The webhook's certificate Secret changed under every attempt to write it.
    #[error("{secret} kept changing under three attempts to write it; is another program writing it? Give the webhook a Secret of its own with --tls-secret")]
    SecretContended { secret: String },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A stable PascalCase label for metrics and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::ReadFile { .. } => "ReadFile",
            Self::ParseYaml { .. } => "ParseYaml",
            Self::UnexpectedKind { .. } => "UnexpectedKind",
            Self::InvalidSpec { .. } => "InvalidSpec",
            Self::Write(_) => "Write",
            Self::Sysfs { .. } => "Sysfs",
            Self::Install(_) => "Install",
            Self::Publish { .. } => "Publish",
            Self::Client(_) => "Client",
            Self::Kube { step, .. } => step.category(),
            Self::Timeout { .. } => "RequestTimeout",
            Self::Planner(_) => "PlannerFailed",
            Self::Serve { .. } => "Serve",
            Self::LostLease { .. } => "LostLease",
            Self::LeaseTimeout { .. } => "LeaseTimeout",
            Self::ConfigMapTooLarge { .. } => "ConfigMapTooLarge",
            Self::LeaseTiming { .. } => "LeaseTiming",
            Self::StoreClosed { .. } => "StoreClosed",
            Self::Runtime(_) => "Runtime",
            Self::RenderYaml { .. } => "RenderYaml",
            Self::LogFormat { .. } => "LogFormat",
            Self::WebhookListen { .. } => "WebhookListen",
            Self::Cert(_) => "Cert",
            Self::Tls { .. } => "Tls",
            Self::SecretContended { .. } => "SecretContended",
        }
    }
}

/// Which kind of API request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeStep {
    /// Reading one object.
    Get,
    /// Listing objects.
    List,
    /// Creating an object.
    Create,
    /// Replacing an object (with its resourceVersion).
    Update,
    /// Server-side apply.
    Apply,
    /// Deleting objects.
    Delete,
    /// Publishing an Event.
    Event,
}

impl KubeStep {
    fn category(self) -> &'static str {
        match self {
            Self::Get => "GetFailed",
            Self::List => "ListFailed",
            Self::Create => "CreateFailed",
            Self::Update => "UpdateFailed",
            Self::Apply => "ApplyFailed",
            Self::Delete => "DeleteFailed",
            Self::Event => "EventFailed",
        }
    }
}

impl std::fmt::Display for KubeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Create => "create",
            Self::Update => "update",
            Self::Apply => "apply",
            Self::Delete => "delete",
            Self::Event => "publish an event for",
        })
    }
}

impl Error {
    /// Wraps a client error with the step and object it concerns.
    pub fn kube(step: KubeStep, object: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let object = object.into();
        move |source| Self::Kube {
            step,
            object,
            source,
        }
    }
}
