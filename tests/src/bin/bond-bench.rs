//! `bond-bench`: the release `bond` binary against the upstream bond-cni plugin it replaces,
//! side by side on a real kernel, run inside the real-kernel tier's guest (`tests/vm/bench.sh`
//! boots it). One pod netns with two veth ports (their peers up in a switch netns), as
//! Multus leaves SR-IOV VFs for a `linksInContainer: true` bond; active-backup,
//! failOverMac 1. It times, per IPAM (none, static, host-local):
//!
//! - ADD, CHECK (with ADD's result as prevResult) and DEL of each plugin, the two plugins
//!   interleaved cycle by cycle (which goes first alternates), so both see the same kernel
//!   and the same noise;
//! - VERSION of each (process start), interleaved the same way;
//! - the kernel's own cost for the same link changes: one `ip -batch` process each way,
//!   less an `ip -V` start;
//! - where `bond`'s time goes, step by step, from the trace it prints with
//!   `BONDNET_TIMINGS=1` (exec and exit are the wall time less the plugin's own total).
//!
//! Without `--upstream` only `bond` is measured (the upstream columns say n/a). The floor
//! of process start is the static busybox's `true` ([`START_FLOOR`]), timed the same way.
//!
//! `--starts PATH...` times only VERSION of each binary given (and the floor), interleaved:
//! to compare builds of `bond` (static or not, profiles) on the same kernel.
//!
//! Usage (in the guest, as root):
//! `bond-bench [--cycles N] [--bond PATH] [--upstream PATH] [--cni-path DIR] [--starts PATH...]`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use bondnet_tests::stats::Summary;
use bondnet_tests::timings::parse_plugin_timings;
use serde_json::Value;

const IP: &str = "/usr/sbin/ip";
/// The least a process start can cost here: a static binary that does nothing.
const START_FLOOR: &str = "/bin/busybox";
const POD: &str = "benchpod";
const SWITCH: &str = "benchsw";
const WARMUP: usize = 3;
const IPAMS: [&str; 3] = ["none", "static", "host-local"];
const COMMANDS: [&str; 4] = ["ADD", "CHECK", "DEL", "ADD+DEL"];

