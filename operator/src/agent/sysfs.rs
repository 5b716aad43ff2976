//! SR-IOV PF discovery from sysfs under a configurable root (`/` on a node, a fixture tree
//! in tests). A PF is a netdev whose PCI device has `sriov_totalvfs` above 0 and which is not
//! itself a VF (no `physfn`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::api::bond_node_state::PfStatus;

/// A PF that could not be read; discovery goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ifname}: cannot read {file}: {problem}")]
pub struct Skipped {
    /// Interface name.
    pub ifname: String,
    /// The sysfs file that failed.
    pub file: PathBuf,
    /// What went wrong.
    pub problem: String,
}

/// What one scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// SR-IOV capable PFs, sorted by PCI address.
    pub pfs: Vec<PfStatus>,
    /// PFs left out, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Scans `<root>/sys/class/net` for SR-IOV PFs.
pub fn discover_pfs(root: &Path) -> std::io::Result<Discovery> {
    let class_net = root.join("sys/class/net");
    let mut names: Vec<String> = fs::read_dir(&class_net)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut discovery = Discovery::default();
    for name in names {
        let netdev = class_net.join(&name);
        let device = netdev.join("device");
        // Virtual links have no device; VFs have a physfn; plain NICs have no SR-IOV.
        if !device.exists() || device.join("physfn").exists() {
            continue;
        }
        match read_u32(&device.join("sriov_totalvfs")) {
            Ok(total) if total > 0 => {}
            _ => continue,
        }
        match read_pf(&name, &netdev, &device) {
            Ok(pf) => discovery.pfs.push(pf),
            Err(skipped) => discovery.skipped.push(skipped),
        }
    }
    discovery
        .pfs
        .sort_by(|a, b| a.pci_address.cmp(&b.pci_address));
    Ok(discovery)
}

fn read_pf(name: &str, netdev: &Path, device: &Path) -> Result<PfStatus, Skipped> {
    let skipped = |file: &Path, problem: String| Skipped {
        ifname: name.to_owned(),
        file: file.to_owned(),
        problem,
    };
    let required = |file: &Path| read_trimmed(file).map_err(|e| skipped(file, e.to_string()));
    let number = |file: &Path| read_u32(file).map_err(|e| skipped(file, e.to_string()));

    let pci_address =
        link_name(device).ok_or_else(|| skipped(device, "not a link to a PCI device".into()))?;
    let num_vfs = number(&device.join("sriov_numvfs"))?;
    // The first VF shows the VF device ID and driver; newer kernels also offer sriov_vf_device.
    let first_vf = device.join("virtfn0");
    let vf_device_id = read_trimmed(&device.join("sriov_vf_device"))
        .or_else(|_| read_trimmed(&first_vf.join("device")))
        .ok()
        .filter(|_| num_vfs > 0)
        .map(|id| hex_id(&id));
    Ok(PfStatus {
        name: name.to_owned(),
        nic_id: nic_id(&pci_address),
        vendor: hex_id(&required(&device.join("vendor"))?),
        device_id: hex_id(&required(&device.join("device"))?),
        driver: link_name(&device.join("driver")).unwrap_or_default(),
        vf_device_id,
        vf_driver: link_name(&first_vf.join("driver")).filter(|_| num_vfs > 0),
        total_vfs: number(&device.join("sriov_totalvfs"))?,
        num_vfs,
        // Reading speed fails (EINVAL) or gives -1 while the link is down.
        link_speed_mbps: read_trimmed(&netdev.join("speed"))
            .ok()
            .and_then(|s| s.parse().ok()),
        mtu: read_u32(&netdev.join("mtu")).ok(),
        mac: read_trimmed(&netdev.join("address"))
            .ok()
            .filter(|m| !m.is_empty()),
        numa_node: read_trimmed(&device.join("numa_node"))
            .ok()
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|n| *n >= 0),
        pci_address,
    })
}

/// The card a PF sits on: its PCI address without the function (`0000:3b:00.1` ->
/// `0000:3b:00`), which the ports of one multi-port card share.
pub fn nic_id(pci_address: &str) -> String {
    match pci_address.rsplit_once('.') {
        Some((card, _function)) => card.to_owned(),
        None => pci_address.to_owned(),
    }
}

/// `0x8086` -> `8086`, as the device plugin's selectors spell IDs.
fn hex_id(raw: &str) -> String {
    raw.trim_start_matches("0x").to_ascii_lowercase()
}

fn read_trimmed(path: &Path) -> std::io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

fn read_u32(path: &Path) -> std::io::Result<u32> {
    read_trimmed(path)?.parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a number: {e}"),
        )
    })
}

