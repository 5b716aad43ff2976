//! A fuzzer for the plugin's untrusted inputs: the network config on stdin and the CNI_*
//! environment, run through the same steps as `run::main_with` (preamble and log file,
//! environment, config, version gate, the verb) with the in-memory kernel of [`crate::fake`]
//! in place of netlink and a recording IPAM in place of the delegate. Built on proptest,
//! so it runs on stable Rust inside `cargo test`.
//!
//! Each case is a short sequence of calls on one fake node and one sandbox directory. The
//! inputs come from three sources: configs assembled field by field from pools of valid,
//! borderline and hostile values (`../` paths, names the kernel refuses, wrong JSON types,
//! huge numbers); the committed corpus (`plugin/fuzz/corpus/*.json`, and the upstream
//! fixtures) mutated at the JSON and at the byte level; and arbitrary bytes. Every call
//! must hold to:
//!
//! - no panic;
//! - a failure is CNI error JSON: `cniVersion` one this plugin speaks, a known code, a
//!   message;
//! - a failure changes nothing on the node: the fake kernel's links, bonds, addresses and
//!   routes are as before, IPAM allocations are released, and the sandbox's files are as
//!   before but for the lock files (kept by design: flock files are never removed), empty
//!   directories, and the log file. Two exceptions, each with its own rule: a DEL that hit
//!   an injected kernel fault (DEL is not transactional, it is retried), and an ADD whose
//!   rollback the kernel refused a step of (the error says "rollback incomplete", and the
//!   DEL that follows must then leave the node as it was);
//! - nothing is ever written outside the sandbox, and no path relative to the working
//!   directory is created;
//! - after a successful ADD, CHECK with its result as prevResult passes (from 0.4.0), and
//!   DEL with the same input, retried after a first DEL that hit a kernel fault, leaves the
//!   node as it was before the ADD.
//!
//! What it found, fixed with a test each in `cmd/tests.rs`: a retried DEL left a host link
//! down that the failed DEL had moved back but not restored; a rollback that could not undo
//! a step removed the saved state that DEL needed to finish.
//!
//! `cargo test -p bondnet-plugin --lib fuzz` runs a short round (a few hundred cases);
//! `plugin/fuzz.sh [SECONDS]` (default 60) runs rounds until the time is up and prints how
//! many cases and plugin calls ran.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

use crate::cmd;
use crate::cni::args::{Args, Command};
use crate::cni::error::ErrorJson;
use crate::cni::version;
use crate::config::{self, NetConf};
use crate::error::Result;
use crate::fake::FakeNet;
use crate::ipam::Ipam;
use crate::net::{Ns, Route};

/// Stands for the case's sandbox directory in generated paths; replaced before each call.
const SB: &str = "@SB@";
/// How deep the sandbox sits in its temporary directory: a path that climbs out of the
/// sandbox with ".." lands inside the temporary directory, where it is seen.
const DEPTH: usize = 6;
/// The prefix of every relative path the generators make, to find one created in the
/// working directory.
const REL_PREFIX: &str = "fuzz-escape-";

/// IPAM that allocates one address per (container, ifname) and records releases.
#[derive(Default)]
struct RecordingIpam {
    held: RefCell<BTreeMap<(String, String), u32>>,
    next: RefCell<u32>,
}

