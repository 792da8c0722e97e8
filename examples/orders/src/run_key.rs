//! The masking key of a run that was given none: drawn at random, so the
//! pipeline runs (its e-mail hashes then hold for this run only).

use anyhow::Context;

/// `None` if [`PII_KEY_ENV`](eddy_orders::PII_KEY_ENV) is set; else a key
/// of 32 random bytes (64 hex digits), with a note on stderr.
pub fn drawn_unless_set(program: &str) -> anyhow::Result<Option<String>> {
    if std::env::var_os(eddy_orders::PII_KEY_ENV).is_some() {
        return Ok(None);
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).context("drawing a masking key")?;
    eprintln!(
        "{program}: e-mail addresses are hashed with a key drawn for this run; set {} to keep their hashes across runs",
        eddy_orders::PII_KEY_ENV
    );
    Ok(Some(key.iter().map(|b| format!("{b:02x}")).collect()))
}
