//! `eddy join`: an inner stream-stream join of two topics, the minimal
//! join worker for scaling tests.

use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::KafkaStreams;
use crate::serde::StringSerde;
use crate::topology::{JoinKind, JoinWindows, StreamJoined, StreamsBuilder};

use super::{CliError, WorkerArgs};

/// Arguments of `join`.
#[derive(clap::Args)]
pub struct JoinArgs {
    /// Application id (consumer group).
    #[arg(long, default_value = "eddy-join")]
    app_id: String,
    /// Left topic (UTF-8 keys and values).
    #[arg(long)]
    left: String,
    /// Right topic, co-partitioned with the left one.
    #[arg(long)]
    right: String,
    /// Topic for `left+right` results.
    #[arg(long)]
    output: String,
    /// Records at most this far apart join.
    #[arg(long, default_value_t = 3_600_000)]
    window_ms: u64,
    /// Where the join buffers live.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    worker: WorkerArgs,
}

pub(super) fn run(args: JoinArgs) -> Result<(), CliError> {
    let b = StreamsBuilder::new();
    let left = b.stream(&args.left, StringSerde, StringSerde);
    let right = b.stream(&args.right, StringSerde, StringSerde);
    let window = Duration::from_millis(args.window_ms);
    left.join_stream(
        &right,
        JoinKind::Inner,
        JoinWindows::of(window, window),
        |l: Option<&String>, r: Option<&String>| {
            format!("{}+{}", l.map_or("", |v| v), r.map_or("", |v| v))
        },
        StreamJoined::with("join", StringSerde, StringSerde, StringSerde),
    )
    .to(&args.output, StringSerde, StringSerde);
    let mut config = args.worker.config(&args.app_id);
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    KafkaStreams::new(b.build()?, config)
        .start()?
        .run_until_signal()?;
    Ok(())
}
