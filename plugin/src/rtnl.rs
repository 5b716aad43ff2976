//! [`Net`] on the real kernel, over plain blocking netlink sockets: one per namespace,
//! one request and its answer at a time, no async runtime and no extra thread. The pod's
//! socket is opened by entering the pod's netns once (on this thread only) and coming
//! straight back; a netlink socket stays bound to the namespace it was created in. Each
//! request is a step of the call's trace ([`crate::trace`]) and adds to `elapsed`.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rtnetlink::{AddressMessageBuilder, LinkBond, LinkUnspec, RouteMessageBuilder};

use crate::bond::BondReadback;
use crate::net::{BondSpec, BondState, Link, Net, NetError, NetResult, Ns, Route};
use crate::netns;
use crate::trace;

/// Large enough for any one datagram the kernel sends on a route socket (dump parts are
/// at most 32 KiB).
const RECV_BUF: usize = 64 * 1024;

/// One blocking route socket and its sequence numbers.
struct Sock {
    socket: Socket,
    seq: u32,
}

impl Sock {
    /// A route socket in the namespace of the calling thread.
    fn open() -> std::io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Sock { socket, seq: 0 })
    }

    /// Send one request and collect its answer: the messages of a dump or a get, or
    /// nothing for an acknowledged change. A kernel error becomes a [`NetError`].
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &str,
        buf: &mut Vec<u8>,
    ) -> NetResult<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        buf.clear();
        buf.resize(req.buffer_len(), 0);
        req.serialize(&mut buf[..]);
        self.socket
            .send(&buf[..], 0)
            .map_err(|e| io_err(&format!("{op}: send"), e))?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            buf.clear();
            buf.reserve(RECV_BUF);
            let n = self
                .socket
                .recv(buf, MSG_TRUNC)
                .map_err(|e| io_err(&format!("{op}: receive"), e))?;
            if n > buf.len() {
                return Err(NetError::other(format!(
                    "{op}: the kernel's answer ({n} bytes) is larger than the {RECV_BUF}-byte buffer"
                )));
            }
            let mut off = 0;
            while off < buf.len() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..])
                    .map_err(|e| NetError::other(format!("{op}: decode the answer: {e}")))?;
                let len = m.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        Some(code) => return Err(NetError::from_errno(-code.get(), op)),
                        // The ACK: the change is done.
                        None => return Ok(out),
                    },
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(inner) => {
                        out.push(inner);
                        if !dump {
                            // A get answers with one message and no ACK (none was asked).
                            if flags & NLM_F_ACK == 0 {
                                return Ok(out);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `MSG_TRUNC` (linux/socket.h): recv reports the datagram's real length, so an oversized
/// one is an error rather than a silently cut answer.
const MSG_TRUNC: i32 = 0x20;

pub struct RtNet {
    /// Opened on first use: a pod-only call (linksInContainer: true) never needs it.
    host: Option<Sock>,
    /// This thread's netns at start: where the host socket lives, and where links go back.
    host_fd: File,
    pod: Option<(Sock, File)>,
    buf: Vec<u8>,
    /// Time spent waiting on the kernel.
    pub elapsed: Duration,
}

fn io_err(op: &str, e: std::io::Error) -> NetError {
    match e.raw_os_error() {
        Some(errno) => NetError::from_errno(errno, op),
        None => NetError::other(format!("{op}: {e}")),
    }
}

const GET: u16 = NLM_F_REQUEST;
const DUMP: u16 = NLM_F_REQUEST | NLM_F_DUMP;
const CHANGE: u16 = NLM_F_REQUEST | NLM_F_ACK;
const CREATE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

impl RtNet {
    /// Connect to the host namespace (on first use), and to the pod's when `pod` is given
    /// (an open netns): entered once, on this thread, for the socket, then left.
    pub fn new(pod: Option<File>) -> NetResult<Self> {
        let host_fd =
            netns::open(netns::THREAD_NETNS).map_err(|e| io_err("open this thread's netns", e))?;
        let pod = match pod {
            Some(file) => {
                let sock = trace::time("netns entry (pod socket)", || {
                    netns::in_netns(&file, &host_fd, Sock::open)
                })
                .map_err(|e| io_err("open a netlink socket in the pod netns", e))?;
                Some((sock, file))
            }
            None => None,
        };
        Ok(RtNet {
            host: None,
            host_fd,
            pod,
            buf: Vec::with_capacity(RECV_BUF),
            elapsed: Duration::ZERO,
        })
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

    /// One request in `ns`, timed as the step `step`.
    fn request(
        &mut self,
        ns: Ns,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &str,
        step: &str,
    ) -> NetResult<Vec<RouteNetlinkMessage>> {
        let start = Instant::now();
        let sock = match ns {
            Ns::Host => {
                if self.host.is_none() {
                    self.host = Some(Sock::open().map_err(|e| io_err("open a netlink socket", e))?);
                }
                self.host.as_mut()
            }
            Ns::Pod => self.pod.as_mut().map(|(s, _)| s),
        }
        .ok_or_else(|| NetError::other("no pod network namespace is open"))?;
        let out = sock.request(msg, flags, op, &mut self.buf);
        let took = start.elapsed();
        self.elapsed += took;
        trace::record(format!("netlink {step} ({})", ns.label()), took);
        out
    }

    fn set(&mut self, ns: Ns, msg: LinkMessage, op: &str) -> NetResult<()> {
        self.request(
            ns,
            RouteNetlinkMessage::SetLink(msg),
            CHANGE,
            op,
            "set link",
        )
        .map(|_| ())
    }

    fn get_link_msg(&mut self, ns: Ns, msg: LinkMessage) -> NetResult<Option<LinkMessage>> {
        match self.request(
            ns,
            RouteNetlinkMessage::GetLink(msg),
            GET,
            "look up link",
            "get link",
        ) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn get_link(&mut self, ns: Ns, name: &str) -> NetResult<Option<LinkMessage>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link_msg(ns, msg)
    }

    fn get_link_by_index(&mut self, ns: Ns, index: u32) -> NetResult<Option<LinkMessage>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link_msg(ns, msg)
    }

    fn dump_links(&mut self, ns: Ns) -> NetResult<Vec<LinkMessage>> {
        let msgs = self.request(
            ns,
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            DUMP,
            "list links",
            "dump links",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect())
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
        Ok(self.dump_links(ns)?.iter().map(link_from).collect())
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
        let name = self
            .get_link_by_index(ns, index)?
            .map(|m| link_from(&m).name)
            .ok_or_else(|| NetError::from_errno(19, "look up link"))?;
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
        self.request(
            ns,
            RouteNetlinkMessage::NewLink(msg),
            CREATE,
            &format!("create bond {}", spec.name),
            "new link",
        )?;
        let link = self.link(ns, &spec.name)?.ok_or_else(|| {
            NetError::other(format!("bond {} vanished after creation", spec.name))
        })?;
        Ok(link.index)
    }

    fn bond(&mut self, ns: Ns, name: &str) -> NetResult<Option<BondState>> {
        // One dump answers both questions: the bond itself and which links are its ports.
        let all = self.dump_links(ns)?;
        let Some(msg) = all.iter().find(|m| {
            m.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::IfName(n) if n == name))
        }) else {
            return Ok(None);
        };
        let link = link_from(msg);
        if link.kind.as_deref() != Some(&InfoKind::Bond.to_string()) {
            return Ok(None);
        }
        let options = bond_data(msg).unwrap_or_default();
        let ports = all
            .iter()
            .map(link_from)
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
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(
            ns,
            RouteNetlinkMessage::DelLink(msg),
            CHANGE,
            "delete link",
            "del link",
        )
        .map(|_| ())
    }

    fn addresses(&mut self, ns: Ns) -> NetResult<Vec<(u32, IpNet)>> {
        let msgs = self.request(
            ns,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            DUMP,
            "list addresses",
            "dump addresses",
        )?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(m) = m else {
                continue;
            };
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
        let msg = match addr.addr() {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(a, addr.prefix_len())
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(a, addr.prefix_len())
                .build(),
        };
        self.request(
            ns,
            RouteNetlinkMessage::NewAddress(msg),
            CREATE,
            &format!("add address {addr}"),
            "new address",
        )
        .map(|_| ())
    }

    fn routes(&mut self, ns: Ns) -> NetResult<Vec<Route>> {
        let mut out = Vec::new();
        for msg in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let msgs = self.request(
                ns,
                RouteNetlinkMessage::GetRoute(msg),
                DUMP,
                "list routes",
                "dump routes",
            )?;
            out.extend(msgs.iter().filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_from(r),
                _ => None,
            }));
        }
        Ok(out)
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
        self.request(
            ns,
            RouteNetlinkMessage::NewRoute(msg),
            CREATE,
            &op,
            "new route",
        )
        .map(|_| ())
    }
}
