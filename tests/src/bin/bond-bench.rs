//! `bond-bench`: ADD+DEL cycles of the release `bond` binary on a real kernel, run inside
//! the real-kernel tier's guest (`tests/vm/bench.sh` boots it). It sets up one pod netns
//! with two veth ports (their peers up in a switch netns), then times, each as its own
//! series of calls:
//!
//! - the cycle: `bond` ADD then DEL (host-local IPAM, linksInContainer true);
//! - process start: `bond` with CNI_COMMAND=VERSION (and Go's host-local VERSION, to compare
//!   with what a Go plugin pays just to start);
//! - IPAM delegation: host-local's own ADD+DEL with the same config;
//! - the plugin's phases as it measures them itself (`BONDNET_TIMINGS=1`): total,
//!   netlink, IPAM, per ADD+DEL;
//! - a floor for the kernel's own work: the same link changes (create, enslave, up,
//!   address; release, delete) as one `ip -batch` process each way, less `ip -V`.
//!
//! Usage (in the guest, as root): `bond-bench [--cycles N] [--bond PATH] [--cni-path DIR]`.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use bondnet_tests::stats::Summary;
use bondnet_tests::timings::{parse_plugin_timings, PluginTimings};

const IP: &str = "/usr/sbin/ip";
const POD: &str = "benchpod";
const SWITCH: &str = "benchsw";
const WARMUP: usize = 5;

struct Opts {
    cycles: usize,
    bond: String,
    cni_path: String,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        cycles: 200,
        bond: "/opt/cni/bin/bond".to_string(),
        cni_path: "/opt/cni/bin".to_string(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--cycles" => {
                o.cycles = val("--cycles")?
                    .parse()
                    .map_err(|e| format!("--cycles: {e}"))?
            }
            "--bond" => o.bond = val("--bond")?,
            "--cni-path" => o.cni_path = val("--cni-path")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.cycles == 0 {
        return Err("--cycles must be at least 1".to_string());
    }
    Ok(o)
}

/// One finished call: wall time in milliseconds, exit status, stdout, stderr.
struct Call {
    ms: f64,
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `bin` as a CNI runtime would: CNI_* in the environment, the config on stdin.
fn cni_call(bin: &str, command: &str, cni_path: &str, config: &str, timings: bool) -> Call {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "bench-0001")
        .env("CNI_NETNS", format!("/run/netns/{POD}"))
        .env("CNI_IFNAME", "bond0")
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if timings {
        cmd.env("BONDNET_TIMINGS", "1");
    }
    let start = Instant::now();
    let result = cmd.spawn().and_then(|mut child| {
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin that exits without reading (VERSION) closes the pipe: not an error.
            let _ = stdin.write_all(config.as_bytes());
        }
        child.wait_with_output()
    });
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(out) => Call {
            ms,
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Err(e) => Call {
            ms,
            ok: false,
            stdout: String::new(),
            stderr: format!("cannot run {bin}: {e}"),
        },
    }
}

/// Wall time of one `ip` process, in milliseconds.
fn timed_ip(args: &[&str]) -> Result<f64, String> {
    let start = Instant::now();
    let out = Command::new(IP)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {IP}: {e}"))?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if out.status.success() {
        Ok(ms)
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What the plugin's ADD and DEL ask of the kernel, as `ip -batch` files.
const IP_ADD_BATCH: &str = "link add bond0 type bond mode active-backup miimon 100 fail_over_mac 1
link set net1 down
link set net1 master bond0
link set net1 up
link set net2 down
link set net2 master bond0
link set net2 up
link set bond0 up
addr add 10.77.0.200/24 dev bond0
";
const IP_DEL_BATCH: &str = "link set net1 nomaster
link set net2 nomaster
link set net1 down
link set net2 down
link del bond0
";

fn ip(args: &[&str]) -> Result<(), String> {
    let st = Command::new(IP)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {IP}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("ip {} failed: {st}", args.join(" ")))
    }
}

