//! The difference between one plan and what the stores hold: each object the plan wants that
//! the store shows otherwise becomes one [`Write`], and nothing else does, so an unchanged
//! object costs no request. Pure: the planner calls [`diff`] on its blocking thread.
//!
//! A store may not have caught up yet with the planner's own last write (its watch event is
//! still on the way). [`Written`] remembers, per object, the resourceVersion the store showed
//! when the writer last wrote it and a digest of what it wrote; while the store still shows
//! that version and the plan still wants the same, the write is not repeated.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::Event;
use kube::{Resource, ResourceExt};

use crate::api::bond_network::{BondNetwork, BondNetworkStatus};
use crate::api::bond_node_state::BondNodeState;
use crate::api::device_plugin::DevicePluginConfig;
use crate::api::nad::NetworkAttachmentDefinition;
use crate::controller::memo::{self, Planned};
use crate::controller::{finalizer, status};
use crate::error::Error;
use crate::plan::{self, names};

/// One request the writer sends.
pub enum Write {
    /// Add bondnet's finalizer to a network.
    AddFinalizer {
        /// `namespace/name` of the network.
        network: String,
        /// The JSON patch.
        patch: json_patch::Patch,
    },
    /// Release the finalizer of a deleted network whose cleanup the stores show done.
    RemoveFinalizer {
        /// `namespace/name` of the network.
        network: String,
        /// The JSON patch.
        patch: json_patch::Patch,
    },
    /// Apply a node's device-plugin pools (and the owner reference to its Node).
    NodeState {
        /// Node name.
        node: String,
        /// UID of the Node.
        uid: String,
        /// The pools.
        config: Arc<DevicePluginConfig>,
    },
    /// Apply one shard of the device-plugin ConfigMap export.
    ConfigMap(ConfigMap),
    /// Apply one NAD of a network.
    ApplyNad {
        /// `namespace/name` of its network.
        network: String,
        /// The NAD.
        nad: NetworkAttachmentDefinition,
    },
    /// Delete a NAD no plan wants.
    DeleteNad {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Apply a network's status, then publish `event` if there is one.
    Status {
        /// `namespace/name` of the network.
        network: String,
        /// The status, condition times filled in.
        status: BondNetworkStatus,
        /// The Event to raise (readiness changed), about `reference`.
        event: Option<Event>,
        /// The network, for the Event.
        reference: ObjectReference,
    },
}

impl Write {
    /// The kind of object it writes, for the writes counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AddFinalizer { .. } | Self::RemoveFinalizer { .. } => "BondNetwork",
            Self::NodeState { .. } => "BondNodeState",
            Self::ConfigMap(_) => "ConfigMap",
            Self::ApplyNad { .. } | Self::DeleteNad { .. } => "NetworkAttachmentDefinition",
            Self::Status { .. } => "BondNetworkStatus",
        }
    }

    /// What the request does, for the writes counter.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::AddFinalizer { .. } | Self::RemoveFinalizer { .. } => "patch",
            Self::DeleteNad { .. } => "delete",
            _ => "apply",
        }
    }

    /// The network whose other writes wait for this one, if any.
    pub fn network(&self) -> Option<&str> {
        match self {
            Self::AddFinalizer { network, .. }
            | Self::ApplyNad { network, .. }
            | Self::Status { network, .. } => Some(network),
            _ => None,
        }
    }

    /// The object, for logs.
    pub fn object(&self) -> String {
        match self {
            Self::AddFinalizer { network, .. } | Self::RemoveFinalizer { network, .. } => {
                format!("BondNetwork {network}")
            }
            Self::NodeState { node, .. } => format!("BondNodeState {node}"),
            Self::ConfigMap(cm) => format!(
                "ConfigMap {}/{}",
                cm.namespace().unwrap_or_default(),
                cm.name_any()
            ),
            Self::ApplyNad { nad, .. } => format!(
                "NetworkAttachmentDefinition {}/{}",
                nad.namespace().unwrap_or_default(),
                nad.name_any()
            ),
            Self::DeleteNad { namespace, name } => {
                format!("NetworkAttachmentDefinition {namespace}/{name}")
            }
            Self::Status { network, .. } => format!("status of BondNetwork {network}"),
        }
    }
}

/// A write with what the writer needs around it.
pub struct Pending {
    /// The request.
    pub write: Write,
    /// The key under which [`Written`] remembers it.
    pub key: String,
    /// The resourceVersion the store showed ("" when the object was absent).
    pub seen: String,
    /// Digest of what the plan wants.
    pub digest: u64,
    /// Nodes whose pools must be written before this (a network's NADs and status).
    pub hosts: Vec<String>,
}

