//! The bonding vocabulary, once: the option values with the kernel's names and numbers
//! ([`values`]), one [`BondOptions`] with every option's JSON name, modes and range
//! ([`options`]), and the rules between them ([`rules`]), which give both the Rust validation
//! (the plugin, `bondnet plan`) and the CRD's CEL rules. [`samples`] holds the values the
//! contract tests try against all three.
//!
//! Features: `netlink` (IFLA_BOND_* encoding, the readback and CHECK's diff) for the plugin;
//! `schema` (JsonSchema) for the CRD. Neither kube nor CNI is a dependency.

pub mod options;
pub mod rules;
pub mod values;

#[cfg(feature = "netlink")]
pub mod netlink;
pub mod samples;
#[cfg(feature = "schema")]
mod schema;

pub use options::{BondOptions, OptionSpec, OPTIONS};
pub use rules::{cel_rules, validate, CelPorts, Ports};
pub use values::{
    AdSelect, ArpAllTargets, ArpTargets, ArpValidate, BondMode, FailOverMac, LacpRate, OptionValue,
    PrimaryReselect, XmitHashPolicy,
};

/// miimon when neither `miimon` nor `arpInterval` is given: with no link monitoring at all
/// (the kernel's default) a bond never fails over, which no user of bondnet wants.
pub const DEFAULT_MIIMON_MS: u32 = 100;

/// An option that is wrong: the field (its JSON name) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for OptionError {}
