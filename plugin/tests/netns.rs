//! Tier 2: the real `bond` binary and the real netlink backend on this machine's kernel,
//! with network namespaces and veth pairs standing in for VFs. Needs root; compiled always,
//! run with `--features test_as_root` (the README's test command sets it).
//!
//! Where the kernel has no bonding driver (these machines), ADD fails for real at bond
//! creation, and the tests assert that the rollback left every link where and how it was.
//! Where it has one, the same tests assert the bond and then that DEL restores everything.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use bond_cni::net::{Net, Ns};
use bond_cni::rtnl::RtNet;
use serde_json::Value;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bonding_in_kernel() -> bool {
    Path::new("/sys/module/bonding").exists()
}

/// A pod netns and veth pairs whose host ends stand in for ports. Removed on drop.
struct Fixture {
    netns: String,
    ports: Vec<String>,
    dir: tempfile::TempDir,
}

#[derive(Debug, PartialEq, Eq)]
struct LinkView {
    name: String,
    mtu: u64,
    mac: String,
    up: bool,
}

impl Fixture {
    /// `tag` keeps names unique across tests running at once (names are at most 15 bytes).
    fn new(tag: &str, mtus: &[u32]) -> Self {
        let pid = std::process::id() % 10000;
        let netns = format!("bnt-{tag}-{pid}");
        ip(&["netns", "add", &netns]);
        let mut ports = Vec::new();
        for (i, mtu) in mtus.iter().enumerate() {
            let name = format!("b{tag}{pid}{i}");
            let peer = format!("p{tag}{pid}{i}");
            ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", &name, "mtu", &mtu.to_string(), "up"]);
            ports.push(name);
        }
        Fixture {
            netns,
            ports,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.netns)
    }

    fn config(&self, extra: &str) -> String {
        let links: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!(r#"{{"name":"{p}"}}"#))
            .collect();
        format!(
            r#"{{"cniVersion":"1.0.0","name":"bondnet-test","type":"bond","mode":"active-backup","failOverMac":1,"miimon":"100","links":[{}],"stateDir":"{d}/state","lockDir":"{d}/locks"{extra}}}"#,
            links.join(","),
            d = self.dir.path().display()
        )
    }

    /// Run the plugin binary as a runtime would; returns (exit code, stdout JSON or Null).
    fn plugin(&self, command: &str, netns: &str, config: &str) -> (i32, Value) {
        self.plugin_with_path(command, netns, config, "/usr/lib/cni:/opt/cni/bin")
    }

    fn plugin_with_path(
        &self,
        command: &str,
        netns: &str,
        config: &str,
        cni_path: &str,
    ) -> (i32, Value) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_bond"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", format!("ctr-{}", self.netns))
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "bond0")
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bond");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(config.as_bytes())
            .expect("write config");
        let out = child.wait_with_output().expect("wait");
        let text = String::from_utf8_lossy(&out.stdout);
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(text.trim()).expect("stdout is JSON")
        };
        (out.status.code().unwrap_or(-1), json)
    }

    /// (name, mtu, mac, up) of each port, looked up in `netns` (None: the host).
    fn view(&self, netns: Option<&str>) -> Vec<Option<LinkView>> {
        let mut cmd = Command::new("ip");
        if let Some(ns) = netns {
            cmd.args(["-n", ns]);
        }
        let out = cmd
            .args(["-j", "link", "show"])
            .output()
            .expect("ip -j link");
        let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("ip json");
        self.ports
            .iter()
            .map(|p| {
                all.iter()
                    .find(|l| l["ifname"] == p.as_str())
                    .map(|l| LinkView {
                        name: p.clone(),
                        mtu: l["mtu"].as_u64().unwrap_or(0),
                        mac: l["address"].as_str().unwrap_or("").to_string(),
                        up: l["flags"]
                            .as_array()
                            .is_some_and(|f| f.iter().any(|x| x == "UP")),
                    })
            })
            .collect()
    }

    fn pod_link_names(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-n", &self.netns, "-j", "link", "show"])
            .output()
            .expect("ip");
        let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
        all.iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for p in &self.ports {
            let _ = Command::new("ip").args(["link", "del", p]).output();
            let _ = Command::new("ip")
                .args(["-n", &self.netns, "link", "del", p])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

#[test]
#[cfg_attr(
    not(feature = "test_as_root"),
    ignore = "needs root: --features test_as_root"
)]
fn add_with_host_links_leaves_them_exactly_as_they_were() {
    let f = Fixture::new("ah", &[9000, 1500]);
    let before = f.view(None);
    let (code, out) = f.plugin("ADD", &f.netns_path(), &f.config(""));
    if bonding_in_kernel() {
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["interfaces"][0]["name"], "bond0");
        let (code, out) = f.plugin("DEL", &f.netns_path(), &f.config(""));
        assert_eq!(code, 0, "{out}");
    } else {
        assert_eq!(code, 1);
        assert_eq!(out["code"], 100, "{out}");
        assert_eq!(out["msg"], "cannot create bond bond0 in the pod netns");
        let details = out["details"].as_str().unwrap_or("");
        assert!(details.contains("bonding driver"), "{details}");
        assert!(details.contains("every step was rolled back"), "{details}");
    }
    assert_eq!(
        f.view(None),
        before,
        "ports back on the host, same MTU, MAC and state"
    );
    assert_eq!(
        f.pod_link_names(),
        vec!["lo".to_string()],
        "nothing left in the pod"
    );
    let state = f.dir.path().join("state");
    assert!(
        fs::read_dir(&state).map_or(true, |d| d.flatten().next().is_none()),
        "no saved state left"
    );
}

