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
}
