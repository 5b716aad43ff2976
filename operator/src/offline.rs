//! `bondnet plan` and `bondnet crds`: read files, call the plan or the CRD types, print YAML.
//! Objects go to stdout as one multi-document stream; the human summary goes to stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use serde::{Deserialize, Serialize};

use crate::api::bond_network::BondNetwork;
use crate::api::bond_node_state::BondNodeState;
use crate::api::device_plugin::DevicePluginConfig;
use crate::api::keys;
use crate::cli::PlanArgs;
use crate::error::{Error, Result};
use crate::plan::{self, Allocation, Inputs, NodeOutcome, Plan};

/// Resources read from the input files.
#[derive(Debug, Default)]
pub struct Loaded {
    /// BondNetworks, in file order.
    pub networks: Vec<BondNetwork>,
    /// BondNodeStates, in file order.
    pub nodes: Vec<BondNodeState>,
    /// Node labels from `Node` documents.
    pub node_labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// Runs `bondnet plan`.
pub fn run_plan(args: &PlanArgs, out: &mut impl Write, summary: &mut impl Write) -> Result<()> {
    let mut loaded = Loaded::default();
    for path in &args.networks {
        load_file(path, &read(path)?, Accept::Networks, &mut loaded)?;
    }
    for path in &args.nodes {
        load_file(path, &read(path)?, Accept::Nodes, &mut loaded)?;
    }
    let previous = match &args.previous {
        Some(path) => previous_allocation(path, &read(path)?)?,
        None => Allocation::default(),
    };
    let settings = args.device_plugin.settings();
    let plan = plan::plan(&Inputs {
        networks: &loaded.networks,
        nodes: &loaded.nodes,
        node_labels: &loaded.node_labels,
        previous: &previous,
        settings: &settings,
    });
    if let Some(bad) = plan.networks.iter().find(|n| n.invalid.is_some()) {
        if let Some(source) = bad.invalid.clone() {
            return Err(Error::InvalidSpec {
                network: bad.key(),
                source,
            });
        }
    }
    out.write_all(render_objects(&plan)?.as_bytes())
        .map_err(Error::Write)?;
    summary
        .write_all(render_summary(&plan).as_bytes())
        .map_err(Error::Write)?;
    Ok(())
}

/// Runs `bondnet crds`.
pub fn run_crds(out: &mut impl Write) -> Result<()> {
    out.write_all(render_crds()?.as_bytes())
        .map_err(Error::Write)
}

/// Header of every generated CRD file.
pub const CRD_HEADER: &str = "# Generated from the Rust types by `bondnet crds`; do not edit.\n\
# Regenerate: BONDNET_BLESS=1 cargo test -p bondnet-operator --test generated\n";

/// Each CRD as its own YAML document, with the file name it is checked in under (`crds/`).
pub fn render_crd_files() -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for crd in crate::api::crds() {
        let name = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("crd"));
        let mut text = CRD_HEADER.to_owned();
        push_doc(&mut text, &crd, "a CustomResourceDefinition")?;
        files.push((name, text));
    }
    Ok(files)
}

/// The CRDs as one multi-document YAML stream.
pub fn render_crds() -> Result<String> {
    Ok(render_crd_files()?
        .into_iter()
        .map(|(_, text)| text)
        .collect())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Which kinds an input file may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// BondNetworks.
    Networks,
    /// BondNodeStates and Nodes.
    Nodes,
}

/// Parses every document of `text` into `loaded`. Empty documents are skipped and `List`
/// documents (as `kubectl get -o yaml` prints) are opened. Errors name the file, the
/// document, the field path and the line.
pub fn load_file(path: &Path, text: &str, accept: Accept, loaded: &mut Loaded) -> Result<()> {
    let parse_error = |document: usize| {
        move |source| Error::ParseYaml {
            path: path.to_owned(),
            document,
            source,
        }
    };
    // First pass: the kind of each document. Second pass: parse each document straight
    // from the file's text, so errors carry the file's own line numbers.
    let mut kinds = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(document).map_err(parse_error(index + 1))?;
        kinds.push((!value.is_null()).then(|| kind_of(&value)));
    }
    for (index, (document, kind)) in serde_yaml::Deserializer::from_str(text)
        .zip(kinds)
        .enumerate()
    {
        let number = index + 1;
        let Some(kind) = kind else { continue };
        if kind == "List" {
            let list = serde_yaml::Value::deserialize(document).map_err(parse_error(number))?;
            let items = match list.get("items") {
                Some(serde_yaml::Value::Sequence(items)) => items.clone(),
                _ => Vec::new(),
            };
            for item in items {
                let kind = kind_of(&item);
                let text = serde_yaml::to_string(&item).map_err(parse_error(number))?;
                let item = serde_yaml::Deserializer::from_str(&text);
                load_object(path, number, &kind, item, accept, loaded)?;
            }
        } else {
            load_object(path, number, &kind, document, accept, loaded)?;
        }
    }
    Ok(())
}

fn kind_of(value: &serde_yaml::Value) -> String {
    value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned()
}

