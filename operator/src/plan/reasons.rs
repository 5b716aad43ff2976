//! Why a selected node cannot host a bond. This is data, not an error: the plan reports it
//! per node and the network's status lists it.

use std::fmt;

/// A stable PascalCase code, used in status and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReasonCode {
    /// The node's BondNodeState lists no SR-IOV PF.
    NoPfs,
    /// No PF matches the network's nicSelector (or its MTU, or has enough VFs enabled).
    NoMatchingPf,
    /// Fewer matching PFs than the bond has ports.
    TooFewPfs,
    /// Enough PFs, but on fewer physical cards than ports, and the network wants `nic` diversity.
    TooFewNics,
    /// Enough PFs, but other networks hold their VFs.
    NoFreeVfs,
}

impl ReasonCode {
    /// The code as status and events spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoPfs => "NoPfs",
            Self::NoMatchingPf => "NoMatchingPf",
            Self::TooFewPfs => "TooFewPfs",
            Self::TooFewNics => "TooFewNics",
            Self::NoFreeVfs => "NoFreeVfs",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node left out of a network, with the reason a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReason {
    /// Stable code.
    pub code: ReasonCode,
    /// What is missing, naming PFs, NICs and fields.
    pub message: String,
}

impl NodeReason {
    pub(crate) fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for NodeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}
