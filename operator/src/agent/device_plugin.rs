//! The node's SR-IOV device-plugin config file, rendered from its BondNodeState's spec, and
//! the restart of the node's device plugin when that file changed (the plugin reads it only
//! at start). Both are decided here, on the node: the file is rewritten only when its bytes
//! differ, and a marker beside it records the content the device plugin was last restarted
//! for, so a restart lost to a crash of the agent is made up after the agent comes back.

use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};

use crate::api::device_plugin::DevicePluginConfig;
use crate::plan::names::stable_hash;

/// The file's bytes: pretty JSON, as the device plugin's own examples are written.
pub fn render(config: &DevicePluginConfig) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(config).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Writes `config` to `path` when the file's bytes differ (through a temporary file and a
/// rename, so the device plugin never reads half a file); true when it wrote.
pub fn write_if_changed(path: &Path, config: &DevicePluginConfig) -> io::Result<bool> {
    let bytes = render(config);
    if std::fs::read(path).is_ok_and(|current| current == bytes) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = sibling(path, ".tmp");
    std::fs::write(&temporary, &bytes)?;
    std::fs::rename(&temporary, path)?;
    Ok(true)
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The marker recording which content the device plugin was last restarted for.
pub fn marker(path: &Path) -> PathBuf {
    sibling(path, ".restarted")
}

fn digest(bytes: &[u8]) -> String {
    format!("{:016x}\n", stable_hash(&String::from_utf8_lossy(bytes)))
}

/// True when the config file exists and the device plugin has not been restarted since it
/// got its current content.
pub fn needs_restart(path: &Path) -> bool {
    let Ok(content) = std::fs::read(path) else {
        return false;
    };
    std::fs::read_to_string(marker(path)).ok() != Some(digest(&content))
}

/// Records that the device plugin was restarted for the file's current content.
pub fn mark_restarted(path: &Path) -> io::Result<()> {
    let content = std::fs::read(path)?;
    std::fs::write(marker(path), digest(&content))
}

/// Deletes the device-plugin pods on `node` (and only there), so their DaemonSet starts them
/// again with the new file.
pub async fn restart(pods: &Api<Pod>, selector: &str, node: &str) -> Result<(), kube::Error> {
    let params = ListParams::default()
        .labels(selector)
        .fields(&format!("spec.nodeName={node}"));
    pods.delete_collection(&DeleteParams::default(), &params)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::device_plugin::{ResourceConfig, Selectors};

    fn config(range: &str) -> DevicePluginConfig {
        DevicePluginConfig {
            resource_list: vec![ResourceConfig {
                resource_name: "telco_fast_p0".into(),
                resource_prefix: Some("bondnet.io".into()),
                selectors: Selectors {
                    pf_names: vec![format!("ens1f0#{range}").parse().expect("valid")],
                    ..Selectors::default()
                },
            }],
        }
    }

    #[test]
    fn the_file_is_written_only_when_its_content_changes_and_a_restart_is_owed_until_marked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dp/config.json");
        assert!(!needs_restart(&path), "no file, nothing to restart for");
        assert!(write_if_changed(&path, &config("0-3")).expect("write"));
        let written: DevicePluginConfig =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("JSON");
        assert_eq!(written, config("0-3"));
        assert!(needs_restart(&path));
        mark_restarted(&path).expect("mark");
        assert!(!needs_restart(&path));

        assert!(!write_if_changed(&path, &config("0-3")).expect("same"));
        assert!(!needs_restart(&path), "unchanged pools restart nothing");

        assert!(write_if_changed(&path, &config("4-7")).expect("changed"));
        assert!(needs_restart(&path), "changed pools owe a restart");
        assert!(!sibling(&path, ".tmp").exists());
    }
}
