//! Topology files: a TOML description of an application (its settings,
//! topics with their JSON Schemas, and the operator graph) compiled into the
//! same [`Topology`] the Rust builder makes.
//!
//! ```toml
//! [application]
//! id = "hot-rooms"
//!
//! [topics.readings]
//! timestamp_field = "measured_at"
//!
//! [topics.hot-rooms]
//!
//! [nodes.in]
//! op = "source"
//! topic = "readings"
//!
//! [nodes.big]
//! op = "filter"
//! input = "in"
//! expr = "sum(value.sensors.map(s, s.celsius)) > 100"
//!
//! [nodes.out]
//! op = "sink"
//! input = "big"
//! topic = "hot-rooms"
//! ```
//!
//! Expressions are [CEL](https://cel.dev) over `key`, `value` and
//! `timestamp` (and per operator `item`, `index`, `left`, `right`, `agg`,
//! `event`, `events`, `state`, ...), plus `vars` from the `[vars]` table, and
//! the helpers `sum(list)` and `hash_unit(string)`.

mod bind;
mod compile;
mod cost;
mod direct;
mod expr;
mod gather;
mod model;
mod ops;
mod read;
mod registry;
mod scan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::kafka::{Secret, StreamsConfig};
use crate::runtime::KafkaStreams;
use crate::serde::CompactValueSerde;
use crate::topology::Topology;

pub use bind::Bind;
pub use cost::Budget;
pub use expr::{Expr, Scope};
pub use model::File;
pub use read::{read_text, ReadError, MAX_FILE_BYTES};
pub use registry::{CustomProcessor, Factory, JsonProcessor, Registry};

/// A topology file that cannot be used: which file, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {field}: {reason}", file.display())]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The field path, e.g. `nodes.big.expr` (empty for the whole file).
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

/// A loaded topology file: the topology, the worker settings, and the
/// queryable stores it declares.
pub struct Pipeline {
    /// The file it came from.
    pub file: PathBuf,
    /// The compiled topology.
    pub topology: Topology,
    /// Worker settings from `[application]`.
    pub config: StreamsConfig,
    /// Kafka names of the topics declared under `[topics]`.
    pub topics: Vec<String>,
    /// `(store, route)` of each read model, served as `GET <route>/{key}`
    /// when a route is given.
    pub queryable: Vec<(String, Option<String>)>,
}

impl Pipeline {
    /// Reads and compiles `path`, with processors from `registry`.
    pub fn load(path: &Path, registry: &Registry) -> Result<Pipeline, ConfigError> {
        Self::load_with(path, registry, &Overrides::default())
    }

    /// Like [`load`](Self::load), with `overrides` applied to the file.
    pub fn load_with(
        path: &Path,
        registry: &Registry,
        overrides: &Overrides,
    ) -> Result<Pipeline, ConfigError> {
        let text = read::read_text(path, read::MAX_FILE_BYTES).map_err(|e| ConfigError {
            file: path.to_owned(),
            field: String::new(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Self::parse_with(&text, path, registry, overrides)
    }

    /// Compiles `text` as if read from `path` (schemas are found relative to
    /// its folder).
    pub fn parse(text: &str, path: &Path, registry: &Registry) -> Result<Pipeline, ConfigError> {
        Self::parse_with(text, path, registry, &Overrides::default())
    }

    /// Like [`parse`](Self::parse), with `overrides` applied.
    pub fn parse_with(
        text: &str,
        path: &Path,
        registry: &Registry,
        overrides: &Overrides,
    ) -> Result<Pipeline, ConfigError> {
        let error = |field: String, reason: String| ConfigError {
            file: path.to_owned(),
            field,
            reason,
        };
        let de =
            toml::Deserializer::parse(text).map_err(|e| error(String::new(), syntax(&e, text)))?;
        let mut file: File = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            error(field, syntax(e.inner(), text))
        })?;
        overrides.apply(&mut file);
        let base = path.parent().unwrap_or(Path::new("."));
        let secrets = compile::Secrets {
            base,
            read: !overrides.skip_secrets,
            given: &overrides.env_secrets,
        };
        compile::compile(&file, registry, secrets)
            .map_err(|(field, reason)| error(field, reason))
            .map(|(topology, config, topics, queryable)| Pipeline {
                file: path.to_owned(),
                topology,
                config,
                topics,
                queryable,
            })
    }

    /// A worker for this pipeline, serving its read models.
    pub fn into_streams(self) -> KafkaStreams {
        let mut streams = KafkaStreams::new(self.topology, self.config);
        for (store, route) in &self.queryable {
            // Stores of JSON values hold JSON text or (saga summaries) the
            // compact form: this serde reads both.
            streams = streams.queryable_store(store, CompactValueSerde);
            if let Some(route) = route {
                streams = streams.query_route(route, store);
            }
        }
        streams
    }
}

/// Changes applied to a file as it is loaded.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replace entries of `[vars]` (for example a rate set on the command
    /// line).
    pub vars: toml::Table,
    /// Appended (after a `-`) to the application id, to the Kafka name of
    /// every declared topic and to the upstream applications named, so that
    /// several isolated copies of a pipeline share one cluster (tests,
    /// benchmarks, repeated demo runs).
    pub suffix: Option<String>,
    /// Loads without reading the secrets `[kafka]` names (their variables
    /// or files need not exist): for commands that only read what the file
    /// describes, such as `eddy acls`. Such a pipeline cannot connect.
    pub skip_secrets: bool,
    /// Secrets the program gives for environment variables that the file's
    /// `*_env` settings name, in place of the process's environment: a key
    /// the program generated or got from a vault.
    pub env_secrets: BTreeMap<String, Secret>,
}

impl Overrides {
    fn apply(&self, file: &mut File) {
        file.vars
            .extend(self.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(suffix) = &self.suffix {
            file.application.id = format!("{}-{suffix}", file.application.id);
            for (name, topic) in &mut file.topics {
                let kafka = topic.name.take().unwrap_or_else(|| name.clone());
                topic.name = Some(format!("{kafka}-{suffix}"));
                for group in &mut topic.upstream {
                    *group = format!("{group}-{suffix}");
                }
            }
        }
    }
}

/// A TOML or serde error as one line, with its line and column when known.
fn syntax(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message,
    }
}
