//! Logging: stdout is the CNI protocol, so logs go to `logFile` or stderr, never stdout.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing::Level;

pub fn parse_level(text: &str) -> Option<Level> {
    match text.to_ascii_lowercase().as_str() {
        "error" | "panic" => Some(Level::ERROR),
        "warn" | "warning" => Some(Level::WARN),
        "info" => Some(Level::INFO),
        "debug" | "verbose" => Some(Level::DEBUG),
        "trace" => Some(Level::TRACE),
        _ => None,
    }
}

/// Start logging at `level` (warn by default) to `file` (appended) or stderr. A `file` that
/// breaks the config's path rules is never opened (the config check then refuses it).
pub fn init(level: Option<&str>, file: Option<&str>) {
    let level = level.and_then(parse_level).unwrap_or(Level::WARN);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    let opened = open_file(file);
    let _ = match opened {
        Some(f) => builder.with_writer(Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Open (create, append to) the log file, unless it breaks the config's path rules.
pub fn open_file(file: Option<&str>) -> Option<std::fs::File> {
    let file = file.filter(|f| crate::names::config_path(f).is_ok())?;
    OpenOptions::new().create(true).append(true).open(file).ok()
}
