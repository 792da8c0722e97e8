//! An application with a processor of its own gets eddy's `validate`,
//! `describe` and `run` in its own binary through `eddy::cli`: here the
//! application is this test binary, which runs as the application's
//! `main` when `SHOUTER_ARGS` is set (the test re-executes itself as a
//! worker process), and as the test otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use eddy::cli::{CliError, LogArgs};
use eddy::config::{CustomProcessor, JsonProcessor, Registry};
use eddy::processor::{Processor, ProcessorContext, Record};
use serde_json::{json, Value};

/// The application's processor: upper-cases the `text` of each value.
struct Shout;

impl Processor<String, Value, String, Value> for Shout {
    fn process(&mut self, r: Record<String, Value>, ctx: &mut ProcessorContext<'_, String, Value>) {
        let text = r.value["text"].as_str().unwrap_or_default().to_uppercase();
        ctx.forward(Record {
            value: json!({ "text": text }),
            ..r
        });
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register("shout", |_params| {
        Ok(CustomProcessor {
            stores: Vec::new(),
            supplier: Arc::new(|| Box::new(Shout) as JsonProcessor),
        })
    });
    registry
}

/// The application's command line: eddy's commands and one of its own.
#[derive(Parser)]
#[command(name = "shouter")]
struct App {
    #[command(flatten)]
    logs: LogArgs,
    #[command(subcommand)]
    command: AppCommand,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum AppCommand {
    /// Prints the processors this application registers.
    Processors,
    #[command(flatten)]
    Eddy(eddy::cli::Command),
}

impl App {
    fn run(self, registry: &Registry) -> Result<(), CliError> {
        match self.command {
            AppCommand::Processors => {
                println!("{}", registry.names().collect::<Vec<_>>().join(", "));
                Ok(())
            }
            AppCommand::Eddy(command) => command.run(registry),
        }
    }
}

/// The application's `main`, when this binary runs as the worker.
fn app_main(args: &str) -> ExitCode {
    let argv = std::iter::once("shouter").chain(args.split('\u{1f}'));
    let app = App::parse_from(argv);
    app.logs.init("warn");
    eddy::cli::exit("shouter", app.run(&registry()))
}

const FILE: &str = r#"
[application]
id = "shouter"
commit_interval = "300ms"

[topics.words]

[topics.shouted]

[nodes.words]
op = "source"
topic = "words"

[nodes.loud]
op = "processor"
input = "words"
processor = "shout"

[nodes.out]
op = "sink"
input = "loud"
topic = "shouted"
"#;

fn topology_file(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("shouter.toml");
    std::fs::write(&file, FILE).unwrap();
    file
}

fn parse(args: &[&str]) -> App {
    App::try_parse_from(std::iter::once("shouter").chain(args.iter().copied())).unwrap()
}

#[test]
fn an_application_runs_its_own_processor_through_eddys_commands() {
    if let Ok(args) = std::env::var("SHOUTER_ARGS") {
        std::process::exit(if app_main(&args) == ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
    let dir = std::env::temp_dir().join(common::unique("shouter"));
    let file = topology_file(&dir);
    let path = file.to_str().unwrap();

    // validate and describe know the application's processor; eddy's own
    // registry does not.
    parse(&["validate", path]).run(&registry()).unwrap();
    parse(&["describe", path]).run(&registry()).unwrap();
    parse(&["processors"]).run(&registry()).unwrap();
    let refused = parse(&["validate", path])
        .run(&Registry::new())
        .unwrap_err();
    assert_eq!(refused.to_string(), "1 of 1 files refused");
    let refused = parse(&["run", "--config", path])
        .run(&Registry::new())
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!("{path}: nodes.loud.processor: unknown processor \"shout\" (registered: none)")
    );

    // run: the application's binary as a worker process on the cluster.
    let c = common::cluster();
    let u = common::unique("s");
    let (words, shouted) = (format!("words-{u}"), format!("shouted-{u}"));
    for t in [&words, &shouted, &format!("shouter-{u}-dlq")] {
        c.create_topic(t, 2);
    }
    let state = dir.join("state");
    let args = [
        "run",
        "--config",
        path,
        "--brokers",
        &c.bootstrap,
        "--suffix",
        &u,
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut worker = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_application_runs_its_own_processor_through_eddys_commands",
            "--nocapture",
        ])
        .env("SHOUTER_ARGS", args.join("\u{1f}"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    c.produce_at(
        &words,
        &[
            ("a".into(), r#"{"text":"hello"}"#.into(), now),
            ("b".into(), r#"{"text":"eddy"}"#.into(), now),
        ],
    );
    let out = c.consume_count(
        &shouted,
        2,
        Duration::from_secs(60),
        Duration::from_millis(500),
    );
    let mut got: Vec<(String, String)> = out
        .iter()
        .map(|r| {
            (
                String::from_utf8(r.key.clone().unwrap()).unwrap(),
                r.value_str(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("a".to_owned(), r#"{"text":"HELLO"}"#.to_owned()),
            ("b".to_owned(), r#"{"text":"EDDY"}"#.to_owned()),
        ]
    );
    let pid = worker.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = worker.wait().unwrap();
    assert!(
        status.success(),
        "the worker stops cleanly on SIGTERM: {status}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
