//! DEL: works from the config, the saved state and what the kernel shows now, never from
//! ADD's undo stack. Whatever is already gone counts as deleted (the netns, the bond, a
//! port, the whole attachment on a second DEL), and IPAM is released in every case.

use crate::cni::args::{Args, Command};
use crate::config::NetConf;
use crate::error::{Error, Result};
use crate::ipam::Ipam;
use crate::lock;
use crate::net::{Net, Ns};
use crate::rollback::restore_port;
use crate::state::{self, SavedPort};

/// `pod_netns_open` is false when CNI_NETNS is empty or names a namespace that is gone.
pub fn del<N: Net, I: Ipam>(
    conf: &NetConf,
    args: &Args,
    net: &mut N,
    ipam: &I,
    pod_netns_open: bool,
) -> Result<()> {
    let _locks = if conf.links_in_container {
        None
    } else {
        Some(lock::acquire(&conf.lock_dir, &conf.links, lock::WAIT)?)
    };
    let saved = state::load(&conf.state_dir, &args.container_id, &args.ifname)?;
    let ports: Vec<SavedPort> = match &saved {
        Some(s) => s.ports.clone(),
        None => conf
            .links
            .iter()
            .map(|name| SavedPort {
                name: name.clone(),
                mtu: 0,
                mac: Vec::new(),
                up: false,
            })
            .collect(),
    };
    let links_in_container = saved
        .as_ref()
        .map_or(conf.links_in_container, |s| s.links_in_container);

    let teardown = if pod_netns_open {
        teardown(args, net, &ports, saved.is_some(), links_in_container)
    } else {
        // The pod is gone. A physical port the kernel returned to the node still has the
        // bond's MTU or MAC: put them back.
        if saved.is_some() && !links_in_container {
            for port in &ports {
                if let Err(e) = restore_port(net, Ns::Host, port) {
                    tracing::warn!(port = %port.name, error = %e, "could not restore a port returned by the kernel");
                }
            }
        }
        Ok(())
    };

    // IPAM is released whatever happened above.
    let released = if conf.ipam.is_some() {
        ipam.exec(Command::Del, conf, args).map(|_| ())
    } else {
        Ok(())
    };
    teardown?;
    released?;
    state::remove(&conf.state_dir, &args.container_id, &args.ifname)
}

fn teardown<N: Net>(
    args: &Args,
    net: &mut N,
    ports: &[SavedPort],
    have_saved: bool,
    links_in_container: bool,
) -> Result<()> {
    // Deleting a bond releases its ports the way a release does (the kernel puts back
    // their MTU and MAC and sets them down): one request, not one per port plus the delete.
    if let Some(bond) = net
        .link(Ns::Pod, &args.ifname)
        .map_err(|e| Error::netlink(format!("look up {}", args.ifname), e))?
        .filter(|l| l.kind.as_deref() == Some("bond"))
    {
        match net.delete_link(Ns::Pod, bond.index) {
            Err(e) if !e.is_not_found() => {
                return Err(Error::netlink(format!("delete {}", args.ifname), e))
            }
            _ => {}
        }
    }
    for port in ports {
        if have_saved {
            restore_port(net, Ns::Pod, port)
                .map_err(|e| Error::netlink(format!("restore {}", port.name), e))?;
        }
        if !links_in_container {
            let Some(link) = net
                .link(Ns::Pod, &port.name)
                .map_err(|e| Error::netlink(format!("look up {}", port.name), e))?
            else {
                // Already on the node: a DEL retried after one that moved it back but
                // failed before restoring it (or an ADD whose rollback stopped there).
                if have_saved {
                    restore_port(net, Ns::Host, port)
                        .map_err(|e| Error::netlink(format!("restore {}", port.name), e))?;
                }
                continue;
            };
            net.move_link(Ns::Pod, link.index, Ns::Host)
                .map_err(|e| Error::netlink(format!("move {} back to the node", port.name), e))?;
            // A move sets the link down: restore its state on the node.
            if have_saved {
                restore_port(net, Ns::Host, port)
                    .map_err(|e| Error::netlink(format!("restore {}", port.name), e))?;
            }
        }
    }
    Ok(())
}
