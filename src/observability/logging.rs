//! `tracing` set-up: human-readable logs by default, JSON on request.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs a global subscriber writing to stderr, filtered by `RUST_LOG`,
/// else by `default_filter` (such as `"info"` or `"warn"`). Does nothing if
/// one is already installed. Colours only on a terminal.
pub fn init_logging(json: bool, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
