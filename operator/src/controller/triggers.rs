//! Which watch events wake the planner. An event that changes nothing the plan or the diff
//! reads (an agent's heartbeat in `lastSeen`, the managed fields of an object bondnet just
//! applied) would keep it busy for nothing, so only a change in the property that matters, a
//! deletion, or the end of a (re-)list wakes it. The store applies every event either way.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::Node;
use kube::api::PartialObjectMeta;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};

use crate::api::bond_network::BondNetwork;
use crate::api::bond_node_state::BondNodeState;
use crate::api::nad::NetworkAttachmentDefinition;

/// Remembers one hashed property per object and says when an event changes it.
pub struct ChangeFilter<K> {
    property: fn(&K) -> u64,
    seen: HashMap<String, u64>,
}

impl<K: kube::Resource> ChangeFilter<K> {
    /// A filter on the property `property` hashes.
    pub fn new(property: fn(&K) -> u64) -> Self {
        Self {
            property,
            seen: HashMap::new(),
        }
    }

    /// True when `event` should re-plan.
    pub fn observe(&mut self, event: &Event<K>) -> bool {
        match event {
            // A (re-)list starts: forget what the last one saw. An object deleted while the
            // watch was down sends no Delete; the list shows it gone, as the store does when
            // it swaps in the new list. Kept, its entry would leak and, were it created again
            // with the same property, hide the new object from the planner.
            Event::Init => {
                self.seen.clear();
                false
            }
            // During the list, remember; the list's end triggers once.
            Event::InitApply(object) => {
                self.seen.insert(id(object), (self.property)(object));
                false
            }
            Event::InitDone => true,
            Event::Apply(object) => {
                let hash = (self.property)(object);
                self.seen.insert(id(object), hash) != Some(hash)
            }
            Event::Delete(object) => {
                self.seen.remove(&id(object));
                true
            }
        }
    }
}

/// `namespace/name`, or the name of a cluster-scoped object.
fn id(object: &impl Resource) -> String {
    match object.meta().namespace.as_deref() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// A BondNodeState's PFs and labels, its spec and owners (not its heartbeat).
pub fn node_state_property(state: &BondNodeState) -> u64 {
    let pfs = state
        .status
        .as_ref()
        .map(|s| serde_json::to_string(&s.pfs).unwrap_or_default());
    let spec = serde_json::to_string(&state.spec).unwrap_or_default();
    let owners: Vec<&str> = state
        .owner_references()
        .iter()
        .map(|o| o.uid.as_str())
        .collect();
    hash_of(&(pfs, state.labels(), spec, owners))
}

/// A BondNetwork's identity, generation (its spec), deletion, finalizers and status.
pub fn network_property(network: &BondNetwork) -> u64 {
    let meta = network.meta();
    let status = serde_json::to_string(&network.status).unwrap_or_default();
    let deleting = meta.deletion_timestamp.is_some();
    hash_of(&(
        &meta.uid,
        meta.generation,
        deleting,
        network.finalizers(),
        status,
    ))
}

/// What bondnet applies to a NAD: its labels, annotations, owners and config.
pub fn nad_property(nad: &NetworkAttachmentDefinition) -> u64 {
    let owners: Vec<&str> = nad
        .owner_references()
        .iter()
        .map(|o| o.uid.as_str())
        .collect();
    hash_of(&(nad.labels(), nad.annotations(), owners, &nad.spec.config))
}

/// A Node's labels.
pub fn node_labels_property(node: &PartialObjectMeta<Node>) -> u64 {
    hash_of(node.labels())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{e810_pf, node};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn state(vfs: u32, seen: &str) -> BondNodeState {
        let mut state = node("n1", &[], vec![e810_pf("ens1f0", "0000:3b:00", 0, vfs)]);
        if let Some(status) = state.status.as_mut() {
            status.last_seen = Some(Time(seen.parse().expect("time")));
        }
        state
    }

    #[test]
    fn heartbeats_do_not_replan_but_pf_changes_and_deletions_do() {
        let mut filter = ChangeFilter::new(node_state_property);
        assert!(!filter.observe(&Event::Init));
        assert!(!filter.observe(&Event::InitApply(state(8, "2026-01-01T00:00:00Z"))));
        assert!(filter.observe(&Event::InitDone));
        assert!(
            !filter.observe(&Event::Apply(state(8, "2026-01-01T00:01:00Z"))),
            "heartbeat"
        );
        assert!(
            filter.observe(&Event::Apply(state(16, "2026-01-01T00:02:00Z"))),
            "more VFs"
        );
        assert!(filter.observe(&Event::Delete(state(16, "2026-01-01T00:02:00Z"))));
        assert!(
            filter.observe(&Event::Apply(state(16, "2026-01-01T00:03:00Z"))),
            "back again"
        );
    }

    #[test]
    fn a_relist_forgets_objects_deleted_while_the_watch_was_down() {
        let mut filter = ChangeFilter::new(node_labels_property);
        let meta = |name: &str| {
            let mut meta = PartialObjectMeta::<Node>::default();
            meta.metadata.name = Some(name.into());
            meta
        };
        assert!(!filter.observe(&Event::Init));
        for name in ["n1", "n2"] {
            assert!(!filter.observe(&Event::InitApply(meta(name))));
        }
        assert!(filter.observe(&Event::InitDone));
        // The watch fails; n2 is deleted meanwhile, so the re-list shows n1 only.
        assert!(!filter.observe(&Event::Init));
        assert!(!filter.observe(&Event::InitApply(meta("n1"))));
        assert!(filter.observe(&Event::InitDone));
        assert_eq!(
            filter.seen.keys().collect::<Vec<_>>(),
            ["n1"],
            "n2's entry is gone"
        );
        assert!(
            filter.observe(&Event::Apply(meta("n2"))),
            "n2 created again, unchanged, is a change"
        );
        assert!(!filter.observe(&Event::Apply(meta("n1"))), "n1 unchanged");
    }

    #[test]
    fn node_label_changes_replan() {
        let mut filter = ChangeFilter::new(node_labels_property);
        let mut meta = PartialObjectMeta::<Node>::default();
        meta.metadata.name = Some("n1".into());
        assert!(filter.observe(&Event::Apply(meta.clone())));
        assert!(!filter.observe(&Event::Apply(meta.clone())));
        meta.metadata.labels = Some([("pool".to_owned(), "a".to_owned())].into());
        assert!(filter.observe(&Event::Apply(meta)));
    }
}