impl Ipam for RecordingIpam {
    fn exec(&self, command: Command, _conf: &NetConf, args: &Args) -> Result<Option<Value>> {
        let key = (args.container_id.clone(), args.ifname.clone());
        match command {
            Command::Add => {
                let mut next = self.next.borrow_mut();
                *next += 1;
                let host = 10 + *next % 200;
                self.held.borrow_mut().insert(key, host);
                Ok(Some(json!({
                    "cniVersion": "1.0.0",
                    "ips": [{"address": format!("10.9.0.{host}/24"), "gateway": "10.9.0.1"}],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.8.0.0/16", "gw": "10.9.0.254"}],
                })))
            }
            Command::Del => {
                self.held.borrow_mut().remove(&key);
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

/// One call: the environment (unset variables are absent), stdin, and the kernel change
/// at which the fake kernel fails, if any.
#[derive(Debug, Clone)]
struct Call {
    env: Vec<(&'static str, String)>,
    stdin: Vec<u8>,
    fail_at: Option<usize>,
    /// After a good ADD: a first DEL fails at this kernel change, then DEL is retried.
    del_fault: Option<usize>,
}

/// A fake node: pod links net1, net2; host links hv1, hv2, and eth0 carrying the node's
/// address and default route.
fn node() -> FakeNet {
    let mut net = FakeNet::new()
        .with_link(Ns::Pod, "net1", 9000, [2, 0, 0, 0, 0, 1])
        .with_link(Ns::Pod, "net2", 1500, [2, 0, 0, 0, 0, 2])
        .with_link(Ns::Host, "hv1", 1500, [2, 0, 0, 0, 1, 1])
        .with_link(Ns::Host, "hv2", 1500, [2, 0, 0, 0, 1, 1])
        .with_link(Ns::Host, "eth0", 1500, [2, 0, 0, 0, 2, 1]);
    let eth0 = net.find(Ns::Host, "eth0").map(|l| l.index).unwrap_or(0);
    net.addrs
        .push((Ns::Host, eth0, "192.168.7.5/24".parse().expect("net")));
    net.routes.push((
        Ns::Host,
        Route {
            dst: "0.0.0.0/0".parse().expect("net"),
            gw: Some("192.168.7.1".parse().expect("ip")),
            oif: Some(eth0),
            priority: None,
            table: None,
        },
    ));
    net
}

// --- generators ------------------------------------------------------------------------

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &[T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items.to_vec())
}

fn link_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => pick(&["net1", "net2", "hv1", "hv2", "eth0", "bond0", "lo"]).prop_map(String::from),
        2 => pick(&[
            "", ".", "..", "a/b", "../hv1", "x:y", "a b", "à", "a\u{a0}", "a\u{2000}b",
            "abcdefghijklmnop", "net1\u{0}", "*", "net1\n",
        ])
        .prop_map(String::from),
        1 => "[a-z0-9@._/:-]{0,17}",
        1 => any::<String>(),
    ]
}

fn container_id() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => pick(&["c1", "c2", "0123456789abcdef", "K8s_pod.x-1"]).prop_map(String::from),
        2 => pick(&[
            "", "../../x", "..", ".", "-x", "_x", "c1/../c2", "a@b", "a b", "c1\u{0}", "é",
        ])
        .prop_map(String::from),
        1 => "[a-zA-Z0-9_.@/-]{0,12}",
        1 => "a{230,232}",
        1 => any::<String>(),
    ]
}

/// A path for stateDir, lockDir or logFile: in the sandbox, climbing out of it, relative,
/// or odd.
fn path_value(leaf: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        5 => Just(format!("{SB}/{leaf}")),
        1 => Just(format!("{SB}/{leaf}/../../{leaf}-climbed")),
        1 => Just(format!("{SB}/../{leaf}-climbed")),
        1 => Just(format!("{REL_PREFIX}{leaf}")),
        1 => Just(format!("./{REL_PREFIX}{leaf}")),
        1 => pick(&["", "/"]).prop_map(String::from),
        1 => Just(format!("{SB}/{leaf}\u{0}x")),
        1 => Just(format!("{SB}//{leaf}/./x")),
        1 => "[a-z./]{0,12}".prop_map(|s| format!("{SB}/{s}")),
    ]
}

