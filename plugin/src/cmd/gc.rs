//! GC (spec 1.1.0): forget every attachment not in `cni.dev/valid-attachments`: remove its
//! saved state, and let the IPAM plugin collect its addresses.

use crate::cni::args::{Args, Command};
use crate::config::NetConf;
use crate::error::{Error, Result};
use crate::ipam::{delegate_if_supported, Ipam};
use crate::state;

pub fn gc<I: Ipam>(conf: &NetConf, args: &Args, ipam: &I) -> Result<Vec<(String, String)>> {
    conf.cni_version.require_command(Command::Gc)?;
    let valid = conf.valid_attachments.as_ref().ok_or_else(|| {
        Error::config(
            "cni.dev/valid-attachments",
            "missing; GC needs the list of attachments still in use",
        )
    })?;
    let mut removed = Vec::new();
    for saved in state::list(&conf.state_dir)
        .into_iter()
        .filter(|s| s.network == conf.name)
    {
        let in_use = valid
            .iter()
            .any(|a| a.container_id == saved.container_id && a.ifname == saved.ifname);
        if !in_use {
            state::remove(&conf.state_dir, &saved.container_id, &saved.ifname)?;
            removed.push((saved.container_id, saved.ifname));
        }
    }
    delegate_if_supported(conf, args, ipam, Command::Gc)?;
    Ok(removed)
}
