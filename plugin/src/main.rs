//! The `bond` CNI plugin binary: read the environment and stdin, run, print, exit.

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    // A runtime that gives no stdin (VERSION) leaves it empty; that is not an error here.
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let (out, code) = bond_cni::run::main_with(|k| std::env::var(k).ok(), &stdin);
    if !out.is_empty() {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{out}");
        let _ = stdout.flush();
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