/// Any JSON value, small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::from)),
        pick(&[
            "0",
            "1",
            "100",
            "-1",
            "1e3",
            "true",
            "fast",
            "",
            "18446744073709551616"
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every top-level key the plugin reads, for random values under known keys.
const KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "ifname",
    "mode",
    "miimon",
    "mtu",
    "failOverMac",
    "linksInContainer",
    "links",
    "ipam",
    "ipamTimeout",
    "allSlavesActive",
    "tlbDynamicLb",
    "xmitHashPolicy",
    "lacpRate",
    "adSelect",
    "minLinks",
    "primary",
    "primaryReselect",
    "updelay",
    "downdelay",
    "arpInterval",
    "arpIpTargets",
    "arpValidate",
    "arpAllTargets",
    "numPeerNotif",
    "resendIgmp",
    "packetsPerSlave",
    "lpInterval",
    "dns",
    "prevResult",
    "logFile",
    "logLevel",
    "stateDir",
    "lockDir",
    "cni.dev/valid-attachments",
];

/// A config built field by field: mostly plausible, with hostile values mixed in.
fn structured_config() -> impl Strategy<Value = Value> {
    let version = prop_oneof![
        12 => pick(&["1.0.0", "1.1.0", "0.4.0", "0.3.1", "0.3.0"]).prop_map(Value::from),
        1 => pick(&["0.2.0", "2.0.0", "1.0", ""]).prop_map(Value::from),
        1 => json_value(),
    ];
    let mode = prop_oneof![
        6 => pick(&[
            "balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad",
            "balance-tlb", "balance-alb", "4", "lacp", "",
        ])
        .prop_map(Value::from),
        2 => (0u64..9).prop_map(Value::from),
        1 => json_value(),
    ];
    let links = prop_oneof![
        8 => proptest::collection::vec(link_name(), 0..4)
            .prop_map(|v| Value::from(v.into_iter().map(|n| json!({"name": n})).collect::<Vec<_>>())),
        1 => json_value(),
    ];
    let lic = prop_oneof![
        8 => any::<bool>().prop_map(Value::from),
        1 => json_value(),
    ];
    // Ports that exist where linksInContainer says, half of the time, so ADD goes deep.
    let ports = prop_oneof![
        1 => Just(Some((json!([{"name": "net1"}, {"name": "net2"}]), json!(true)))),
        1 => Just(Some((json!([{"name": "hv1"}, {"name": "hv2"}]), json!(false)))),
        2 => Just(None),
    ];
    let ipam = prop_oneof![
        3 => Just(json!({"type": "host-local", "subnet": "10.9.0.0/24"})),
        1 => pick(&["", "../../bin/sh", "/bin/sh", ".", "..", "static"])
            .prop_map(|t| json!({"type": t})),
        1 => json_value(),
    ];
    let opts = prop_oneof![
        2 => Just(Vec::new()),
        1 => proptest::collection::vec((pick(KEYS), json_value()), 1..3),
    ];
    // Each field is left out one time in ten.
    let present = proptest::collection::vec(proptest::bool::weighted(0.9), 12);
    (
        version,
        mode,
        links,
        lic,
        ipam,
        ports,
        path_value("state"),
        path_value("locks"),
        path_value("bond.log"),
        link_name(),
        opts,
        present,
    )
        .prop_map(
            |(
                version,
                mode,
                links,
                lic,
                ipam,
                ports,
                state,
                locks,
                log,
                primary,
                opts,
                present,
            )| {
                let (links, lic) = ports.unwrap_or((links, lic));
                let mut m = Map::new();
                let mut put = |i: usize, k: &str, v: Value| {
                    if present[i] {
                        m.insert(k.to_string(), v);
                    }
                };
                put(0, "cniVersion", version);
                put(1, "name", json!("fuzznet"));
                put(2, "type", json!("bond"));
                put(3, "mode", mode);
                put(4, "links", links);
                put(5, "linksInContainer", lic);
                put(6, "ipam", ipam);
                put(7, "stateDir", json!(state));
                put(8, "lockDir", json!(locks));
                if !present[9] {
                    m.insert("logFile".into(), json!(log));
                }
                if !present[10] {
                    m.insert("primary".into(), json!(primary));
                }
                for (k, v) in opts {
                    m.insert(k.to_string(), v);
                }
                Value::Object(m)
            },
        )
}

/// The corpus: `plugin/fuzz/corpus/*.json` and the upstream fixtures, as bytes.
fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [
        root.join("fuzz/corpus"),
        root.join("../tests/fixtures/upstream"),
    ] {
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read the fuzz corpus {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        out.extend(files.iter().map(|p| fs::read(p).expect("read corpus file")));
    }
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Set a top-level key (a known one or not) to a value.
    Set(String, Value),
    /// Remove a top-level key, by index among the present ones.
    Remove(usize),
    /// Byte level, after the JSON ones: flip, insert, cut.
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Cut(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (prop_oneof![pick(KEYS).prop_map(String::from), "[a-zA-Z]{1,8}"], json_value())
            .prop_map(|(k, v)| Mutation::Set(k, v)),
        2 => (prop_oneof![
                Just("stateDir"), Just("lockDir"), Just("logFile")
            ], path_value("m"))
            .prop_map(|(k, v)| Mutation::Set(k.into(), Value::from(v))),
        2 => any::<usize>().prop_map(Mutation::Remove),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Cut(i, n)),
    ]
}

fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut value: Option<Value> = serde_json::from_slice(seed).ok();
    let mut bytes_muts = Vec::new();
    for m in mutations {
        match (m, value.as_mut().and_then(Value::as_object_mut)) {
            (Mutation::Set(k, v), Some(obj)) => {
                obj.insert(k.clone(), v.clone());
            }
            (Mutation::Remove(i), Some(obj)) if !obj.is_empty() => {
                let key = obj.keys().nth(i % obj.len()).cloned().unwrap_or_default();
                obj.remove(&key);
            }
            (Mutation::Flip(..) | Mutation::Insert(..) | Mutation::Cut(..), _) => {
                bytes_muts.push(m.clone())
            }
            _ => {}
        }
    }
    let mut bytes = match value {
        Some(v) => serde_json::to_vec(&v).unwrap_or_default(),
        None => seed.to_vec(),
    };
    for m in bytes_muts {
        let len = bytes.len();
        match m {
            Mutation::Flip(i, b) if len > 0 => bytes[i % len] ^= b,
            Mutation::Insert(i, b) => {
                let at = if len == 0 { 0 } else { i % (len + 1) };
                bytes.splice(at..at, b);
            }
            Mutation::Cut(i, n) if len > 0 => {
                let at = i % len;
                bytes.drain(at..(at + n).min(len));
            }
            _ => {}
        }
    }
    confine(bytes)
}

/// Keep every path the plugin could write in the sandbox: a stdin that parses as a JSON
/// object gets any absolute `stateDir`, `lockDir` or `logFile` outside the sandbox (the
/// corpus' real node paths, a random string, a byte flip that turned "@SB@/x" into "/SB@/x")
/// replaced by one in it, and is written out again. Missing ones (the defaults, real node
/// paths) are set. Relative ones stay: the plugin must refuse them, and the harness looks
/// for them in the working directory.
fn confine(bytes: Vec<u8>) -> Vec<u8> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&bytes) else {
        return bytes;
    };
    for (k, leaf, default) in [
        ("stateDir", "state", true),
        ("lockDir", "locks", true),
        ("logFile", "bond.log", false),
    ] {
        let replace = match obj.get(k) {
            None => default,
            // "@SB@x" (a byte cut from "@SB@/../x") would name a sibling of the sandbox.
            Some(Value::String(p)) => {
                p.starts_with('/') || (p.starts_with(SB) && !p.starts_with(&format!("{SB}/")))
            }
            Some(_) => false,
        };
        if replace {
            obj.insert(k.into(), json!(format!("{SB}/{leaf}")));
        }
    }
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

fn stdin_bytes(corpus: &'static [Vec<u8>]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        5 => structured_config().prop_map(|v| confine(serde_json::to_vec(&v).unwrap_or_default())),
        4 => (0..corpus.len(), proptest::collection::vec(mutation(), 0..3))
            .prop_map(move |(i, ms)| mutate(&corpus[i], &ms)),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

/// A plain value from `good` most of the time, else anything `hostile` makes.
fn mostly<S: Strategy<Value = String> + 'static>(
    good: &'static [&'static str],
    hostile: S,
) -> BoxedStrategy<String> {
    prop_oneof![
        4 => pick(good).prop_map(String::from),
        1 => hostile,
    ]
    .boxed()
}

