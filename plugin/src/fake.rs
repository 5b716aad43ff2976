//! An in-memory kernel for tests: two namespaces, links, bonds, addresses and routes, with
//! the kernel rules the plugin depends on (a port must be down to be enslaved; enslaving
//! sets its MTU; release and bond deletion restore what enslaving changed), and a fault
//! injected at the n-th change.

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::bond::{BondMode, BondReadback};
use crate::net::{BondSpec, BondState, Link, Net, NetError, NetResult, Ns, Route};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLink {
    pub ns: Ns,
    pub link: Link,
}

/// What enslaving changed on a port, restored on release.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortOrig {
    mtu: u32,
    mac: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct FakeNet {
    pub links: Vec<FakeLink>,
    pub bonds: BTreeMap<u32, (BondSpec, BondReadback)>,
    pub addrs: Vec<(Ns, u32, IpNet)>,
    pub routes: Vec<(Ns, Route)>,
    pub bonding_supported: bool,
    /// Fail the change with this number (0-based) with EIO.
    pub fail_at: Option<usize>,
    /// Changes made so far (each mutating call counts, failed or not).
    pub changes: usize,
    orig: BTreeMap<u32, PortOrig>,
    next_index: u32,
}

/// Everything a test compares before and after: links (sorted), addresses and routes.
pub type Snapshot = (Vec<FakeLink>, Vec<(Ns, u32, IpNet)>, Vec<(Ns, Route)>);

impl FakeNet {
    pub fn new() -> Self {
        FakeNet {
            links: Vec::new(),
            bonds: BTreeMap::new(),
            addrs: Vec::new(),
            routes: Vec::new(),
            bonding_supported: true,
            fail_at: None,
            changes: 0,
            orig: BTreeMap::new(),
            next_index: 100,
        }
    }

    /// Add a stand-in VF: an Ethernet link, up, with the given MTU and MAC.
    pub fn with_link(mut self, ns: Ns, name: &str, mtu: u32, mac: [u8; 6]) -> Self {
        self.next_index += 1;
        self.links.push(FakeLink {
            ns,
            link: Link {
                index: self.next_index,
                name: name.to_string(),
                mtu,
                mac: mac.to_vec(),
                up: true,
                controller: None,
                kind: Some("veth".into()),
                max_mtu: Some(9702),
            },
        });
        self
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut links = self.links.clone();
        links.sort_by(|a, b| (a.ns, &a.link.name).cmp(&(b.ns, &b.link.name)));
        (links, self.addrs.clone(), self.routes.clone())
    }

    pub fn find(&self, ns: Ns, name: &str) -> Option<&Link> {
        self.links
            .iter()
            .find(|l| l.ns == ns && l.link.name == name)
            .map(|l| &l.link)
    }

    fn change(&mut self, what: &str) -> NetResult<()> {
        let n = self.changes;
        self.changes += 1;
        if self.fail_at == Some(n) {
            return Err(NetError::from_errno(
                5,
                format!("injected fault at change {n} ({what})"),
            ));
        }
        Ok(())
    }

    fn get_mut(&mut self, ns: Ns, index: u32) -> NetResult<&mut Link> {
        self.links
            .iter_mut()
            .find(|l| l.ns == ns && l.link.index == index)
            .map(|l| &mut l.link)
            .ok_or_else(|| NetError::from_errno(19, format!("ifindex {index}")))
    }

    fn do_release(&mut self, ns: Ns, port: u32) -> NetResult<()> {
        let orig = self.orig.remove(&port);
        let link = self.get_mut(ns, port)?;
        link.controller = None;
        if let Some(o) = orig {
            link.mtu = o.mtu;
            link.mac = o.mac;
        }
        Ok(())
    }
}

impl Default for FakeNet {
    fn default() -> Self {
        Self::new()
    }
}

impl Net for FakeNet {
    fn links(&mut self, ns: Ns) -> NetResult<Vec<Link>> {
        Ok(self
            .links
            .iter()
            .filter(|l| l.ns == ns)
            .map(|l| l.link.clone())
            .collect())
    }

    fn link(&mut self, ns: Ns, name: &str) -> NetResult<Option<Link>> {
        Ok(self.find(ns, name).cloned())
    }

    fn set_up(&mut self, ns: Ns, index: u32, up: bool) -> NetResult<()> {
        self.change("set up/down")?;
        self.get_mut(ns, index)?.up = up;
        Ok(())
    }

    fn set_mtu(&mut self, ns: Ns, index: u32, mtu: u32) -> NetResult<()> {
        self.change("set mtu")?;
        self.get_mut(ns, index)?.mtu = mtu;
        Ok(())
    }

    fn set_mac(&mut self, ns: Ns, index: u32, mac: &[u8]) -> NetResult<()> {
        self.change("set mac")?;
        self.get_mut(ns, index)?.mac = mac.to_vec();
        Ok(())
    }

    fn rename(&mut self, ns: Ns, index: u32, name: &str) -> NetResult<()> {
        self.change("rename")?;
        if self.find(ns, name).is_some() {
            return Err(NetError::from_errno(17, "rename"));
        }
        self.get_mut(ns, index)?.name = name.to_string();
        Ok(())
    }

