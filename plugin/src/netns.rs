//! Network namespaces: open one by path, and open a netlink socket that lives in it.
//!
//! The socket is created by a short-lived thread that enters the namespace, so no thread of
//! the runtime ever switches namespace: a netlink socket stays bound to the namespace it was
//! created in, and the thread ends right after.

use std::fs::File;
use std::io;

use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, TokioSocket};
use nix::sched::{setns, CloneFlags};

/// The namespace this process runs in.
pub const SELF_NETNS: &str = "/proc/self/ns/net";

/// Open a network namespace by path (a bind mount such as /var/run/netns/x, or
/// /proc/PID/ns/net). ENOENT means the namespace is gone.
pub fn open(path: &str) -> io::Result<File> {
    File::open(path)
}

/// A netlink route socket created inside `ns`, registered with the tokio runtime `rt`.
pub fn route_socket_in(ns: &File, rt: &tokio::runtime::Handle) -> io::Result<TokioSocket> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // EINVAL here means the path is not a network namespace.
                setns(ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                let _guard = rt.enter();
                TokioSocket::new(NETLINK_ROUTE)
            })
            .join()
            .map_err(|_| io::Error::other("the namespace thread panicked"))?
    })
}
