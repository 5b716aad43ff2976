//! ADD: take the ports (from the host or already in the pod), create the bond with every
//! option set, enslave the ports, bring it up, delegate IPAM and configure its result. Any
//! failure undoes every step taken, so a failed ADD leaves the node as it found it.

use crate::bond::{format_mac, random_local_mac};
use crate::cni::args::{Args, Command};
use crate::cni::result::{CniResult, Interface, IpConfig};
use crate::config::NetConf;
use crate::error::{Error, Result};
use crate::ipam::{self, Ipam};
use crate::lock;
use crate::net::{is_link_local, BondSpec, Link, Net, Ns};
use crate::rollback::{Rollback, Undo};
use crate::state::{self, Saved, SavedPort};

pub fn add<N: Net, I: Ipam>(
    conf: &NetConf,
    args: &Args,
    net: &mut N,
    ipam: &I,
) -> Result<CniResult> {
    let _locks = if conf.links_in_container {
        None
    } else {
        Some(lock::acquire(&conf.lock_dir, &conf.links, lock::WAIT)?)
    };
    let mut undo = Rollback::new();
    match add_steps(conf, args, net, ipam, &mut undo) {
        Ok(result) => {
            undo.commit();
            Ok(result)
        }
        Err(cause) => {
            let undo_failures = undo.run(net, ipam, conf, args);
            Err(Error::RolledBack {
                cause: Box::new(cause),
                undo_failures,
            })
        }
    }
}

/// The ports as ADD found them, in config order.
fn find_ports<N: Net>(conf: &NetConf, net: &mut N) -> Result<Vec<Link>> {
    let ns = if conf.links_in_container {
        Ns::Pod
    } else {
        Ns::Host
    };
    let mut ports = Vec::new();
    for name in &conf.links {
        let link = net
            .link(ns, name)
            .map_err(|e| Error::netlink(format!("look up link {name}"), e))?
            .ok_or_else(|| Error::LinkNotFound {
                name: name.clone(),
                ns: ns.label(),
                hint: if conf.links_in_container {
                    " (with linksInContainer: true the ports must already be in the pod: list their networks before the bond in the pod's networks annotation, with matching interface names)"
                } else {
                    " (with linksInContainer: false the ports are taken from the node; set linksInContainer: true if another plugin puts them into the pod)"
                },
            })?;
        if let Some(controller) = link.controller {
            let owner = net
                .links(ns)
                .ok()
                .and_then(|all| all.into_iter().find(|l| l.index == controller))
                .map_or(format!("ifindex {controller}"), |l| l.name);
            return Err(Error::LinkInUse {
                name: name.clone(),
                ns: ns.label(),
                why: format!("it is already a port of {owner}"),
            });
        }
        if !conf.links_in_container
            && net
                .link(Ns::Pod, name)
                .map_err(|e| Error::netlink(format!("look up link {name} in the pod"), e))?
                .is_some()
        {
            return Err(Error::LinkInUse {
                name: name.clone(),
                ns: "host",
                why: "the pod already has a link with that name".into(),
            });
        }
        if link.kind.as_deref() == Some("bond") {
            return Err(Error::LinkInUse {
                name: name.clone(),
                ns: ns.label(),
                why: "it is itself a bond".into(),
            });
        }
        ports.push(link);
    }
    if !conf.links_in_container {
        refuse_host_traffic_links(net, &ports)?;
    }
    Ok(ports)
}

/// With linksInContainer: false a config could move any node link into a pod: refuse the
/// ones that carry the node's own traffic.
fn refuse_host_traffic_links<N: Net>(net: &mut N, ports: &[Link]) -> Result<()> {
    let addrs = net
        .addresses(Ns::Host)
        .map_err(|e| Error::netlink("list the node's addresses", e))?;
    let routes = net
        .routes(Ns::Host)
        .map_err(|e| Error::netlink("list the node's routes", e))?;
    for port in ports {
        if let Some((_, a)) = addrs
            .iter()
            .find(|(i, a)| *i == port.index && !is_link_local(a))
        {
            return Err(Error::LinkInUse {
                name: port.name.clone(),
                ns: "host",
                why: format!("it carries the node's address {a}; only links without node addresses can be moved into a pod"),
            });
        }
        if routes
            .iter()
            .any(|r| r.oif == Some(port.index) && r.dst.prefix_len() == 0)
        {
            return Err(Error::LinkInUse {
                name: port.name.clone(),
                ns: "host",
                why: "it carries the node's default route".into(),
            });
        }
    }
    Ok(())
}