    fn move_link(&mut self, ns: Ns, index: u32, to: Ns) -> NetResult<u32> {
        self.change("move")?;
        let name = self.get_mut(ns, index)?.name.clone();
        if self.find(to, &name).is_some() {
            return Err(NetError::from_errno(17, "move"));
        }
        self.addrs.retain(|(n, i, _)| !(*n == ns && *i == index));
        self.routes
            .retain(|(n, r)| !(*n == ns && r.oif == Some(index)));
        for l in self.links.iter_mut() {
            if l.ns == ns && l.link.index == index {
                l.ns = to;
                // Moving a link sets it down, as the kernel does.
                l.link.up = false;
            }
        }
        Ok(index)
    }

    fn create_bond(&mut self, ns: Ns, spec: &BondSpec) -> NetResult<u32> {
        self.change("create bond")?;
        if !self.bonding_supported {
            return Err(NetError::from_errno(
                95,
                format!("create bond {}", spec.name),
            ));
        }
        if self.find(ns, &spec.name).is_some() {
            return Err(NetError::from_errno(
                17,
                format!("create bond {}", spec.name),
            ));
        }
        self.next_index += 1;
        let index = self.next_index;
        self.links.push(FakeLink {
            ns,
            link: Link {
                index,
                name: spec.name.clone(),
                mtu: spec.mtu.unwrap_or(1500),
                mac: vec![0x02, 0xbb, 0, 0, 0, 1],
                up: false,
                controller: None,
                kind: Some("bond".into()),
                max_mtu: Some(65535),
            },
        });
        let readback = BondReadback::from_netlink(&spec.options.to_netlink(spec.primary));
        self.bonds.insert(index, (spec.clone(), readback));
        Ok(index)
    }

    fn bond(&mut self, ns: Ns, name: &str) -> NetResult<Option<BondState>> {
        let Some(link) = self.find(ns, name).cloned() else {
            return Ok(None);
        };
        let Some((_, options)) = self.bonds.get(&link.index).cloned() else {
            return Ok(None);
        };
        let ports = self
            .links
            .iter()
            .filter(|l| l.ns == ns && l.link.controller == Some(link.index))
            .map(|l| l.link.index)
            .collect();
        Ok(Some(BondState {
            link,
            options,
            ports,
        }))
    }

    fn enslave(&mut self, ns: Ns, port: u32, bond: u32) -> NetResult<()> {
        self.change("enslave")?;
        let (spec, _) = self
            .bonds
            .get(&bond)
            .cloned()
            .ok_or_else(|| NetError::from_errno(19, "bond"))?;
        let bond_link = self.get_mut(ns, bond)?.clone();
        let first = !self.links.iter().any(|l| l.link.controller == Some(bond));
        let link = self.get_mut(ns, port)?;
        if link.up {
            return Err(NetError::from_errno(16, "enslave a port that is up"));
        }
        let orig = PortOrig {
            mtu: link.mtu,
            mac: link.mac.clone(),
        };
        link.controller = Some(bond);
        link.mtu = bond_link.mtu;
        let keeps_mac = spec.options.mode.needs_unique_port_macs()
            || (spec.options.mode == BondMode::ActiveBackup
                && spec
                    .options
                    .options
                    .fail_over_mac
                    .is_some_and(|f| f.number() != 0));
        let port_mac = link.mac.clone();
        if !first && !keeps_mac {
            link.mac = bond_link.mac.clone();
        }
        self.orig.insert(port, orig);
        if first {
            self.get_mut(ns, bond)?.mac = port_mac;
        }
        Ok(())
    }

    fn release(&mut self, ns: Ns, port: u32) -> NetResult<()> {
        self.change("release")?;
        self.do_release(ns, port)
    }

    fn delete_link(&mut self, ns: Ns, index: u32) -> NetResult<()> {
        self.change("delete")?;
        self.get_mut(ns, index)?;
        let ports: Vec<u32> = self
            .links
            .iter()
            .filter(|l| l.ns == ns && l.link.controller == Some(index))
            .map(|l| l.link.index)
            .collect();
        for p in ports {
            self.do_release(ns, p)?;
        }
        self.links
            .retain(|l| !(l.ns == ns && l.link.index == index));
        self.bonds.remove(&index);
        self.addrs.retain(|(n, i, _)| !(*n == ns && *i == index));
        self.routes
            .retain(|(n, r)| !(*n == ns && r.oif == Some(index)));
        Ok(())
    }

    fn addresses(&mut self, ns: Ns) -> NetResult<Vec<(u32, IpNet)>> {
        Ok(self
            .addrs
            .iter()
            .filter(|(n, _, _)| *n == ns)
            .map(|(_, i, a)| (*i, *a))
            .collect())
    }

    fn add_address(&mut self, ns: Ns, index: u32, addr: IpNet) -> NetResult<()> {
        self.change("add address")?;
        self.get_mut(ns, index)?;
        self.addrs.push((ns, index, addr));
        Ok(())
    }

    fn routes(&mut self, ns: Ns) -> NetResult<Vec<Route>> {
        Ok(self
            .routes
            .iter()
            .filter(|(n, _)| *n == ns)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn add_route(&mut self, ns: Ns, route: &Route) -> NetResult<()> {
        self.change("add route")?;
        self.routes.push((ns, route.clone()));
        Ok(())
    }
}