/// Every write of one plan, in the order they may go: `first` (finalizers, node states,
/// ConfigMap export) before `nads` (applies, then orphan deletions) before `last` (status
/// and Events, finalizer releases).
#[derive(Default)]
pub struct Batch {
    /// Finalizers added, node states, ConfigMap export.
    pub first: Vec<Pending>,
    /// NAD applies and deletions.
    pub nads: Vec<Pending>,
    /// Statuses and finalizer releases.
    pub last: Vec<Pending>,
    /// What the plan cannot write at all (the export would pass the size limit); every
    /// network's NADs and status then wait, as they would for a failed node state.
    pub blocked: Option<Error>,
}

impl Batch {
    /// Number of writes.
    pub fn len(&self) -> usize {
        self.first.len() + self.nads.len() + self.last.len()
    }

    /// True when nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.blocked.is_none()
    }
}

/// Per object key: the store's resourceVersion when the writer last wrote it, and the digest
/// of what it wrote. Entries of objects a diff no longer looks at are dropped after it.
#[derive(Debug, Default)]
pub struct Written {
    state: Mutex<WrittenState>,
}

#[derive(Debug, Default)]
struct WrittenState {
    entries: HashMap<String, (String, u64)>,
    visited: HashSet<String>,
}

impl Written {
    /// Remembers a successful write.
    pub fn record(&self, pending: &Pending) {
        if let Ok(mut state) = self.state.lock() {
            state
                .entries
                .insert(pending.key.clone(), (pending.seen.clone(), pending.digest));
        }
    }

    /// How many writes are remembered.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.entries.len()).unwrap_or(0)
    }

    /// True when no write is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the writer already wrote `digest` while the store showed `seen`, and the
    /// store still shows it. A store that moved on drops the entry.
    fn covers(&self, key: &str, seen: &str, digest: u64) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        state.visited.insert(key.to_owned());
        match state.entries.get(key) {
            Some((version, d)) if version == seen => *d == digest,
            Some(_) => {
                state.entries.remove(key);
                false
            }
            None => false,
        }
    }

    /// Forgets `key`: the store shows what the plan wants.
    fn settle(&self, key: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.entries.remove(key);
        }
    }

    /// Drops the entries of objects this diff did not look at (a deleted NAD, a node gone).
    fn sweep(&self) {
        if let Ok(mut state) = self.state.lock() {
            let visited = std::mem::take(&mut state.visited);
            state.entries.retain(|key, _| visited.contains(key));
        }
    }
}

/// What the diff compares the plan with: the stores at one moment, and the ConfigMaps read.
pub struct Held<'h> {
    /// Every BondNetwork in the store, deleted ones too.
    pub networks: &'h [Arc<BondNetwork>],
    /// The BondNodeStates whose Node exists.
    pub nodes: &'h [BondNodeState],
    /// UID of each Node.
    pub node_uids: &'h BTreeMap<String, String>,
    /// Every NAD bondnet manages.
    pub nads: &'h [Arc<NetworkAttachmentDefinition>],
    /// The device-plugin ConfigMaps as read (only when the export is on).
    pub configmaps: &'h [ConfigMap],
}

fn digest_of(value: &impl serde::Serialize) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(value)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

fn version(meta: &impl Resource) -> String {
    meta.meta().resource_version.clone().unwrap_or_default()
}

/// True when `current` already has every field bondnet applies to a NAD as `desired` has it
/// (other labels, annotations and owners may be there too).
pub fn nad_matches(
    desired: &NetworkAttachmentDefinition,
    current: &NetworkAttachmentDefinition,
) -> bool {
    let subset = |want: Option<&BTreeMap<String, String>>,
                  have: Option<&BTreeMap<String, String>>| {
        want.into_iter()
            .flatten()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    };
    let owners_held = desired
        .metadata
        .owner_references
        .iter()
        .flatten()
        .all(|want| {
            current
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|have| have == want)
        });
    desired.spec == current.spec
        && subset(
            desired.metadata.labels.as_ref(),
            current.metadata.labels.as_ref(),
        )
        && subset(
            desired.metadata.annotations.as_ref(),
            current.metadata.annotations.as_ref(),
        )
        && owners_held
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

