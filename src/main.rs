//! The `eddy` command line.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    eddy::observability::init_logging(args.json_logs);
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eddy: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
