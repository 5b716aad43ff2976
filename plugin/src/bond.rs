//! The bond a config asks for: its mode and options, in the vocabulary of the
//! `bondnet-bond` crate (values, option table, rules, netlink encoding and readback), plus
//! the MAC helpers ADD needs.

pub use bondnet_bond::netlink::Readback as BondReadback;
pub use bondnet_bond::{
    AdSelect, ArpAllTargets, ArpTargets, ArpValidate, BondMode, BondOptions, FailOverMac, LacpRate,
    PrimaryReselect, XmitHashPolicy,
};
use netlink_packet_route::link::InfoBond;

/// The bond a config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bond {
    pub mode: BondMode,
    pub options: BondOptions,
}

impl Bond {
    /// The IFLA_BOND_* attributes the bond is created with; `primary` is the ifindex of the
    /// primary port in the bond's namespace.
    pub fn to_netlink(&self, primary: Option<u32>) -> Vec<InfoBond> {
        bondnet_bond::netlink::encode(self.mode, &self.options, primary)
    }
}

/// A locally administered, unicast MAC: for a port whose MAC another port already has.
/// The bytes come from the OS's random source; bit 1 of the first octet set (locally
/// administered), bit 0 clear (unicast).
pub fn random_local_mac() -> std::io::Result<Vec<u8>> {
    let mut mac = [0u8; 6];
    getrandom::fill(&mut mac).map_err(|e| std::io::Error::other(e.to_string()))?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac.to_vec())
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_macs_are_local_unicast() {
        for _ in 0..64 {
            let mac = random_local_mac().expect("random");
            assert_eq!(mac.len(), 6);
            assert_eq!(mac[0] & 0x01, 0, "unicast");
            assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
        }
    }
}