#[test]
#[cfg_attr(
    not(feature = "test_as_root"),
    ignore = "needs root: --features test_as_root"
)]
fn add_with_links_in_the_pod_leaves_them_exactly_as_they_were() {
    let f = Fixture::new("ap", &[1500, 1400]);
    for p in &f.ports {
        ip(&["link", "set", p, "netns", &f.netns]);
        ip(&["-n", &f.netns, "link", "set", p, "up"]);
    }
    let before = f.view(Some(&f.netns));
    let config = f.config(r#","linksInContainer":true"#);
    let (code, out) = f.plugin("ADD", &f.netns_path(), &config);
    if bonding_in_kernel() {
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            out["interfaces"][0]["mtu"],
            Value::Null,
            "1.0.0 results carry no mtu"
        );
        f.plugin("DEL", &f.netns_path(), &config);
    } else {
        assert_eq!(out["code"], 100, "{out}");
    }
    assert_eq!(f.view(Some(&f.netns)), before);
    let mut names = f.pod_link_names();
    names.sort();
    let mut want = f.ports.clone();
    want.push("lo".into());
    want.sort();
    assert_eq!(names, want, "no bond left in the pod");
}

#[test]
#[cfg_attr(
    not(feature = "test_as_root"),
    ignore = "needs root: --features test_as_root"
)]
fn a_host_link_with_a_node_address_is_never_moved() {
    let f = Fixture::new("ha", &[1500, 1500]);
    ip(&["addr", "add", "10.249.1.1/24", "dev", &f.ports[1]]);
    let before = f.view(None);
    let (code, out) = f.plugin("ADD", &f.netns_path(), &f.config(""));
    assert_eq!(code, 1);
    assert_eq!(out["code"], 103, "{out}");
    let msg = out["msg"].as_str().unwrap_or("");
    assert!(
        msg.contains(&f.ports[1]) && msg.contains("10.249.1.1/24"),
        "{msg}"
    );
    assert_eq!(f.view(None), before);
    assert_eq!(f.pod_link_names(), vec!["lo".to_string()]);
}

#[test]
#[cfg_attr(
    not(feature = "test_as_root"),
    ignore = "needs root: --features test_as_root"
)]
fn del_moves_host_links_back_with_their_mtu_mac_and_state() {
    let f = Fixture::new("dm", &[9000, 1500]);
    let before = f.view(None);
    // What a successful ADD leaves: the ports in the pod, changed, and the saved state.
    let saved = serde_json::json!({
        "network": "bondnet-test",
        "containerID": format!("ctr-{}", f.netns),
        "ifname": "bond0",
        "links_in_container": false,
        "ports": before.iter().map(|v| {
            let v = v.as_ref().expect("port exists");
            let mac: Vec<u8> = v.mac.split(':').map(|b| u8::from_str_radix(b, 16).expect("hex")).collect();
            serde_json::json!({"name": v.name, "mtu": v.mtu, "mac": mac, "up": v.up})
        }).collect::<Vec<_>>(),
    });
    let state_dir = f.dir.path().join("state");
    fs::create_dir_all(&state_dir).expect("mkdir");
    fs::write(
        state_dir.join(format!("ctr-{}@bond0.json", f.netns)),
        saved.to_string(),
    )
    .expect("write state");
    for p in &f.ports {
        ip(&["link", "set", p, "netns", &f.netns]);
        ip(&[
            "-n",
            &f.netns,
            "link",
            "set",
            p,
            "mtu",
            "1280",
            "address",
            "02:12:34:56:78:9a",
            "up",
        ]);
    }
    let (code, out) = f.plugin("DEL", &f.netns_path(), &f.config(""));
    assert_eq!(code, 0, "{out}");
    assert_eq!(f.view(None), before);
    assert_eq!(f.pod_link_names(), vec!["lo".to_string()]);
    // DEL again: nothing left to do, still success.
    let (code, out) = f.plugin("DEL", &f.netns_path(), &f.config(""));
    assert_eq!(code, 0, "{out}");
    assert_eq!(f.view(None), before);
}

