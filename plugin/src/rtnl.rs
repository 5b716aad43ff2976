//! [`Net`] on the real kernel, through rtnetlink. One handle per namespace; every request
//! runs to completion on a current-thread runtime, and the time spent is accumulated for the
//! timing breakdown.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{Handle, LinkBond, LinkUnspec, RouteMessageBuilder};

use crate::bond::BondReadback;
use crate::net::{BondSpec, BondState, Link, Net, NetError, NetResult, Ns, Route};
use crate::netns;

pub struct RtNet {
    rt: tokio::runtime::Runtime,
    host: Handle,
    host_fd: File,
    pod: Option<(Handle, File)>,
    /// Time spent waiting on the kernel.
    pub elapsed: Duration,
}

fn nl_err(op: &str, e: rtnetlink::Error) -> NetError {
    match &e {
        rtnetlink::Error::NetlinkError(msg) => match msg.code {
            Some(code) => NetError::from_errno(-code.get(), op),
            None => NetError::other(format!("{op}: {e}")),
        },
        _ => NetError::other(format!("{op}: {e}")),
    }
}

fn io_err(op: &str, e: std::io::Error) -> NetError {
    match e.raw_os_error() {
        Some(errno) => NetError::from_errno(errno, op),
        None => NetError::other(format!("{op}: {e}")),
    }
}

impl RtNet {
    /// Connect to the host namespace, and to the pod's when `pod` is given (an open netns).
    pub fn new(pod: Option<File>) -> NetResult<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| io_err("start the netlink runtime", e))?;
        let host_fd =
            netns::open(netns::SELF_NETNS).map_err(|e| io_err("open the host netns", e))?;
        let host = {
            let _g = rt.enter();
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| io_err("open a netlink socket", e))?;
            rt.spawn(conn);
            handle
        };
        let pod = match pod {
            Some(file) => {
                let socket = netns::route_socket_in(&file, rt.handle())
                    .map_err(|e| io_err("open a netlink socket in the pod netns", e))?;
                let _g = rt.enter();
                let (conn, handle, _) = rtnetlink::from_socket(socket);
                rt.spawn(conn);
                Some((handle, file))
            }
            None => None,
        };
        Ok(RtNet {
            rt,
            host,
            host_fd,
            pod,
            elapsed: Duration::ZERO,
        })
    }

    fn handle(&self, ns: Ns) -> NetResult<Handle> {
        match ns {
            Ns::Host => Ok(self.host.clone()),
            Ns::Pod => self
                .pod
                .as_ref()
                .map(|(h, _)| h.clone())
                .ok_or_else(|| NetError::other("no pod network namespace is open")),
        }
    }

    fn ns_fd(&self, ns: Ns) -> NetResult<i32> {
        match ns {
            Ns::Host => Ok(self.host_fd.as_raw_fd()),
            Ns::Pod => self
                .pod
                .as_ref()
                .map(|(_, f)| f.as_raw_fd())
                .ok_or_else(|| NetError::other("no pod network namespace is open")),
        }
    }

    fn run<F: std::future::Future>(&mut self, fut: F) -> F::Output {
        let start = Instant::now();
        let out = self.rt.block_on(fut);
        self.elapsed += start.elapsed();
        out
    }

    fn set(&mut self, ns: Ns, msg: LinkMessage, op: &str) -> NetResult<()> {
        let h = self.handle(ns)?;
        self.run(async move { h.link().set(msg).execute().await })
            .map_err(|e| nl_err(op, e))
    }

    fn get_link(&mut self, ns: Ns, name: &str) -> NetResult<Option<LinkMessage>> {
        let h = self.handle(ns)?;
        let name = name.to_string();
        let res =
            self.run(async move { h.link().get().match_name(name).execute().try_next().await });
        match res {
            Ok(m) => Ok(m),
            Err(e) => {
                let err = nl_err("look up link", e);
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }
}

fn link_from(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        mac: Vec::new(),
        up: msg.header.flags.contains(LinkFlags::Up),
        controller: None,
        kind: None,
        max_mtu: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::MaxMtu(m) => link.max_mtu = Some(*m),
            LinkAttribute::Address(a) => link.mac = a.clone(),
            LinkAttribute::Controller(c) if *c != 0 => link.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn bond_data(msg: &LinkMessage) -> Option<BondReadback> {
    msg.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Bond(b)) => Some(BondReadback::from_netlink(b)),
            _ => None,
        }),
        _ => None,
    })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_from(msg: &RouteMessage) -> Option<Route> {
    let family_any: IpAddr = match msg.header.address_family {
        netlink_packet_route::AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        netlink_packet_route::AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut dst_addr = family_any;
    let mut route = Route {
        dst: IpNet::new(family_any, 0).ok()?,
        gw: None,
        oif: None,
        priority: None,
        table: Some(u32::from(msg.header.table)),
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst_addr = route_addr(a)?,
            RouteAttribute::Gateway(a) => route.gw = route_addr(a),
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            RouteAttribute::Priority(p) => route.priority = Some(*p),
            RouteAttribute::Table(t) => route.table = Some(*t),
            _ => {}
        }
    }
    route.dst = IpNet::new(dst_addr, msg.header.destination_prefix_length).ok()?;
    Some(route)
}

