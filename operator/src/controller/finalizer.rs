//! The per-object step: each BondNetwork carries [`keys::FINALIZER`] so that, when it is
//! deleted, its device-plugin pools and NADs go before it does. The planner leaves a deleted
//! network out of the plan (its pools go from the node states, its NADs become orphans and are
//! deleted); once the stores show none of them left, the finalizer is released.
//!
//! Both patches are JSON patches that first test the list as the store showed it, so a
//! concurrent change of the finalizers makes the patch fail rather than drop another's entry.

use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::bond_network::BondNetwork;
use crate::api::bond_node_state::BondNodeState;
use crate::api::keys;
use crate::api::nad::NetworkAttachmentDefinition;
use crate::plan::names;

/// True when the network carries bondnet's finalizer.
pub fn has_finalizer(network: &BondNetwork) -> bool {
    network.finalizers().iter().any(|f| f == keys::FINALIZER)
}

fn patch(value: serde_json::Value) -> json_patch::Patch {
    // Both shapes below are valid JSON patches; an empty patch would change nothing.
    serde_json::from_value(value).unwrap_or_else(|_| json_patch::Patch(Vec::new()))
}

/// The patch adding the finalizer to `network`'s finalizers as the store shows them.
pub fn add(network: &BondNetwork) -> json_patch::Patch {
    match network.meta().finalizers.as_deref() {
        None | Some([]) => patch(json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [keys::FINALIZER] },
        ])),
        Some(current) => patch(json!([
            { "op": "test", "path": "/metadata/finalizers", "value": current },
            { "op": "add", "path": "/metadata/finalizers/-", "value": keys::FINALIZER },
        ])),
    }
}

/// The patch removing the finalizer, if `network` carries it.
pub fn remove(network: &BondNetwork) -> Option<json_patch::Patch> {
    let index = network
        .finalizers()
        .iter()
        .position(|f| f == keys::FINALIZER)?;
    let path = format!("/metadata/finalizers/{index}");
    Some(patch(json!([
        { "op": "test", "path": path, "value": keys::FINALIZER },
        { "op": "remove", "path": path },
    ])))
}

/// True when nothing of the deleted `network` is left in the stores: no NAD labelled with it
/// in its namespace, and no node state holding one of its device-plugin resources.
pub fn cleaned_up<'a>(
    network: &BondNetwork,
    nads: impl IntoIterator<Item = &'a NetworkAttachmentDefinition>,
    nodes: &[BondNodeState],
) -> bool {
    let namespace = network.namespace().unwrap_or_default();
    let name = network.name_any();
    let label = names::network_label_value(&name);
    let nad_left = nads.into_iter().any(|nad| {
        nad.namespace().as_deref() == Some(namespace.as_str())
            && nad.labels().get(keys::LABEL_NETWORK) == Some(&label)
    });
    if nad_left {
        return false;
    }
    let resources: Vec<String> = (0..network.spec.links.min(64))
        .map(|slot| names::resource_name(&namespace, &name, slot))
        .collect();
    !nodes.iter().any(|state| {
        state.spec.device_plugin.as_ref().is_some_and(|config| {
            config
                .resource_list
                .iter()
                .any(|r| resources.contains(&r.resource_name))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::network;

    #[test]
    fn the_add_patch_tests_the_list_it_extends() {
        let mut net = network("telco", "fast", |_| {});
        let first = serde_json::to_value(add(&net)).expect("JSON");
        assert_eq!(first[0]["value"], serde_json::Value::Null);
        assert_eq!(first[1]["value"], json!([keys::FINALIZER]));
        net.metadata.finalizers = Some(vec!["other.io/keep".into()]);
        let second = serde_json::to_value(add(&net)).expect("JSON");
        assert_eq!(second[0]["value"], json!(["other.io/keep"]));
        assert_eq!(second[1]["path"], "/metadata/finalizers/-");
    }

    #[test]
    fn the_remove_patch_names_the_index_of_bondnets_finalizer_only() {
        let mut net = network("telco", "fast", |_| {});
        assert!(remove(&net).is_none());
        net.metadata.finalizers = Some(vec!["other.io/keep".into(), keys::FINALIZER.into()]);
        let patch = serde_json::to_value(remove(&net).expect("a patch")).expect("JSON");
        assert_eq!(patch[0]["path"], "/metadata/finalizers/1");
        assert_eq!(patch[1]["op"], "remove");
    }
}
