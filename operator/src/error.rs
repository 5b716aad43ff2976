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

    /// An object could not be rendered as YAML.
    #[error("cannot render {what} as YAML: {source}")]
    RenderYaml {
        what: String,
        #[source]
        source: serde_yaml::Error,
    },
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
            Self::Runtime(_) => "Runtime",
            Self::RenderYaml { .. } => "RenderYaml",
        }
    }
}
