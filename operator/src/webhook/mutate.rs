//! The admission decision, as a pure function: a pod and the BondNetworks it may name in,
//! a JSONPatch (or nothing, or a denial) out. No client, no clock, no I/O.
//!
//! A pod names networks in `k8s.v1.cni.cncf.io/networks`, in any of Multus' forms:
//! `bond-net1`, `demo/bond-net1@bond0`, a comma list of those, or a JSON list of
//! `{"name", "namespace", "interface", ...}` objects. Every entry that names a BondNetwork's
//! bond NAD is expanded into the network's SR-IOV NADs (slot order, slot interface names)
//! followed by the bond NAD itself; every other entry stays where it was. The first container
//! (or the one named by [`ANNOTATION_CONTAINER`]) is given one VF of each slot resource.
//!
//! The expansion is read from what the controller wrote in the BondNetwork's status
//! (`status.podAnnotation` and `status.slots`), so the webhook and the controller cannot
//! disagree. Only when the chart allows pods onto networks that are not Ready are the names
//! derived from the spec, through the same `plan::render::slot_names` the plan uses.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::bond_network::{BondNetwork, BondNetworkStatus};
use crate::api::keys;
use crate::plan::{names, render};

/// Pod annotation naming the container that gets the VF requests (default: the first).
pub const ANNOTATION_CONTAINER: &str = "bondnet.io/resources-container";

/// How the webhook treats a BondNetwork that is not Ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NotReadyPolicy {
    /// Refuse the pod, saying why the network is not Ready (the default).
    #[default]
    Deny,
    /// Expand from the spec anyway; the pod waits for its VFs until the network is Ready.
    Allow,
}

/// Finds a BondNetwork by namespace and name. The server backs it with a reflector store;
/// tests with a map.
pub trait Networks {
    /// The BondNetwork `namespace/name`, if it exists.
    fn get(&self, namespace: &str, name: &str) -> Option<BondNetwork>;
}

impl Networks for BTreeMap<(String, String), BondNetwork> {
    fn get(&self, namespace: &str, name: &str) -> Option<BondNetwork> {
        BTreeMap::get(self, &(namespace.to_owned(), name.to_owned())).cloned()
    }
}

/// The outcome of admitting one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Admit unchanged.
    Allow,
    /// Admit with this JSONPatch (RFC 6902) applied.
    Patch(Vec<Value>),
    /// Refuse, with a message for the person who created the pod.
    Deny {
        /// A stable PascalCase label for metrics: `InvalidAnnotation`, `NotReady`,
        /// `StatusInvalid`, `DuplicateNetwork`, `InterfaceClash`, `Resources` or `Render`.
        reason: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Why a pod is refused: the label and the message.
type Denial = (&'static str, String);

fn deny(reason: &'static str) -> impl FnOnce(String) -> Denial {
    move |message| (reason, message)
}

// === the annotation ===

/// One entry of `k8s.v1.cni.cncf.io/networks`. Fields Multus reads besides these (`ips`,
/// `mac`, `default-route`, `cni-args`, ...) are kept untouched in `other`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkEntry {
    /// NAD name.
    pub name: String,
    /// NAD namespace; absent means the pod's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Interface name in the pod; absent lets Multus choose `net<position>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Every other field, kept as the user wrote it.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl NetworkEntry {
    fn new(name: &str, namespace: &str, interface: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: Some(namespace.to_owned()),
            interface: Some(interface.to_owned()),
            other: Map::new(),
        }
    }

    fn namespace_or<'a>(&'a self, pod_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(pod_namespace)
    }
}

/// Parses the annotation in any of Multus' forms. The error says what is wrong with which entry.
pub fn parse_networks(value: &str) -> Result<Vec<NetworkEntry>, String> {
    let trimmed = value.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed)
            .map_err(|err| format!("the JSON list does not parse: {err}"));
    }
    trimmed
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(parse_short_entry)
        .collect()
}

/// `name`, `namespace/name`, `name@interface` or `namespace/name@interface`.
fn parse_short_entry(item: &str) -> Result<NetworkEntry, String> {
    let (reference, interface) = match item.split_once('@') {
        Some((reference, interface)) if !interface.is_empty() && !interface.contains('@') => {
            (reference, Some(interface.to_owned()))
        }
        Some(_) => {
            return Err(format!(
                "entry {item:?} must be [namespace/]name[@interface] with one non-empty interface"
            ))
        }
        None => (item, None),
    };
    let (namespace, name) = match reference.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.contains('/') => {
            (Some(namespace.to_owned()), name)
        }
        Some(_) => {
            return Err(format!(
                "entry {item:?} must be [namespace/]name[@interface] with at most one '/'"
            ))
        }
        None => (None, reference),
    };
    if name.is_empty() {
        return Err(format!("entry {item:?} names no network"));
    }
    Ok(NetworkEntry {
        name: name.to_owned(),
        namespace,
        interface,
        other: Map::new(),
    })
}

