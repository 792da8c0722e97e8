//! The arguments that name an application by its topology file and the
//! cluster it runs on, shared by the commands that read or act on its
//! group: `lag`, `acls`, `autoscale`.

use std::path::PathBuf;

use crate::config::{Overrides, Pipeline, Registry};
use crate::kafka::StreamsConfig;

use super::CliError;

/// `--config`, `--brokers`, `--suffix`.
#[derive(clap::Args)]
pub(super) struct AppFile {
    /// The application's topology file.
    #[arg(long)]
    pub(super) config: PathBuf,
    /// Kafka bootstrap servers, overriding the file's `application.brokers`.
    #[arg(long, env = "EDDY_BOOTSTRAP_SERVERS")]
    pub(super) brokers: Option<String>,
    /// The suffix the application runs with (`eddy run --suffix`).
    #[arg(long)]
    pub(super) suffix: Option<String>,
}

impl AppFile {
    /// The file, loaded with the suffix; without `read_secrets`, the
    /// secrets it names are not read.
    pub(super) fn load(
        &self,
        registry: &Registry,
        read_secrets: bool,
    ) -> Result<Pipeline, CliError> {
        let overrides = Overrides {
            suffix: self.suffix.clone(),
            skip_secrets: !read_secrets,
            ..Overrides::default()
        };
        Ok(Pipeline::load_with(&self.config, registry, &overrides)?)
    }

    /// `--brokers`, else the file's `application.brokers`.
    pub(super) fn servers(&self, config: &StreamsConfig) -> Option<String> {
        self.brokers
            .clone()
            .or_else(|| config.bootstrap_servers.clone())
    }

    /// The file and the real cluster it runs on: what `command` reads the
    /// group's offsets from.
    pub(super) fn load_on_cluster(
        &self,
        registry: &Registry,
        command: &str,
    ) -> Result<(Pipeline, String), CliError> {
        let pipeline = self.load(registry, true)?;
        let Some(servers) = self.servers(&pipeline.config) else {
            return Err(CliError::Usage(format!(
                "eddy {command} reads a real cluster's offsets: give --brokers (or application.brokers)"
            )));
        };
        Ok((pipeline, servers))
    }
}