/// The pod with net1/net2 (down, as fresh VFs), their peers up in the switch netns.
fn setup() -> Result<(), String> {
    ip(&["netns", "add", POD])?;
    ip(&["netns", "add", SWITCH])?;
    ip(&["-n", POD, "link", "set", "lo", "up"])?;
    for (port, peer) in [("net1", "sw1"), ("net2", "sw2")] {
        ip(&[
            "link", "add", "name", port, "netns", POD, "type", "veth", "peer", "name", peer,
            "netns", SWITCH,
        ])?;
        ip(&["-n", SWITCH, "link", "set", peer, "up"])?;
    }
    Ok(())
}

fn config() -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "bond",
        "mode": "active-backup",
        "failOverMac": 1,
        "miimon": "100",
        "linksInContainer": true,
        "links": [{"name": "net1"}, {"name": "net2"}],
        "ipam": {"type": "host-local", "subnet": "10.77.0.0/24"}
    })
    .to_string()
}

fn fail_call(what: &str, c: &Call) -> String {
    format!(
        "{what} failed: stdout {} stderr {}",
        c.stdout.trim(),
        c.stderr.trim()
    )
}

#[derive(Default)]
struct Series {
    cycle: Vec<f64>,
    add: Vec<f64>,
    del: Vec<f64>,
    plugin_total: Vec<f64>,
    plugin_netlink: Vec<f64>,
    plugin_ipam: Vec<f64>,
    plugin_rest: Vec<f64>,
    version: Vec<f64>,
    go_version: Vec<f64>,
    ipam: Vec<f64>,
    ip_batch: Vec<f64>,
    ip_start: Vec<f64>,
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn bench(o: &Opts) -> Result<Series, String> {
    let conf = config();
    let host_local = format!("{}/host-local", o.cni_path);
    let mut s = Series::default();
    let mut no_timings = 0usize;

    for i in 0..(WARMUP + o.cycles) {
        let add = cni_call(&o.bond, "ADD", &o.cni_path, &conf, true);
        if !add.ok || !add.stdout.contains("\"ips\"") {
            return Err(fail_call(&format!("ADD #{i}"), &add));
        }
        let del = cni_call(&o.bond, "DEL", &o.cni_path, &conf, true);
        if !del.ok {
            return Err(fail_call(&format!("DEL #{i}"), &del));
        }
        if i < WARMUP {
            continue;
        }
        s.add.push(add.ms);
        s.del.push(del.ms);
        s.cycle.push(add.ms + del.ms);
        match (
            parse_plugin_timings(&add.stderr),
            parse_plugin_timings(&del.stderr),
        ) {
            (Some(a), Some(d)) => {
                let t = PluginTimings {
                    total: a.total + d.total,
                    netlink: a.netlink + d.netlink,
                    ipam: a.ipam + d.ipam,
                };
                s.plugin_total.push(us_to_ms(t.total));
                s.plugin_netlink.push(us_to_ms(t.netlink));
                s.plugin_ipam.push(us_to_ms(t.ipam));
                s.plugin_rest.push(us_to_ms(
                    t.total.saturating_sub(t.netlink).saturating_sub(t.ipam),
                ));
            }
            _ => no_timings += 1,
        }
    }
    if no_timings > 0 {
        eprintln!("bond-bench: {no_timings} cycle(s) without a BONDNET_TIMINGS line on stderr");
    }

    for i in 0..(WARMUP + o.cycles) {
        let v = cni_call(&o.bond, "VERSION", &o.cni_path, "", false);
        if !v.ok {
            return Err(fail_call("bond VERSION", &v));
        }
        let g = cni_call(&host_local, "VERSION", &o.cni_path, "", false);
        if !g.ok {
            return Err(fail_call("host-local VERSION", &g));
        }
        if i >= WARMUP {
            s.version.push(v.ms);
            s.go_version.push(g.ms);
        }
    }

    for i in 0..(WARMUP + o.cycles) {
        let add = cni_call(&host_local, "ADD", &o.cni_path, &conf, false);
        if !add.ok {
            return Err(fail_call("host-local ADD", &add));
        }
        let del = cni_call(&host_local, "DEL", &o.cni_path, &conf, false);
        if !del.ok {
            return Err(fail_call("host-local DEL", &del));
        }
        if i >= WARMUP {
            s.ipam.push(add.ms + del.ms);
        }
    }
    let dir = std::env::temp_dir();
    let add_file = dir.join("bench-add.batch");
    let del_file = dir.join("bench-del.batch");
    std::fs::write(&add_file, IP_ADD_BATCH).map_err(|e| format!("writing a batch file: {e}"))?;
    std::fs::write(&del_file, IP_DEL_BATCH).map_err(|e| format!("writing a batch file: {e}"))?;
    let (add_path, del_path) = (
        add_file.to_string_lossy().into_owned(),
        del_file.to_string_lossy().into_owned(),
    );
    for i in 0..(WARMUP + o.cycles) {
        let add = timed_ip(&["-n", POD, "-batch", &add_path])?;
        let del = timed_ip(&["-n", POD, "-batch", &del_path])?;
        let start = timed_ip(&["-V"])?;
        if i >= WARMUP {
            s.ip_batch.push(add + del);
            s.ip_start.push(start);
        }
    }
    Ok(s)
}

fn row(label: &str, samples: &[f64]) {
    match Summary::of(samples) {
        Some(x) => println!(
            "  {label:<52} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            x.median, x.p10, x.p90, x.mean
        ),
        None => println!("  {label:<52} {:>8}", "n/a"),
    }
}

fn report(o: &Opts, s: &Series) {
    println!(
        "BENCH bond: {} ADD+DEL cycles (+{WARMUP} warm-up), active-backup failOverMac 1, \
         2 veth ports, linksInContainer true, host-local IPAM",
        o.cycles
    );
    println!(
        "  {:<52} {:>8} {:>8} {:>8} {:>8}",
        "milliseconds", "median", "p10", "p90", "mean"
    );
    row(
        "cycle: bond ADD + DEL (wall, as a runtime sees it)",
        &s.cycle,
    );
    row("  ADD", &s.add);
    row("  DEL", &s.del);
    println!("  breakdown");
    row("  process start: bond VERSION", &s.version);
    row("  IPAM delegation: host-local ADD + DEL", &s.ipam);
    row("  plugin-measured total, ADD + DEL", &s.plugin_total);
    row("    netlink work", &s.plugin_netlink);
    row("    IPAM (exec of host-local, in-plugin)", &s.plugin_ipam);
    row("    the rest (config, netns, locks, JSON)", &s.plugin_rest);
    println!("  for comparison");
    row("  Go process start: host-local VERSION", &s.go_version);
    row("  same link changes by ip -batch, ADD + DEL", &s.ip_batch);
    row("    of which ip start (ip -V), twice", &s.ip_start);
    if let (Some(c), Some(n), Some(v), Some(g), Some(b), Some(ips)) = (
        Summary::of(&s.cycle),
        Summary::of(&s.plugin_netlink),
        Summary::of(&s.version),
        Summary::of(&s.go_version),
        Summary::of(&s.ip_batch),
        Summary::of(&s.ip_start),
    ) {
        let floor = (b.median - 2.0 * ips.median).max(0.0);
        println!(
            "  medians: netlink work is {:.0}% of the cycle and {:.2} ms against a kernel floor of {:.2} ms \
             (ip -batch less its two starts); bond starts in {:.2} ms, a Go plugin in {:.2} ms",
            100.0 * n.median / c.median,
            n.median,
            floor,
            v.median,
            g.median
        );
    }
}

fn main() -> ExitCode {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bond-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = setup() {
        eprintln!("bond-bench: setup: {e}");
        return ExitCode::FAILURE;
    }
    match bench(&o) {
        Ok(s) => {
            report(&o, &s);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bond-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
