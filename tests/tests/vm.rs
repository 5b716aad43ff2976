//! Tier 3, the real kernel: boots Debian's 6.1 kernel (which has the bonding driver this
//! host's kernel lacks) under qemu/TCG and runs the release `bond` binary through every
//! scenario in `tests/vm/guest/tier.sh`, as a CNI runtime would.
//!
//! A second test boots an SR-IOV node instead (`run.sh --sriov`): two of QEMU's igb PFs
//! under the backports qemu, their VFs, and the agent's discovery over that sysfs.
//!
//! `#[ignore]`d, so a plain `cargo test` lists it as ignored:
//! `cargo test -p bondnet-tests --test vm -- --ignored --nocapture` runs it, and then a missing
//! qemu or kernel is a failure with the reason, never a silent pass.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use bondnet_tests::vm::{parse_report, shipped_bond, verdict, vm_dir, SCENARIOS, SRIOV_SCENARIOS};

/// One VM at a time: both tests build the same cached guest image, and two TCG guests on a
/// small machine would each take twice as long.
static ONE_VM: Mutex<()> = Mutex::new(());

/// The guest's own limit (run.sh kills qemu then); the test waits a little longer.
const GUEST_TIMEOUT_S: u64 = 1200;

/// Runs a script of tests/vm/ to completion, its output passed through.
fn run_script(name: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(vm_dir().join(name))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run tests/vm/{name}: {e}"))?;
    if !out.status.success() {
        return Err(format!("tests/vm/{name} failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Boots the guest through run.sh in `mode` (`tier`, `sriov`) and returns its console,
/// echoed line by line as it comes.
fn boot(bond: &PathBuf, mode: &str) -> Result<String, String> {
    let mut child = Command::new("bash")
        .arg(vm_dir().join("run.sh"))
        .arg(format!("--{mode}"))
        .env("BONDNET_BOND_BIN", bond)
        .env("BONDNET_VM_SKIP_INSTALL", "1")
        .env("BONDNET_VM_TIMEOUT", GUEST_TIMEOUT_S.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start tests/vm/run.sh: {e}"))?;
    let stdout = child.stdout.take().ok_or("run.sh has no stdout")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(GUEST_TIMEOUT_S + 120);
    let mut console = String::new();
    let status = loop {
        while let Ok(line) = rx.try_recv() {
            println!("{line}");
            console.push_str(&line);
            console.push('\n');
        }
        if let Some(st) = child
            .try_wait()
            .map_err(|e| format!("waiting for run.sh: {e}"))?
        {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the VM did not finish within {} s; console so far:\n{console}",
                GUEST_TIMEOUT_S + 120
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = reader.join();
    for line in rx.try_iter() {
        println!("{line}");
        console.push_str(&line);
        console.push('\n');
    }
    if !console.contains("BONDNET-DONE") {
        return Err(format!(
            "the guest did not finish its run (run.sh: {status}); see target/vm/last-{mode}.log"
        ));
    }
    Ok(console)
}

#[test]
#[ignore = "tier 3, a real kernel under qemu (minutes): cargo test -p bondnet-tests --test vm -- --ignored"]
fn every_scenario_passes_on_a_kernel_with_bonding() {
    let _vm = ONE_VM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    if let Err(e) = run_script("install-deps.sh", &[]) {
        panic!("real-kernel tier cannot run: qemu or the guest kernel cannot be had: {e}");
    }
    let images = run_script("build-image.sh", &[])
        .unwrap_or_else(|e| panic!("real-kernel tier cannot build its guest image: {e}"));
    assert!(
        images.contains("KERNEL=") && images.contains("BASE="),
        "build-image.sh named no kernel or base image: {images}"
    );
    let bond = shipped_bond().unwrap_or_else(|e| panic!("no shipped bond binary: {e}"));
    let console = boot(&bond, "tier").unwrap_or_else(|e| panic!("real-kernel tier: {e}"));
    let report = parse_report(&console);
    let problems = verdict(SCENARIOS, &report);
    eprintln!(
        "vm tier: {} of {} scenarios passed in {:.0} s",
        SCENARIOS.len() - problems.len(),
        SCENARIOS.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "real-kernel tier: {} scenario(s) not passed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
#[ignore = "a real kernel with two igb PFs under the backports qemu (a minute or two): cargo test -p bondnet-tests --test vm -- --ignored"]
fn igb_vfs_have_the_sysfs_shape_the_agent_reads() {
    let _vm = ONE_VM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Err(e) = run_script("install-deps.sh", &["--igb"]) {
        panic!("SR-IOV node cannot run: the igb qemu or the guest kernel cannot be had: {e}");
    }
    run_script("build-image.sh", &[])
        .unwrap_or_else(|e| panic!("SR-IOV node cannot build its guest image: {e}"));
    let bond = shipped_bond().unwrap_or_else(|e| panic!("no shipped bond binary: {e}"));
    let console = boot(&bond, "sriov").unwrap_or_else(|e| panic!("SR-IOV node: {e}"));
    let problems = verdict(SRIOV_SCENARIOS, &parse_report(&console));
    assert!(
        problems.is_empty(),
        "SR-IOV node: {} check(s) not passed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
