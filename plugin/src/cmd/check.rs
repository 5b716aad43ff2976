//! CHECK: the bond exists in the pod with the configured mode, options, MTU and ports, each
//! port and the bond are up, the addresses of prevResult are on it, and the IPAM plugin's
//! own CHECK passes. Every difference is named.

use crate::cni::args::{Args, Command};
use crate::cni::result::CniResult;
use crate::config::NetConf;
use crate::error::{Error, Result};
use crate::ipam::Ipam;
use crate::net::{Net, Ns};

pub fn check<N: Net, I: Ipam>(conf: &NetConf, args: &Args, net: &mut N, ipam: &I) -> Result<()> {
    conf.cni_version.require_command(Command::Check)?;
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| Error::config("prevResult", "missing; CHECK needs the result of ADD"))?;
    let prev = CniResult::from_value("prevResult", prev)?;

    if conf.ipam.is_none() {
        return check_bond(conf, args, net, &prev);
    }
    // The spec has CHECK run the IPAM plugin's CHECK too: it runs while the bond is read
    // back (both only read). The bond's own problems are reported first.
    let (ipam_checked, bond_checked) = ipam.exec_beside(Command::Check, conf, args, || {
        check_bond(conf, args, net, &prev)
    });
    bond_checked?;
    ipam_checked.map(|_| ())
}

/// The bond's part of CHECK: everything but the IPAM plugin's own CHECK.
fn check_bond<N: Net>(conf: &NetConf, args: &Args, net: &mut N, prev: &CniResult) -> Result<()> {
    let mut problems = Vec::new();
    let bond = net
        .bond(Ns::Pod, &args.ifname)
        .map_err(|e| Error::netlink(format!("look up {}", args.ifname), e))?
        .ok_or_else(|| Error::Check {
            what: format!("bond {} does not exist in the pod netns", args.ifname),
        })?;
    let links = net
        .links(Ns::Pod)
        .map_err(|e| Error::netlink("list the pod's links", e))?;
    let name_of = |index: u32| {
        links
            .iter()
            .find(|l| l.index == index)
            .map_or(format!("ifindex {index}"), |l| l.name.clone())
    };

    let primary = conf
        .bond
        .options
        .primary
        .as_ref()
        .and_then(|p| links.iter().find(|l| &l.name == p))
        .map(|l| l.index);
    problems.extend(
        bond.options
            .mismatches(conf.bond.mode, &conf.bond.options, primary, name_of),
    );

    let mut have: Vec<String> = bond.ports.iter().map(|p| name_of(*p)).collect();
    have.sort();
    let mut want = conf.links.clone();
    want.sort();
    for missing in want.iter().filter(|w| !have.contains(w)) {
        problems.push(format!("port {missing} is not enslaved to {}", args.ifname));
    }
    for extra in have.iter().filter(|h| !want.contains(h)) {
        problems.push(format!(
            "{extra} is a port of {} but not in links",
            args.ifname
        ));
    }
    for port in links.iter().filter(|l| bond.ports.contains(&l.index)) {
        if !port.up {
            problems.push(format!("port {} is down", port.name));
        }
    }
    if !bond.link.up {
        problems.push(format!("bond {} is down", args.ifname));
    }
    if let Some(mtu) = conf.mtu {
        if bond.link.mtu != mtu {
            problems.push(format!("mtu: want {mtu}, bond has {}", bond.link.mtu));
        }
    }

    let addrs = net
        .addresses(Ns::Pod)
        .map_err(|e| Error::netlink("list the pod's addresses", e))?;
    for ip in &prev.ips {
        let on_bond = addrs
            .iter()
            .any(|(i, a)| *i == bond.link.index && a.addr() == ip.address.addr());
        if !on_bond {
            problems.push(format!(
                "address {} from prevResult is not on {}",
                ip.address, args.ifname
            ));
        }
    }
    if !prev.interfaces.is_empty() && !prev.interfaces.iter().any(|i| i.name == args.ifname) {
        problems.push(format!("prevResult lists no interface {}", args.ifname));
    }

    if !problems.is_empty() {
        return Err(Error::Check {
            what: format!("{}: {}", args.ifname, problems.join("; ")),
        });
    }
    Ok(())
}
