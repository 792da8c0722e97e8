//! `eddy pipe`: upper-case values from one topic into another.

use crate::runtime::KafkaStreams;
use crate::serde::{Nullable, StringSerde};
use crate::topology::StreamsBuilder;

use super::{CliError, WorkerArgs};

/// Arguments of `pipe`.
#[derive(clap::Args)]
pub struct PipeArgs {
    /// Application id (consumer group).
    #[arg(long, default_value = "eddy-pipe")]
    app_id: String,
    /// Topic to read.
    #[arg(long)]
    input: String,
    /// Topic to write.
    #[arg(long)]
    output: String,
    #[command(flatten)]
    worker: WorkerArgs,
}

pub(super) fn run(args: PipeArgs) -> Result<(), CliError> {
    let builder = StreamsBuilder::new();
    builder
        .stream(&args.input, Nullable(StringSerde), StringSerde)
        .map_values(|v: String| v.to_uppercase())
        .to(&args.output, Nullable(StringSerde), StringSerde);
    let config = args.worker.config(&args.app_id);
    let running = KafkaStreams::new(builder.build()?, config).start()?;
    running.run_until_signal()?;
    Ok(())
}
