//! The plugin's one error type. Each variant names the step that failed and carries what a
//! person needs to act; [`Error::code`] maps it to its CNI code once.

use crate::cni::error::Code;
use crate::net::NetError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// "30 s", or "0.3 s" for a deadline below a second (tests use those).
fn seconds(d: std::time::Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot decode {what}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid config: {field}: {msg}")]
    Config { field: String, msg: String },

    #[error("{msg}")]
    Version { msg: String },

    #[error("invalid environment: {var}: {msg}")]
    Env { var: &'static str, msg: String },

    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("network namespace {path} does not exist")]
    NetnsGone {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot {op}")]
    Netlink {
        op: String,
        #[source]
        source: NetError,
    },

    #[error("link {name} not found in the {ns} network namespace{hint}")]
    LinkNotFound {
        name: String,
        ns: &'static str,
        hint: &'static str,
    },

    #[error("link {name} in the {ns} network namespace cannot be a port: {why}")]
    LinkInUse {
        name: String,
        ns: &'static str,
        why: String,
    },

    #[error("host link {name} is in use by another ADD or DEL (lock {lock} held)")]
    Locked { name: String, lock: String },

    #[error("IPAM plugin {plugin} failed: {msg} (its code {code})")]
    Ipam {
        plugin: String,
        code: u32,
        msg: String,
        details: String,
    },

    #[error("cannot run the IPAM plugin {plugin}")]
    IpamExec {
        plugin: String,
        #[source]
        source: std::io::Error,
    },

    #[error("IPAM plugin {plugin} did not answer {command} within {} and was stopped; try again later, or raise ipamTimeout if it is only slow", seconds(*timeout))]
    IpamTimeout {
        plugin: String,
        command: &'static str,
        timeout: std::time::Duration,
    },

    #[error("IPAM plugin {plugin} not found in CNI_PATH ({path})")]
    IpamMissing { plugin: String, path: String },

    #[error("check failed: {what}")]
    Check { what: String },

    #[error("bond plugin not available on this node: {why}")]
    NotAvailable { why: String },

    /// A failed ADD whose steps were undone. `msg` and `code` are the cause's;
    /// `undo_failures` lists every undo step that itself failed.
    #[error("{cause}")]
    RolledBack {
        cause: Box<Error>,
        undo_failures: Vec<String>,
    },
}

impl Error {
    pub fn config(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            msg: msg.into(),
        }
    }

    pub fn netlink(op: impl Into<String>, source: NetError) -> Self {
        Error::Netlink {
            op: op.into(),
            source,
        }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Error::Decode { .. } => Code::Decode,
            Error::Config { .. } => Code::InvalidConfig,
            Error::Version { .. } => Code::IncompatibleVersion,
            Error::Env { .. } => Code::InvalidEnvironment,
            Error::Io { .. } | Error::IpamExec { .. } | Error::IpamMissing { .. } => Code::Io,
            Error::NetnsGone { .. } => Code::UnknownContainer,
            Error::Netlink { .. } => Code::Netlink,
            Error::LinkNotFound { .. } => Code::LinkNotFound,
            Error::LinkInUse { .. } => Code::LinkInUse,
            Error::Locked { .. } | Error::IpamTimeout { .. } => Code::TryAgainLater,
            Error::Ipam { .. } => Code::Ipam,
            Error::Check { .. } => Code::CheckFailed,
            Error::NotAvailable { .. } => Code::PluginNotAvailable,
            Error::RolledBack { cause, .. } => cause.code(),
        }
    }

    /// Details that are not part of the `source()` chain: an IPAM plugin's own details, and
    /// what a rollback could not undo.
    pub fn extra_details(&self) -> Vec<String> {
        match self {
            Error::Ipam { details, .. } if !details.is_empty() => vec![details.clone()],
            Error::RolledBack {
                cause,
                undo_failures,
            } => {
                let mut out = Vec::new();
                let mut source = std::error::Error::source(cause.as_ref());
                while let Some(s) = source {
                    out.push(s.to_string());
                    source = s.source();
                }
                out.extend(cause.extra_details());
                if undo_failures.is_empty() {
                    out.push("every step was rolled back".to_string());
                } else {
                    out.push(format!("rollback incomplete: {}", undo_failures.join("; ")));
                }
                out
            }
            _ => Vec::new(),
        }
    }
}