/// Every write that makes the cluster hold `planned`, given what it holds. `now` stamps the
/// conditions that change.
pub fn diff(planned: &Planned, held: &Held<'_>, written: &Written, now: &Time) -> Batch {
    let mut batch = Batch::default();
    let pending = |write: Write, key: String, seen: String, digest: u64, hosts: Vec<String>| {
        (!written.covers(&key, &seen, digest)).then_some(Pending {
            write,
            key,
            seen,
            digest,
            hosts,
        })
    };

    // Finalizers first, and the release of deleted networks that are cleaned up.
    for network in held.networks {
        let key = network_key(network);
        let finalizer_key = format!("finalizer {key}");
        if network.meta().deletion_timestamp.is_some() {
            if let Some(patch) = finalizer::remove(network) {
                if finalizer::cleaned_up(network, held.nads.iter().map(|n| &**n), held.nodes) {
                    batch.last.extend(pending(
                        Write::RemoveFinalizer {
                            network: key,
                            patch,
                        },
                        finalizer_key,
                        version(&**network),
                        2,
                        Vec::new(),
                    ));
                }
            }
        } else if !finalizer::has_finalizer(network) {
            batch.first.extend(pending(
                Write::AddFinalizer {
                    network: key,
                    patch: finalizer::add(network),
                },
                finalizer_key,
                version(&**network),
                1,
                Vec::new(),
            ));
        } else {
            written.settle(&finalizer_key);
        }
    }

    // Each node's pools.
    for state in held.nodes {
        let name = state.name_any();
        let (Some(want), Some(uid)) = (planned.device_plugin.get(&name), held.node_uids.get(&name))
        else {
            continue;
        };
        let key = format!("BondNodeState {name}");
        let owned = state
            .owner_references()
            .iter()
            .any(|o| o.kind == "Node" && &o.uid == uid);
        if owned && state.spec.device_plugin.as_ref() == Some(&**want) {
            written.settle(&key);
            continue;
        }
        batch.first.extend(pending(
            Write::NodeState {
                node: name,
                uid: uid.clone(),
                config: want.clone(),
            },
            key,
            version(state),
            memo::config_digest(want, uid),
            Vec::new(),
        ));
    }

    // The ConfigMap export: changed shards, and old shards emptied.
    if let Some(first) = planned.configmaps.first() {
        match planned
            .configmaps
            .iter()
            .find(|c| plan::configmap_data_bytes(c) > plan::MAX_CONFIGMAP_DATA_BYTES)
        {
            Some(big) => {
                batch.blocked = Some(Error::ConfigMapTooLarge {
                    name: big.name_any(),
                    bytes: plan::configmap_data_bytes(big),
                    shards: u32::try_from(planned.configmaps.len()).unwrap_or(u32::MAX),
                });
            }
            None => {
                let current = |name: &str| held.configmaps.iter().find(|c| c.name_any() == name);
                for want in &planned.configmaps {
                    let have = current(&want.name_any());
                    if have.is_none() || !changed_nodes(have, want).is_empty() {
                        batch.first.push(configmap_write(want.clone()));
                    }
                }
                for stale in held.configmaps {
                    let name = stale.name_any();
                    if planned.configmaps.iter().any(|d| d.name_any() == name)
                        || stale.data.as_ref().is_none_or(BTreeMap::is_empty)
                    {
                        continue;
                    }
                    let empty = ConfigMap {
                        metadata: kube::api::ObjectMeta {
                            name: Some(name),
                            namespace: stale.metadata.namespace.clone(),
                            labels: first.metadata.labels.clone(),
                            ..kube::api::ObjectMeta::default()
                        },
                        data: Some(BTreeMap::new()),
                        ..ConfigMap::default()
                    };
                    batch.first.push(configmap_write(empty));
                }
            }
        }
    }

    // NADs and status of every network the plan holds, and which NADs stay.
    let nads: HashMap<(String, String), &NetworkAttachmentDefinition> = held
        .nads
        .iter()
        .map(|n| ((n.namespace().unwrap_or_default(), n.name_any()), &**n))
        .collect();
    let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut keep_all: BTreeSet<(String, String)> = BTreeSet::new();
    for network in held.networks {
        if network.meta().deletion_timestamp.is_some() {
            continue;
        }
        let namespace = network.namespace().unwrap_or_default();
        let name = network.name_any();
        let key = network_key(network);
        let Some(mine) = planned.network(&namespace, &name) else {
            continue;
        };
        if mine.invalid.is_some() {
            // An invalid spec keeps the NADs it had: the last good state stays in place.
            keep_all.insert((namespace.clone(), names::network_label_value(&name)));
        } else {
            for nad in &mine.nads {
                let id = (nad.namespace().unwrap_or_default(), nad.name_any());
                let current = nads.get(&id);
                let nad_key = format!("NAD {}/{}", id.0, id.1);
                wanted.insert(id);
                if current.is_some_and(|c| nad_matches(nad, c)) {
                    written.settle(&nad_key);
                    continue;
                }
                batch.nads.extend(pending(
                    Write::ApplyNad {
                        network: key.clone(),
                        nad: nad.clone(),
                    },
                    nad_key,
                    current.map(|c| version(*c)).unwrap_or_default(),
                    digest_of(nad),
                    mine.hosts.clone(),
                ));
            }
        }
        let old = network.status.as_ref();
        let new_status = status::with_transition_times(mine.status.clone(), old, now);
        let status_key = format!("status {key}");
        if old == Some(&new_status) {
            written.settle(&status_key);
            continue;
        }
        let event = status::readiness_event(&new_status, old);
        batch.last.extend(pending(
            Write::Status {
                network: key,
                status: new_status,
                event,
                reference: network.object_ref(&()),
            },
            status_key,
            version(&**network),
            digest_of(&mine.status),
            mine.hosts.clone(),
        ));
    }

    // Orphans: bondnet's NADs no network wants, but those of an invalid network.
    for nad in held.nads {
        let namespace = nad.namespace().unwrap_or_default();
        let name = nad.name_any();
        let id = (namespace.clone(), name.clone());
        if wanted.contains(&id) {
            continue;
        }
        let label = nad.labels().get(crate::api::keys::LABEL_NETWORK).cloned();
        if label.is_some_and(|l| keep_all.contains(&(namespace.clone(), l))) {
            continue;
        }
        let key = format!("delete NAD {namespace}/{name}");
        batch.nads.extend(pending(
            Write::DeleteNad { namespace, name },
            key,
            version(&**nad),
            0,
            Vec::new(),
        ));
    }
    written.sweep();
    batch
}