#[test]
#[cfg_attr(
    not(feature = "test_as_root"),
    ignore = "needs root: --features test_as_root"
)]
fn a_hung_ipam_plugin_is_stopped_at_ipam_timeout_and_every_host_link_stays_as_it_was() {
    let f = Fixture::new("ih", &[1500, 1500]);
    let bin = f.dir.path().join("bin");
    fs::create_dir_all(&bin).expect("mkdir");
    let script = bin.join("hang");
    // Its child sleeps and writes its pid: killing the script alone would leave stdout open.
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$CNI_COMMAND\" >>{d}/calls\nsleep 600 &\necho $! >{d}/sleeper.pid\nwait\n",
            d = f.dir.path().display()
        ),
    )
    .expect("write");
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let config = f.config(r#","ipam":{"type":"hang"},"ipamTimeout":1"#);
    let path = bin.to_str().expect("utf8");
    let before = f.view(None);
    let (code, out) = f.plugin_with_path("ADD", &f.netns_path(), &config, path);
    assert_eq!(code, 1, "{out}");
    if bonding_in_kernel() {
        assert_eq!(out["code"], 11, "{out}");
    } else {
        // No bonding driver: ADD stops at bond creation, before IPAM.
        assert_eq!(out["code"], 100, "{out}");
    }
    assert_eq!(f.view(None), before, "host links as they were");
    let (code, out) = f.plugin_with_path("DEL", &f.netns_path(), &config, path);
    assert_eq!((code, &out["code"]), (1, &Value::from(11)), "{out}");
    assert!(
        out["msg"]
            .as_str()
            .unwrap_or("")
            .contains("did not answer DEL within 1 s"),
        "{out}"
    );
    assert_eq!(f.view(None), before, "host links as they were");
    let pid = fs::read_to_string(f.dir.path().join("sleeper.pid")).expect("pid");
    // Killed with its group; it may take a moment to finish exiting (gone, or a zombie).
    let exited = (0..500).any(|_| {
        let stat = fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
        let done = stat.is_empty() || stat.contains(") Z");
        if !done {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        done
    });
    assert!(exited, "the hung plugin's child {} still runs", pid.trim());
}

#[test]
#[cfg_attr(
    not(feature = "test_as_root"),
    ignore = "needs root: --features test_as_root"
)]
fn del_succeeds_when_the_netns_is_gone_or_is_not_a_netns() {
    let f = Fixture::new("dg", &[1500, 1500]);
    let (code, out) = f.plugin("DEL", "/var/run/netns/does-not-exist", &f.config(""));
    assert_eq!(code, 0, "{out}");
    let not_netns = f.dir.path().join("plain-file");
    fs::write(&not_netns, "").expect("write");
    let (code, out) = f.plugin("DEL", not_netns.to_str().expect("utf8"), &f.config(""));
    assert_eq!(code, 0, "{out}");
    let (code, out) = f.plugin("DEL", "", &f.config(""));
    assert_eq!(code, 0, "{out}");
}

#[test]
#[cfg_attr(
    not(feature = "test_as_root"),
    ignore = "needs root: --features test_as_root"
)]
fn add_into_a_missing_netns_is_error_3_and_touches_nothing() {
    let f = Fixture::new("mn", &[1500, 1500]);
    let before = f.view(None);
    let (code, out) = f.plugin("ADD", "/var/run/netns/does-not-exist", &f.config(""));
    assert_eq!(code, 1);
    assert_eq!(out["code"], 3, "{out}");
    assert_eq!(f.view(None), before);
}