fn call(corpus: &'static [Vec<u8>]) -> impl Strategy<Value = Call> {
    let command = prop_oneof![
        20 => pick(&["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"]).prop_map(String::from),
        1 => pick(&["add", "", "UP", "ADD "]).prop_map(String::from),
        1 => any::<String>(),
    ];
    let netns = prop_oneof![
        12 => Just("/var/run/netns/pod".to_string()),
        1 => Just(String::new()),
        1 => any::<String>(),
    ];
    let cni_path = prop_oneof![
        3 => Just(format!("{SB}/bin")),
        1 => Just(String::new()),
        1 => "[a-z:]{0,8}".prop_map(|s| format!("{SB}/{s}")),
    ];
    (
        command,
        proptest::option::weighted(0.97, mostly(&["c1", "c2"], container_id())),
        proptest::option::weighted(0.97, netns),
        proptest::option::weighted(0.97, mostly(&["bond0", "bond1"], link_name())),
        proptest::option::weighted(0.3, any::<String>()),
        proptest::option::weighted(0.9, cni_path),
        stdin_bytes(corpus),
        proptest::option::weighted(0.25, 0usize..20),
        proptest::option::weighted(0.3, 0usize..12),
    )
        .prop_map(
            |(command, cid, netns, ifname, cni_args, path, stdin, fail_at, del_fault)| {
                let mut env = vec![("CNI_COMMAND", command)];
                for (k, v) in [
                    ("CNI_CONTAINERID", cid),
                    ("CNI_NETNS", netns),
                    ("CNI_IFNAME", ifname),
                    ("CNI_ARGS", cni_args),
                    ("CNI_PATH", path),
                ] {
                    if let Some(v) = v {
                        env.push((k, v));
                    }
                }
                Call {
                    env,
                    stdin,
                    fail_at,
                    del_fault,
                }
            },
        )
}

// --- the harness -----------------------------------------------------------------------

/// A temporary directory with the sandbox DEPTH levels below it.
struct Sandbox {
    top: tempfile::TempDir,
    dir: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        // In memory where there is a tmpfs: ADD syncs its state file, which costs a disk.
        let shm = Path::new("/dev/shm");
        let top = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("tempdir");
        let mut dir = top.path().to_path_buf();
        for i in 0..DEPTH {
            dir.push(format!("l{i}"));
        }
        dir.push("sb");
        fs::create_dir_all(dir.join("bin")).expect("mkdir sandbox");
        Sandbox { top, dir }
    }

    fn fill(&self, bytes: &[u8]) -> Vec<u8> {
        let text = self.dir.display().to_string();
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = bytes;
        while let Some(at) = find(rest, SB.as_bytes()) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(text.as_bytes());
            rest = &rest[at + SB.len()..];
        }
        out.extend_from_slice(rest);
        out
    }

    /// Every file and directory under the temporary directory, with file contents.
    fn tree(&self) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.top.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.insert(p.clone(), None);
                    stack.push(p);
                } else {
                    out.insert(p.clone(), Some(fs::read(&p).unwrap_or_default()));
                }
            }
        }
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The node as a test compares it: the fake kernel and the IPAM allocations.
type NodeView = (
    crate::fake::Snapshot,
    Vec<u32>,
    BTreeMap<(String, String), u32>,
);

fn view(net: &FakeNet, ipam: &RecordingIpam) -> NodeView {
    (
        net.snapshot(),
        net.bonds.keys().copied().collect(),
        ipam.held.borrow().clone(),
    )
}

