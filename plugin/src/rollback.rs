//! The undo stack of ADD. Each step that changed the kernel, the IPAM store or the disk pushes
//! the entry that reverses it; on failure the stack runs in reverse, best effort, and every
//! undo is idempotent ("already gone" is done). Undo runs explicitly, never in `Drop`.

use crate::cni::args::{Args, Command};
use crate::config::NetConf;
use crate::ipam::Ipam;
use crate::net::{Net, NetError, Ns};
use crate::state::{self, SavedPort};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Remove the state file ADD wrote.
    RemoveState,
    /// Move a host link that ADD moved into the pod back to the host, and restore its state
    /// there (a move sets a link down).
    MoveBack { port: SavedPort },
    /// Put a port's MTU, MAC and admin state back.
    Restore { ns: Ns, port: SavedPort },
    /// Delete the bond ADD created (its ports are released with it).
    DeleteLink { ns: Ns, name: String },
    /// Release a port ADD enslaved.
    Release { ns: Ns, name: String },
    /// Release what the IPAM plugin allocated.
    ReleaseIpam,
}

#[derive(Debug, Default)]
pub struct Rollback {
    steps: Vec<Undo>,
}

impl Rollback {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, undo: Undo) {
        tracing::debug!(?undo, "undo recorded");
        self.steps.push(undo);
    }

    /// ADD succeeded: nothing to undo.
    pub fn commit(self) {}

    /// Undo every step in reverse; returns the undos that failed, as sentences.
    pub fn run<N: Net, I: Ipam>(
        self,
        net: &mut N,
        ipam: &I,
        conf: &NetConf,
        args: &Args,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        for step in self.steps.into_iter().rev() {
            if step == Undo::RemoveState && !failures.is_empty() {
                // Something could not be undone: keep what ADD found, so that the DEL the
                // runtime sends after a failed ADD can still put every port back.
                failures.push("the saved port state is kept for DEL to finish".to_string());
                continue;
            }
            tracing::info!(?step, "rolling back");
            if let Err(e) = undo_one(&step, net, ipam, conf, args) {
                tracing::warn!(?step, error = %e, "undo failed");
                failures.push(format!("{step:?}: {e}"));
            }
        }
        failures
    }
}

fn ignore_gone(r: Result<(), NetError>) -> Result<(), NetError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Restore MTU, MAC and admin state of `port` in `ns`, changing only what differs. Used by
/// rollback and by DEL. A port that is gone is done.
pub fn restore_port<N: Net>(net: &mut N, ns: Ns, port: &SavedPort) -> Result<(), NetError> {
    let Some(link) = net.link(ns, &port.name)? else {
        return Ok(());
    };
    if link.mac != port.mac && !port.mac.is_empty() {
        // Some drivers refuse a MAC change while up.
        if link.up {
            ignore_gone(net.set_up(ns, link.index, false))?;
        }
        ignore_gone(net.set_mac(ns, link.index, &port.mac))?;
    }
    if link.mtu != port.mtu {
        ignore_gone(net.set_mtu(ns, link.index, port.mtu))?;
    }
    let now_up = net.link(ns, &port.name)?.map(|l| l.up).unwrap_or(port.up);
    if now_up != port.up {
        ignore_gone(net.set_up(ns, link.index, port.up))?;
    }
    Ok(())
}

fn undo_one<N: Net, I: Ipam>(
    step: &Undo,
    net: &mut N,
    ipam: &I,
    conf: &NetConf,
    args: &Args,
) -> Result<(), String> {
    match step {
        Undo::RemoveState => state::remove(&conf.state_dir, &args.container_id, &args.ifname)
            .map_err(|e| e.to_string()),
        Undo::MoveBack { port } => {
            if let Some(link) = net.link(Ns::Pod, &port.name).map_err(|e| e.to_string())? {
                net.move_link(Ns::Pod, link.index, Ns::Host)
                    .map_err(|e| e.to_string())?;
            }
            restore_port(net, Ns::Host, port).map_err(|e| e.to_string())
        }
        Undo::Restore { ns, port } => restore_port(net, *ns, port).map_err(|e| e.to_string()),
        Undo::DeleteLink { ns, name } => {
            let Some(link) = net.link(*ns, name).map_err(|e| e.to_string())? else {
                return Ok(());
            };
            ignore_gone(net.delete_link(*ns, link.index)).map_err(|e| e.to_string())
        }
        Undo::Release { ns, name } => {
            let Some(link) = net.link(*ns, name).map_err(|e| e.to_string())? else {
                return Ok(());
            };
            if link.controller.is_none() {
                return Ok(());
            }
            ignore_gone(net.release(*ns, link.index)).map_err(|e| e.to_string())
        }
        Undo::ReleaseIpam => ipam
            .exec(Command::Del, conf, args)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}