#[test]
#[cfg_attr(
    not(feature = "test_as_root"),
    ignore = "needs root: --features test_as_root"
)]
fn netlink_backend_moves_renames_and_restores_links_across_namespaces() {
    let f = Fixture::new("rt", &[1500]);
    let port = f.ports[0].clone();
    let pod = fs::File::open(f.netns_path()).expect("open netns");
    let mut net = RtNet::new(Some(pod)).expect("netlink");
    let host = net.link(Ns::Host, &port).expect("lookup").expect("on host");
    assert!(host.up);
    assert_eq!(host.mtu, 1500);

    net.move_link(Ns::Host, host.index, Ns::Pod)
        .expect("move in");
    assert!(net.link(Ns::Host, &port).expect("lookup").is_none());
    let inside = net.link(Ns::Pod, &port).expect("lookup").expect("in pod");
    net.set_mtu(Ns::Pod, inside.index, 1400).expect("mtu");
    net.set_mac(Ns::Pod, inside.index, &[2, 0xaa, 0, 0, 0, 1])
        .expect("mac");
    net.rename(Ns::Pod, inside.index, "tmpport0")
        .expect("rename");
    let renamed = net
        .link(Ns::Pod, "tmpport0")
        .expect("lookup")
        .expect("renamed");
    assert_eq!(
        (renamed.mtu, renamed.mac.clone()),
        (1400, vec![2, 0xaa, 0, 0, 0, 1])
    );
    net.rename(Ns::Pod, inside.index, &port)
        .expect("rename back");

    let original = bond_cni::state::SavedPort {
        name: port.clone(),
        mtu: host.mtu,
        mac: host.mac.clone(),
        up: host.up,
    };
    net.move_link(Ns::Pod, inside.index, Ns::Host)
        .expect("move out");
    bond_cni::rollback::restore_port(&mut net, Ns::Host, &original).expect("restore");
    let back = net.link(Ns::Host, &port).expect("lookup").expect("on host");
    assert_eq!((back.mtu, back.mac, back.up), (host.mtu, host.mac, true));
    assert!(net.elapsed.as_nanos() > 0, "time on netlink is accounted");
}

#[test]
#[cfg_attr(
    not(feature = "test_as_root"),
    ignore = "needs root: --features test_as_root"
)]
fn the_interface_name_rule_is_the_kernels() {
    // Each candidate is tried as a new name for a link in the pod netns, over netlink (not
    // through `ip`, which has its own checks): the kernel's verdict must be the plugin's.
    let f = Fixture::new("nm", &[1500]);
    let port = f.ports[0].clone();
    let pod = fs::File::open(f.netns_path()).expect("open netns");
    let mut net = RtNet::new(Some(pod)).expect("netlink");
    let host = net.link(Ns::Host, &port).expect("lookup").expect("on host");
    net.move_link(Ns::Host, host.index, Ns::Pod)
        .expect("move in");
    let index = net
        .link(Ns::Pod, &port)
        .expect("lookup")
        .expect("in pod")
        .index;
    let long = "abcdefghijklmnop";
    let candidates = [
        "bond0",
        "eth0.100",
        "...",
        "a@b",
        "a\u{1}b",
        "a\u{2000}b",
        "a\u{7f}",
        &long[..15],
        ".",
        "..",
        "a/b",
        "a:b",
        "a b",
        "a\tb",
        "a\nb",
        "a\u{b}b",
        "a\u{c}b",
        "a\rb",
        "a\u{a0}b",
        "à",
        "é",
        long,
        "ééééééééé",
    ];
    let mut disagree = Vec::new();
    for name in candidates {
        let ours = bond_cni::names::ifname(name).is_ok();
        let kernel = net.rename(Ns::Pod, index, name).is_ok();
        if kernel {
            net.rename(Ns::Pod, index, &port).expect("rename back");
        }
        if ours != kernel {
            disagree.push(format!("{name:?}: plugin {ours}, kernel {kernel}"));
        }
    }
    net.move_link(Ns::Pod, index, Ns::Host).expect("move out");
    assert!(disagree.is_empty(), "{disagree:?}");
}

#[test]
#[cfg_attr(
    not(feature = "test_as_root"),
    ignore = "needs root: --features test_as_root"
)]
fn concurrent_adds_on_shared_and_separate_host_links_never_lose_a_link() {
    // Eight pods with their own links, and four more calls all racing for the first pod's
    // links: the per-link lock serializes those, and every call ends with the links back.
    let fixtures: Vec<Fixture> = (0..8)
        .map(|i| Fixture::new(&format!("c{i}"), &[1500, 1500]))
        .collect();
    let before: Vec<_> = fixtures.iter().map(|f| f.view(None)).collect();
    let results: Vec<(i32, Value)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for f in &fixtures {
            handles.push(s.spawn(|| f.plugin("ADD", &f.netns_path(), &f.config(""))));
        }
        for _ in 0..4 {
            let f = &fixtures[0];
            handles.push(s.spawn(|| f.plugin("ADD", &f.netns_path(), &f.config(""))));
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (code, out) in &results {
        if bonding_in_kernel() {
            assert!(*code == 0 || out["code"] != 100, "{out}");
        } else {
            assert_eq!(*code, 1, "{out}");
            assert_eq!(out["code"], 100, "every call reaches bond creation: {out}");
        }
    }
    if !bonding_in_kernel() {
        for (f, b) in fixtures.iter().zip(&before) {
            assert_eq!(&f.view(None), b, "{}", f.netns);
            assert_eq!(f.pod_link_names(), vec!["lo".to_string()]);
        }
    }
}
