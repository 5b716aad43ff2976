//! One plugin call, from the environment and stdin to the JSON for stdout: opens the
//! namespaces, builds the real kernel and IPAM backends, and dispatches to `cmd/`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cmd;
use crate::cni::args::{Args, Command};
use crate::cni::version;
use crate::config;
use crate::error::{Error, Result};
use crate::ipam::Delegate;
use crate::netns;
use crate::rtnl::RtNet;
use crate::trace;

/// Where the time of one call went, for `BONDNET_TIMINGS=1` (the step by step account is
/// in [`crate::trace`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub netlink: Duration,
    pub ipam: Duration,
}

/// Open the pod's netns; `Ok(None)` when `gone_ok` and it no longer exists.
fn open_pod(path: &str, gone_ok: bool) -> Result<Option<std::fs::File>> {
    if path.is_empty() && gone_ok {
        return Ok(None);
    }
    match trace::time("netns open", || netns::open(path)) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && gone_ok => Ok(None),
        Err(source) => Err(Error::NetnsGone {
            path: path.to_string(),
            source,
        }),
    }
}

fn connect(pod: Option<std::fs::File>, netns_path: &str) -> Result<RtNet> {
    RtNet::new(pod)
        .map_err(|e| Error::netlink(format!("connect to netlink (pod netns {netns_path})"), e))
}

/// Run the call described by `args` with `stdin`; `Ok(Some(json))` is printed on stdout.
pub fn run(args: &Args, stdin: &[u8], timings: &mut Timings) -> Result<Option<Value>> {
    if args.command == Command::Version {
        return Ok(Some(version::version_info()));
    }
    let conf = trace::time("config parse", || config::parse(stdin))?;
    conf.cni_version.require_command(args.command)?;
    let span = tracing::info_span!(
        "bond",
        command = args.command.as_str(),
        container = %args.container_id,
        ifname = %args.ifname,
        netns = %args.netns
    );
    let _enter = span.enter();
    if let Some(name) = conf.ifname.as_deref().filter(|n| *n != args.ifname) {
        tracing::warn!(
            config_ifname = name,
            "the config's ifname is ignored: the bond is named by CNI_IFNAME"
        );
    }
    let ipam = Delegate::default();
    let out = match args.command {
        Command::Add => {
            let pod = open_pod(&args.netns, false)?;
            let mut net = connect(pod, &args.netns)?;
            let result = cmd::add::add(&conf, args, &mut net, &ipam);
            timings.netlink = net.elapsed;
            Some(result?.to_json(conf.cni_version))
        }
        Command::Del => {
            let pod = open_pod(&args.netns, true)?;
            let open = pod.is_some();
            // A path that is no longer a netns (its bind mount removed) counts as gone too.
            let (mut net, open) = match connect(pod, &args.netns) {
                Ok(n) => (n, open),
                Err(e) if open => {
                    tracing::info!(error = %e, "pod netns unusable; treating it as gone");
                    (connect(None, &args.netns)?, false)
                }
                Err(e) => return Err(e),
            };
            let r = cmd::del::del(&conf, args, &mut net, &ipam, open);
            timings.netlink = net.elapsed;
            r?;
            None
        }
        Command::Check => {
            let pod = open_pod(&args.netns, false)?;
            let mut net = connect(pod, &args.netns)?;
            let r = cmd::check::check(&conf, args, &mut net, &ipam);
            timings.netlink = net.elapsed;
            r?;
            None
        }
        Command::Status => {
            cmd::status::status(&conf, args, &ipam)?;
            None
        }
        Command::Gc => {
            for (container, ifname) in cmd::gc::gc(&conf, args, &ipam)? {
                tracing::info!(%container, %ifname, "collected stale attachment state");
            }
            None
        }
        Command::Version => None,
    };
    timings.ipam = ipam.elapsed.get();
    Ok(out)
}

/// Run one call as a process: read the environment and stdin, print the result or the
/// error JSON, and return the exit code. The only place that writes to stdout.
pub fn main_with(get_env: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> (String, i32) {
    let start = Instant::now();
    let pre = config::preamble(stdin);
    trace::time("runtime setup (logging)", || {
        crate::log::init(pre.log_level.as_deref(), pre.log_file.as_deref())
    });
    let err_version = pre
        .cni_version
        .clone()
        .filter(|v| version::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| "1.1.0".to_string());
    let mut timings = Timings::default();
    let outcome = Args::from_lookup(&get_env).and_then(|args| run(&args, stdin, &mut timings));
    let (text, code) = match outcome {
        Ok(Some(v)) => (v.to_string(), 0),
        Ok(None) => (String::new(), 0),
        Err(e) => {
            tracing::error!(error = %e, "failed");
            let json = crate::cni::error::ErrorJson::from_error(&err_version, &e);
            (serde_json::to_string(&json).unwrap_or_default(), 1)
        }
    };
    let steps = trace::take();
    if get_env("BONDNET_TIMINGS").as_deref() == Some("1") {
        let steps: Vec<Value> = steps
            .iter()
            .map(|(name, took)| serde_json::json!([name, took.as_micros()]))
            .collect();
        eprintln!(
            "{}",
            serde_json::json!({"bondnet_timings_us": {
                "total": start.elapsed().as_micros(),
                "netlink": timings.netlink.as_micros(),
                "ipam": timings.ipam.as_micros(),
                "steps": steps,
            }})
        );
    }
    (text, code)
}
