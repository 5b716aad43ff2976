//! Atomic install of the `bond` CNI binary into the host's CNI bin dir: a temporary file in
//! the same directory, written, fsynced, made executable, then renamed over the target, so a
//! kubelet running CNI never sees a half-written plugin. An identical file is left alone.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What the install did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The target was missing or different and has been replaced.
    Replaced,
    /// The target already had the same bytes and mode.
    Unchanged,
}

/// An install step that failed, with the path involved.
#[derive(Debug, thiserror::Error)]
#[error("cannot {step} {path}: {source}")]
pub struct InstallError {
    /// What was being done.
    pub step: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

fn fail<'a>(
    step: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |source| InstallError {
        step,
        path: path.to_owned(),
        source,
    }
}

/// Installs `source` as `dir/name` with mode 0755.
pub fn install_binary(source: &Path, dir: &Path, name: &str) -> Result<Installed, InstallError> {
    let bytes = fs::read(source).map_err(fail("read the plugin binary", source))?;
    let target = dir.join(name);
    if let Ok(current) = fs::read(&target) {
        let executable =
            fs::metadata(&target).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o755);
        if current == bytes && executable {
            return Ok(Installed::Unchanged);
        }
    }
    let temp = dir.join(format!(".{name}.bondnet-{}.tmp", std::process::id()));
    let result = write_synced(&temp, &bytes)
        .and_then(|()| {
            fs::rename(&temp, &target).map_err(fail("rename the new plugin onto", &target))
        })
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        // Best effort: never leave a temporary file behind in the CNI bin dir.
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| Installed::Replaced)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .map_err(fail("create", path))?;
    file.write_all(bytes).map_err(fail("write", path))?;
    // The mode given at creation is filtered by the umask; set it outright.
    file.set_permissions(fs::Permissions::from_mode(0o755))
        .map_err(fail("make executable", path))?;
    file.sync_all().map_err(fail("fsync", path))
}

fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("fsync the directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn setup(content: &[u8]) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("bond-source");
        fs::write(&source, content).expect("write source");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).expect("mkdir");
        (dir, source, bin)
    }

    fn leftovers(bin: &Path) -> Vec<String> {
        fs::read_dir(bin)
            .expect("read dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != "bond")
            .collect()
    }

    #[test]
    fn installs_an_executable_copy_and_leaves_no_temporary_file() {
        let (_dir, source, bin) = setup(b"plugin v1");
        assert_eq!(
            install_binary(&source, &bin, "bond").expect("install"),
            Installed::Replaced
        );
        let target = bin.join("bond");
        assert_eq!(fs::read(&target).expect("read"), b"plugin v1");
        assert_eq!(
            fs::metadata(&target).expect("meta").permissions().mode() & 0o777,
            0o755
        );
        assert!(leftovers(&bin).is_empty(), "{:?}", leftovers(&bin));
    }

    #[test]
    fn an_identical_binary_is_not_rewritten() {
        let (_dir, source, bin) = setup(b"plugin v1");
        install_binary(&source, &bin, "bond").expect("install");
        let inode = fs::metadata(bin.join("bond")).expect("meta").ino();
        assert_eq!(
            install_binary(&source, &bin, "bond").expect("again"),
            Installed::Unchanged
        );
        assert_eq!(fs::metadata(bin.join("bond")).expect("meta").ino(), inode);
    }

    #[test]
    fn a_different_binary_is_replaced_by_rename_not_rewritten_in_place() {
        let (_dir, source, bin) = setup(b"plugin v1");
        install_binary(&source, &bin, "bond").expect("install");
        let before = fs::metadata(bin.join("bond")).expect("meta").ino();
        fs::write(&source, b"plugin v2").expect("new source");
        assert_eq!(
            install_binary(&source, &bin, "bond").expect("update"),
            Installed::Replaced
        );
        assert_eq!(fs::read(bin.join("bond")).expect("read"), b"plugin v2");
        assert_ne!(fs::metadata(bin.join("bond")).expect("meta").ino(), before);
        assert!(leftovers(&bin).is_empty());
    }

    #[test]
    fn a_same_content_file_without_exec_bit_is_fixed() {
        let (_dir, source, bin) = setup(b"plugin v1");
        fs::write(bin.join("bond"), b"plugin v1").expect("write");
        fs::set_permissions(bin.join("bond"), fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(
            install_binary(&source, &bin, "bond").expect("install"),
            Installed::Replaced
        );
        assert_eq!(
            fs::metadata(bin.join("bond"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
    }

    #[test]
    fn a_missing_source_names_the_path() {
        let (_dir, _source, bin) = setup(b"");
        let err =
            install_binary(Path::new("/nonexistent/bond"), &bin, "bond").expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot read the plugin binary /nonexistent/bond: "),
            "{err}"
        );
    }

    #[test]
    fn a_missing_bin_dir_fails_naming_it_and_leaves_nothing() {
        let (dir, source, _bin) = setup(b"plugin");
        let missing = dir.path().join("no-such-dir");
        let err = install_binary(&source, &missing, "bond").expect_err("no dir");
        assert!(err.to_string().contains("no-such-dir"), "{err}");
        assert!(!missing.exists());
    }
}
