//! Network namespaces: open one by path, and run a short piece of code (opening a netlink
//! socket) inside one.
//!
//! Only the calling thread enters the namespace, and it comes straight back: a netlink
//! socket stays bound to the namespace it was created in, so one entry per call is enough,
//! however many requests follow. No thread is started for it.

use std::fs::File;
use std::io;

use nix::sched::{setns, CloneFlags};

/// The namespace this process runs in.
pub const SELF_NETNS: &str = "/proc/self/ns/net";

/// The namespace the calling thread runs in (the one to come back to).
pub const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Open a network namespace by path (a bind mount such as /var/run/netns/x, or
/// /proc/PID/ns/net). ENOENT means the namespace is gone.
pub fn open(path: &str) -> io::Result<File> {
    File::open(path)
}

/// Run `f` with the calling thread in `ns`, then return the thread to `back` (its own
/// namespace, opened before). EINVAL from entering means `ns` is not a network namespace.
/// Failing to come back is an error even when `f` succeeded: nothing else may then run in
/// the wrong namespace by mistake, so the caller must fail the call.
pub fn in_netns<T>(ns: &File, back: &File, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let out = f();
    setns(back, CloneFlags::CLONE_NEWNET).map_err(|e| {
        io::Error::other(format!(
            "could not return to this thread's own netns after opening a socket in the pod's: {e}"
        ))
    })?;
    out
}
