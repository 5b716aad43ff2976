//! One request per function: server-side apply of a NAD, a BondNodeState spec, a device-plugin
//! ConfigMap shard and a BondNetwork's status under the one field manager
//! ([`keys::FIELD_MANAGER`]), the deletion of a NAD no plan wants any more (an orphan: a
//! cluster may have no garbage collector, and owner references do not shrink a set), the
//! finalizer's JSON patches, and the read of a ConfigMap. The [`writer`](super::writer)
//! decides when, bounds each by a timeout and retries.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::api::bond_network::{BondNetwork, BondNetworkStatus};
use crate::api::bond_node_state::BondNodeState;
use crate::api::device_plugin::DevicePluginConfig;
use crate::api::keys;
use crate::api::nad::NetworkAttachmentDefinition;
use crate::error::{Error, KubeStep, Result};

fn params() -> PatchParams {
    PatchParams::apply(keys::FIELD_MANAGER).force()
}

/// Applies one NAD.
pub async fn apply_nad(client: &Client, nad: &NetworkAttachmentDefinition) -> Result<()> {
    let namespace = nad.namespace().unwrap_or_default();
    let name = nad.name_any();
    Api::<NetworkAttachmentDefinition>::namespaced(client.clone(), &namespace)
        .patch(&name, &params(), &Patch::Apply(nad))
        .await
        .map_err(Error::kube(
            KubeStep::Apply,
            format!("NetworkAttachmentDefinition {namespace}/{name}"),
        ))?;
    Ok(())
}

/// Deletes one NAD; one already gone counts as deleted.
pub async fn delete_nad(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let api: Api<NetworkAttachmentDefinition> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Kube {
            step: KubeStep::Delete,
            object: format!("NetworkAttachmentDefinition {namespace}/{name}"),
            source,
        }),
    }
}

/// Reads a device-plugin ConfigMap, if it exists.
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

/// Applies one device-plugin ConfigMap shard.
pub async fn apply_configmap(client: &Client, desired: &ConfigMap) -> Result<()> {
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .patch(&name, &params(), &Patch::Apply(desired))
        .await
        .map_err(Error::kube(
            KubeStep::Apply,
            format!("ConfigMap {namespace}/{name}"),
        ))?;
    Ok(())
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
    namespace: &str,
    name: &str,
    status: &BondNetworkStatus,
) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": format!("{}/{}", keys::GROUP, keys::VERSION),
        "kind": "BondNetwork",
        "metadata": { "name": name },
        "status": status,
    });
    Api::<BondNetwork>::namespaced(client.clone(), namespace)
        .patch_status(name, &params(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube(
            KubeStep::Apply,
            format!("status of BondNetwork {namespace}/{name}"),
        ))?;
    Ok(())
}

/// Sends a JSON patch of a BondNetwork's finalizers (see [`super::finalizer`]).
pub async fn patch_finalizers(
    client: &Client,
    namespace: &str,
    name: &str,
    patch: json_patch::Patch,
) -> Result<()> {
    Api::<BondNetwork>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(Error::kube(
            KubeStep::Update,
            format!("finalizers of BondNetwork {namespace}/{name}"),
        ))?;
    Ok(())
}
