//! STATUS (spec 1.1.0): is this node ready for ADDs? The bonding driver must be loaded or
//! loadable, and the IPAM plugin's own STATUS must pass where it implements STATUS.

use std::fs;
use std::path::Path;

use crate::cni::args::{Args, Command};
use crate::config::NetConf;
use crate::error::{Error, Result};
use crate::ipam::{self, Ipam};

/// Where to look for the bonding driver: `/sys/module/bonding` when loaded, else the
/// module tree of the running kernel (built in, or a module modprobe can load).
pub fn bonding_available(sys_root: &Path, modules_root: &Path, release: &str) -> Result<()> {
    if sys_root.join("module/bonding").exists() {
        return Ok(());
    }
    let dir = modules_root.join(release);
    let mentions = |file: &str| {
        fs::read_to_string(dir.join(file))
            .map(|t| {
                t.lines()
                    .any(|l| l.contains("/bonding.ko") || l.starts_with("bonding.ko"))
            })
            .unwrap_or(false)
    };
    if mentions("modules.builtin") || mentions("modules.dep") {
        return Ok(());
    }
    Err(Error::NotAvailable {
        why: format!(
            "the kernel's bonding driver is neither loaded ({}) nor in the module tree of kernel {release} ({}); install it or load it with modprobe bonding",
            sys_root.join("module/bonding").display(),
            dir.display()
        ),
    })
}

pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn status<I: Ipam>(conf: &NetConf, args: &Args, ipam: &I) -> Result<()> {
    conf.cni_version.require_command(Command::Status)?;
    bonding_available(
        Path::new("/sys"),
        Path::new("/lib/modules"),
        &kernel_release(),
    )?;
    ipam::delegate_if_supported(conf, args, ipam, Command::Status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_driver_is_available() {
        let sys = tempfile::tempdir().expect("tmp");
        fs::create_dir_all(sys.path().join("module/bonding")).expect("mkdir");
        bonding_available(sys.path(), Path::new("/nonexistent"), "6.1.0").expect("loaded");
    }

    #[test]
    fn a_loadable_module_is_available() {
        let sys = tempfile::tempdir().expect("tmp");
        let mods = tempfile::tempdir().expect("tmp");
        fs::create_dir_all(mods.path().join("6.1.0")).expect("mkdir");
        fs::write(
            mods.path().join("6.1.0/modules.dep"),
            "kernel/drivers/net/bonding/bonding.ko: kernel/net/tls/tls.ko\n",
        )
        .expect("write");
        bonding_available(sys.path(), mods.path(), "6.1.0").expect("loadable");
    }

    #[test]
    fn a_kernel_without_bonding_is_not_available() {
        let sys = tempfile::tempdir().expect("tmp");
        let mods = tempfile::tempdir().expect("tmp");
        let e = bonding_available(sys.path(), mods.path(), "6.1.0").expect_err("missing");
        assert_eq!(e.code().number(), 50);
        assert!(e.to_string().contains("modprobe bonding"), "{e}");
    }
}
