//! IPAM delegation: run the IPAM plugin named in `ipam.type` from CNI_PATH with the same
//! environment and the whole network config on stdin, as the spec says, and apply its
//! addresses and routes to the bond.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cni::args::{Args, Command};
use crate::cni::result::CniResult;
use crate::config::NetConf;
use crate::error::{Error, Result};
use crate::net::{Net, Ns, Route};

/// Runs the IPAM plugin for one verb; `Ok(None)` when the plugin printed nothing (DEL).
pub trait Ipam {
    fn exec(&self, command: Command, conf: &NetConf, args: &Args) -> Result<Option<Value>>;
}

/// The real delegate: a child process.
#[derive(Debug, Default)]
pub struct Delegate {
    /// Time spent in the IPAM plugin, for the timing breakdown.
    pub elapsed: Cell<Duration>,
}

pub fn find_plugin(plugin: &str, path: &[String]) -> Result<PathBuf> {
    path.iter()
        .map(|dir| Path::new(dir).join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::IpamMissing {
            plugin: plugin.to_string(),
            path: path.join(":"),
        })
}

impl Ipam for Delegate {
    fn exec(&self, command: Command, conf: &NetConf, args: &Args) -> Result<Option<Value>> {
        let plugin = conf.ipam_type().unwrap_or_default().to_string();
        let bin = find_plugin(&plugin, &args.path)?;
        let start = Instant::now();
        let mut child = Process::new(&bin)
            .env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &args.container_id)
            .env("CNI_NETNS", &args.netns)
            .env("CNI_IFNAME", &args.ifname)
            .env("CNI_ARGS", &args.args)
            .env("CNI_PATH", args.path.join(":"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::IpamExec {
                plugin: plugin.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&conf.raw)
                .map_err(|source| Error::IpamExec {
                    plugin: plugin.clone(),
                    source,
                })?;
        }
        let out = child.wait_with_output().map_err(|source| Error::IpamExec {
            plugin: plugin.clone(),
            source,
        })?;
        self.elapsed.set(self.elapsed.get() + start.elapsed());
        tracing::debug!(plugin = %plugin, command = command.as_str(), status = ?out.status, "ipam delegate ran");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let parsed: Option<Value> = serde_json::from_str(stdout.trim()).ok();
            let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k)).cloned();
            let code = field("code").and_then(|c| c.as_u64()).unwrap_or(0);
            let msg = field("msg")
                .and_then(|m| m.as_str().map(str::to_string))
                .unwrap_or_else(|| {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    format!(
                        "exited with {}: {}{}",
                        out.status,
                        stdout.trim(),
                        stderr.trim()
                    )
                });
            let details = field("details")
                .and_then(|d| d.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(Error::Ipam {
                plugin,
                code: u32::try_from(code).unwrap_or(0),
                msg,
                details,
            });
        }
        if stdout.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(stdout.trim())
            .map(Some)
            .map_err(|source| Error::Decode {
                what: format!("the output of IPAM plugin {plugin}"),
                source,
            })
    }
}

/// Put the IPAM result's addresses and routes on the bond. A route without its own gateway
/// takes the gateway of the first address of its family, as the reference plugins do.
pub fn configure<N: Net>(net: &mut N, bond_index: u32, result: &CniResult) -> Result<()> {
    for ip in &result.ips {
        net.add_address(Ns::Pod, bond_index, ip.address)
            .map_err(|e| Error::netlink(format!("add address {} to the bond", ip.address), e))?;
    }
    for r in &result.routes {
        let family_v4 = r.dst.addr().is_ipv4();
        let gw = r.gw.or_else(|| {
            result
                .ips
                .iter()
                .filter(|ip| ip.address.addr().is_ipv4() == family_v4)
                .find_map(|ip| ip.gateway)
        });
        let route = Route {
            dst: r.dst.trunc(),
            gw,
            oif: Some(bond_index),
            priority: r.priority,
            table: r.table,
        };
        net.add_route(Ns::Pod, &route)
            .map_err(|e| Error::netlink(format!("add route to {} on the bond", r.dst), e))?;
    }
    Ok(())
}

/// The IPAM plugin's supported spec versions (its VERSION answer).
pub fn supported_versions(plugin_bin: &Path) -> Result<Vec<String>> {
    let out = Process::new(plugin_bin)
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::IpamExec {
            plugin: plugin_bin.display().to_string(),
            source,
        })?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|source| Error::Decode {
        what: format!("the VERSION answer of {}", plugin_bin.display()),
        source,
    })?;
    Ok(v.get("supportedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// Delegate `command` (STATUS or GC) to the IPAM plugin when it speaks spec 1.1.0; an older
/// plugin has nothing to report or collect, which is not an error.
pub fn delegate_if_supported<I: Ipam>(
    conf: &NetConf,
    args: &Args,
    ipam: &I,
    command: Command,
) -> Result<()> {
    let Some(plugin) = conf.ipam_type() else {
        return Ok(());
    };
    let bin = find_plugin(plugin, &args.path)?;
    let versions = supported_versions(&bin)?;
    if !versions.iter().any(|v| v == "1.1.0") {
        tracing::info!(
            plugin,
            ?versions,
            "IPAM plugin predates spec 1.1.0; not delegating"
        );
        return Ok(());
    }
    ipam.exec(command, conf, args).map(|_| ())
}