impl Net for RtNet {
    fn links(&mut self, ns: Ns) -> NetResult<Vec<Link>> {
        let h = self.handle(ns)?;
        let msgs: Vec<LinkMessage> = self
            .run(async move { h.link().get().execute().try_collect().await })
            .map_err(|e| nl_err("list links", e))?;
        Ok(msgs.iter().map(link_from).collect())
    }

    fn link(&mut self, ns: Ns, name: &str) -> NetResult<Option<Link>> {
        Ok(self.get_link(ns, name)?.as_ref().map(link_from))
    }

    fn set_up(&mut self, ns: Ns, index: u32, up: bool) -> NetResult<()> {
        let b = LinkUnspec::new_with_index(index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.set(ns, msg, if up { "set link up" } else { "set link down" })
    }

    fn set_mtu(&mut self, ns: Ns, index: u32, mtu: u32) -> NetResult<()> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.set(ns, msg, "set MTU")
    }

    fn set_mac(&mut self, ns: Ns, index: u32, mac: &[u8]) -> NetResult<()> {
        let msg = LinkUnspec::new_with_index(index)
            .address(mac.to_vec())
            .build();
        self.set(ns, msg, "set MAC address")
    }

    fn rename(&mut self, ns: Ns, index: u32, name: &str) -> NetResult<()> {
        let msg = LinkUnspec::new_with_index(index)
            .name(name.to_string())
            .build();
        self.set(ns, msg, "rename link")
    }

    fn move_link(&mut self, ns: Ns, index: u32, to: Ns) -> NetResult<u32> {
        let name = {
            let h = self.handle(ns)?;
            let msg = self
                .run(async move { h.link().get().match_index(index).execute().try_next().await })
                .map_err(|e| nl_err("look up link", e))?
                .ok_or_else(|| NetError::from_errno(19, "look up link"))?;
            link_from(&msg).name
        };
        let fd = self.ns_fd(to)?;
        let msg = LinkUnspec::new_with_index(index).setns_by_fd(fd).build();
        self.set(ns, msg, "move link to another netns")?;
        let moved = self
            .link(to, &name)?
            .ok_or_else(|| NetError::other(format!("link {name} vanished while moving")))?;
        Ok(moved.index)
    }

    fn create_bond(&mut self, ns: Ns, spec: &BondSpec) -> NetResult<u32> {
        let mut builder = LinkBond::new(&spec.name);
        for attr in spec.options.to_netlink(spec.primary) {
            builder = builder.append_info_data(attr);
        }
        if let Some(mtu) = spec.mtu {
            builder = builder.mtu(mtu);
        }
        let msg = builder.build();
        let h = self.handle(ns)?;
        self.run(async move { h.link().add(msg).execute().await })
            .map_err(|e| nl_err(&format!("create bond {}", spec.name), e))?;
        let link = self.link(ns, &spec.name)?.ok_or_else(|| {
            NetError::other(format!("bond {} vanished after creation", spec.name))
        })?;
        Ok(link.index)
    }

