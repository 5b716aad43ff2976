//! Writes: server-side apply of NADs, BondNodeState specs, the device-plugin ConfigMap export
//! and status under one field manager, and explicit deletion of bondnet's NADs no plan wants any more (orphans), since
//! a cluster may have no garbage collector and owner references do not shrink a set.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::api::bond_network::{BondNetwork, BondNetworkStatus};
use crate::api::bond_node_state::BondNodeState;
use crate::api::device_plugin::DevicePluginConfig;
use crate::api::keys;
use crate::api::nad::NetworkAttachmentDefinition;
use crate::error::{Error, KubeStep, Result};
use crate::plan::names;

fn params() -> PatchParams {
    PatchParams::apply(keys::FIELD_MANAGER).force()
}

/// Applies every NAD of a network.
pub async fn apply_nads(
    client: &Client,
    namespace: &str,
    nads: &[NetworkAttachmentDefinition],
) -> Result<()> {
    let api: Api<NetworkAttachmentDefinition> = Api::namespaced(client.clone(), namespace);
    for nad in nads {
        let name = nad.name_any();
        api.patch(&name, &params(), &Patch::Apply(nad))
            .await
            .map_err(Error::kube(
                KubeStep::Apply,
                format!("NetworkAttachmentDefinition {namespace}/{name}"),
            ))?;
    }
    Ok(())
}

/// Deletes the network's NADs whose names are not in `keep`; returns the deleted names.
pub async fn delete_orphan_nads(
    client: &Client,
    namespace: &str,
    network: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let api: Api<NetworkAttachmentDefinition> = Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "{}={},{}={}",
        keys::LABEL_MANAGED_BY,
        keys::MANAGED_BY,
        keys::LABEL_NETWORK,
        names::network_label_value(network)
    );
    let existing = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube(
            KubeStep::List,
            format!("NetworkAttachmentDefinitions of {namespace}/{network}"),
        ))?;
    let mut deleted = Vec::new();
    for nad in existing {
        let name = nad.name_any();
        if keep.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => deleted.push(name),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Kube {
                    step: KubeStep::Delete,
                    object: format!("NetworkAttachmentDefinition {namespace}/{name}"),
                    source,
                })
            }
        }
    }
    Ok(deleted)
}

/// Reads the device-plugin ConfigMap, if it exists.
pub async fn get_configmap(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<ConfigMap>> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(Error::kube(
            KubeStep::Get,
            format!("ConfigMap {namespace}/{name}"),
        ))
}

/// Nodes whose device-plugin config differs between `current` and `desired`.
pub fn changed_nodes(current: Option<&ConfigMap>, desired: &ConfigMap) -> Vec<String> {
    let empty = BTreeMap::new();
    let before = current.and_then(|c| c.data.as_ref()).unwrap_or(&empty);
    let after = desired.data.as_ref().unwrap_or(&empty);
    let nodes: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    nodes
        .into_iter()
        .filter(|node| before.get(*node) != after.get(*node))
        .cloned()
        .collect()
}

/// Applies the device-plugin ConfigMap when it differs; returns the nodes whose config changed.
pub async fn apply_configmap(
    client: &Client,
    current: Option<&ConfigMap>,
    desired: &ConfigMap,
) -> Result<Vec<String>> {
    let changed = changed_nodes(current, desired);
    if changed.is_empty() && current.is_some() {
        return Ok(changed);
    }
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .patch(&name, &params(), &Patch::Apply(desired))
        .await
        .map_err(Error::kube(
            KubeStep::Apply,
            format!("ConfigMap {namespace}/{name}"),
        ))?;
    Ok(changed)
}

/// Applies a node's device-plugin pools to its BondNodeState's spec, with an owner reference
/// to its Node so the garbage collector removes the state when the Node goes.
pub async fn apply_node_state(
    client: &Client,
    node: &str,
    node_uid: &str,
    config: &DevicePluginConfig,
) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": format!("{}/{}", keys::GROUP, keys::VERSION),
        "kind": "BondNodeState",
        "metadata": {
            "name": node,
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Node",
                "name": node,
                "uid": node_uid,
            }],
        },
        "spec": { "devicePlugin": config },
    });
    Api::<BondNodeState>::all(client.clone())
        .patch(node, &params(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube(
            KubeStep::Apply,
            format!("BondNodeState {node}"),
        ))?;
    Ok(())
}

/// Applies a BondNetwork's status subresource.
pub async fn apply_status(
    client: &Client,
    network: &BondNetwork,
    status: &BondNetworkStatus,
) -> Result<()> {
    let namespace = network.namespace().unwrap_or_default();
    let name = network.name_any();
    let patch = serde_json::json!({
        "apiVersion": format!("{}/{}", keys::GROUP, keys::VERSION),
        "kind": "BondNetwork",
        "metadata": { "name": name },
        "status": status,
    });
    Api::<BondNetwork>::namespaced(client.clone(), &namespace)
        .patch_status(&name, &params(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube(
            KubeStep::Apply,
            format!("status of BondNetwork {namespace}/{name}"),
        ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn changed_nodes_lists_added_removed_and_modified_keys_only() {
        let before = cm(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let after = cm(&[("a", "1"), ("b", "2"), ("d", "1")]);
        assert_eq!(changed_nodes(Some(&before), &after), ["b", "c", "d"]);
        assert_eq!(changed_nodes(None, &cm(&[("a", "1")])), ["a"]);
        assert!(changed_nodes(Some(&before), &before).is_empty());
    }
}
