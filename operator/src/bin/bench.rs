//! Times one plan of a large cluster and prints its peak memory: 5,000 nodes with 4 PFs each
//! (two dual-port cards) and 500 BondNetworks in 50 node pools. Run it in release mode:
//! `cargo run --release -p bondnet-operator --bin bondnet-bench`.
//!
//! With `--everywhere`, no network has a nodeSelector: all 500 compete for every node, so
//! most (network, node) pairs are refused and carry a reason, the worst case for memory.

use std::collections::BTreeMap;
use std::time::Instant;

use bondnet::fixtures::{network, node_with_cards};
use bondnet::plan::{self, Allocation, Inputs, NodeOutcome, Settings};

const NODES: u32 = 5_000;
const NETWORKS: u32 = 500;
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
    let everywhere = std::env::args().any(|a| a == "--everywhere");
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
    let networks: Vec<_> = (0..NETWORKS)
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

    let layout = if everywhere {
        "each selecting every node".to_owned()
    } else {
        format!("in {POOLS} node pools")
    };
    println!("bondnet plan bench: {NODES} nodes x 4 PFs, {NETWORKS} BondNetworks {layout}");
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
}
