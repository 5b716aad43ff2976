//! What ADD found before it changed anything, kept on disk so DEL can put every port back
//! as it was (name, MTU, MAC, admin state), even when the kernel would not.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPort {
    pub name: String,
    pub mtu: u32,
    pub mac: Vec<u8>,
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The network's name (`name` in the config): GC only touches its own network's state.
    pub network: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub links_in_container: bool,
    pub ports: Vec<SavedPort>,
}

/// `DIR/CONTAINERID@IFNAME.json`. Both names were checked by [`crate::names`] (a container ID
/// holds no '@' or '/', an interface name no '/'), so the path stays inside `DIR`.
pub fn path(dir: &str, container_id: &str, ifname: &str) -> PathBuf {
    Path::new(dir).join(format!("{container_id}@{ifname}.json"))
}

/// Write atomically: a temporary file in the same directory, then rename over.
pub fn save(dir: &str, saved: &Saved) -> Result<()> {
    let _step = crate::trace::step("state file save");
    let target = path(dir, &saved.container_id, &saved.ifname);
    fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("create the state directory {dir}"), e))?;
    let tmp = target.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(saved).map_err(|e| Error::Decode {
        what: "the saved port state".into(),
        source: e,
    })?;
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, &target)
    };
    write().map_err(|e| Error::io(format!("write the state file {}", target.display()), e))
}

pub fn load(dir: &str, container_id: &str, ifname: &str) -> Result<Option<Saved>> {
    let _step = crate::trace::step("state file load");
    let p = path(dir, container_id, ifname);
    match fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Decode {
                what: format!("the state file {}", p.display()),
                source: e,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read the state file {}", p.display()), e)),
    }
}

/// Remove; a file already gone is fine.
pub fn remove(dir: &str, container_id: &str, ifname: &str) -> Result<()> {
    let _step = crate::trace::step("state file remove");
    let p = path(dir, container_id, ifname);
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("remove the state file {}", p.display()),
            e,
        )),
    }
}

/// Every saved attachment in `dir` (for GC). Unreadable files are skipped, and so is a file
/// whose container ID or interface name is not valid or does not give its own file name
/// (GC removes by those names, so they must never lead outside `dir`).
pub fn list(dir: &str) -> Vec<Saved> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Saved> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| Some((e.path(), fs::read(e.path()).ok()?)))
        .filter_map(|(p, b)| Some((p, serde_json::from_slice::<Saved>(&b).ok()?)))
        .filter(|(p, s)| {
            let names_ok = crate::names::container_id(&s.container_id).is_ok()
                && crate::names::ifname(&s.ifname).is_ok();
            let own = names_ok && *p == path(dir, &s.container_id, &s.ifname);
            if !own {
                tracing::warn!(file = %p.display(), "state file does not match its own name; skipped");
            }
            own
        })
        .map(|(_, s)| s)
        .collect();
    out.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_round_trips_and_removal_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("utf8");
        let s = Saved {
            network: "n".into(),
            container_id: "abc".into(),
            ifname: "bond0".into(),
            links_in_container: true,
            ports: vec![SavedPort {
                name: "net1".into(),
                mtu: 9000,
                mac: vec![2, 0, 0, 0, 0, 1],
                up: true,
            }],
        };
        assert_eq!(load(d, "abc", "bond0").expect("load"), None);
        save(d, &s).expect("save");
        assert_eq!(load(d, "abc", "bond0").expect("load"), Some(s.clone()));
        assert_eq!(list(d), vec![s]);
        remove(d, "abc", "bond0").expect("remove");
        remove(d, "abc", "bond0").expect("remove twice");
        assert!(list(d).is_empty());
    }
}
