//! One lock per host link, so concurrent ADDs and DELs (Multus starts many pods at once)
//! never take the same host link at the same time. flock(2) locks die with the process, so
//! a crashed call never leaves a link locked.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// How long a call waits for another call holding the same link.
pub const WAIT: Duration = Duration::from_secs(30);

/// Held locks; released when dropped (the file closes).
#[derive(Debug)]
pub struct LinkLocks {
    _held: Vec<Flock<File>>,
}

/// Lock every named link, in sorted order so two calls cannot deadlock.
pub fn acquire(dir: &str, names: &[String], wait: Duration) -> Result<LinkLocks> {
    let _step = crate::trace::step("lock host links");
    fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("create the lock directory {dir}"), e))?;
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut held = Vec::new();
    for name in sorted {
        let path = Path::new(dir).join(format!("{name}.lock"));
        let deadline = Instant::now() + wait;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("open the lock file {}", path.display()), e))?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    held.push(lock);
                    break;
                }
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(Error::Locked {
                        name: name.clone(),
                        lock: path.display().to_string(),
                    })
                }
                Err((_, errno)) => {
                    return Err(Error::io(
                        format!("lock {}", path.display()),
                        std::io::Error::from(errno),
                    ))
                }
            }
        }
    }
    Ok(LinkLocks { _held: held })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_link_makes_the_second_caller_try_again_later() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("utf8");
        let names = vec!["eth1".to_string(), "eth0".to_string()];
        let first = acquire(d, &names, WAIT).expect("first");
        let err = acquire(d, &["eth1".to_string()], Duration::from_millis(50)).expect_err("held");
        assert_eq!(err.code(), crate::cni::error::Code::TryAgainLater);
        assert!(err.to_string().contains("eth1"), "{err}");
        drop(first);
        acquire(d, &names, Duration::from_millis(50)).expect("released");
    }
}