// === what a BondNetwork contributes ===

/// One port of a bond as the pod annotation and the resource requests need it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    nad: String,
    interface: String,
    resource: String,
}

/// The expansion of one BondNetwork: its slots and the bond's own interface name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expansion {
    namespace: String,
    slots: Vec<Slot>,
    bond_ifname: String,
}

/// Why a network cannot be used now.
fn not_ready_reason(network: &BondNetwork) -> Option<String> {
    let status = network.status.as_ref();
    let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    match ready {
        None => Some(
            "the controller has not planned it yet (no Ready condition); is bondnet's controller running?"
                .to_owned(),
        ),
        Some(c) if c.status != "True" => Some(format!("{}: {}", c.reason, c.message)),
        Some(_) => {
            let observed = status.and_then(|s| s.observed_generation);
            match (network.metadata.generation, observed) {
                (Some(current), Some(seen)) if seen < current => Some(format!(
                    "StatusStale: the controller has planned generation {seen} but the spec is at generation {current}; retry in a few seconds"
                )),
                _ => None,
            }
        }
    }
}

/// The expansion the controller published in a Ready network's status.
fn expansion_from_status(
    namespace: &str,
    name: &str,
    status: &BondNetworkStatus,
) -> Result<Expansion, String> {
    let annotation = status
        .pod_annotation
        .as_deref()
        .ok_or("status.podAnnotation is missing")?;
    let mut entries =
        parse_networks(annotation).map_err(|e| format!("status.podAnnotation: {e}"))?;
    let bond = entries.pop().ok_or("status.podAnnotation is empty")?;
    if bond.name != names::bond_nad_name(name) || entries.len() < 2 {
        return Err(format!(
            "status.podAnnotation does not end with the bond NAD {name} after at least two ports"
        ));
    }
    let slots = entries
        .into_iter()
        .map(|entry| {
            let slot = status
                .slots
                .iter()
                .find(|s| s.nad_name == entry.name)
                .ok_or_else(|| format!("status.slots has no entry for NAD {}", entry.name))?;
            Ok(Slot {
                interface: entry.interface.unwrap_or_else(|| slot.interface.clone()),
                nad: entry.name,
                resource: slot.resource_name.clone(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Expansion {
        namespace: bond.namespace.unwrap_or_else(|| namespace.to_owned()),
        slots,
        bond_ifname: bond.interface.unwrap_or_default(),
    })
}

/// The expansion the plan would publish, derived from the spec with the plan's own names.
fn expansion_from_spec(namespace: &str, name: &str, network: &BondNetwork) -> Expansion {
    let spec = &network.spec;
    Expansion {
        namespace: namespace.to_owned(),
        slots: render::slot_names(namespace, name, spec)
            .into_iter()
            .map(|s| Slot {
                nad: s.nad,
                interface: s.ifname,
                resource: s.qualified_resource,
            })
            .collect(),
        bond_ifname: spec.ifname.clone(),
    }
}

fn expansion(
    namespace: &str,
    name: &str,
    network: &BondNetwork,
    policy: NotReadyPolicy,
) -> Result<Expansion, Denial> {
    let key = names::network_key(namespace, name);
    match (not_ready_reason(network), policy) {
        (None, _) => {
            let status = network.status.clone().unwrap_or_default();
            expansion_from_status(namespace, name, &status).map_err(|e| {
                (
                    "StatusInvalid",
                    format!(
                        "BondNetwork {key} is Ready but its {e}; the controller will rewrite it"
                    ),
                )
            })
        }
        (Some(_), NotReadyPolicy::Allow) => Ok(expansion_from_spec(namespace, name, network)),
        (Some(reason), NotReadyPolicy::Deny) => Err((
            "NotReady",
            format!(
                "BondNetwork {key} is not Ready ({reason}), so this pod could not get its bond; \
                 see `kubectl describe bondnetwork -n {namespace} {name}`, or install the chart \
                 with webhook.allowNotReady=true to admit such pods and let them wait"
            ),
        )),
    }
}

// === the decision ===

/// Decides what to do with a pod being created in `namespace`.
pub fn mutate(
    pod: &Pod,
    namespace: &str,
    networks: &impl Networks,
    policy: NotReadyPolicy,
) -> Decision {
    match plan_patch(pod, namespace, networks, policy) {
        Ok(patch) if patch.is_empty() => Decision::Allow,
        Ok(patch) => Decision::Patch(patch),
        Err((reason, message)) => Decision::Deny { reason, message },
    }
}

fn plan_patch(
    pod: &Pod,
    namespace: &str,
    networks: &impl Networks,
    policy: NotReadyPolicy,
) -> Result<Vec<Value>, Denial> {
    let annotations = pod.metadata.annotations.as_ref();
    let Some(raw) = annotations.and_then(|a| a.get(keys::ANNOTATION_POD_NETWORKS)) else {
        return Ok(Vec::new());
    };
    let entries = parse_networks(raw)
        .map_err(|e| format!("annotation {}: {e}", keys::ANNOTATION_POD_NETWORKS))
        .map_err(deny("InvalidAnnotation"))?;

    // Which entries name a BondNetwork's bond NAD, and what each expands to.
    let mut bonds: BTreeMap<usize, Expansion> = BTreeMap::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let ns = entry.namespace_or(namespace);
        let Some(network) = networks.get(ns, &entry.name) else {
            continue;
        };
        if !seen.insert((ns.to_owned(), entry.name.clone())) {
            return Err(deny("DuplicateNetwork")(format!(
                "annotation {} names BondNetwork {} twice; a pod carries at most one bond of each BondNetwork",
                keys::ANNOTATION_POD_NETWORKS,
                names::network_key(ns, &entry.name)
            )));
        }
        bonds.insert(index, expansion(ns, &entry.name, &network, policy)?);
    }
    if bonds.is_empty() {
        return Ok(Vec::new());
    }

    let expanded = expand(&entries, namespace, &bonds);
    check_interfaces_unique(&expanded).map_err(deny("InterfaceClash"))?;

    let mut patch = Vec::new();
    if expanded != entries {
        let value = serde_json::to_string(&expanded)
            .map_err(|e| format!("cannot render the expanded network list: {e}"))
            .map_err(deny("Render"))?;
        patch.push(json!({
            "op": "replace",
            "path": format!("/metadata/annotations/{}", json_pointer_escape(keys::ANNOTATION_POD_NETWORKS)),
            "value": value,
        }));
    }
    if let Some(op) =
        resources_patch(pod, &expanded, namespace, &bonds).map_err(deny("Resources"))?
    {
        patch.push(op);
    }
    Ok(patch)
}

/// The new list: each bond entry is preceded by its slots; slot entries the pod already had
/// for these bonds are moved there (keeping their extra fields); other entries stay in place,
/// pinned to the `net<position>` name Multus would have given them before the expansion.
fn expand(
    entries: &[NetworkEntry],
    pod_namespace: &str,
    bonds: &BTreeMap<usize, Expansion>,
) -> Vec<NetworkEntry> {
    let slot_of = |entry: &NetworkEntry| -> Option<(usize, usize)> {
        let ns = entry.namespace_or(pod_namespace);
        bonds.iter().find_map(|(bond_index, exp)| {
            (exp.namespace == ns)
                .then(|| exp.slots.iter().position(|s| s.nad == entry.name))
                .flatten()
                .map(|slot| (*bond_index, slot))
        })
    };
    let mut kept_extras: BTreeMap<(usize, usize), Map<String, Value>> = BTreeMap::new();
    for entry in entries {
        if let Some(key) = slot_of(entry) {
            kept_extras.insert(key, entry.other.clone());
        }
    }

    let mut out = Vec::with_capacity(entries.len() + 4 * bonds.len());
    for (index, entry) in entries.iter().enumerate() {
        if let Some(exp) = bonds.get(&index) {
            for (slot_index, slot) in exp.slots.iter().enumerate() {
                let mut slot_entry = NetworkEntry::new(&slot.nad, &exp.namespace, &slot.interface);
                if let Some(other) = kept_extras.get(&(index, slot_index)) {
                    slot_entry.other = other.clone();
                }
                out.push(slot_entry);
            }
            let mut bond = entry.clone();
            bond.namespace = Some(exp.namespace.clone());
            if bond.interface.is_none() {
                bond.interface = Some(exp.bond_ifname.clone());
            }
            out.push(bond);
        } else if slot_of(entry).is_none() {
            let mut other = entry.clone();
            if other.interface.is_none() {
                // Multus names an unnamed attachment after its 1-based position in the list.
                other.interface = Some(format!("net{}", index + 1));
            }
            out.push(other);
        }
    }
    out
}

fn check_interfaces_unique(entries: &[NetworkEntry]) -> Result<(), String> {
    let mut by_interface: BTreeMap<&str, &NetworkEntry> = BTreeMap::new();
    for entry in entries {
        let Some(interface) = entry.interface.as_deref() else {
            continue;
        };
        if let Some(first) = by_interface.insert(interface, entry) {
            return Err(format!(
                "networks {} and {} would both be interface {interface} in the pod; give each BondNetwork its own spec.ifname, or name the interfaces with @ in the annotation",
                first.name, entry.name
            ));
        }
    }
    Ok(())
}

/// `/` and `~` escaped for a JSON pointer (RFC 6901).
fn json_pointer_escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

// === resources ===

/// One VF of each slot resource in requests and limits of the chosen container. A container
/// that already asks for at least that many keeps its numbers; other resources are untouched.
fn resources_patch(
    pod: &Pod,
    expanded: &[NetworkEntry],
    pod_namespace: &str,
    bonds: &BTreeMap<usize, Expansion>,
) -> Result<Option<Value>, String> {
    let mut needed: BTreeMap<&str, i64> = BTreeMap::new();
    for exp in bonds.values() {
        for slot in &exp.slots {
            let uses = expanded
                .iter()
                .filter(|e| e.name == slot.nad && e.namespace_or(pod_namespace) == exp.namespace)
                .count();
            *needed.entry(slot.resource.as_str()).or_default() +=
                i64::try_from(uses).unwrap_or(i64::MAX);
        }
    }

    let spec = pod.spec.as_ref().ok_or("the pod has no spec")?;
    let (index, container) = target_container(pod, &spec.containers)?;
    let mut resources = container.resources.clone().unwrap_or_default();
    let mut changed = false;
    for (resource, need) in needed {
        changed |= ensure_at_least(&mut resources, resource, need, &container.name)?;
    }
    if !changed {
        return Ok(None);
    }
    let value = serde_json::to_value(&resources)
        .map_err(|e| format!("cannot render the container's resources: {e}"))?;
    Ok(Some(json!({
        "op": "add",
        "path": format!("/spec/containers/{index}/resources"),
        "value": value,
    })))
}

fn target_container<'a>(
    pod: &Pod,
    containers: &'a [Container],
) -> Result<(usize, &'a Container), String> {
    let wanted = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_CONTAINER));
    match wanted {
        None => containers
            .first()
            .map(|c| (0, c))
            .ok_or_else(|| "the pod has no containers".to_owned()),
        Some(name) => containers
            .iter()
            .enumerate()
            .find(|(_, c)| &c.name == name)
            .ok_or_else(|| {
                let have: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "annotation {ANNOTATION_CONTAINER} names container {name:?}, but the pod's containers are {have:?}"
                )
            }),
    }
}