/// The steps of `run::main_with`, with the fake kernel and IPAM: the JSON for stdout and
/// whether it is an error.
fn main_with_fake(
    env: &BTreeMap<String, String>,
    stdin: &[u8],
    net: &mut FakeNet,
    ipam: &RecordingIpam,
) -> (String, bool) {
    let pre = config::preamble(stdin);
    // What log::init opens; the subscriber itself is process-wide, so not set here.
    drop(crate::log::open_file(pre.log_file.as_deref()));
    let err_version = pre
        .cni_version
        .clone()
        .filter(|v| version::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".to_string());
    let outcome = Args::from_lookup(|k| env.get(k).cloned()).and_then(|args| {
        if args.command == Command::Version {
            return Ok(Some(version::version_info()));
        }
        let conf = config::parse(stdin)?;
        conf.cni_version.require_command(args.command)?;
        match args.command {
            Command::Add => Ok(Some(
                cmd::add::add(&conf, &args, net, ipam)?.to_json(conf.cni_version),
            )),
            Command::Del => {
                cmd::del::del(&conf, &args, net, ipam, !args.netns.is_empty()).map(|()| None)
            }
            Command::Check => cmd::check::check(&conf, &args, net, ipam).map(|()| None),
            Command::Status => cmd::status::status(&conf, &args, ipam).map(|()| None),
            Command::Gc => cmd::gc::gc(&conf, &args, ipam).map(|_| None),
            Command::Version => Ok(None),
        }
    });
    match outcome {
        Ok(v) => (v.map(|v| v.to_string()).unwrap_or_default(), false),
        Err(e) => {
            let json = ErrorJson::from_error(&err_version, &e);
            (serde_json::to_string(&json).unwrap_or_default(), true)
        }
    }
}

const KNOWN_CODES: &[u64] = &[1, 2, 3, 4, 5, 6, 7, 11, 50, 100, 101, 102, 103, 104, 199];

static CALLS: AtomicU64 = AtomicU64::new(0);
/// Outcomes by command and answer ("ADD ok", "DEL 4", ...), for the summary.
static OUTCOMES: std::sync::Mutex<BTreeMap<String, u64>> = std::sync::Mutex::new(BTreeMap::new());

fn count(env: &BTreeMap<String, String>, out: &str, failed: bool) {
    let command = env.get("CNI_COMMAND").map_or("-", String::as_str);
    let command = if ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"].contains(&command) {
        command
    } else {
        "other"
    };
    let answer = if failed {
        serde_json::from_str::<Value>(out)
            .ok()
            .and_then(|v| v["code"].as_u64())
            .map_or("?".to_string(), |c| c.to_string())
    } else {
        "ok".to_string()
    };
    if let Ok(mut m) = OUTCOMES.lock() {
        *m.entry(format!("{command} {answer}")).or_default() += 1;
    }
}

fn fail(what: String) -> TestCaseError {
    TestCaseError::fail(what)
}

