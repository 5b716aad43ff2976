//! The verbs against the in-memory kernel: results, DEL's idempotence, CHECK's findings,
//! and rollback with a fault injected at every single step of ADD.

use std::cell::RefCell;

use serde_json::{json, Value};

use crate::cmd::{add::add, check::check, del::del};
use crate::cni::args::{Args, Command};
use crate::config::{self, NetConf};
use crate::error::{Error, Result};
use crate::fake::FakeNet;
use crate::ipam::Ipam;
use crate::net::{Net, Ns, Route};

/// IPAM that hands out 10.56.217.66/24 and records every call.
#[derive(Default)]
struct FakeIpam {
    fail_add: bool,
    calls: RefCell<Vec<Command>>,
}

impl Ipam for FakeIpam {
    fn exec(&self, command: Command, _conf: &NetConf, _args: &Args) -> Result<Option<Value>> {
        self.calls.borrow_mut().push(command);
        match command {
            Command::Add if self.fail_add => Err(Error::Ipam {
                plugin: "fake".into(),
                code: 11,
                msg: "no addresses left".into(),
                details: String::new(),
            }),
            Command::Add => Ok(Some(json!({
                "cniVersion": "1.0.0",
                "ips": [{"address": "10.56.217.66/24", "gateway": "10.56.217.1"}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {"nameservers": ["10.56.217.1"]}
            }))),
            _ => Ok(None),
        }
    }
}

struct Case {
    conf: NetConf,
    args: Args,
    _dirs: tempfile::TempDir,
}

fn case(extra: &str, lic: bool) -> Case {
    let dirs = tempfile::tempdir().expect("tempdir");
    let d = dirs.path().display();
    let text = format!(
        r#"{{"cniVersion":"1.0.0","name":"bond-net1","type":"bond","mode":"active-backup","failOverMac":1,"miimon":"100",
        "linksInContainer":{lic},"links":[{{"name":"net1"}},{{"name":"net2"}}],
        "ipam":{{"type":"host-local","subnet":"10.56.217.0/24"}},
        "stateDir":"{d}/state","lockDir":"{d}/locks"{extra}}}"#
    );
    let conf = config::parse(text.as_bytes()).expect("valid config");
    let args = Args {
        command: Command::Add,
        container_id: "c1".into(),
        netns: "/var/run/netns/pod1".into(),
        ifname: "bond0".into(),
        args: String::new(),
        path: vec![],
    };
    Case {
        conf,
        args,
        _dirs: dirs,
    }
}

fn vfs(ns: Ns) -> FakeNet {
    FakeNet::new()
        .with_link(ns, "net1", 9000, [0x02, 0, 0, 0, 0, 1])
        .with_link(ns, "net2", 1500, [0x02, 0, 0, 0, 0, 2])
}

#[test]
fn add_builds_the_bond_with_ports_and_ipam_result() {
    let c = case("", true);
    let mut net = vfs(Ns::Pod);
    let ipam = FakeIpam::default();
    let result = add(&c.conf, &c.args, &mut net, &ipam).expect("add");
    let bond = net
        .bond(Ns::Pod, "bond0")
        .expect("read")
        .expect("bond exists");
    assert_eq!(bond.ports.len(), 2);
    assert!(bond.link.up);
    assert_eq!(bond.link.mtu, 1500, "mtu omitted: the smallest port MTU");
    assert_eq!(
        result
            .interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>(),
        vec!["bond0", "net1", "net2"]
    );
    assert_eq!(result.interfaces[0].sandbox, "/var/run/netns/pod1");
    assert_eq!(result.ips[0].interface, Some(0));
    assert_eq!(result.ips[0].address.to_string(), "10.56.217.66/24");
    assert_eq!(
        net.addrs,
        vec![(
            Ns::Pod,
            bond.link.index,
            "10.56.217.66/24".parse().expect("net")
        )]
    );
    assert_eq!(
        net.routes[0].1.gw,
        Some("10.56.217.1".parse().expect("ip")),
        "route takes the IP's gateway"
    );
    assert!(net.find(Ns::Pod, "net1").expect("net1").up);
}

