//! Every name bondnet generates. The controller, the webhook and `bondnet plan` all call these,
//! so they cannot disagree. Names are pure functions of the network's namespace, name and slot;
//! when a name would exceed its limit it is cut and a hash of the full input is appended.

/// Longest NAD name (a DNS subdomain).
const MAX_NAD_NAME: usize = 253;
/// Longest name part of an extended resource, and longest label value.
const MAX_QUALIFIED_NAME: usize = 63;

/// FNV-1a, 64 bit: a stable hash with no dependency and no randomness.
pub fn stable_hash(input: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in input.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// `name` if it fits in `max` bytes; otherwise its head, `sep` and 8 hex digits of its hash.
fn bounded(name: String, max: usize, sep: char, hash_of: &str) -> String {
    if name.len() <= max {
        return name;
    }
    let suffix = format!("{sep}{:08x}", stable_hash(hash_of) & 0xffff_ffff);
    let mut head = name;
    head.truncate(max - suffix.len());
    // Keep the result ending in an alphanumeric, as names and label values must.
    while head.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        head.pop();
    }
    head + &suffix
}

/// `namespace/name`, the key of a network in logs, summaries and errors.
pub fn network_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The bond NAD carries the network's own name: a pod asks for the bond by that name.
pub fn bond_nad_name(network: &str) -> String {
    network.to_owned()
}

/// The SR-IOV NAD of one slot: `<network>-p<slot>`.
pub fn slot_nad_name(network: &str, slot: u32) -> String {
    bounded(
        format!("{network}-p{slot}"),
        MAX_NAD_NAME,
        '-',
        &format!("{network}/{slot}"),
    )
}

/// Interface name of a port in the pod: `<ifname>p<slot>` (at most 15 bytes, since `ifname`
/// is at most 13 and a bond has at most 8 ports).
pub fn slot_ifname(bond_ifname: &str, slot: u32) -> String {
    format!("{bond_ifname}p{slot}")
}

/// Device-plugin resource name (without prefix) of one slot: `<namespace>_<name>_p<slot>`,
/// with `.` in the name written as `_`. Only letters, digits, `_` and `-`, at most 63 bytes.
/// Namespaces hold neither `_` nor `.`, so distinct networks get distinct names.
pub fn resource_name(namespace: &str, network: &str, slot: u32) -> String {
    let name = format!("{namespace}_{network}_p{slot}").replace('.', "_");
    bounded(
        name,
        MAX_QUALIFIED_NAME,
        '_',
        &format!("{namespace}/{network}/{slot}"),
    )
}

/// Full resource name as pods request it: `<prefix>/<resource>`.
pub fn qualified_resource_name(prefix: &str, resource: &str) -> String {
    format!("{prefix}/{resource}")
}

/// A label value naming the network (label values are limited to 63 bytes).
pub fn network_label_value(network: &str) -> String {
    bounded(network.to_owned(), MAX_QUALIFIED_NAME, '-', network)
}

/// Which device-plugin ConfigMap shard holds `node`'s config (the count is chosen by size).
pub fn device_plugin_shard(node: &str, shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    // The remainder is below `shards`, so it fits.
    u32::try_from(stable_hash(node) % u64::from(shards)).unwrap_or(0)
}

/// Name of one device-plugin ConfigMap shard: the base name alone when there is one shard,
/// else `<base>-<shard>`.
pub fn device_plugin_configmap_name(base: &str, shards: u32, shard: u32) -> String {
    if shards <= 1 {
        base.to_owned()
    } else {
        format!("{base}-{shard}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_read_as_their_parts() {
        assert_eq!(slot_nad_name("fast", 1), "fast-p1");
        assert_eq!(slot_ifname("bond0", 0), "bond0p0");
        assert_eq!(resource_name("telco", "fast.net", 0), "telco_fast_net_p0");
        assert_eq!(bond_nad_name("fast"), "fast");
        assert_eq!(
            qualified_resource_name("bondnet.io", "a_b_p0"),
            "bondnet.io/a_b_p0"
        );
    }

    #[test]
    fn long_resource_names_are_cut_to_63_bytes_and_stay_distinct() {
        let long = "n".repeat(200);
        let a = resource_name("ns", &long, 0);
        let b = resource_name("ns", &long, 1);
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
    }

    #[test]
    fn long_nad_names_are_cut_to_253_bytes_and_stay_distinct() {
        let long = "x".repeat(253);
        let a = slot_nad_name(&long, 0);
        let b = slot_nad_name(&long, 1);
        assert!(a.len() <= 253 && b.len() <= 253);
        assert_ne!(a, b);
        assert!(a.ends_with(|c: char| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn label_values_fit_63_bytes() {
        assert_eq!(network_label_value("short"), "short");
        assert!(network_label_value(&"y".repeat(100)).len() <= 63);
    }

    #[test]
    fn one_shard_keeps_the_configured_name_and_more_shards_number_it() {
        assert_eq!(device_plugin_configmap_name("cm", 1, 0), "cm");
        assert_eq!(device_plugin_configmap_name("cm", 4, 3), "cm-3");
        assert_eq!(device_plugin_shard("node-1", 1), 0);
        assert!((0..100).all(|i| device_plugin_shard(&format!("n{i}"), 4) < 4));
        let used: std::collections::BTreeSet<u32> = (0..100)
            .map(|i| device_plugin_shard(&format!("n{i}"), 4))
            .collect();
        assert_eq!(used.len(), 4, "nodes spread over every shard");
    }

    #[test]
    fn the_hash_is_stable_across_runs() {
        // FNV-1a test vector: the empty string hashes to the offset basis.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
