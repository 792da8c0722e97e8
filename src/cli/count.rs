//! `eddy count`: counts records per key into a changelogged store and
//! writes each new count (queryable at `/stores/<store>/<key>`); the minimal
//! stateful worker for restore and failure tests.

use std::path::PathBuf;

use crate::runtime::KafkaStreams;
use crate::serde::{I64Serde, Nullable, StringSerde};
use crate::topology::StreamsBuilder;

use super::{CliError, WorkerArgs};

/// Arguments of `count`.
#[derive(clap::Args)]
pub struct CountArgs {
    /// Application id (consumer group).
    #[arg(long, default_value = "eddy-count")]
    app_id: String,
    /// Topic to read (UTF-8 keys).
    #[arg(long)]
    input: String,
    /// Topic to write the counts to (8-byte big-endian values).
    #[arg(long)]
    output: String,
    /// Name of the count store.
    #[arg(long, default_value = "counts")]
    store: String,
    /// Where the stores live.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    worker: WorkerArgs,
}

pub(super) fn run(args: CountArgs) -> Result<(), CliError> {
    let builder = StreamsBuilder::new();
    builder
        .stream(&args.input, StringSerde, Nullable(StringSerde))
        .group_by_key(StringSerde, Nullable(StringSerde))
        .count(&args.store)
        .to_stream()
        .to(&args.output, StringSerde, Nullable(I64Serde));
    let mut config = args.worker.config(&args.app_id);
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    let running = KafkaStreams::new(builder.build()?, config)
        .queryable_store(&args.store, I64Serde)
        .start()?;
    running.run_until_signal()?;
    Ok(())
}
