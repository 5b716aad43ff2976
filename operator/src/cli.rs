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
    /// Address of the plain-HTTP `GET /metrics` and `GET /healthz`.
    #[arg(
        long,
        env = "BONDNET_WEBHOOK_METRICS_ADDRESS",
        default_value = "0.0.0.0:8081"
    )]
    pub metrics_address: std::net::SocketAddr,
    /// Connections served at once; past that the listener waits.
    #[arg(long, env = "BONDNET_WEBHOOK_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

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

    /// Also write every node's device-plugin config into ConfigMaps (one key per node, in
    /// `--device-plugin-configmap`, sharded by size into `<name>-0`, `<name>-1`, ... when it
    /// passes 750 kB), for an SR-IOV device plugin bondnet's agent does not configure.
    #[arg(long, env = "BONDNET_DEVICE_PLUGIN_CONFIGMAP_EXPORT")]
    pub device_plugin_configmap_export: bool,

    /// Deprecated and ignored: the ConfigMap export is sharded by size on its own.
    #[arg(long, env = "BONDNET_DEVICE_PLUGIN_SHARDS", hide = true)]
    pub device_plugin_shards: Option<u32>,

    /// Namespace of the leader Lease (the controller's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = keys::DEVICE_PLUGIN_NAMESPACE)]
    pub lease_namespace: String,

    /// Name of the leader Lease.
    #[arg(long, env = "BONDNET_LEASE_NAME", default_value = "bondnet-controller")]
    pub lease_name: String,

    /// This replica's identity in the Lease (its pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: String,

    /// Seconds a leader Lease lasts without renewal before another replica may take it.
    #[arg(long, env = "BONDNET_LEASE_DURATION_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_duration_seconds: u64,

    /// Seconds the leader goes on without a successful renewal before it stops writing and
    /// exits; must be shorter than the lease duration, which leaves the other replica's
    /// takeover the difference as a margin.
    #[arg(long, env = "BONDNET_LEASE_RENEW_DEADLINE_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_renew_deadline_seconds: u64,

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

    /// Seconds between sysfs scans (the node state is written only when a scan differs).
    #[arg(long, env = "BONDNET_SCAN_INTERVAL_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_seconds: u64,

    /// Where to render the SR-IOV device plugin's config file from the node's BondNodeState
    /// spec (as the agent's container sees it); unset renders nothing.
    #[arg(long, env = "BONDNET_DEVICE_PLUGIN_CONFIG_FILE")]
    pub device_plugin_config_file: Option<PathBuf>,

    /// Label selector of the device-plugin pods to restart on this node when its config file
    /// changed (the plugin reads it only at start); unset leaves restarts to you.
    #[arg(
        long,
        env = "BONDNET_DEVICE_PLUGIN_SELECTOR",
        requires = "device_plugin_config_file"
    )]
    pub device_plugin_selector: Option<String>,

    /// Namespace of those device-plugin pods.
    #[arg(long, env = "POD_NAMESPACE", default_value = keys::DEVICE_PLUGIN_NAMESPACE)]
    pub device_plugin_namespace: String,
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

    /// A device-plugin ConfigMap export (or the layout before per-node state), to keep
    /// existing VF ranges.
    #[arg(long = "previous")]
    pub previous: Option<PathBuf>,

    #[command(flatten)]
    pub device_plugin: DevicePluginArgs,
}

/// Where the device-plugin ConfigMaps live: the export, and the layout before per-node state,
/// which the controller reads once on upgrade to keep every VF range.
#[derive(Debug, Clone, Args)]
pub struct DevicePluginArgs {
    /// Namespace of the device-plugin ConfigMaps.
    #[arg(long, env = "BONDNET_DEVICE_PLUGIN_NAMESPACE", default_value = keys::DEVICE_PLUGIN_NAMESPACE)]
    pub device_plugin_namespace: String,

    /// Name of the device-plugin ConfigMap (one key per node; `<name>-0`, `<name>-1`, ... when
    /// sharded).
    #[arg(long, env = "BONDNET_DEVICE_PLUGIN_CONFIGMAP", default_value = keys::DEVICE_PLUGIN_CONFIGMAP)]
    pub device_plugin_configmap: String,
}

impl DevicePluginArgs {
    /// The plan's settings from these flags.
    pub fn settings(&self) -> crate::plan::Settings {
        crate::plan::Settings {
            device_plugin_namespace: self.device_plugin_namespace.clone(),
            device_plugin_configmap: self.device_plugin_configmap.clone(),
        }
    }
}