    fn bond(&mut self, ns: Ns, name: &str) -> NetResult<Option<BondState>> {
        let Some(msg) = self.get_link(ns, name)? else {
            return Ok(None);
        };
        let link = link_from(&msg);
        if link.kind.as_deref() != Some(&InfoKind::Bond.to_string()) {
            return Ok(None);
        }
        let options = bond_data(&msg).unwrap_or_default();
        let ports = self
            .links(ns)?
            .into_iter()
            .filter(|l| l.controller == Some(link.index))
            .map(|l| l.index)
            .collect();
        Ok(Some(BondState {
            link,
            options,
            ports,
        }))
    }

    fn enslave(&mut self, ns: Ns, port: u32, bond: u32) -> NetResult<()> {
        let msg = LinkUnspec::new_with_index(port).controller(bond).build();
        self.set(ns, msg, "enslave port")
    }

    fn release(&mut self, ns: Ns, port: u32) -> NetResult<()> {
        let msg = LinkUnspec::new_with_index(port).nocontroller().build();
        self.set(ns, msg, "release port")
    }

    fn delete_link(&mut self, ns: Ns, index: u32) -> NetResult<()> {
        let h = self.handle(ns)?;
        self.run(async move { h.link().del(index).execute().await })
            .map_err(|e| nl_err("delete link", e))
    }

    fn addresses(&mut self, ns: Ns) -> NetResult<Vec<(u32, IpNet)>> {
        let h = self.handle(ns)?;
        let msgs: Vec<_> = self
            .run(async move { h.address().get().execute().try_collect::<Vec<_>>().await })
            .map_err(|e| nl_err("list addresses", e))?;
        let mut out = Vec::new();
        for m in msgs {
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = addr.or_else(|| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = addr {
                if let Ok(net) = IpNet::new(ip, m.header.prefix_len) {
                    out.push((m.header.index, net));
                }
            }
        }
        Ok(out)
    }

    fn add_address(&mut self, ns: Ns, index: u32, addr: IpNet) -> NetResult<()> {
        let h = self.handle(ns)?;
        self.run(async move {
            h.address()
                .add(index, addr.addr(), addr.prefix_len())
                .execute()
                .await
        })
        .map_err(|e| nl_err(&format!("add address {addr}"), e))
    }

    fn routes(&mut self, ns: Ns) -> NetResult<Vec<Route>> {
        let h = self.handle(ns)?;
        let (v4, v6): (Vec<RouteMessage>, Vec<RouteMessage>) = self
            .run(async move {
                let v4 = h
                    .route()
                    .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await?;
                let v6 = h
                    .route()
                    .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
                    .execute()
                    .try_collect::<Vec<_>>()
                    .await?;
                Ok::<_, rtnetlink::Error>((v4, v6))
            })
            .map_err(|e| nl_err("list routes", e))?;
        Ok(v4.iter().chain(v6.iter()).filter_map(route_from).collect())
    }

    fn add_route(&mut self, ns: Ns, route: &Route) -> NetResult<()> {
        let op = format!("add route to {}", route.dst);
        let invalid = |e: &dyn std::fmt::Display| NetError::other(format!("{op}: {e}"));
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(route.dst.network(), route.dst.prefix_len())
            .map_err(|e| invalid(&e))?;
        if let Some(gw) = route.gw {
            b = b.gateway(gw).map_err(|e| invalid(&e))?;
        }
        if let Some(oif) = route.oif {
            b = b.output_interface(oif);
        }
        if let Some(p) = route.priority {
            b = b.priority(p);
        }
        if let Some(t) = route.table {
            b = b.table_id(t);
        }
        let msg = b.build();
        let h = self.handle(ns)?;
        self.run(async move { h.route().add(msg).execute().await })
            .map_err(|e| nl_err(&op, e))
    }
}
