//! The CNI_* environment a runtime sets for each call.

use crate::error::{Error, Result};
use crate::names;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            other => {
                return Err(Error::Env {
                    var: "CNI_COMMAND",
                    msg: format!(
                        "unknown command \"{other}\"; use ADD, DEL, CHECK, STATUS, GC or VERSION"
                    ),
                })
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

/// The environment of one call. Which variables are required depends on the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub command: Command,
    pub container_id: String,
    /// Empty when the runtime gave none (allowed for DEL).
    pub netns: String,
    pub ifname: String,
    /// CNI_ARGS, passed on to IPAM.
    pub args: String,
    /// CNI_PATH, split on ':'.
    pub path: Vec<String>,
}

impl Args {
    /// Read from any lookup function (the process environment in `main`, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let command = Command::parse(&get("CNI_COMMAND").ok_or(Error::Env {
            var: "CNI_COMMAND",
            msg: "not set".into(),
        })?)?;
        let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        // STATUS, GC and VERSION have no attachment: the spec says the runtime does not set
        // CNI_CONTAINERID, CNI_NETNS or CNI_IFNAME for them, so any it sets are ignored.
        let required = |var: &'static str, needed: bool| -> Result<String> {
            match get(var).filter(|v| !v.is_empty() && needs_attachment) {
                Some(v) => Ok(v),
                None if needed => Err(Error::Env {
                    var,
                    msg: format!("not set; {} needs it", command.as_str()),
                }),
                None => Ok(String::new()),
            }
        };
        // The container ID and the interface name become file names under stateDir and link
        // names: each is checked as soon as it is read, before any file or link is touched.
        let checked = |var: &'static str, value: String, rule: fn(&str) -> Result<(), String>| {
            if value.is_empty() {
                return Ok(value);
            }
            rule(&value)
                .map(|()| value)
                .map_err(|msg| Error::Env { var, msg })
        };
        let container_id = checked(
            "CNI_CONTAINERID",
            required("CNI_CONTAINERID", needs_attachment)?,
            names::container_id,
        )?;
        let netns = required(
            "CNI_NETNS",
            matches!(command, Command::Add | Command::Check),
        )?;
        let ifname = checked(
            "CNI_IFNAME",
            required("CNI_IFNAME", needs_attachment)?,
            names::ifname,
        )?;
        let path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Args {
            command,
            container_id,
            netns,
            ifname,
            args: get("CNI_ARGS").unwrap_or_default(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn args(pairs: &[(&str, &str)]) -> Result<Args> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Args::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn add_needs_container_netns_and_ifname() {
        let e = args(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c")]).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "invalid environment: CNI_NETNS: not set; ADD needs it"
        );
        assert_eq!(e.code(), crate::cni::error::Code::InvalidEnvironment);
    }

    #[test]
    fn del_accepts_an_empty_netns() {
        let a = args(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "bond0"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ])
        .expect("ok");
        assert_eq!(a.netns, "");
        assert_eq!(a.path, vec!["/opt/cni/bin", "/usr/lib/cni"]);
    }

    #[test]
    fn status_gc_and_version_ignore_attachment_variables() {
        for command in ["STATUS", "GC", "VERSION"] {
            let a = args(&[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", "../../x"),
                ("CNI_IFNAME", "a/b"),
                ("CNI_NETNS", "/x"),
            ])
            .expect("ignored");
            assert_eq!((a.container_id, a.ifname, a.netns), Default::default());
        }
    }

    #[test]
    fn version_needs_nothing_else() {
        assert_eq!(
            args(&[("CNI_COMMAND", "VERSION")]).expect("ok").command,
            Command::Version
        );
    }

    #[test]
    fn unknown_command_is_refused() {
        assert!(args(&[("CNI_COMMAND", "UP")])
            .expect_err("bad")
            .to_string()
            .contains("unknown command \"UP\""));
        assert!(args(&[]).is_err());
    }

    #[test]
    fn bad_ifname_is_refused() {
        let e = args(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "a/b"),
        ])
        .expect_err("bad");
        assert_eq!(e.code(), crate::cni::error::Code::InvalidEnvironment);
    }
}
