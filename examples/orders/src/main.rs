//! `eddy-orders`: eddy's command line with the order pipeline's processors
//! registered, plus `demo` (the pipeline end to end), `gen` (load), `chaos`,
//! and the simulated services the pipeline calls (`gateway`, `webhook`).

mod chaos;
mod demo;
mod gen;
mod run_key;
mod simulators;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The order pipeline on eddy: its demo, its load generator, and eddy's
/// commands for its topology files.
#[derive(Parser)]
#[command(name = "eddy-orders", version, about)]
struct Cli {
    #[command(flatten)]
    logs: eddy::cli::LogArgs,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Runs the order pipeline on the embedded cluster (or `--brokers`):
    /// generates orders, processes them, and prints a summary.
    Demo(demo::DemoArgs),
    /// Produces generated events (`orders`: `order_created`) at a rate, to
    /// any cluster, for load tests.
    Gen(gen::GenArgs),
    /// Runs the three services as worker processes on a real cluster under
    /// load while killing, freezing and restarting workers and a broker,
    /// then checks every output (exactly one outcome per order, exact
    /// compensations and stock, no duplicates).
    Chaos(chaos::ChaosArgs),
    /// Serves the payment gateway simulator the payment service calls.
    Gateway(simulators::GatewayArgs),
    /// Serves the webhook receiver the notification service delivers to.
    Webhook(simulators::WebhookArgs),
    #[command(flatten)]
    Eddy(eddy::cli::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => {
            // The live status line stays readable: INFO only on request.
            cli.logs.init(if args.verbose { "info" } else { "warn" });
            demo::run(args)
        }
        Command::Gen(args) => {
            cli.logs.init("info");
            gen::run(args)
        }
        Command::Chaos(args) => {
            cli.logs.init("warn");
            chaos::run(args)
        }
        Command::Gateway(args) => {
            cli.logs.init("info");
            simulators::gateway(args)
        }
        Command::Webhook(args) => {
            cli.logs.init("info");
            simulators::webhook(args)
        }
        Command::Eddy(command) => {
            cli.logs.init("info");
            command
                .run(&eddy_orders::registry())
                .map_err(anyhow::Error::from)
        }
    };
    eddy::cli::exit("eddy-orders", result)
}