struct Opts {
    cycles: usize,
    bond: String,
    upstream: Option<String>,
    cni_path: String,
    /// `--starts`: only time VERSION of these binaries.
    starts: Vec<String>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        cycles: 20,
        bond: "/opt/cni/bin/bond".to_string(),
        upstream: None,
        cni_path: "/opt/cni/bin".to_string(),
        starts: Vec::new(),
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
            "--upstream" => o.upstream = Some(val("--upstream")?),
            "--cni-path" => o.cni_path = val("--cni-path")?,
            "--starts" => o.starts.extend(args.by_ref()),
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
fn cni_call(bin: &str, command: &str, cni_path: &str, config: &str) -> Call {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "bench-0001")
        .env("CNI_NETNS", format!("/run/netns/{POD}"))
        .env("CNI_IFNAME", "bond0")
        .env("CNI_PATH", cni_path)
        // Read by bond only; the upstream plugin ignores it.
        .env("BONDNET_TIMINGS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
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

/// VERSION of each of `bins`, and the process start floor (the static busybox's `true`),
/// interleaved cycle by cycle (which goes first rotates): `cycles` samples each, in ms, in
/// the order of `bins` with the floor's last.
fn starts_of(o: &Opts, bins: &[&str]) -> Result<Vec<Vec<f64>>, String> {
    let n = bins.len() + 1;
    let mut ms: Vec<Vec<f64>> = vec![Vec::new(); n];
    for i in 0..(WARMUP + o.cycles) {
        for k in 0..n {
            let j = (i + k) % n;
            let t = match bins.get(j) {
                Some(bin) => {
                    let v = cni_call(bin, "VERSION", &o.cni_path, "");
                    if !v.ok {
                        return Err(fail_call(&format!("{bin} VERSION"), &v));
                    }
                    v.ms
                }
                None => timed(START_FLOOR, &["true"])?,
            };
            if i >= WARMUP {
                ms[j].push(t);
            }
        }
    }
    Ok(ms)
}

/// `--starts`: only the process start of each binary given, and the floor's.
fn starts(o: &Opts) -> Result<(), String> {
    let bins: Vec<&str> = o.starts.iter().map(String::as_str).collect();
    let ms = starts_of(o, &bins)?;
    println!(
        "BENCH starts: VERSION, {} cycles (+{WARMUP} warm-up), interleaved; ms median (p10-p90)",
        o.cycles
    );
    let floor = format!("{START_FLOOR} true (the floor)");
    for (j, v) in ms.iter().enumerate() {
        let name = bins.get(j).copied().unwrap_or(&floor);
        println!("  {name:<48} {}", cell(Summary::of(v)));
    }
    Ok(())
}

/// Wall time of one run of `bin` with `args` (stdout dropped), in milliseconds.
fn timed(bin: &str, args: &[&str]) -> Result<f64, String> {
    let start = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {bin}: {e}"))?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if out.status.success() {
        Ok(ms)
    } else {
        Err(format!(
            "{bin} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What the plugins' ADD and DEL ask of the kernel (without IPAM), as `ip -batch` files.
const IP_ADD_BATCH: &str = "link add bond0 type bond mode active-backup miimon 100 fail_over_mac 1
link set net1 down
link set net1 master bond0
link set net1 up
link set net2 down
link set net2 master bond0
link set net2 up
link set bond0 up
";
/// The same with static IPAM's one address.
const IP_ADDR_LINE: &str = "addr add 10.77.0.200/24 dev bond0\n";
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

/// One config both plugins accept unchanged (upstream's own format).
fn config(ipam: &str) -> Value {
    let mut c = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": "bond",
        "mode": "active-backup",
        "failOverMac": 1,
        "miimon": "100",
        "linksInContainer": true,
        "links": [{"name": "net1"}, {"name": "net2"}],
    });
    match ipam {
        "static" => {
            c["ipam"] = serde_json::json!({
                "type": "static",
                "addresses": [{"address": "10.77.0.200/24"}]
            })
        }
        "host-local" => {
            c["ipam"] = serde_json::json!({"type": "host-local", "subnet": "10.77.0.0/24"})
        }
        _ => {}
    }
    c
}

fn fail_call(what: &str, c: &Call) -> String {
    format!(
        "{what} failed: stdout {} stderr {}",
        c.stdout.trim(),
        c.stderr.trim()
    )
}

/// Milliseconds, keyed by (plugin, IPAM, command).
#[derive(Default)]
struct Series {
    ms: BTreeMap<(&'static str, String, &'static str), Vec<f64>>,
    /// bond's steps: (IPAM, command) -> step -> per-call sums, in ms.
    steps: BTreeMap<(String, &'static str), BTreeMap<String, Vec<f64>>>,
    /// Steps in the order they first appeared, per (IPAM, command).
    step_order: BTreeMap<(String, &'static str), Vec<String>>,
    /// (IPAM, ADD or DEL or ip start) -> ip -batch wall times.
    floor: BTreeMap<(String, &'static str), Vec<f64>>,
}

impl Series {
    fn push(&mut self, plugin: &'static str, ipam: &str, command: &'static str, ms: f64) {
        self.ms
            .entry((plugin, ipam.to_string(), command))
            .or_default()
            .push(ms);
    }

    fn get(&self, plugin: &'static str, ipam: &str, command: &'static str) -> Option<Summary> {
        self.ms
            .get(&(plugin, ipam.to_string(), command))
            .and_then(|v| Summary::of(v))
    }

    /// bond's own account of `call`, grouped by step name.
    fn trace(&mut self, ipam: &str, command: &'static str, call: &Call) {
        let Some(t) = parse_plugin_timings(&call.stderr) else {
            return;
        };
        let key = (ipam.to_string(), command);
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let order = self.step_order.entry(key.clone()).or_default();
        for (name, us) in &t.steps {
            if !order.contains(name) {
                order.push(name.clone());
            }
            *sums.entry(name.clone()).or_default() += *us as f64 / 1000.0;
        }
        let exec = "exec + exit (wall less the plugin's own total)".to_string();
        if !order.contains(&exec) {
            order.insert(0, exec.clone());
        }
        sums.insert(exec, (call.ms - t.total as f64 / 1000.0).max(0.0));
        let other = "the rest (not in a step: JSON, checks)".to_string();
        let in_steps: f64 = t.steps.iter().map(|(_, us)| *us as f64 / 1000.0).sum();
        if !order.contains(&other) {
            order.push(other.clone());
        }
        sums.insert(other, (t.total as f64 / 1000.0 - in_steps).max(0.0));
        let per = self.steps.entry(key).or_default();
        for (name, ms) in sums {
            per.entry(name).or_default().push(ms);
        }
    }
}

/// ADD, CHECK, DEL of one plugin; returns the three calls, and with `ipam_alone` (and an
/// IPAM in `conf`) the time of the IPAM plugin's own CHECK called directly between CHECK and
/// DEL (what any plugin that delegates CHECK as the spec asks must spend).
fn cycle(
    o: &Opts,
    bin: &str,
    conf: &Value,
    ipam_alone: bool,
) -> Result<([Call; 3], Option<f64>), String> {
    let text = conf.to_string();
    let add = cni_call(bin, "ADD", &o.cni_path, &text);
    if !add.ok {
        return Err(fail_call(&format!("{bin} ADD"), &add));
    }
    let prev: Value = serde_json::from_str(add.stdout.trim())
        .map_err(|e| format!("{bin} ADD printed no result JSON ({e}): {}", add.stdout))?;
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = prev;
    let check = cni_call(bin, "CHECK", &o.cni_path, &with_prev.to_string());
    if !check.ok {
        return Err(fail_call(&format!("{bin} CHECK"), &check));
    }
    let mut alone = None;
    if let (true, Some(ipam)) = (ipam_alone, conf["ipam"]["type"].as_str()) {
        let plugin = format!("{}/{ipam}", o.cni_path);
        let call = cni_call(&plugin, "CHECK", &o.cni_path, &with_prev.to_string());
        if !call.ok {
            return Err(fail_call(&format!("{plugin} CHECK"), &call));
        }
        alone = Some(call.ms);
    }
    let del = cni_call(bin, "DEL", &o.cni_path, &text);
    if !del.ok {
        return Err(fail_call(&format!("{bin} DEL"), &del));
    }
    Ok(([add, check, del], alone))
}

fn bench(o: &Opts) -> Result<Series, String> {
    let mut s = Series::default();
    let mut plugins: Vec<(&'static str, String)> = vec![("bond", o.bond.clone())];
    if let Some(up) = &o.upstream {
        plugins.push(("upstream", up.clone()));
    }

    let bins: Vec<&str> = plugins.iter().map(|(_, bin)| bin.as_str()).collect();
    let names = plugins.iter().map(|(name, _)| *name).chain(["floor"]);
    for (name, samples) in names.zip(starts_of(o, &bins)?) {
        for ms in samples {
            s.push(name, "-", "VERSION", ms);
        }
    }

    for ipam in IPAMS {
        let conf = config(ipam);
        for i in 0..(WARMUP + o.cycles) {
            for k in 0..plugins.len() {
                let (name, bin) = &plugins[(i + k) % plugins.len()];
                let ([add, check, del], alone) = cycle(o, bin, &conf, *name == "bond")?;
                if i < WARMUP {
                    continue;
                }
                if let Some(ms) = alone {
                    s.push("ipam", ipam, "CHECK", ms);
                }
                s.push(name, ipam, "ADD", add.ms);
                s.push(name, ipam, "CHECK", check.ms);
                s.push(name, ipam, "DEL", del.ms);
                s.push(name, ipam, "ADD+DEL", add.ms + del.ms);
                if *name == "bond" {
                    s.trace(ipam, "ADD", &add);
                    s.trace(ipam, "CHECK", &check);
                    s.trace(ipam, "DEL", &del);
                }
            }
        }
    }

    // The kernel's floor: the same changes from one ip process each way.
    let dir = std::env::temp_dir();
    for ipam in ["none", "static"] {
        let add_file = dir.join(format!("bench-add-{ipam}.batch"));
        let del_file = dir.join("bench-del.batch");
        let add_text = if ipam == "static" {
            format!("{IP_ADD_BATCH}{IP_ADDR_LINE}")
        } else {
            IP_ADD_BATCH.to_string()
        };
        std::fs::write(&add_file, add_text).map_err(|e| format!("writing a batch file: {e}"))?;
        std::fs::write(&del_file, IP_DEL_BATCH)
            .map_err(|e| format!("writing a batch file: {e}"))?;
        let (add_path, del_path) = (
            add_file.to_string_lossy().into_owned(),
            del_file.to_string_lossy().into_owned(),
        );
        for i in 0..(WARMUP + o.cycles) {
            let add = timed(IP, &["-n", POD, "-batch", &add_path])?;
            let del = timed(IP, &["-n", POD, "-batch", &del_path])?;
            let start = timed(IP, &["-V"])?;
            if i >= WARMUP {
                let f = &mut s.floor;
                f.entry((ipam.to_string(), "ADD")).or_default().push(add);
                f.entry((ipam.to_string(), "DEL")).or_default().push(del);
                f.entry((ipam.to_string(), "start"))
                    .or_default()
                    .push(start);
            }
        }
    }
    Ok(s)
}

fn cell(x: Option<Summary>) -> String {
    match x {
        Some(x) => format!("{:.1} ({:.1}-{:.1})", x.median, x.p10, x.p90),
        None => "n/a".to_string(),
    }
}

fn report(o: &Opts, s: &Series) {
    println!(
        "BENCH bond: {} cycles per row (+{WARMUP} warm-up), bond and upstream interleaved in one boot; \
         active-backup failOverMac 1, 2 veth ports already in the pod (linksInContainer true)",
        o.cycles
    );
    println!("milliseconds, wall time as a runtime sees it: median (p10-p90)");
    println!();
    println!("| command | IPAM | bond | upstream bond-cni | bond / upstream |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let mut rows: Vec<(&str, &str)> = vec![("VERSION", "-")];
    for ipam in IPAMS {
        for c in COMMANDS {
            rows.push((c, ipam));
        }
    }
    for (command, ipam) in rows {
        let ours = s.get("bond", ipam, leak(command));
        let up = s.get("upstream", ipam, leak(command));
        let ratio = match (ours, up) {
            (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}", a.median / b.median),
            _ => "n/a".to_string(),
        };
        println!(
            "| {command} | {ipam} | {} | {} | {ratio} |",
            cell(ours),
            cell(up)
        );
    }
    println!();
    let med = |ipam: &str, what: &'static str| {
        s.floor
            .get(&(ipam.to_string(), what))
            .and_then(|v| Summary::of(v))
            .map(|x| x.median)
    };
    for ipam in ["none", "static"] {
        if let (Some(a), Some(d), Some(st)) =
            (med(ipam, "ADD"), med(ipam, "DEL"), med(ipam, "start"))
        {
            let floor = (a + d - 2.0 * st).max(0.0);
            let ours = s.get("bond", ipam, "ADD+DEL");
            let ver = s.get("bond", "-", "VERSION");
            let line = match (ours, ver) {
                (Some(c), Some(v)) => format!(
                    "; bond's ADD+DEL less two of its own starts (VERSION): {:.1} ms",
                    (c.median - 2.0 * v.median).max(0.0)
                ),
                _ => String::new(),
            };
            println!(
                "kernel floor, IPAM {ipam}: the same link changes by ip -batch, ADD {a:.1} + DEL {d:.1} ms, \
                 less two ip starts ({st:.1} ms each): {floor:.1} ms{line}"
            );
        }
    }
    for ipam in IPAMS {
        if let (Some(alone), Some(ours)) =
            (s.get("ipam", ipam, "CHECK"), s.get("bond", ipam, "CHECK"))
        {
            println!(
                "IPAM {ipam} CHECK alone (the plugin called directly, as bond's CHECK must): {}; bond's CHECK less it: {:.1} ms",
                cell(Some(alone)),
                ours.median - alone.median
            );
        }
    }
    if let Some(f) = s.get("floor", "-", "VERSION") {
        println!(
            "process start floor: a static binary that does nothing ({START_FLOOR} true): {}",
            cell(Some(f))
        );
    }
    println!();
    println!("where bond's time goes (median ms per call, from its BONDNET_TIMINGS trace):");
    for ((ipam, command), order) in &s.step_order {
        let Some(per) = s.steps.get(&(ipam.clone(), command)) else {
            continue;
        };
        println!("  {command}, IPAM {ipam}:");
        for name in order {
            if let Some(x) = per.get(name).and_then(|v| Summary::of(v)) {
                println!("    {name:<52} {:>7.2}", x.median);
            }
        }
    }
}

/// The row keys are the four command names; map a &str back to its static name.
fn leak(command: &str) -> &'static str {
    ["VERSION", "ADD", "CHECK", "DEL", "ADD+DEL"]
        .into_iter()
        .find(|c| *c == command)
        .unwrap_or("ADD")
}

fn main() -> ExitCode {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bond-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if !o.starts.is_empty() {
        return match starts(&o) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bond-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