fn configmap_write(configmap: ConfigMap) -> Pending {
    // ConfigMaps are read fresh before each plan: nothing to remember.
    let key = format!(
        "ConfigMap {}/{}",
        configmap.namespace().unwrap_or_default(),
        configmap.name_any()
    );
    Pending {
        digest: digest_of(&configmap.data),
        write: Write::ConfigMap(configmap),
        key,
        seen: String::new(),
        hosts: Vec::new(),
    }
}

fn network_key(network: &BondNetwork) -> String {
    names::network_key(
        &network.namespace().unwrap_or_default(),
        &network.name_any(),
    )
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

    #[test]
    fn a_nad_with_extra_labels_and_annotations_still_matches_but_a_changed_config_does_not() {
        let mut desired = NetworkAttachmentDefinition::new(
            "fast",
            crate::api::nad::NetworkAttachmentDefinitionSpec {
                config: "{}".into(),
            },
        );
        desired.metadata.labels = Some(BTreeMap::from([("a".into(), "1".into())]));
        let mut current = desired.clone();
        current.metadata.resource_version = Some("9".into());
        current
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("team".into(), "x".into());
        current.metadata.annotations = Some(BTreeMap::from([("note".into(), "y".into())]));
        assert!(nad_matches(&desired, &current));
        current.spec.config = r#"{"mtu":1500}"#.into();
        assert!(!nad_matches(&desired, &current));
    }

    #[test]
    fn a_write_the_store_has_not_caught_up_with_is_not_repeated_until_the_store_moves() {
        let written = Written::default();
        let pending = Pending {
            write: Write::DeleteNad {
                namespace: "t".into(),
                name: "n".into(),
            },
            key: "k".into(),
            seen: "5".into(),
            digest: 7,
            hosts: Vec::new(),
        };
        assert!(!written.covers("k", "5", 7));
        written.record(&pending);
        assert!(written.covers("k", "5", 7), "same version, same content");
        assert!(
            !written.covers("k", "5", 8),
            "the plan wants something else"
        );
        assert!(!written.covers("k", "6", 7), "the store moved on");
        assert!(!written.covers("k", "5", 7), "and the entry is gone");
        written.record(&pending);
        written.sweep();
        assert_eq!(written.len(), 1, "looked at in this diff");
        written.sweep();
        assert!(written.is_empty(), "not looked at since");
    }
}