/// Run one case: the calls in order on one node and sandbox, each held to the rules.
fn run_case(calls: &[Call]) -> std::result::Result<(), TestCaseError> {
    let sandbox = Sandbox::new();
    let cwd = std::env::current_dir().expect("cwd");
    let mut net = node();
    let ipam = RecordingIpam::default();
    for (n, c) in calls.iter().enumerate() {
        CALLS.fetch_add(1, Ordering::Relaxed);
        let env: BTreeMap<String, String> = c
            .env
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(&sandbox.fill(v.as_bytes())).into_owned(),
                )
            })
            .collect();
        let stdin = sandbox.fill(&c.stdin);
        let log_file = config::preamble(&stdin).log_file;
        net.fail_at = c.fail_at.map(|k| k + net.changes);
        let changes_before = net.changes;
        let node_before = view(&net, &ipam);
        let files_before = sandbox.tree();

        let (out, failed) = main_with_fake(&env, &stdin, &mut net, &ipam);
        count(&env, &out, failed);
        escaped(&sandbox, &cwd).map_err(|why| fail(format!("call {n} ({out}) {why}")))?;
        let faulted = net.fail_at.is_some_and(|k| k < net.changes) && net.changes > changes_before;
        net.fail_at = None;

        if failed {
            let v: Value = serde_json::from_str(&out)
                .map_err(|e| fail(format!("call {n}: error output is not JSON ({e}): {out}")))?;
            let ok_version = v["cniVersion"]
                .as_str()
                .is_some_and(|s| version::SUPPORTED.contains(&s));
            let ok_code = v["code"].as_u64().is_some_and(|c| KNOWN_CODES.contains(&c));
            let ok_msg = v["msg"].as_str().is_some_and(|m| !m.trim().is_empty());
            if !(ok_version && ok_code && ok_msg) {
                return Err(fail(format!("call {n}: not CNI error JSON: {out}")));
            }
            let command = env.get("CNI_COMMAND").map(String::as_str);
            let incomplete = v["details"]
                .as_str()
                .is_some_and(|d| d.contains("rollback incomplete"));
            if command == Some("ADD") && incomplete {
                // The kernel refused an undo step (an injected fault): the error says so,
                // and the DEL the runtime sends next must finish the job.
                let mut del_env = env.clone();
                del_env.insert("CNI_COMMAND".into(), "DEL".into());
                CALLS.fetch_add(1, Ordering::Relaxed);
                let (del_out, del_failed) = main_with_fake(&del_env, &stdin, &mut net, &ipam);
                let node_after = view(&net, &ipam);
                if del_failed || node_after != node_before {
                    return Err(fail(format!(
                        "call {n}: ADD failed with an incomplete rollback ({out}) and DEL ({del_out}) did not put the node back:\nbefore {node_before:?}\nafter  {node_after:?}"
                    )));
                }
                let files_after = sandbox.tree();
                check_only_allowed_additions(&files_before, &files_after, log_file.as_deref())
                    .map_err(|why| {
                        fail(format!("call {n}: after the failed ADD and its DEL, {why}"))
                    })?;
            } else if !(command == Some("DEL") && faulted) {
                let node_after = view(&net, &ipam);
                if node_after != node_before {
                    return Err(fail(format!(
                        "call {n} failed ({out}) but changed the node:\nbefore {node_before:?}\nafter  {node_after:?}"
                    )));
                }
                let files_after = sandbox.tree();
                check_only_allowed_additions(&files_before, &files_after, log_file.as_deref())
                    .map_err(|why| fail(format!("call {n} failed ({out}) but {why}")))?;
            }
        } else if !out.is_empty() {
            serde_json::from_str::<Value>(&out)
                .map_err(|e| fail(format!("call {n}: output is not JSON ({e}): {out}")))?;
        }

        // A successful ADD is undone by a DEL of the same input.
        let is_add = env.get("CNI_COMMAND").map(String::as_str) == Some("ADD");
        if is_add && !failed {
            // CHECK with the ADD's result as prevResult passes (from 0.4.0, where it exists).
            let with_prev = serde_json::from_slice::<Value>(&stdin)
                .ok()
                .and_then(|mut v| {
                    let result: Value = serde_json::from_str(&out).ok()?;
                    v.as_object_mut()?.insert("prevResult".into(), result);
                    serde_json::to_vec(&v).ok()
                });
            let checkable = config::parse(&stdin)
                .is_ok_and(|c| c.cni_version.require_command(Command::Check).is_ok());
            if let (Some(with_prev), true) = (with_prev, checkable) {
                let mut check_env = env.clone();
                check_env.insert("CNI_COMMAND".into(), "CHECK".into());
                CALLS.fetch_add(1, Ordering::Relaxed);
                let (out, failed) = main_with_fake(&check_env, &with_prev, &mut net, &ipam);
                if failed {
                    return Err(fail(format!(
                        "call {n}: CHECK right after a good ADD failed: {out}"
                    )));
                }
            }
            // DEL undoes it, also when a first DEL hit a kernel fault and is retried.
            let mut del_env = env.clone();
            del_env.insert("CNI_COMMAND".into(), "DEL".into());
            if let Some(k) = c.del_fault {
                net.fail_at = Some(net.changes + k);
                CALLS.fetch_add(1, Ordering::Relaxed);
                let _ = main_with_fake(&del_env, &stdin, &mut net, &ipam);
                net.fail_at = None;
            }
            CALLS.fetch_add(1, Ordering::Relaxed);
            let (out, failed) = main_with_fake(&del_env, &stdin, &mut net, &ipam);
            if failed {
                return Err(fail(format!(
                    "call {n}: DEL after a good ADD failed: {out}"
                )));
            }
            let node_after = view(&net, &ipam);
            if node_after != node_before {
                return Err(fail(format!(
                    "call {n}: ADD then DEL did not leave the node as it was:\nbefore {node_before:?}\nafter  {node_after:?}"
                )));
            }
        }

        escaped(&sandbox, &cwd).map_err(|why| {
            fail(format!(
                "call {n} {why} (after its DEL, if it was a good ADD)"
            ))
        })?;
    }
    Ok(())
}