#[test]
fn configured_mtu_is_set_on_the_bond_and_ports() {
    let c = case(r#","mtu":9000"#, true);
    let mut net = vfs(Ns::Pod);
    add(&c.conf, &c.args, &mut net, &FakeIpam::default()).expect("add");
    assert_eq!(net.find(Ns::Pod, "bond0").expect("bond").mtu, 9000);
    assert_eq!(net.find(Ns::Pod, "net2").expect("net2").mtu, 9000);
}

#[test]
fn mtu_above_what_a_port_accepts_is_refused_before_any_bond_exists() {
    let c = case(r#","mtu":9800"#, true);
    let mut net = vfs(Ns::Pod);
    let before = net.snapshot();
    let e = add(&c.conf, &c.args, &mut net, &FakeIpam::default()).expect_err("too big");
    assert!(
        e.to_string()
            .contains("mtu: 9800 is larger than port net1 accepts (at most 9702)"),
        "{e}"
    );
    assert_eq!(net.snapshot(), before);
}

/// For every change ADD makes, fail exactly that change, and the fake kernel must end where
/// it started, the saved state must be gone, and IPAM released if it was allocated.
fn rollback_at_every_step(lic: bool) {
    let c = case("", lic);
    let start_ns = if lic { Ns::Pod } else { Ns::Host };
    let mut probe = vfs(start_ns);
    add(&c.conf, &c.args, &mut probe, &FakeIpam::default()).expect("add succeeds unfaulted");
    let total = probe.changes;
    assert!(total >= 8, "ADD makes at least 8 changes, made {total}");
    for k in 0..total {
        let c = case("", lic);
        let mut net = vfs(start_ns);
        let before = net.snapshot();
        net.fail_at = Some(k);
        let ipam = FakeIpam::default();
        let e = add(&c.conf, &c.args, &mut net, &ipam).expect_err("fault injected");
        assert!(
            matches!(e, Error::RolledBack { ref undo_failures, .. } if undo_failures.is_empty()),
            "step {k}: {e:?}"
        );
        assert_eq!(net.snapshot(), before, "step {k} left the kernel changed");
        assert!(
            crate::state::list(&c.conf.state_dir).is_empty(),
            "step {k} left state behind"
        );
        let calls = ipam.calls.borrow();
        assert_eq!(
            calls.iter().filter(|c| **c == Command::Add).count(),
            calls.iter().filter(|c| **c == Command::Del).count(),
            "step {k}: IPAM allocations and releases must pair up"
        );
    }
}

#[test]
fn add_restores_everything_when_any_step_fails_with_links_in_the_pod() {
    rollback_at_every_step(true);
}

#[test]
fn add_restores_everything_when_any_step_fails_with_links_on_the_host() {
    rollback_at_every_step(false);
}

#[test]
fn add_releases_ports_and_ipam_when_ipam_fails() {
    let c = case("", true);
    let mut net = vfs(Ns::Pod);
    let before = net.snapshot();
    let ipam = FakeIpam {
        fail_add: true,
        ..Default::default()
    };
    let e = add(&c.conf, &c.args, &mut net, &ipam).expect_err("ipam fails");
    assert_eq!(e.code().number(), 101);
    assert!(e.to_string().contains("no addresses left"), "{e}");
    assert_eq!(net.snapshot(), before);
}

#[test]
fn add_without_a_bonding_driver_fails_and_changes_nothing() {
    let c = case("", false);
    let mut net = vfs(Ns::Host);
    net.bonding_supported = false;
    let before = net.snapshot();
    let e = add(&c.conf, &c.args, &mut net, &FakeIpam::default()).expect_err("no driver");
    assert!(e.to_string().contains("create bond bond0"), "{e}");
    let json = crate::cni::error::ErrorJson::from_error("1.0.0", &e);
    assert!(json.details.contains("bonding driver"), "{}", json.details);
    assert!(
        json.details.contains("every step was rolled back"),
        "{}",
        json.details
    );
    assert_eq!(net.snapshot(), before);
}

#[test]
fn a_missing_port_is_named_with_a_hint() {
    let c = case("", true);
    let mut net = FakeNet::new().with_link(Ns::Pod, "net1", 1500, [2, 0, 0, 0, 0, 1]);
    let e = add(&c.conf, &c.args, &mut net, &FakeIpam::default()).expect_err("net2 missing");
    assert!(
        e.to_string().starts_with(
            "link net2 not found in the pod network namespace (with linksInContainer: true"
        ),
        "{e}"
    );
    assert_eq!(e.code().number(), 104);
}

#[test]
fn host_links_with_node_addresses_or_the_default_route_are_refused() {
    let c = case("", false);
    let mut net = vfs(Ns::Host);
    let idx = net.find(Ns::Host, "net2").expect("net2").index;
    net.addrs
        .push((Ns::Host, idx, "192.168.1.10/24".parse().expect("net")));
    let before = net.snapshot();
    let e = add(&c.conf, &c.args, &mut net, &FakeIpam::default()).expect_err("in use");
    assert!(e.to_string().contains("net2 in the host network namespace cannot be a port: it carries the node's address 192.168.1.10/24"), "{e}");
    assert_eq!(net.snapshot(), before);

    let mut net = vfs(Ns::Host);
    let idx = net.find(Ns::Host, "net1").expect("net1").index;
    net.routes.push((
        Ns::Host,
        Route {
            dst: "0.0.0.0/0".parse().expect("net"),
            gw: None,
            oif: Some(idx),
            priority: None,
            table: None,
        },
    ));
    let e = add(&c.conf, &c.args, &mut net, &FakeIpam::default()).expect_err("in use");
    assert!(e.to_string().contains("default route"), "{e}");
}

#[test]
fn ipv6_link_local_addresses_do_not_count_as_node_addresses() {
    let c = case("", false);
    let mut net = vfs(Ns::Host);
    let idx = net.find(Ns::Host, "net1").expect("net1").index;
    net.addrs
        .push((Ns::Host, idx, "fe80::1/64".parse().expect("net")));
    add(&c.conf, &c.args, &mut net, &FakeIpam::default()).expect("link-local is fine");
}

#[test]
fn del_returns_host_links_as_they_were_and_is_idempotent() {
    let c = case("", false);
    let mut net = vfs(Ns::Host);
    let before = net.snapshot();
    let ipam = FakeIpam::default();
    add(&c.conf, &c.args, &mut net, &ipam).expect("add");
    assert!(net.find(Ns::Pod, "net1").is_some());
    del(&c.conf, &c.args, &mut net, &ipam, true).expect("del");
    assert_eq!(
        net.snapshot(),
        before,
        "ports back on the host with names, MTU, MAC and state"
    );
    del(&c.conf, &c.args, &mut net, &ipam, true).expect("second del");
    assert_eq!(
        ipam.calls
            .borrow()
            .iter()
            .filter(|c| **c == Command::Del)
            .count(),
        2,
        "IPAM released on every DEL"
    );
}

#[test]
fn del_restores_a_mac_replaced_for_tlb() {
    let c = case("", true);
    let mut conf = c.conf.clone();
    conf.bond = crate::bond::Bond {
        mode: crate::bond::BondMode::BalanceTlb,
        options: crate::bond::BondOptions::default(),
    };
    let mut net = FakeNet::new()
        .with_link(Ns::Pod, "net1", 1500, [2, 0, 0, 0, 0, 7])
        .with_link(Ns::Pod, "net2", 1500, [2, 0, 0, 0, 0, 7]);
    let before = net.snapshot();
    add(&conf, &c.args, &mut net, &FakeIpam::default()).expect("add");
    let m1 = net.find(Ns::Pod, "net1").expect("net1").mac.clone();
    let m2 = net.find(Ns::Pod, "net2").expect("net2").mac.clone();
    assert_ne!(m1, m2, "duplicate MAC replaced");
    assert_eq!(m2.len(), 6);
    assert_eq!(m2[0] & 0x03, 0x02, "locally administered unicast");
    del(&conf, &c.args, &mut net, &FakeIpam::default(), true).expect("del");
    assert_eq!(net.snapshot(), before);
}

#[test]
fn del_after_the_netns_is_gone_releases_ipam_and_succeeds() {
    let c = case("", true);
    let mut net = FakeNet::new();
    let ipam = FakeIpam::default();
    del(&c.conf, &c.args, &mut net, &ipam, false).expect("del with no netns");
    assert_eq!(*ipam.calls.borrow(), vec![Command::Del]);
}

#[test]
fn check_passes_on_a_good_bond_and_names_a_removed_port() {
    let c = case("", true);
    let mut net = vfs(Ns::Pod);
    let ipam = FakeIpam::default();
    let result = add(&c.conf, &c.args, &mut net, &ipam).expect("add");
    let mut conf = c.conf.clone();
    conf.prev_result = Some(result.to_json(conf.cni_version));
    check(&conf, &c.args, &mut net, &ipam).expect("check passes");
    assert_eq!(ipam.calls.borrow().last(), Some(&Command::Check));

    let idx = net.find(Ns::Pod, "net2").expect("net2").index;
    net.release(Ns::Pod, idx)
        .expect("release behind the plugin's back");
    let e = check(&conf, &c.args, &mut net, &ipam).expect_err("port missing");
    assert_eq!(
        e.to_string(),
        "check failed: bond0: port net2 is not enslaved to bond0"
    );
    assert_eq!(e.code().number(), 102);
}

#[test]
fn check_names_option_differences_and_needs_a_prev_result() {
    let c = case("", true);
    let mut net = vfs(Ns::Pod);
    let ipam = FakeIpam::default();
    let result = add(&c.conf, &c.args, &mut net, &ipam).expect("add");
    let mut conf = c.conf.clone();
    let e = check(&conf, &c.args, &mut net, &ipam).expect_err("no prevResult");
    assert!(e.to_string().contains("prevResult: missing"), "{e}");
    conf.prev_result = Some(result.to_json(conf.cni_version));
    conf.bond.options.miimon = Some(200);
    let e = check(&conf, &c.args, &mut net, &ipam).expect_err("miimon differs");
    assert!(
        e.to_string().contains("miimon: want 200, kernel has 100"),
        "{e}"
    );
}

#[test]
fn check_is_refused_before_spec_0_4_0() {
    let c = case("", true);
    let mut conf = c.conf.clone();
    conf.cni_version = crate::cni::version::Version::V031;
    let e = check(&conf, &c.args, &mut FakeNet::new(), &FakeIpam::default()).expect_err("old");
    assert_eq!(e.code().number(), 1);
}

#[test]
fn a_port_of_another_bond_is_named_with_that_bond() {
    let c = case("", true);
    let mut net = vfs(Ns::Pod);
    let first = add(&c.conf, &c.args, &mut net, &FakeIpam::default()).expect("first bond");
    assert_eq!(first.interfaces[0].name, "bond0");
    let mut args = c.args.clone();
    args.ifname = "bond1".into();
    let before = net.snapshot();
    let e = add(&c.conf, &args, &mut net, &FakeIpam::default()).expect_err("ports taken");
    assert_eq!(
        e.to_string(),
        "link net1 in the pod network namespace cannot be a port: it is already a port of bond0"
    );
    assert_eq!(net.snapshot(), before, "the first bond is untouched");
}

#[test]
fn a_host_link_whose_name_the_pod_already_has_is_refused_before_moving() {
    let c = case("", false);
    let mut net = vfs(Ns::Host).with_link(Ns::Pod, "net2", 1500, [2, 0, 0, 0, 0, 9]);
    let before = net.snapshot();
    let e = add(&c.conf, &c.args, &mut net, &FakeIpam::default()).expect_err("name taken");
    assert_eq!(e.code().number(), 103);
    assert!(
        e.to_string()
            .ends_with("the pod already has a link with that name"),
        "{e}"
    );
    assert_eq!(net.snapshot(), before);
    assert_eq!(net.changes, 0, "refused before any change");
}

#[test]
fn a_hung_ipam_plugin_is_stopped_the_add_rolled_back_and_the_host_links_unlocked() {
    let c = case("", false);
    let bin = tempfile::tempdir().expect("tempdir");
    crate::ipam::test_plugins::hanging(bin.path(), "ADD");
    let mut conf = c.conf.clone();
    conf.ipam = Some(json!({"type": "hang"}));
    conf.ipam_timeout = std::time::Duration::from_millis(300);
    let mut args = c.args.clone();
    args.path = vec![bin.path().display().to_string()];
    let mut net = vfs(Ns::Host);
    let before = net.snapshot();
    let delegate = crate::ipam::Delegate::default();

    let e = add(&conf, &args, &mut net, &delegate).expect_err("IPAM hangs");
    assert_eq!(e.code().number(), 11, "{e}");
    let json = crate::cni::error::ErrorJson::from_error("1.0.0", &e);
    assert!(
        json.msg.contains("did not answer ADD within 0.3 s"),
        "{json:?}"
    );
    assert!(
        json.details.contains("every step was rolled back"),
        "{json:?}"
    );
    assert_eq!(
        net.snapshot(),
        before,
        "the host links are back as they were"
    );
    assert!(crate::state::list(&conf.state_dir).is_empty(), "state left");
    let calls = std::fs::read_to_string(bin.path().join("calls")).expect("calls");
    assert_eq!(
        calls, "ADD\nDEL\n",
        "what the killed ADD may have reserved is released"
    );
    let pid = std::fs::read_to_string(bin.path().join("sleeper.pid")).expect("pid");
    assert!(
        crate::ipam::test_plugins::has_exited(&pid),
        "{pid} still runs"
    );
    crate::lock::acquire(&conf.lock_dir, &conf.links, std::time::Duration::ZERO)
        .expect("the host-link locks are free again");

    // DEL with the plugin hanging: code 11, the locks freed, the state kept for the retry.
    crate::ipam::test_plugins::hanging(bin.path(), "DEL");
    add(&c.conf, &c.args, &mut net, &FakeIpam::default()).expect("add");
    let e = del(&conf, &args, &mut net, &delegate, true).expect_err("DEL hangs");
    assert_eq!(e.code().number(), 11, "{e}");
    crate::lock::acquire(&conf.lock_dir, &conf.links, std::time::Duration::ZERO)
        .expect("the host-link locks are free again");
    assert_eq!(
        crate::state::list(&conf.state_dir).len(),
        1,
        "state kept for the DEL the runtime retries"
    );
    del(&c.conf, &c.args, &mut net, &FakeIpam::default(), true).expect("retried DEL");
    assert_eq!(net.snapshot(), before);
    assert!(crate::state::list(&conf.state_dir).is_empty());
}

/// Found by the fuzzer: a DEL that failed after moving a host link back (before restoring
/// it) left it down for good, because the retried DEL skipped links no longer in the pod.
/// Now, for a fault at every single change of DEL, the retried DEL restores everything.
#[test]
fn del_retried_after_a_fault_at_any_step_puts_every_host_link_back() {
    for lic in [false, true] {
        let start_ns = if lic { Ns::Pod } else { Ns::Host };
        let c = case("", lic);
        let mut probe = vfs(start_ns);
        add(&c.conf, &c.args, &mut probe, &FakeIpam::default()).expect("add");
        let at = probe.changes;
        del(&c.conf, &c.args, &mut probe, &FakeIpam::default(), true).expect("del");
        let total = probe.changes - at;
        // Deleting the bond releases its ports with it: one change with the links in the
        // pod; with host links, each is moved back (and restored) too.
        let least = if lic { 1 } else { 3 };
        assert!(
            total >= least,
            "DEL makes at least {least} changes, made {total}"
        );
        for k in 0..total {
            let c = case("", lic);
            let mut net = vfs(start_ns);
            let before = net.snapshot();
            let ipam = FakeIpam::default();
            add(&c.conf, &c.args, &mut net, &ipam).expect("add");
            net.fail_at = Some(net.changes + k);
            del(&c.conf, &c.args, &mut net, &ipam, true).expect_err("fault injected");
            net.fail_at = None;
            del(&c.conf, &c.args, &mut net, &ipam, true).expect("retried DEL");
            assert_eq!(net.snapshot(), before, "lic {lic}, fault at DEL change {k}");
            assert!(crate::state::list(&c.conf.state_dir).is_empty());
        }
    }
}

/// Found by the fuzzer: when the kernel refused an undo step, the rollback still removed
/// the saved state, so the DEL that follows a failed ADD could not restore the ports' MTU,
/// MAC and state. Now the state is kept, the error says so, and DEL finishes the job.
#[test]
fn a_rollback_that_cannot_undo_a_step_keeps_the_state_for_del() {
    for lic in [false, true] {
        let start_ns = if lic { Ns::Pod } else { Ns::Host };
        let mut incomplete = 0;
        for k in 0..40 {
            let c = case("", lic);
            let mut net = vfs(start_ns);
            let before = net.snapshot();
            // IPAM fails, so ADD rolls back; the fault lands on a forward step or an undo.
            let ipam = FakeIpam {
                fail_add: true,
                ..Default::default()
            };
            net.fail_at = Some(k);
            let e = add(&c.conf, &c.args, &mut net, &ipam).expect_err("fails");
            let reached = net.changes > k;
            net.fail_at = None;
            let json = crate::cni::error::ErrorJson::from_error("1.0.0", &e);
            if json.details.contains("rollback incomplete") {
                incomplete += 1;
                assert!(
                    json.details
                        .contains("the saved port state is kept for DEL"),
                    "{json:?}"
                );
                assert_eq!(crate::state::list(&c.conf.state_dir).len(), 1, "state kept");
                del(&c.conf, &c.args, &mut net, &FakeIpam::default(), true).expect("DEL");
            }
            assert_eq!(net.snapshot(), before, "lic {lic}, fault at change {k}");
            assert!(crate::state::list(&c.conf.state_dir).is_empty());
            if !reached {
                break;
            }
        }
        assert!(incomplete > 0, "lic {lic}: no fault landed on an undo step");
    }
}
