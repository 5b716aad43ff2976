//! Prints what the agent's sysfs discovery finds under a root (default `/`): the `pfs` of the
//! BondNodeState status the agent would publish, and the PFs it would leave out, as JSON on
//! stdout. No API server is involved; the VM tier's `--sriov` mode runs it over the guest's
//! real sysfs (QEMU's igb PFs and their igbvf VFs).
//!
//! `bondnet-discover [ROOT]`

use std::path::PathBuf;
use std::process::ExitCode;

use bondnet::agent::sysfs::discover_pfs;

fn main() -> ExitCode {
    let root = PathBuf::from(std::env::args_os().nth(1).unwrap_or_else(|| "/".into()));
    let discovery = match discover_pfs(&root) {
        Ok(discovery) => discovery,
        Err(err) => {
            eprintln!(
                "bondnet-discover: cannot scan {}: {err}",
                root.join("sys/class/net").display()
            );
            return ExitCode::FAILURE;
        }
    };
    let skipped: Vec<String> = discovery.skipped.iter().map(ToString::to_string).collect();
    let out = serde_json::json!({ "pfs": discovery.pfs, "skipped": skipped });
    println!("{out:#}");
    ExitCode::SUCCESS
}
