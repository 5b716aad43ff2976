//! The `bond` CNI plugin binary: read the environment and stdin, run, print, exit.

use std::io::{Read, Write};
use std::process::ExitCode;

/// dlmalloc, not the C library's allocator: the shipped binary is static musl
/// (scripts/build-bond.sh), and musl's allocator returns memory to the kernel eagerly, which
/// made decoding one netlink dump three times slower under qemu TCG than with glibc's.
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    // A runtime that gives no stdin (VERSION) leaves it empty; that is not an error here.
    let _ = std::io::stdin().read_to_end(&mut stdin);
    // A bug must still reach the runtime as CNI error JSON, never as a bare panic message.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("bond: internal error: {info}");
    }));
    let (out, code) =
        std::panic::catch_unwind(|| bond_cni::run::main_with(|k| std::env::var(k).ok(), &stdin))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let json = serde_json::json!({
                    "cniVersion": "1.1.0",
                    "code": bond_cni::cni::error::Code::Internal.number(),
                    "msg": "the bond plugin hit an internal error; please report it",
                    "details": what,
                });
                (json.to_string(), 1)
            });
    if !out.is_empty() {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{out}");
        let _ = stdout.flush();
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
