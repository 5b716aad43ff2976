//! The rules for every untrusted value that becomes a kernel link name or part of a file
//! path: container IDs (`CNI_CONTAINERID`), interface names (`CNI_IFNAME`, `links[].name`)
//! and the config's directories and files (`stateDir`, `lockDir`, `logFile`). Callers check
//! them before any file or link is touched; each rule returns the sentence that says why a
//! value is refused, and the caller names the variable or field.

use std::path::{Component, Path};

/// The longest interface name the kernel takes: IFNAMSIZ (16) less the terminating NUL.
pub const IFNAME_MAX: usize = 15;

/// The longest container ID: it becomes part of the state file's name,
/// `CONTAINERID@IFNAME.json.tmp`, which must fit the file system's 255-byte name limit.
pub const CONTAINER_ID_MAX: usize = 255 - "@".len() - IFNAME_MAX - ".json.tmp".len();

/// The longest path the kernel takes (PATH_MAX, 4096, less the terminating NUL).
pub const PATH_MAX: usize = 4095;

/// The CNI spec's container ID: an alphanumeric character, then alphanumerics, '_', '.'
/// and '-' (ASCII only), here also at most [`CONTAINER_ID_MAX`] bytes.
pub fn container_id(id: &str) -> Result<(), String> {
    let ok_first = id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    let ok_rest = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok_first || !ok_rest {
        return Err(format!(
            "{id:?} is not a valid container ID: it must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"
        ));
    }
    if id.len() > CONTAINER_ID_MAX {
        return Err(format!(
            "is {} bytes long; a container ID may have at most {CONTAINER_ID_MAX} (it becomes part of a file name)",
            id.len()
        ));
    }
    Ok(())
}

/// The kernel's interface-name rule (`dev_valid_name` in net/core/dev.c): 1 to 15 bytes,
/// not "." or "..", and no '/', ':' or byte the kernel's `isspace` matches (tab, newline,
/// vertical tab, form feed, carriage return, space, and 0xA0, which also sits inside many
/// UTF-8 characters such as "à"). A NUL byte is refused too: the kernel would cut the
/// name there.
pub fn ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(format!(
            "{name:?} is not a valid interface name: it must be 1 to {IFNAME_MAX} bytes (it has {})",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a valid interface name: \".\" and \"..\" are reserved"
        ));
    }
    if let Some(b) = name.bytes().find(|b| {
        matches!(
            b,
            b'/' | b':' | 0 | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0xa0
        )
    }) {
        return Err(format!(
            "{name:?} is not a valid interface name: the kernel refuses the byte {b:#04x} in it (no '/', ':', NUL or white space)"
        ));
    }
    Ok(())
}

/// A path from the config that the plugin creates or writes: absolute (a relative one would
/// depend on the runtime's working directory), without ".." components (so it cannot climb
/// out of the directory it names), without NUL bytes, and at most [`PATH_MAX`] bytes.
pub fn config_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("is empty; give an absolute path, or omit it for the default".into());
    }
    if path.len() > PATH_MAX {
        return Err(format!(
            "is {} bytes long; a path may have at most {PATH_MAX}",
            path.len()
        ));
    }
    if path.contains('\0') {
        return Err(format!(
            "{path:?} holds a NUL byte; give a plain absolute path"
        ));
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!(
            "{path:?} is not an absolute path; give one starting with '/'"
        ));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "{path:?} has a \"..\" component; give the path without it"
        ));
    }
    Ok(())
}

/// Check `stateDir`, `lockDir` and `logFile`, when given; the error names the field.
pub fn check_config_paths(
    state_dir: Option<&str>,
    lock_dir: Option<&str>,
    log_file: Option<&str>,
) -> crate::Result<()> {
    for (field, value, is_dir) in [
        ("stateDir", state_dir, true),
        ("lockDir", lock_dir, true),
        ("logFile", log_file, false),
    ] {
        let Some(v) = value else { continue };
        config_path(v).map_err(|why| crate::Error::config(field, why))?;
        if is_dir && Path::new(v).parent().is_none() {
            return Err(crate::Error::config(
                field,
                "is the root directory; give a directory of its own, e.g. /var/lib/cni/bondnet",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_follow_the_cni_spec() {
        for ok in [
            "c1",
            "0123456789abcdef",
            "A.b_c-d",
            "k8s_POD_x.y-1",
            &"a".repeat(CONTAINER_ID_MAX),
        ] {
            container_id(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "../../x",
            "..",
            ".hidden",
            "-x",
            "_x",
            "a/b",
            "a b",
            "a@b",
            "a\0b",
            "é",
            "a\u{660}",
            &"a".repeat(CONTAINER_ID_MAX + 1),
        ] {
            assert!(container_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn interface_names_follow_the_kernels_rule() {
        for ok in [
            "bond0",
            "eth0.100",
            "...",
            "a@b",
            "net-1_x",
            "abcdefghijklmno",
            // U+2000 is white space to Rust but not to the kernel, which takes it.
            "a\u{2000}b",
            "a\u{1}b",
        ] {
            ifname(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\nb",
            "a\u{b}b",
            "a\u{c}b",
            "a\rb",
            "a\0b",
            // U+00A0 and "à" both hold the byte 0xA0, which the kernel's isspace matches.
            "a\u{a0}b",
            "à",
            "abcdefghijklmnop",
            "ééééééééé",
        ] {
            assert!(ifname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn config_paths_are_absolute_and_cannot_climb() {
        for ok in [
            "/var/lib/cni/bondnet",
            "/run/x/./y",
            "/tmp/a..b",
            "/a/.../b",
        ] {
            config_path(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "relative/dir",
            "./x",
            "/var/lib/../../etc",
            "/a/..",
            "/a\0b",
        ] {
            assert!(config_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(config_path(&format!("/{}", "a".repeat(PATH_MAX))).is_err());
    }

    #[test]
    fn config_path_errors_name_the_field() {
        let e = check_config_paths(Some("/ok"), Some("locks"), None).expect_err("relative");
        assert_eq!(
            e.to_string(),
            "invalid config: lockDir: \"locks\" is not an absolute path; give one starting with '/'"
        );
        let e = check_config_paths(None, None, Some("/var/log/../../etc/x")).expect_err("climbs");
        assert!(e.to_string().starts_with("invalid config: logFile:"), "{e}");
        let e = check_config_paths(Some("/"), None, None).expect_err("root");
        assert!(
            e.to_string().contains("stateDir: is the root directory"),
            "{e}"
        );
        check_config_paths(None, None, None).expect("defaults");
    }
}
