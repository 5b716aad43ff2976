//! The CNI spec versions this plugin speaks, and which verbs each one has.

use crate::error::{Error, Result};

/// Every version this plugin accepts, oldest first.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V030,
    V031,
    V040,
    V100,
    V110,
}

impl Version {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "0.3.0" => Version::V030,
            "0.3.1" => Version::V031,
            "0.4.0" => Version::V040,
            "1.0.0" => Version::V100,
            "1.1.0" => Version::V110,
            other => {
                return Err(Error::Version {
                    msg: format!(
                        "cniVersion \"{other}\" is not supported; this plugin supports {}",
                        SUPPORTED.join(", ")
                    ),
                })
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V030 => "0.3.0",
            Version::V031 => "0.3.1",
            Version::V040 => "0.4.0",
            Version::V100 => "1.0.0",
            Version::V110 => "1.1.0",
        }
    }

    /// Results before 1.0.0 carry a "version" ("4" or "6") in each IP entry.
    pub fn ips_carry_version(self) -> bool {
        self < Version::V100
    }

    /// CHECK arrived with 0.4.0.
    pub fn has_check(self) -> bool {
        self >= Version::V040
    }

    /// STATUS and GC arrived with 1.1.0.
    pub fn has_status_and_gc(self) -> bool {
        self >= Version::V110
    }

    /// 1.1.0 interfaces may carry their MTU.
    pub fn interfaces_carry_mtu(self) -> bool {
        self >= Version::V110
    }

    /// Refuse a command this version does not define (CHECK before 0.4.0, STATUS and GC
    /// before 1.1.0).
    pub fn require_command(self, command: crate::cni::args::Command) -> Result<()> {
        use crate::cni::args::Command;
        match command {
            Command::Check => self.require("CHECK", self.has_check(), "0.4.0"),
            Command::Status => self.require("STATUS", self.has_status_and_gc(), "1.1.0"),
            Command::Gc => self.require("GC", self.has_status_and_gc(), "1.1.0"),
            _ => Ok(()),
        }
    }

    /// Refuse `verb` when this version does not define it.
    pub fn require(self, verb: &str, ok: bool, since: &str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(Error::Version {
                msg: format!(
                    "{verb} is not defined in cniVersion {}; it needs {since} or later",
                    self.as_str()
                ),
            })
        }
    }
}

/// The VERSION verb's answer.
pub fn version_info() -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "1.1.0",
        "supportedVersions": SUPPORTED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_round_trips() {
        for v in SUPPORTED {
            assert_eq!(Version::parse(v).expect("supported").as_str(), *v);
        }
    }

    #[test]
    fn verbs_follow_the_spec_versions() {
        assert!(!Version::V031.has_check());
        assert!(Version::V040.has_check());
        assert!(!Version::V100.has_status_and_gc());
        assert!(Version::V110.has_status_and_gc());
        let e = Version::V031
            .require("CHECK", false, "0.4.0")
            .expect_err("refused");
        assert_eq!(
            e.to_string(),
            "CHECK is not defined in cniVersion 0.3.1; it needs 0.4.0 or later"
        );
    }
}
