//! The `eddy` command line: eddy's commands with the built-in operators
//! only (no custom processors registered).

fn main() -> std::process::ExitCode {
    eddy::cli::main("eddy", eddy::config::Registry::new())
}
