//! Command-line types. `main.rs` parses these and dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::api::keys;

/// bondnet: pod-level bonding over SR-IOV VFs on distinct PFs, made declarative.
#[derive(Debug, Parser)]
#[command(name = "bondnet", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Offline dry run: print every object the controller would write for these inputs.
    Plan(PlanArgs),
    /// Print the CustomResourceDefinitions as multi-document YAML.
    Crds,
    /// Node agent: install the bond plugin, publish this node's SR-IOV PFs.
    Agent(AgentArgs),
    /// Controller: reconcile BondNetworks into device-plugin config, NADs and status.
    Controller(ControllerArgs),
    /// Mutating admission webhook: expands a pod's bond network into its full Multus list.
    Webhook(WebhookArgs),
}

/// Flags of `bondnet webhook`.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Address of the HTTPS server (`POST /mutate`, `GET /healthz`, `GET /readyz`).
    #[arg(long, env = "BONDNET_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: std::net::SocketAddr,

    /// Admit pods naming a BondNetwork that is not Ready (they wait for their VFs) instead
    /// of denying them with the reason.
    #[arg(long, env = "BONDNET_WEBHOOK_ALLOW_NOT_READY")]
    pub allow_not_ready: bool,

    /// Serve this certificate (PEM, e.g. from cert-manager) instead of making one; needs
    /// --tls-key-file. Re-read on every certificate check.
    #[arg(long, env = "BONDNET_WEBHOOK_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Key of --tls-cert-file (PEM).
    #[arg(long, env = "BONDNET_WEBHOOK_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// The webhook's namespace: where its certificate Secret lives.
    #[arg(long, env = "POD_NAMESPACE", default_value = keys::DEVICE_PLUGIN_NAMESPACE)]
    pub namespace: String,

    /// Secret holding the self-managed CA and serving certificate.
    #[arg(
        long,
        env = "BONDNET_WEBHOOK_TLS_SECRET",
        default_value = "bondnet-webhook-tls"
    )]
    pub tls_secret: String,

    /// Service through which the API server calls the webhook (names in the certificate).
    #[arg(
        long,
        env = "BONDNET_WEBHOOK_SERVICE",
        default_value = "bondnet-webhook"
    )]
    pub service: String,

    /// MutatingWebhookConfiguration whose caBundle is kept current; empty leaves it alone.
    #[arg(
        long,
        env = "BONDNET_WEBHOOK_CONFIGURATION",
        default_value = "bondnet-webhook"
    )]
    pub webhook_configuration: String,

    /// Seconds between certificate checks (renewal, reload, caBundle).
    #[arg(long, env = "BONDNET_WEBHOOK_CERT_CHECK_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub cert_check_seconds: u64,
}

/// Flags of `bondnet controller`.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub device_plugin: DevicePluginArgs,

    /// Label selector of the SR-IOV device-plugin pods (in the device-plugin namespace) to
    /// restart on nodes whose config changed; unset leaves restarts to you.
    #[arg(long, env = "BONDNET_DEVICE_PLUGIN_SELECTOR")]
    pub device_plugin_selector: Option<String>,

    /// Namespace of the leader Lease (the controller's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = keys::DEVICE_PLUGIN_NAMESPACE)]
    pub lease_namespace: String,

    /// Name of the leader Lease.
    #[arg(long, env = "BONDNET_LEASE_NAME", default_value = "bondnet-controller")]
    pub lease_name: String,

    /// This replica's identity in the Lease (its pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: String,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "BONDNET_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: std::net::SocketAddr,
}

/// Flags of `bondnet agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// This node's name (from the downward API).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,

    /// Root under which sysfs is found at `sys/` (the host's `/`).
    #[arg(long, env = "BONDNET_SYSFS_ROOT", default_value = "/")]
    pub sysfs_root: PathBuf,

    /// The `bond` binary to install; omit to skip the install.
    #[arg(long, env = "BONDNET_PLUGIN_SOURCE")]
    pub plugin_source: Option<PathBuf>,

    /// The host's CNI bin dir, as mounted in the agent's container.
    #[arg(long, env = "BONDNET_CNI_BIN_DIR", default_value = "/host/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,

    /// Seconds between sysfs scans.
    #[arg(long, env = "BONDNET_SCAN_INTERVAL_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_seconds: u64,
}

/// Flags of `bondnet plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Multi-document YAML with BondNetworks (a `List` of them works too). Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub networks: Vec<PathBuf>,

    /// Multi-document YAML with BondNodeStates, and optionally Nodes for their labels.
    #[arg(long = "nodes", required = true)]
    pub nodes: Vec<PathBuf>,

    /// The device-plugin ConfigMap the controller wrote last, to keep existing VF ranges.
    #[arg(long = "previous")]
    pub previous: Option<PathBuf>,

    #[command(flatten)]
    pub device_plugin: DevicePluginArgs,
}

/// Where the device-plugin ConfigMap lives.
#[derive(Debug, Clone, Args)]
pub struct DevicePluginArgs {
    /// Namespace of the SR-IOV device plugin's ConfigMap.
    #[arg(long, env = "BONDNET_DEVICE_PLUGIN_NAMESPACE", default_value = keys::DEVICE_PLUGIN_NAMESPACE)]
    pub device_plugin_namespace: String,

    /// Name of the SR-IOV device plugin's ConfigMap (one key per node).
    #[arg(long, env = "BONDNET_DEVICE_PLUGIN_CONFIGMAP", default_value = keys::DEVICE_PLUGIN_CONFIGMAP)]
    pub device_plugin_configmap: String,

    /// Spread the per-node keys over this many ConfigMaps (`<name>-0`, `<name>-1`, ...) so
    /// none passes the 1 MiB object limit; 1 keeps the single `<name>`.
    #[arg(long, env = "BONDNET_DEVICE_PLUGIN_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub device_plugin_shards: u32,
}

impl DevicePluginArgs {
    /// The plan's settings from these flags.
    pub fn settings(&self) -> crate::plan::Settings {
        crate::plan::Settings {
            device_plugin_namespace: self.device_plugin_namespace.clone(),
            device_plugin_configmap: self.device_plugin_configmap.clone(),
            device_plugin_shards: self.device_plugin_shards,
        }
    }
}
