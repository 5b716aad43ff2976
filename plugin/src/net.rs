//! The kernel operations the plugin needs, behind one small trait so the commands can run
//! against the real kernel ([`crate::rtnl::RtNet`]) or an in-memory fake
//! ([`crate::fake::FakeNet`]) that injects faults. Errno is mapped to [`NetErrorKind`] once,
//! here; callers match kinds, never message text.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::bond::{Bond, BondReadback};

/// The two network namespaces a CNI call touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ns {
    /// The namespace the plugin runs in (the node's).
    Host,
    /// CNI_NETNS, the pod's.
    Pod,
}

impl Ns {
    pub fn label(self) -> &'static str {
        match self {
            Ns::Host => "host",
            Ns::Pod => "pod",
        }
    }
}

/// What the plugin reads of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub mac: Vec<u8>,
    /// Administrative state (IFF_UP).
    pub up: bool,
    /// The ifindex of the bond (or bridge) this link is a port of.
    pub controller: Option<u32>,
    /// IFLA_INFO_KIND: "bond", "veth", ...; None for plain devices (physical NICs, VFs).
    pub kind: Option<String>,
    /// The largest MTU the device accepts, where the kernel says.
    pub max_mtu: Option<u32>,
}

/// A route as far as the plugin cares: where it goes and through which link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
}

/// What the bond looks like in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondState {
    pub link: Link,
    pub options: BondReadback,
    /// Port ifindexes, in the kernel's order.
    pub ports: Vec<u32>,
}

/// A bond to create: every option is set at creation, before any port is enslaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondSpec {
    pub name: String,
    pub options: Bond,
    pub mtu: Option<u32>,
    /// ifindex of the primary port, resolved from its name in the bond's namespace.
    pub primary: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetErrorKind {
    NotFound,
    Exists,
    Busy,
    /// The kernel lacks the feature (no bonding driver: "Unknown device type").
    Unsupported,
    Permission,
    Invalid,
    Other,
}

/// A failed kernel operation, with its errno when the kernel gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError {
    pub kind: NetErrorKind,
    pub errno: Option<i32>,
    pub message: String,
}

impl NetError {
    pub fn from_errno(errno: i32, message: impl Into<String>) -> Self {
        use nix::errno::Errno;
        let kind = match Errno::from_raw(errno) {
            Errno::ENODEV | Errno::ENOENT | Errno::ESRCH | Errno::EADDRNOTAVAIL => {
                NetErrorKind::NotFound
            }
            Errno::EEXIST => NetErrorKind::Exists,
            Errno::EBUSY => NetErrorKind::Busy,
            Errno::EOPNOTSUPP | Errno::EPROTONOSUPPORT | Errno::EAFNOSUPPORT => {
                NetErrorKind::Unsupported
            }
            Errno::EPERM | Errno::EACCES => NetErrorKind::Permission,
            Errno::EINVAL | Errno::ERANGE => NetErrorKind::Invalid,
            _ => NetErrorKind::Other,
        };
        NetError {
            kind,
            errno: Some(errno),
            message: message.into(),
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        NetError {
            kind: NetErrorKind::Other,
            errno: None,
            message: message.into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == NetErrorKind::NotFound
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno {
            Some(errno) => {
                let desc = nix::errno::Errno::from_raw(errno).desc();
                if self.kind == NetErrorKind::Unsupported {
                    write!(
                        f,
                        "{}: {desc} (errno {errno}; is the kernel's bonding driver available?)",
                        self.message
                    )
                } else {
                    write!(f, "{}: {desc} (errno {errno})", self.message)
                }
            }
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for NetError {}

pub type NetResult<T> = Result<T, NetError>;

/// Every kernel operation the commands use. Lookups return `Ok(None)` for "not there" and
/// leave the meaning to the caller.
pub trait Net {
    fn links(&mut self, ns: Ns) -> NetResult<Vec<Link>>;
    fn link(&mut self, ns: Ns, name: &str) -> NetResult<Option<Link>>;
    fn set_up(&mut self, ns: Ns, index: u32, up: bool) -> NetResult<()>;
    fn set_mtu(&mut self, ns: Ns, index: u32, mtu: u32) -> NetResult<()>;
    fn set_mac(&mut self, ns: Ns, index: u32, mac: &[u8]) -> NetResult<()>;
    fn rename(&mut self, ns: Ns, index: u32, name: &str) -> NetResult<()>;
    /// Move a link to the other namespace; returns its ifindex there.
    fn move_link(&mut self, ns: Ns, index: u32, to: Ns) -> NetResult<u32>;
    /// Create a bond with all its options; returns its ifindex.
    fn create_bond(&mut self, ns: Ns, spec: &BondSpec) -> NetResult<u32>;
    fn bond(&mut self, ns: Ns, name: &str) -> NetResult<Option<BondState>>;
    fn enslave(&mut self, ns: Ns, port: u32, bond: u32) -> NetResult<()>;
    fn release(&mut self, ns: Ns, port: u32) -> NetResult<()>;
    fn delete_link(&mut self, ns: Ns, index: u32) -> NetResult<()>;
    /// Addresses as (ifindex, address/prefix).
    fn addresses(&mut self, ns: Ns) -> NetResult<Vec<(u32, IpNet)>>;
    fn add_address(&mut self, ns: Ns, index: u32, addr: IpNet) -> NetResult<()>;
    fn routes(&mut self, ns: Ns) -> NetResult<Vec<Route>>;
    fn add_route(&mut self, ns: Ns, route: &Route) -> NetResult<()>;
}

/// True for the addresses a link carries for itself on any up interface (IPv6 link-local),
/// which do not make it "carry a host address".
pub fn is_link_local(addr: &IpNet) -> bool {
    match addr.addr() {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(v4) => v4.is_link_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_maps_to_kinds() {
        assert_eq!(NetError::from_errno(19, "x").kind, NetErrorKind::NotFound);
        assert_eq!(NetError::from_errno(17, "x").kind, NetErrorKind::Exists);
        assert_eq!(NetError::from_errno(16, "x").kind, NetErrorKind::Busy);
        assert_eq!(
            NetError::from_errno(95, "x").kind,
            NetErrorKind::Unsupported
        );
        assert_eq!(NetError::from_errno(1, "x").kind, NetErrorKind::Permission);
    }

    #[test]
    fn unsupported_errors_point_at_the_bonding_driver() {
        let text = NetError::from_errno(95, "create bond bond0").to_string();
        assert!(text.contains("bonding driver"), "{text}");
    }

    #[test]
    fn ipv6_link_local_is_not_a_host_address() {
        assert!(is_link_local(&"fe80::1/64".parse().expect("net")));
        assert!(!is_link_local(&"2001:db8::1/64".parse().expect("net")));
        assert!(!is_link_local(&"10.0.0.1/24".parse().expect("net")));
    }
}