/// The last component of where a symlink points (a PCI address, a driver name).
fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    target.file_name()?.to_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A sysfs tree shaped like the kernel's: PCI devices under `bus/pci/devices` with
    /// `driver`, `virtfnN` and `physfn` links, netdevs under `class/net` linking to them.
    struct FakeSysfs {
        root: tempfile::TempDir,
    }

    /// A PCI function as the fixture writes it.
    struct Pci<'a> {
        address: &'a str,
        vendor: &'a str,
        device: &'a str,
        driver: &'a str,
    }

    impl FakeSysfs {
        fn new() -> Self {
            let root = tempfile::tempdir().expect("tempdir");
            fs::create_dir_all(root.path().join("sys/class/net")).expect("mkdir");
            fs::create_dir_all(root.path().join("sys/bus/pci/devices")).expect("mkdir");
            Self { root }
        }

        fn sys(&self) -> PathBuf {
            self.root.path().join("sys")
        }

        fn write(&self, path: PathBuf, content: &str) {
            fs::write(path, format!("{content}\n")).expect("write");
        }

        fn pci(&self, pci: &Pci<'_>) -> PathBuf {
            let dir = self.sys().join("bus/pci/devices").join(pci.address);
            fs::create_dir_all(&dir).expect("mkdir");
            self.write(dir.join("vendor"), &format!("0x{}", pci.vendor));
            self.write(dir.join("device"), &format!("0x{}", pci.device));
            symlink(
                format!("../../../../bus/pci/drivers/{}", pci.driver),
                dir.join("driver"),
            )
            .expect("driver link");
            dir
        }

        fn netdev(&self, name: &str, pci_address: &str, speed: &str, mac: &str) {
            let dir = self.sys().join("class/net").join(name);
            fs::create_dir_all(&dir).expect("mkdir");
            symlink(
                format!("../../../bus/pci/devices/{pci_address}"),
                dir.join("device"),
            )
            .expect("device link");
            self.write(dir.join("speed"), speed);
            self.write(dir.join("mtu"), "1500");
            self.write(dir.join("address"), mac);
        }

        /// A PF port with `num_vfs` VFs (the first one bound to `vf_driver`).
        #[allow(clippy::too_many_arguments)]
        fn pf(
            &self,
            name: &str,
            pf: Pci<'_>,
            total: u32,
            num_vfs: u32,
            vf: (&str, &str, &str),
            numa: i32,
            speed: &str,
            vf_device_file: bool,
        ) {
            let dir = self.pci(&pf);
            self.write(dir.join("sriov_totalvfs"), &total.to_string());
            self.write(dir.join("sriov_numvfs"), &num_vfs.to_string());
            self.write(dir.join("numa_node"), &numa.to_string());
            if vf_device_file {
                self.write(dir.join("sriov_vf_device"), vf.1);
            }
            if num_vfs > 0 {
                let vf_dir = self.pci(&Pci {
                    address: vf.0,
                    vendor: pf.vendor,
                    device: vf.1,
                    driver: vf.2,
                });
                symlink(format!("../{}", pf.address), vf_dir.join("physfn")).expect("physfn");
                symlink(format!("../{}", vf.0), dir.join("virtfn0")).expect("virtfn0");
                self.netdev(&format!("{name}v0"), vf.0, "25000", "02:00:00:00:00:01");
            }
            self.netdev(name, pf.address, speed, "b4:96:91:aa:bb:cc");
        }
    }

    fn e810(sys: &FakeSysfs) {
        for (port, name) in ["ens1f0", "ens1f1"].iter().enumerate() {
            sys.pf(
                name,
                Pci {
                    address: &format!("0000:3b:00.{port}"),
                    vendor: "8086",
                    device: "159b",
                    driver: "ice",
                },
                128,
                8,
                (&format!("0000:3b:0{}.0", port + 1), "1889", "iavf"),
                0,
                "25000",
                true,
            );
        }
    }

    #[test]
    fn a_dual_port_e810_gives_two_pfs_on_one_nic_with_iavf_vfs() {
        let sys = FakeSysfs::new();
        e810(&sys);
        let found = discover_pfs(sys.root.path()).expect("scan");
        assert!(found.skipped.is_empty(), "{:?}", found.skipped);
        assert_eq!(
            found.pfs.len(),
            2,
            "VF netdevs are not PFs: {:?}",
            found.pfs
        );
        let pf = &found.pfs[0];
        assert_eq!(
            pf,
            &PfStatus {
                name: "ens1f0".into(),
                pci_address: "0000:3b:00.0".into(),
                vendor: "8086".into(),
                device_id: "159b".into(),
                driver: "ice".into(),
                vf_device_id: Some("1889".into()),
                vf_driver: Some("iavf".into()),
                total_vfs: 128,
                num_vfs: 8,
                link_speed_mbps: Some(25000),
                mtu: Some(1500),
                mac: Some("b4:96:91:aa:bb:cc".into()),
                numa_node: Some(0),
                nic_id: "0000:3b:00".into(),
            }
        );
        assert_eq!(
            found.pfs[1].nic_id, pf.nic_id,
            "ports of one card share the NIC"
        );
    }

    #[test]
    fn an_x710_on_an_older_kernel_reads_the_vf_device_from_the_first_vf() {
        let sys = FakeSysfs::new();
        sys.pf(
            "ens2f0",
            Pci {
                address: "0000:5e:00.0",
                vendor: "8086",
                device: "1572",
                driver: "i40e",
            },
            64,
            4,
            ("0000:5e:02.0", "154c", "iavf"),
            0,
            "10000",
            false,
        );
        let pf = &discover_pfs(sys.root.path()).expect("scan").pfs[0];
        assert_eq!(
            (pf.driver.as_str(), pf.device_id.as_str()),
            ("i40e", "1572")
        );
        assert_eq!(pf.vf_device_id.as_deref(), Some("154c"));
        assert_eq!(pf.vf_driver.as_deref(), Some("iavf"));
        assert_eq!(pf.link_speed_mbps, Some(10000));
    }

    #[test]
    fn a_connectx_pf_uses_mlx5_core_for_pf_and_vfs() {
        let sys = FakeSysfs::new();
        sys.pf(
            "ens3f0np0",
            Pci {
                address: "0000:af:00.0",
                vendor: "15b3",
                device: "101d",
                driver: "mlx5_core",
            },
            8,
            2,
            ("0000:af:00.2", "101e", "mlx5_core"),
            1,
            "100000",
            true,
        );
        let pf = &discover_pfs(sys.root.path()).expect("scan").pfs[0];
        assert_eq!(pf.vendor, "15b3");
        assert_eq!(pf.vf_driver.as_deref(), Some("mlx5_core"));
        assert_eq!(pf.numa_node, Some(1));
        assert_eq!(pf.nic_id, "0000:af:00");
    }

    #[test]
    fn a_pf_with_no_vfs_enabled_is_listed_without_vf_fields() {
        let sys = FakeSysfs::new();
        sys.pf(
            "ens2f1",
            Pci {
                address: "0000:5e:00.1",
                vendor: "8086",
                device: "1572",
                driver: "i40e",
            },
            64,
            0,
            ("", "154c", "iavf"),
            -1,
            "-1",
            true,
        );
        let pf = &discover_pfs(sys.root.path()).expect("scan").pfs[0];
        assert_eq!((pf.total_vfs, pf.num_vfs), (64, 0));
        assert_eq!(pf.vf_device_id, None);
        assert_eq!(pf.vf_driver, None);
        assert_eq!(pf.link_speed_mbps, None, "link down reads -1");
        assert_eq!(pf.numa_node, None, "-1 means no NUMA information");
    }

    #[test]
    fn loopback_and_nics_without_sriov_are_ignored() {
        let sys = FakeSysfs::new();
        fs::create_dir_all(sys.sys().join("class/net/lo")).expect("lo");
        sys.pci(&Pci {
            address: "0000:00:1f.6",
            vendor: "8086",
            device: "15bb",
            driver: "e1000e",
        });
        sys.netdev("eno1", "0000:00:1f.6", "1000", "00:11:22:33:44:55");
        e810(&sys);
        let names: Vec<String> = discover_pfs(sys.root.path())
            .expect("scan")
            .pfs
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["ens1f0", "ens1f1"]);
    }

    #[test]
    fn an_unreadable_pf_is_skipped_with_the_file_named() {
        let sys = FakeSysfs::new();
        e810(&sys);
        fs::remove_file(sys.sys().join("bus/pci/devices/0000:3b:00.1/sriov_numvfs")).expect("rm");
        let found = discover_pfs(sys.root.path()).expect("scan");
        assert_eq!(found.pfs.len(), 1);
        assert_eq!(found.skipped.len(), 1);
        let text = found.skipped[0].to_string();
        assert!(
            text.starts_with("ens1f1: cannot read ") && text.contains("sriov_numvfs"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_sysfs_is_an_error() {
        assert!(discover_pfs(Path::new("/nonexistent-root")).is_err());
    }

    #[test]
    fn nic_id_drops_the_pci_function() {
        assert_eq!(nic_id("0000:3b:00.1"), "0000:3b:00");
        assert_eq!(nic_id("weird"), "weird");
    }
}
