//! The real-kernel tier's host side: where its scripts live, which scenarios it must
//! report, and how to read the guest's `SCENARIO <name> PASS|FAIL: <why>` lines.
//!
//! The guest half is shell (`tests/vm/guest/`): `tier.sh` lists the scenarios and runs
//! them; [`SCENARIOS`] is the list the Rust test holds it to, so a scenario that silently
//! stops running is a failure, not a smaller pass count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every scenario the tier must report as passed, in the order `tier.sh` runs them.
pub const SCENARIOS: &[&str] = &[
    "version-lists-supported-versions",
    "results-shaped-for-each-cni-version",
    "mode-balance-rr",
    "mode-active-backup",
    "mode-balance-xor",
    "mode-broadcast",
    "mode-802.3ad",
    "mode-balance-tlb",
    "mode-balance-alb",
    "mode-given-as-number",
    "options-active-backup-primary-delays",
    "options-802.3ad-lacp",
    "options-arp-monitoring",
    "options-balance-rr-and-tlb",
    "option-for-another-mode-is-refused",
    "duplicate-port-macs-in-alb",
    "active-backup-failover-keeps-traffic",
    "802.3ad-aggregates-with-peer-bond",
    "links-in-container-true",
    "links-in-container-false-moves-links-and-back",
    "links-in-container-false-refuses-node-address-or-route-link",
    "mtu-set-applies-to-bond-and-ports",
    "mtu-omitted-takes-smallest-port-mtu",
    "del-restores-mac-mtu-admin-state",
    "del-twice-succeeds",
    "del-after-netns-gone-succeeds",
    "del-when-bond-or-port-already-gone",
    "check-passes-on-good-bond",
    "check-catches-removed-port",
    "check-catches-mtu-and-address-drift",
    "ipam-host-local-address-and-routes",
    "ipam-static-addresses-routes-dns",
    "ipam-host-local-dual-stack-three-ports",
    "netns-given-as-proc-path",
    "rollback-when-ipam-config-fails",
    "rollback-when-ipam-range-exhausted",
    "rollback-when-the-ipam-plugin-hangs",
    "rollback-when-a-link-is-missing",
    "rollback-when-a-port-belongs-to-another-bond",
    "rollback-when-a-host-link-name-is-taken-in-the-pod",
    "second-add-for-same-ifname-keeps-the-first",
    "bad-mode-is-code-7-and-changes-nothing",
    "protocol-errors-have-spec-codes",
    "two-bonds-in-one-pod",
    "log-file-takes-the-logs",
    "status-reports-the-bonding-driver",
    "gc-forgets-attachments-not-valid",
    "sixteen-concurrent-adds",
    "eight-concurrent-adds-with-host-links",
    "racing-adds-for-the-same-host-links",
    "seed-sriov-failover-config",
    "upstream-configs-work-unchanged",
];

/// What `run.sh --sriov` (`guest/sriov.sh`) must report as passed, in its order: the igb
/// PFs, their igbvf VFs, the agent's discovery over that sysfs, and a bond of two VFs on
/// different PFs that fails over when one PF goes down.
pub const SRIOV_SCENARIOS: &[&str] = &[
    "sriov-igb-pfs-on-their-own-cards",
    "sriov-numvfs-creates-igbvf-vfs",
    "sriov-agent-discovery-reads-the-real-sysfs",
    "sriov-bond-of-vfs-on-two-pfs-fails-over",
];

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The `bond` binary as it ships: `BONDNET_BOND_BIN` when set, else what
/// `scripts/build-bond.sh` builds (static, musl) and prints. Every tier that runs the plugin
/// on a real kernel (the VM tier, the SR-IOV node's image, the benchmark) takes it from here.
pub fn shipped_bond() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("BONDNET_BOND_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("BONDNET_BOND_BIN={} is not a file", p.display()))
        };
    }
    let script = workspace_root().join("scripts").join("build-bond.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} printed {}, which is not a file",
            script.display(),
            bin.display()
        ))
    }
}

/// `tests/vm/` in the workspace.
pub fn vm_dir() -> PathBuf {
    workspace_root().join("tests").join("vm")
}

/// How one scenario ended, as the guest reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
}