fn add_steps<N: Net, I: Ipam>(
    conf: &NetConf,
    args: &Args,
    net: &mut N,
    ipam: &I,
    undo: &mut Rollback,
) -> Result<CniResult> {
    let found = find_ports(conf, net)?;
    let saved: Vec<SavedPort> = found
        .iter()
        .map(|l| SavedPort {
            name: l.name.clone(),
            mtu: l.mtu,
            mac: l.mac.clone(),
            up: l.up,
        })
        .collect();
    state::save(
        &conf.state_dir,
        &Saved {
            network: conf.name.clone(),
            container_id: args.container_id.clone(),
            ifname: args.ifname.clone(),
            links_in_container: conf.links_in_container,
            ports: saved.clone(),
        },
    )?;
    undo.push(Undo::RemoveState);

    // Ports in the pod, under their own names.
    let mut ports = Vec::new();
    for (link, original) in found.iter().zip(&saved) {
        if conf.links_in_container {
            ports.push(link.clone());
            continue;
        }
        net.move_link(Ns::Host, link.index, Ns::Pod)
            .map_err(|e| Error::netlink(format!("move {} into the pod netns", link.name), e))?;
        undo.push(Undo::MoveBack {
            port: original.clone(),
        });
        let moved = net
            .link(Ns::Pod, &link.name)
            .map_err(|e| Error::netlink(format!("look up {} in the pod", link.name), e))?
            .ok_or_else(|| Error::LinkNotFound {
                name: link.name.clone(),
                ns: "pod",
                hint: " after moving it there",
            })?;
        ports.push(moved);
    }
    for port in &saved {
        undo.push(Undo::Restore {
            ns: Ns::Pod,
            port: port.clone(),
        });
    }

    // The bond's MTU: the configured one (which every port must accept), else the smallest
    // port MTU, never an assumed 1500.
    let mtu = match conf.mtu {
        Some(m) => {
            if let Some(p) = ports.iter().find(|p| p.max_mtu.is_some_and(|max| max < m)) {
                return Err(Error::config(
                    "mtu",
                    format!(
                        "{m} is larger than port {} accepts (at most {}); lower mtu",
                        p.name,
                        p.max_mtu.unwrap_or_default()
                    ),
                ));
            }
            m
        }
        None => ports.iter().map(|p| p.mtu).min().unwrap_or(1500),
    };

    // tlb/alb need a distinct MAC per port: give a duplicate a locally administered one.
    if conf.bond.mode.needs_unique_port_macs() {
        for i in 0..ports.len() {
            if ports[..i].iter().any(|p| p.mac == ports[i].mac) {
                let mac = random_local_mac()
                    .map_err(|e| Error::io("read random bytes for a new MAC", e))?;
                net.set_up(Ns::Pod, ports[i].index, false)
                    .map_err(|e| Error::netlink(format!("set {} down", ports[i].name), e))?;
                net.set_mac(Ns::Pod, ports[i].index, &mac).map_err(|e| {
                    Error::netlink(
                        format!("give {} the MAC {}", ports[i].name, format_mac(&mac)),
                        e,
                    )
                })?;
                tracing::info!(port = %ports[i].name, mac = %format_mac(&mac), "duplicate port MAC replaced");
                ports[i].mac = mac;
            }
        }
    }

    let primary = conf
        .bond
        .options
        .primary
        .as_ref()
        .and_then(|name| ports.iter().find(|p| &p.name == name))
        .map(|p| p.index);
    let spec = BondSpec {
        name: args.ifname.clone(),
        options: conf.bond.clone(),
        mtu: Some(mtu),
        primary,
    };
    let bond_index = net
        .create_bond(Ns::Pod, &spec)
        .map_err(|e| Error::netlink(format!("create bond {} in the pod netns", args.ifname), e))?;
    undo.push(Undo::DeleteLink {
        ns: Ns::Pod,
        name: args.ifname.clone(),
    });

    // The kernel refuses to enslave a link that is up: down, enslave, up.
    for port in &ports {
        net.set_up(Ns::Pod, port.index, false)
            .map_err(|e| Error::netlink(format!("set {} down", port.name), e))?;
        net.enslave(Ns::Pod, port.index, bond_index)
            .map_err(|e| Error::netlink(format!("enslave {} to {}", port.name, args.ifname), e))?;
        undo.push(Undo::Release {
            ns: Ns::Pod,
            name: port.name.clone(),
        });
        net.set_up(Ns::Pod, port.index, true)
            .map_err(|e| Error::netlink(format!("set {} up", port.name), e))?;
    }
    net.set_up(Ns::Pod, bond_index, true)
        .map_err(|e| Error::netlink(format!("set {} up", args.ifname), e))?;

    let mut result = CniResult::default();
    if conf.ipam.is_some() {
        let raw = ipam.exec(Command::Add, conf, args);
        // A plugin killed at its deadline may have reserved an address before it hung.
        if matches!(raw, Ok(_) | Err(Error::IpamTimeout { .. })) {
            undo.push(Undo::ReleaseIpam);
        }
        let raw = raw?;
        let value = raw.ok_or_else(|| Error::Ipam {
            plugin: conf.ipam_type().unwrap_or_default().to_string(),
            code: 0,
            msg: "printed no result for ADD".into(),
            details: String::new(),
        })?;
        let ipam_result = CniResult::from_value("the IPAM plugin's result", &value)?;
        ipam::configure(net, bond_index, &ipam_result)?;
        result.ips = ipam_result
            .ips
            .into_iter()
            .map(|ip| IpConfig {
                interface: Some(0),
                ..ip
            })
            .collect();
        result.routes = ipam_result.routes;
        result.dns = ipam_result.dns;
    }
    if !conf.dns.is_empty() {
        result.dns = conf.dns.clone();
    }

    let bond = net
        .link(Ns::Pod, &args.ifname)
        .map_err(|e| Error::netlink(format!("read {} back", args.ifname), e))?
        .ok_or_else(|| Error::LinkNotFound {
            name: args.ifname.clone(),
            ns: "pod",
            hint: " right after creating it",
        })?;
    result.interfaces.push(Interface {
        name: bond.name.clone(),
        mac: format_mac(&bond.mac),
        sandbox: args.netns.clone(),
        mtu: Some(bond.mtu),
    });
    for port in &ports {
        let live = net
            .link(Ns::Pod, &port.name)
            .map_err(|e| Error::netlink(format!("read {} back", port.name), e))?
            .unwrap_or_else(|| port.clone());
        result.interfaces.push(Interface {
            name: live.name,
            mac: format_mac(&live.mac),
            sandbox: args.netns.clone(),
            mtu: Some(live.mtu),
        });
    }
    Ok(result)
}