/// Raises `resource` to `need` in both requests and limits (extended resources must have
/// equal requests and limits). Returns whether anything changed.
fn ensure_at_least(
    resources: &mut ResourceRequirements,
    resource: &str,
    need: i64,
    container: &str,
) -> Result<bool, String> {
    let requests = resources.requests.get_or_insert_with(Default::default);
    let have_request = whole_number(requests.get(resource), resource, container, "requests")?;
    let limits = resources.limits.get_or_insert_with(Default::default);
    let have_limit = whole_number(limits.get(resource), resource, container, "limits")?;
    let target = need
        .max(have_request.unwrap_or(0))
        .max(have_limit.unwrap_or(0));
    if have_request == Some(target) && have_limit == Some(target) {
        return Ok(false);
    }
    let quantity = Quantity(target.to_string());
    limits.insert(resource.to_owned(), quantity.clone());
    resources
        .requests
        .get_or_insert_with(Default::default)
        .insert(resource.to_owned(), quantity);
    Ok(true)
}

fn whole_number(
    quantity: Option<&Quantity>,
    resource: &str,
    container: &str,
    field: &str,
) -> Result<Option<i64>, String> {
    quantity
        .map(|q| {
            q.0.trim().parse::<i64>().map_err(|_| {
                format!(
                    "container {container:?} has resources.{field}[{resource:?}] = {:?}; a VF count must be a whole number such as 1",
                    q.0
                )
            })
        })
        .transpose()
}
