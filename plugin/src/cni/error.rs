//! CNI error codes and the error JSON the runtime reads. This is the only module that knows
//! the codes; every other module returns a typed [`crate::Error`] that maps here once.

use serde::Serialize;

/// The error codes of the CNI spec (1-7, 11, 50, 51) and bondnet's own (100 and up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 1: the config's cniVersion (or the verb under it) is not supported.
    IncompatibleVersion,
    /// 2: a field the plugin does not support.
    UnsupportedField,
    /// 3: the container or its network namespace does not exist.
    UnknownContainer,
    /// 4: a CNI_* environment variable is missing or invalid.
    InvalidEnvironment,
    /// 5: reading, writing or executing something failed.
    Io,
    /// 6: stdin or a delegate's output is not the JSON it should be.
    Decode,
    /// 7: the network config is invalid.
    InvalidConfig,
    /// 11: a transient condition (a lock held by another call, an IPAM plugin past its
    /// deadline); try again later.
    TryAgainLater,
    /// 50: STATUS: the plugin cannot serve ADDs on this node.
    PluginNotAvailable,
    /// 100: a kernel (netlink) operation failed.
    Netlink,
    /// 101: the IPAM delegate failed.
    Ipam,
    /// 102: CHECK found the bond differs from what the config asks for.
    CheckFailed,
    /// 103: a link cannot become a port: it carries host traffic or belongs to another
    /// bond or bridge.
    LinkInUse,
    /// 104: a link named in `links` is not where the config says it is.
    LinkNotFound,
    /// 199: the plugin hit a bug (a panic); the message says where.
    Internal,
}

impl Code {
    pub fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnvironment => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::PluginNotAvailable => 50,
            Code::Netlink => 100,
            Code::Ipam => 101,
            Code::CheckFailed => 102,
            Code::LinkInUse => 103,
            Code::LinkNotFound => 104,
            Code::Internal => 199,
        }
    }
}

/// The error object printed on stdout, as the spec shapes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorJson {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl ErrorJson {
    /// Build the error object for `err`: `msg` is the error's own sentence, `details` the
    /// chain of causes below it (and anything a rollback could not undo).
    pub fn from_error(cni_version: &str, err: &crate::Error) -> Self {
        let mut details = Vec::new();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            details.push(cause.to_string());
            source = cause.source();
        }
        details.extend(err.extra_details().iter().cloned());
        ErrorJson {
            cni_version: cni_version.to_string(),
            code: err.code().number(),
            msg: err.to_string(),
            details: details.join("; "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_codes_have_the_spec_numbers() {
        assert_eq!(Code::IncompatibleVersion.number(), 1);
        assert_eq!(Code::InvalidEnvironment.number(), 4);
        assert_eq!(Code::Decode.number(), 6);
        assert_eq!(Code::InvalidConfig.number(), 7);
        assert_eq!(Code::TryAgainLater.number(), 11);
        assert!(Code::Netlink.number() >= 100);
    }

    #[test]
    fn error_json_carries_the_cause_chain_in_details() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = crate::Error::Io {
            what: "read the state file /x".into(),
            source: io,
        };
        let json = ErrorJson::from_error("1.0.0", &err);
        assert_eq!(json.code, 5);
        assert_eq!(json.msg, "cannot read the state file /x");
        assert_eq!(json.details, "no such file");
        let text = serde_json::to_string(&json).expect("serializes");
        assert!(text.contains("\"cniVersion\":\"1.0.0\""), "{text}");
    }
}