/// Whether anything was written outside the sandbox, or relative to the working directory.
fn escaped(sandbox: &Sandbox, cwd: &Path) -> std::result::Result<(), String> {
    let outside: Vec<PathBuf> = sandbox
        .tree()
        .into_keys()
        .filter(|p| !p.starts_with(&sandbox.dir) && !sandbox.dir.starts_with(p))
        .collect();
    if !outside.is_empty() {
        return Err(format!("wrote outside its sandbox: {outside:?}"));
    }
    let relative = fs::read_dir(cwd)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with(REL_PREFIX))
        });
    if let Some(p) = relative {
        let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        return Err(format!(
            "created {} relative to the working directory",
            p.display()
        ));
    }
    Ok(())
}

/// After a failed call, the sandbox may only have gained directories, empty `.lock` files
/// and the log file; nothing may be gone or changed.
fn check_only_allowed_additions(
    before: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    after: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    log_file: Option<&str>,
) -> std::result::Result<(), String> {
    for (p, content) in before {
        match after.get(p) {
            None => return Err(format!("removed {}", p.display())),
            Some(c) if c != content && log_file.is_none_or(|l| Path::new(l) != p) => {
                return Err(format!("changed {}", p.display()))
            }
            _ => {}
        }
    }
    for (p, content) in after {
        if before.contains_key(p) {
            continue;
        }
        let allowed = match content {
            None => true,
            Some(c) => {
                (c.is_empty() && p.extension().is_some_and(|x| x == "lock"))
                    || log_file.is_some_and(|l| Path::new(l) == p)
            }
        };
        if !allowed {
            return Err(format!("left {} behind", p.display()));
        }
    }
    Ok(())
}

fn strategy(corpus: &'static [Vec<u8>]) -> impl Strategy<Value = Vec<Call>> {
    proptest::collection::vec(call(corpus), 1..4)
}

/// Run rounds of `cases` cases until `budget` is spent (at least one round); returns
/// (cases, calls).
fn fuzz(cases: u32, budget: Duration) -> (u64, u64) {
    let corpus: &'static [Vec<u8>] = Box::leak(corpus().into_boxed_slice());
    assert!(
        corpus.len() >= 10,
        "the fuzz corpus is missing: {}",
        corpus.len()
    );
    let start = Instant::now();
    let calls_before = CALLS.load(Ordering::Relaxed);
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy(corpus), |calls| run_case(&calls)) {
            panic!("fuzz: {e}");
        }
        total += u64::from(cases);
        if start.elapsed() >= budget {
            break;
        }
    }
    (total, CALLS.load(Ordering::Relaxed) - calls_before)
}

#[test]
fn fuzz_the_plugin_inputs() {
    let seconds: u64 = std::env::var("BONDNET_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let start = Instant::now();
    let (cases, calls) = fuzz(256, Duration::from_secs(seconds));
    eprintln!(
        "fuzz: {cases} cases, {calls} plugin calls in {:.1} s, no failure",
        start.elapsed().as_secs_f64()
    );
    if let Ok(m) = OUTCOMES.lock() {
        let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        eprintln!(
            "fuzz: answers by command (code or ok): {}",
            parts.join(", ")
        );
    }
}

#[test]
fn the_harness_sees_a_change_left_by_a_failed_call() {
    // The rules must be able to fail: a lock-file-like file with content is not allowed,
    // nor is a file changed or removed.
    let a = PathBuf::from("/x/a.lock");
    let before = BTreeMap::new();
    let mut after = BTreeMap::new();
    after.insert(a.clone(), Some(Vec::new()));
    after.insert(PathBuf::from("/x/d"), None);
    check_only_allowed_additions(&before, &after, None).expect("locks and dirs are allowed");
    after.insert(PathBuf::from("/x/c1@bond0.json"), Some(b"{}".to_vec()));
    assert!(check_only_allowed_additions(&before, &after, None).is_err());
    let mut changed = after.clone();
    changed.insert(a.clone(), Some(b"x".to_vec()));
    assert!(check_only_allowed_additions(&after, &changed, None).is_err());
    changed.remove(&a);
    assert!(check_only_allowed_additions(&after, &changed, None).is_err());
    // And the sandbox's placeholder is filled in everywhere.
    let sb = Sandbox::new();
    let filled = sb.fill(format!("{SB}/a {SB}/b").as_bytes());
    assert_eq!(
        String::from_utf8(filled).expect("utf8"),
        format!("{0}/a {0}/b", sb.dir.display())
    );
}