fn load_object<'de>(
    path: &Path,
    document: usize,
    kind: &str,
    de: impl serde::Deserializer<'de, Error = serde_yaml::Error>,
    accept: Accept,
    loaded: &mut Loaded,
) -> Result<()> {
    let parse_error = |source| Error::ParseYaml {
        path: path.to_owned(),
        document,
        source,
    };
    match (accept, kind) {
        (Accept::Networks, "BondNetwork") => {
            loaded
                .networks
                .push(BondNetwork::deserialize(de).map_err(parse_error)?);
        }
        (Accept::Nodes, "BondNodeState") => {
            loaded
                .nodes
                .push(BondNodeState::deserialize(de).map_err(parse_error)?);
        }
        (Accept::Nodes, "Node") => {
            let node = Node::deserialize(de).map_err(parse_error)?;
            if let Some(name) = node.metadata.name {
                loaded
                    .node_labels
                    .insert(name, node.metadata.labels.unwrap_or_default());
            }
        }
        (Accept::Networks, _) => {
            return Err(Error::UnexpectedKind {
                path: path.to_owned(),
                document,
                kind: kind.to_owned(),
                expected: "-f takes BondNetwork documents (apiVersion: bondnet.io/v1alpha1)",
            })
        }
        (Accept::Nodes, _) => {
            return Err(Error::UnexpectedKind {
                path: path.to_owned(),
                document,
                kind: kind.to_owned(),
                expected: "--nodes takes BondNodeState and Node documents",
            })
        }
    }
    Ok(())
}

/// Reads the previous allocation from device-plugin ConfigMap documents (every shard).
pub fn previous_allocation(path: &Path, text: &str) -> Result<Allocation> {
    let mut configs = BTreeMap::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value =
            serde_yaml::Value::deserialize(document).map_err(|source| Error::ParseYaml {
                path: path.to_owned(),
                document: number,
                source,
            })?;
        if value.is_null() {
            continue;
        }
        let config_map: ConfigMap =
            serde_yaml::from_value(value).map_err(|source| Error::ParseYaml {
                path: path.to_owned(),
                document: number,
                source,
            })?;
        for (node, json) in config_map.data.unwrap_or_default() {
            let config: DevicePluginConfig =
                serde_json::from_str(&json).map_err(|e| Error::ParseYaml {
                    path: path.to_owned(),
                    document: number,
                    source: serde::de::Error::custom(format!("data.{node}: {e}")),
                })?;
            configs.insert(node, config);
        }
    }
    Ok(Allocation::from_device_plugin_configs(
        configs.iter().map(|(n, c)| (n.as_str(), c)),
    ))
}

fn push_doc<T: Serialize>(text: &mut String, value: &T, what: &str) -> Result<()> {
    let yaml = serde_yaml::to_string(value).map_err(|source| Error::RenderYaml {
        what: what.to_owned(),
        source,
    })?;
    text.push_str("---\n");
    text.push_str(&yaml);
    Ok(())
}

/// The status the controller applies to a BondNetwork, as an apply patch.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusPatch<'a> {
    /// `bondnet.io/v1alpha1`.
    pub api_version: String,
    /// `BondNetwork`.
    pub kind: &'static str,
    /// Name and namespace.
    pub metadata: PatchMeta<'a>,
    /// The status.
    pub status: &'a crate::api::bond_network::BondNetworkStatus,
}

/// Metadata of a status patch.
#[derive(Serialize)]
pub struct PatchMeta<'a> {
    /// Object name.
    pub name: &'a str,
    /// Object namespace.
    pub namespace: &'a str,
}

/// Every object of the plan: the device-plugin ConfigMap, then per network its SR-IOV NADs,
/// its bond NAD and its status.
pub fn render_objects(plan: &Plan<'_>) -> Result<String> {
    let mut text = String::new();
    for configmap in plan::device_plugin_configmaps(plan) {
        push_doc(&mut text, &configmap, "a device-plugin ConfigMap")?;
    }
    for network in &plan.networks {
        for nad in &network.nads {
            push_doc(&mut text, nad, "a NetworkAttachmentDefinition")?;
        }
        let patch = StatusPatch {
            api_version: format!("{}/{}", keys::GROUP, keys::VERSION),
            kind: "BondNetwork",
            metadata: PatchMeta {
                name: network.name,
                namespace: network.namespace,
            },
            status: &network.status,
        };
        push_doc(&mut text, &patch, "a BondNetwork status")?;
    }
    Ok(text)
}

/// Per network and node: which PF serves which slot, or why the node cannot host the bond.
pub fn render_summary(plan: &Plan<'_>) -> String {
    let mut text = String::new();
    for network in &plan.networks {
        let status = &network.status;
        text.push_str(&format!(
            "BondNetwork {}: {} of {} selected nodes can host the bond\n",
            network.key(),
            status.eligible_nodes,
            status.eligible_nodes + status.ineligible_node_count,
        ));
        for slot in &network.slots {
            text.push_str(&format!(
                "  port {} -> NAD {}, resource {}\n",
                slot.ifname, slot.nad, slot.qualified_resource
            ));
        }
        for (node, outcome) in &network.nodes {
            match outcome {
                NodeOutcome::Hosted(slots) => {
                    let ports: Vec<String> = slots
                        .iter()
                        .map(|a| {
                            format!(
                                "p{}={} ({}, NIC {}) VFs {}",
                                a.slot, a.pf.name, a.pf.pci_address, a.pf.nic_id, a.range
                            )
                        })
                        .collect();
                    text.push_str(&format!("  {node}: {}\n", ports.join("  ")));
                }
                NodeOutcome::Ineligible(reason) => {
                    text.push_str(&format!("  {node}: cannot host: {reason}\n"));
                }
            }
        }
        let unlisted = status.ineligible_node_count as usize
            - status
                .ineligible_nodes
                .len()
                .min(status.ineligible_node_count as usize);
        if unlisted > 0 {
            text.push_str(&format!(
                "  ... and {unlisted} more nodes that cannot host the bond\n"
            ));
        }
    }
    text
}