/// The scenario lines of a guest console log, by name. A name reported twice keeps its
/// last outcome unless an earlier one failed (a failure is never overwritten).
pub fn parse_report(console: &str) -> BTreeMap<String, Outcome> {
    let mut out = BTreeMap::new();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        let Some(rest) = line.strip_prefix("SCENARIO ") else {
            continue;
        };
        let Some((name, verdict)) = rest.split_once(' ') else {
            continue;
        };
        let outcome = if verdict == "PASS" {
            Outcome::Pass
        } else if let Some(why) = verdict.strip_prefix("FAIL") {
            Outcome::Fail(why.trim_start_matches(':').trim().to_string())
        } else {
            continue;
        };
        let keep_failure = matches!(out.get(name), Some(Outcome::Fail(_)));
        if !keep_failure {
            out.insert(name.to_string(), outcome);
        }
    }
    out
}

/// What stands between a report and a green tier: each expected scenario that failed or
/// never reported, one line each. Empty means every expected scenario passed.
pub fn verdict(expected: &[&str], report: &BTreeMap<String, Outcome>) -> Vec<String> {
    expected
        .iter()
        .filter_map(|name| match report.get(*name) {
            Some(Outcome::Pass) => None,
            Some(Outcome::Fail(why)) => Some(format!("{name}: FAIL: {why}")),
            None => Some(format!("{name}: never reported (missing scenario)")),
        })
        .collect()
}

/// The scenario names `tier.sh` declares (its `name|function` lines), in order.
pub fn declared_scenarios(tier_sh: &str) -> Vec<String> {
    let Some(start) = tier_sh.find("SCENARIOS='") else {
        return Vec::new();
    };
    let body = &tier_sh[start + "SCENARIOS='".len()..];
    let body = body.split('\'').next().unwrap_or("");
    body.lines()
        .filter_map(|l| l.split_once('|').map(|(name, _)| name.trim().to_string()))
        .filter(|n| !n.is_empty())
        .collect()
}

/// The scenario names `sriov.sh` runs (its `scenario NAME FUNCTION` lines), in order.
pub fn declared_sriov_scenarios(sriov_sh: &str) -> Vec<String> {
    sriov_sh
        .lines()
        .filter_map(|l| l.strip_prefix("scenario "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_reads_pass_and_fail_lines_and_ignores_the_rest() {
        let log = "BONDNET-BOOT-OK\nSCENARIO mode-broadcast PASS\r\n  (mode-broadcast: 7.0s)\n\
                   --- log of x\n  | SCENARIO fake PASS\nSCENARIO del-twice-succeeds FAIL: second DEL: exit 1\n";
        let r = parse_report(log);
        assert_eq!(r.len(), 2);
        assert_eq!(r["mode-broadcast"], Outcome::Pass);
        assert_eq!(
            r["del-twice-succeeds"],
            Outcome::Fail("second DEL: exit 1".to_string())
        );
    }

    #[test]
    fn a_failure_is_not_hidden_by_a_later_pass_of_the_same_name() {
        let r = parse_report("SCENARIO a FAIL: boom\nSCENARIO a PASS\n");
        assert_eq!(r["a"], Outcome::Fail("boom".to_string()));
    }

    #[test]
    fn verdict_lists_failed_and_missing_scenarios() {
        let r = parse_report("SCENARIO a PASS\nSCENARIO b FAIL: why\n");
        let v = verdict(&["a", "b", "c"], &r);
        assert_eq!(
            v,
            vec![
                "b: FAIL: why".to_string(),
                "c: never reported (missing scenario)".to_string()
            ]
        );
        assert!(verdict(&["a"], &r).is_empty());
    }

    #[test]
    fn a_pass_with_trailing_text_is_not_a_pass() {
        let r = parse_report("SCENARIO a PASSED\nSCENARIO b PASS maybe\n");
        assert!(r.is_empty());
    }

    #[test]
    fn the_expected_list_is_exactly_what_tier_sh_runs() {
        let tier = std::fs::read_to_string(vm_dir().join("guest").join("tier.sh"))
            .expect("tests/vm/guest/tier.sh is readable");
        let declared = declared_scenarios(&tier);
        let expected: Vec<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
        assert_eq!(declared, expected);
    }

    #[test]
    fn the_sriov_list_is_exactly_what_sriov_sh_runs() {
        let sriov = std::fs::read_to_string(vm_dir().join("guest").join("sriov.sh"))
            .expect("tests/vm/guest/sriov.sh is readable");
        let declared = declared_sriov_scenarios(&sriov);
        let expected: Vec<String> = SRIOV_SCENARIOS.iter().map(|s| s.to_string()).collect();
        assert_eq!(declared, expected);
    }
}
