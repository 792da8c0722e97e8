//! Topology files that point eddy at files it must not read (devices,
//! FIFOs, directories, huge files, external schema references), and bad
//! `[expressions]` budgets: each refused at once, naming the file, the
//! field and the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy::config::{Pipeline, Registry};

/// A scratch folder of this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eddy-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn with_schema(schema: &str) -> String {
    format!(
        r#"
[application]
id = "app"

[topics.in]
schema = "{schema}"

[nodes.src]
op = "source"
topic = "in"
"#
    )
}

/// Loads `text` written to `dir/app.toml`; the error as `field: reason`.
fn refusal(dir: &Path, text: &str) -> String {
    let file = dir.join("app.toml");
    std::fs::write(&file, text).unwrap();
    match Pipeline::load(&file, &Registry::new()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            assert_eq!(e.file, file);
            format!("{}: {}", e.field, e.reason)
        }
    }
}

/// Runs `eddy` with a deadline: (success, stderr, time taken).
fn eddy(args: &[&str]) -> (bool, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            return (status.success(), stderr, started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("eddy {args:?} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn validate_refuses_a_dev_zero_schema_at_once() {
    let dir = scratch("zero");
    let file = dir.join("app.toml");
    std::fs::write(&file, with_schema("/dev/zero")).unwrap();
    let (ok, stderr, took) = eddy(&["validate", file.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(
        stderr,
        format!(
            "{}: topics.in.schema: cannot read /dev/zero: it is a character device, not a regular file\neddy: error: 1 of 1 files refused\n",
            file.display()
        )
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The topology file itself, likewise.
    let (ok, stderr, _) = eddy(&["validate", "/dev/zero"]);
    assert!(!ok);
    assert_eq!(
        stderr,
        "/dev/zero: : cannot read the file: it is a character device, not a regular file\neddy: error: 1 of 1 files refused\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn schemas_that_are_not_regular_files_or_too_large_are_refused() {
    let dir = scratch("kinds");
    std::fs::create_dir(dir.join("folder")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.json")).unwrap();
    let fifo = dir.join("pipe.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // Sparse: 5 MiB on paper, nothing on disk.
    std::fs::File::create(dir.join("huge.json"))
        .unwrap()
        .set_len(5 << 20)
        .unwrap();
    std::fs::write(dir.join("binary.json"), b"{\"a\": \"\xff\"}").unwrap();
    let d = dir.display();
    for (schema, want) in [
        (
            "folder",
            format!("topics.in.schema: cannot read {d}/folder: it is a directory, not a regular file"),
        ),
        (
            "zero.json",
            format!("topics.in.schema: cannot read {d}/zero.json: it is a character device, not a regular file"),
        ),
        (
            "pipe.json",
            format!("topics.in.schema: cannot read {d}/pipe.json: it is a FIFO, not a regular file"),
        ),
        (
            "huge.json",
            format!("topics.in.schema: cannot read {d}/huge.json: it is larger than 4 MiB, the most eddy reads"),
        ),
        (
            "binary.json",
            format!("topics.in.schema: cannot read {d}/binary.json: it is not UTF-8 text (invalid byte at offset 7)"),
        ),
        (
            "missing.json",
            format!("topics.in.schema: cannot read {d}/missing.json: No such file or directory (os error 2)"),
        ),
    ] {
        let started = Instant::now();
        assert_eq!(refusal(&dir, &with_schema(schema)), want);
        assert!(started.elapsed() < Duration::from_secs(5), "{schema}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_schema_is_not_followed_to_other_files_or_the_network() {
    let dir = scratch("refs");
    for (name, reference) in [
        ("file.json", "file:///dev/zero"),
        ("http.json", "http://127.0.0.1:1/schema.json"),
    ] {
        std::fs::write(
            dir.join(name),
            format!(r#"{{"type": "object", "properties": {{"a": {{"$ref": "{reference}"}}}}}}"#),
        )
        .unwrap();
        let started = Instant::now();
        assert_eq!(
            refusal(&dir, &with_schema(name)),
            format!(
                "topics.in.schema: {}/{name} is not a valid JSON Schema: Resource '{reference}' is not present in a registry and retrieving it failed: eddy does not fetch schemas: a $ref must point into the same file (for example \"#/$defs/item\")",
                dir.display()
            )
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_expression_budgets_are_refused() {
    let dir = scratch("budgets");
    let head =
        "[application]\nid = \"app\"\n[topics.in]\n[nodes.src]\nop = \"source\"\ntopic = \"in\"\n";
    for (section, want) in [
        ("max_steps = 0", "expressions.max_steps: must be at least 1"),
        ("timeout = \"0s\"", "expressions.timeout: must be more than 0"),
        (
            "timeout = \"soon\"",
            "expressions.timeout: bad duration \"soon\": expected number at 0",
        ),
        (
            "max_steps = -1",
            "expressions.max_steps: invalid value: integer `-1`, expected u64 (line 8, column 13)",
        ),
        (
            "max_step = 10",
            "expressions.max_step: unknown field `max_step`, expected one of `max_nesting`, `max_steps`, `timeout` (line 8, column 1)",
        ),
    ] {
        let text = format!("{head}[expressions]\n{section}\n");
        assert_eq!(refusal(&dir, &text), want, "{section}");
    }
    // A filter that nests deeper than the file allows.
    let text = format!(
        "{head}[expressions]\nmax_nesting = 1\n[nodes.f]\nop = \"filter\"\ninput = \"src\"\nexpr = \"value.a.exists(x, value.b.exists(y, x == y))\"\n"
    );
    assert_eq!(
        refusal(&dir, &text),
        "nodes.f.expr: bad expression \"value.a.exists(x, value.b.exists(y, x == y))\": 2 comprehensions over record data are nested in one another, more than 1 (expressions.max_nesting): its cost would grow as the 2nd power of a list's length"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
