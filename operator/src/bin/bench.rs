//! Times one plan of a large cluster and prints its peak memory: 5,000 nodes with 4 PFs each
//! (two dual-port cards) and 1,000 BondNetworks in 50 node pools (`--networks N` for another
//! count). Run it in release mode:
//! `cargo run --release -p bondnet-operator --bin bondnet-bench`.
//!
//! It also adds one more network to the converged plan and counts the node states whose
//! device-plugin pools change (the controller's writes besides the new network's own NADs and
//! status), and prints the largest node state's pools: the per-object size bound.
//!
//! With `--everywhere`, no network has a nodeSelector: all 500 compete for every node, so
//! most (network, node) pairs are refused and carry a reason, the worst case for memory.

use std::collections::BTreeMap;
use std::time::Instant;

use bondnet::fixtures::{network, node_with_cards};
use bondnet::plan::{self, Allocation, Inputs, NodeOutcome, Settings};

const NODES: u32 = 5_000;
const NETWORKS: u32 = 1_000;
const POOLS: u32 = 50;
const VFS_PER_PF: u32 = 32;

/// A line of /proc/self/status in KiB, e.g. `VmHWM` (peak resident) or `VmRSS`.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "unknown".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let everywhere = args.iter().any(|a| a == "--everywhere");
    let networks_count: u32 = args
        .iter()
        .position(|a| a == "--networks")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--networks takes a number"))
        .unwrap_or(NETWORKS);
    let nodes: Vec<_> = (0..NODES)
        .map(|i| {
            let pool = format!("pool-{}", i % POOLS);
            node_with_cards(
                &format!("node-{i:05}"),
                &[("bondnet.io/pool", &pool)],
                2,
                VFS_PER_PF,
            )
        })
        .collect();
    let networks: Vec<_> = (0..networks_count)
        .map(|i| {
            network(
                &format!("tenant-{}", i % 20),
                &format!("bond-{i:03}"),
                |spec| {
                    if !everywhere {
                        spec.node_selector
                            .insert("bondnet.io/pool".into(), format!("pool-{}", i % POOLS));
                    }
                },
            )
        })
        .collect();
    let labels = BTreeMap::new();
    let settings = Settings::default();
    let previous = Allocation::default();
    let inputs = Inputs {
        networks: &networks,
        nodes: &nodes,
        node_labels: &labels,
        previous: &previous,
        settings: &settings,
    };
    let rss_inputs = status_kib("VmRSS:");

    let start = Instant::now();
    let planned = plan::plan(&inputs);
    let configmaps = plan::device_plugin_configmaps(&planned);
    let elapsed = start.elapsed();

    let peak_first = status_kib("VmHWM:");

    let hosted: usize = planned
        .networks
        .iter()
        .map(|n| {
            n.nodes
                .values()
                .filter(|o| matches!(o, NodeOutcome::Hosted(_)))
                .count()
        })
        .sum();
    let configmap_bytes: usize = configmaps.iter().map(plan::configmap_data_bytes).sum();
    let shards = configmaps.len();
    drop(configmaps);

    // Re-plan with the allocation just made: the controller's steady state.
    let start = Instant::now();
    let previous = planned.allocation();
    let again = plan::plan(&Inputs {
        previous: &previous,
        ..inputs
    });
    let replan = start.elapsed();
    let stable = again.allocation() == previous;
    let largest_state = again
        .device_plugin
        .values()
        .map(|c| serde_json::to_string(c).map(|s| s.len()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let converged: BTreeMap<String, String> = again
        .device_plugin
        .iter()
        .map(|(n, c)| {
            (
                (*n).to_owned(),
                serde_json::to_string(c).unwrap_or_default(),
            )
        })
        .collect();
    drop(again);

    // One more network on the converged cluster: how long, and how many node states change.
    let mut one_more = networks.clone();
    one_more.push(network("tenant-new", "bond-new", |spec| {
        if !everywhere {
            spec.node_selector
                .insert("bondnet.io/pool".into(), "pool-0".into());
        }
    }));
    let start = Instant::now();
    let added = plan::plan(&Inputs {
        networks: &one_more,
        nodes: &nodes,
        node_labels: &labels,
        previous: &previous,
        settings: &settings,
    });
    let add_time = start.elapsed();
    let changed_states = added
        .device_plugin
        .iter()
        .filter(|(n, c)| converged.get(**n) != serde_json::to_string(c).ok().as_ref())
        .count();
    let new_nads = added
        .networks
        .iter()
        .find(|n| n.name == "bond-new")
        .map_or(0, |n| n.nads.len());

    let layout = if everywhere {
        "each selecting every node".to_owned()
    } else {
        format!("in {POOLS} node pools")
    };
    println!("bondnet plan bench: {NODES} nodes x 4 PFs, {networks_count} BondNetworks {layout}");
    println!(
        "  plan + device-plugin ConfigMap: {:.1} ms",
        elapsed.as_secs_f64() * 1000.0
    );
    println!(
        "  read back allocation + re-plan:  {:.1} ms",
        replan.as_secs_f64() * 1000.0
    );
    println!("  (network, node) pairs hosted: {hosted}");
    println!(
        "  device-plugin ConfigMap export: {:.1} MiB in {shards} shards, each under 1 MiB",
        configmap_bytes as f64 / 1024.0 / 1024.0
    );
    println!("  resident after building inputs: {}", mib(rss_inputs));
    println!(
        "  peak resident after one plan (VmHWM): {}",
        mib(peak_first)
    );
    println!(
        "  peak resident with two plans alive (VmHWM): {}",
        mib(status_kib("VmHWM:"))
    );
    println!("  allocation unchanged on re-plan: {stable}");
    println!("  largest node state's device-plugin pools: {largest_state} bytes");
    println!(
        "  one more network: plan {:.1} ms; writes: {changed_states} node states + {new_nads} NADs + 1 status",
        add_time.as_secs_f64() * 1000.0
    );
}
