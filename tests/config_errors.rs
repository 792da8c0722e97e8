//! Broken topology files, each refused with the file, the field and the
//! reason it must give.

use std::path::Path;

use std::sync::Arc;

use eddy::config::{CustomProcessor, JsonProcessor, Pipeline, Registry};
use eddy::processor::{Processor, ProcessorContext, Record};
use serde_json::Value;

/// Passes records on: the processor the cases name.
struct Pass;

impl Processor<String, Value, String, Value> for Pass {
    fn process(&mut self, r: Record<String, Value>, ctx: &mut ProcessorContext<'_, String, Value>) {
        ctx.forward(r);
    }
}

/// A registry with one processor, `pass`, that takes no parameters.
fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register("pass", |params| match params.keys().next() {
        Some(p) => Err(format!("unknown parameter {p:?} (pass takes none)").into()),
        None => Ok(CustomProcessor {
            stores: Vec::new(),
            supplier: Arc::new(|| Box::new(Pass) as JsonProcessor),
        }),
    });
    registry
}

/// A valid head every case builds on: an application and two topics.
const HEAD: &str = r#"
[application]
id = "app"

[topics.in]

[topics.out]
"#;

fn refuse(body: &str) -> String {
    let text = format!("{HEAD}{body}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/broken.toml");
    match Pipeline::parse(&text, &path, &registry()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            assert_eq!(e.file, path);
            format!("{}: {}", e.field, e.reason)
        }
    }
}

const SOURCE: &str = "[nodes.src]\nop = \"source\"\ntopic = \"in\"\n";

#[test]
fn broken_files_are_refused_with_field_and_reason() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{SOURCE}[nodes.x]\nop = \"teleport\"\ninput = \"src\"\n"),
            "nodes.x.op: unknown variant `teleport`, expected one of `source`, `table`, `filter`, `map`, `rekey`, `flat_map`, `merge`, `repartition`, `join`, `aggregate`, `gather`, `saga`, `mask`, `call`, `processor`, `sink` (line 12, column 6)",
        ),
        (
            "[nodes.src]\nop = \"source\"\ntopic = \"nowhere\"\n".into(),
            "nodes.src.topic: topic \"nowhere\" is not declared under [topics]",
        ),
        (
            format!("{SOURCE}[nodes.f]\nop = \"filter\"\ninput = \"src\"\nexpr = \"value.type ==\"\n"),
            "nodes.f.expr: bad expression \"value.type ==\": 1:14: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}",
        ),
        (
            format!("{SOURCE}[nodes.f]\nop = \"filter\"\ninput = \"src\"\nexpr = \"vaule.type == 'x'\"\n"),
            "nodes.f.expr: bad expression \"vaule.type == 'x'\": unknown variable \"vaule\" (it may use key, value, timestamp)",
        ),
        (
            format!("{SOURCE}[nodes.other]\nop = \"source\"\ntopic = \"out\"\n[nodes.j]\nop = \"join\"\nleft = \"src\"\nright = \"other\"\nvalue = \"left\"\n"),
            "nodes.j.window: a stream-stream join needs a window (for example window = \"30s\")",
        ),
        (
            "[nodes.a]\nop = \"filter\"\ninput = \"b\"\nexpr = \"true\"\n[nodes.b]\nop = \"filter\"\ninput = \"a\"\nexpr = \"true\"\n".into(),
            "nodes.a: cycle: a -> b -> a",
        ),
        (
            format!("{SOURCE}[nodes.f]\nop = \"filter\"\ninput = \"scr\"\nexpr = \"true\"\n"),
            "nodes.f.input: unknown node \"scr\"",
        ),
        (
            format!("{SOURCE}[nodes.f]\nop = \"filter\"\ninput = \"src\"\nexpresion = \"true\"\n"),
            "nodes.f: unknown field `expresion`, expected `input` or `expr` (line 11, column 1)",
        ),
        (
            "[nodes.src]\nop = \"source\"\n".into(),
            "nodes.src: missing field `topic` (line 8, column 1)",
        ),
        (
            format!("{SOURCE}[nodes.s]\nop = \"saga\"\ninput = \"src\"\ninitial = \"new\"\nfinal_states = [\"done\"]\n[[nodes.s.transitions]]\nfrom = \"new\"\non = \"go\"\nto = \"done\"\n[[nodes.s.timeouts]]\nstate = \"done\"\nafter = \"5s\"\nto = \"new\"\n"),
            "nodes.s: final state \"done\" has a timeout",
        ),
        (
            format!("{SOURCE}[nodes.s]\nop = \"saga\"\ninput = \"src\"\ninitial = \"new\"\n[[nodes.s.timeouts]]\nstate = \"new\"\nafter = \"soon\"\nto = \"gone\"\n"),
            "nodes.s.timeouts[0].after: bad duration \"soon\": expected number at 0",
        ),
        (
            format!("{SOURCE}[nodes.s]\nop = \"saga\"\ninput = \"src\"\ninitial = \"new\"\n[[nodes.s.transitions]]\nfrom = \"new\"\nto = \"done\"\n"),
            "nodes.s.transitions[0]: a transition needs `from` and `on`",
        ),
        (
            format!("{SOURCE}[nodes.p]\nop = \"processor\"\ninput = \"src\"\nprocessor = \"stock-keeper\"\n"),
            "nodes.p.processor: unknown processor \"stock-keeper\" (registered: pass)",
        ),
        (
            format!("{SOURCE}[nodes.p]\nop = \"processor\"\ninput = \"src\"\nprocessor = \"pass\"\nparams = {{ stock = \"s\" }}\n"),
            "nodes.p.params: unknown parameter \"stock\" (pass takes none)",
        ),
        (
            format!("{SOURCE}[nodes.k]\nop = \"rekey\"\ninput = \"src\"\nfield = \"product_id\"\n[nodes.a]\nop = \"saga\"\ninput = \"k\"\ninitial = \"new\"\n"),
            "nodes.a.input: records from \"k\" were re-keyed upstream (map key, rekey, flat_map key or processor); add a node with op = \"repartition\" before this stateful operator",
        ),
        (
            format!("{SOURCE}[nodes.again]\nop = \"source\"\ntopic = \"in\"\n"),
            "nodes.src.topic: topic \"in\" is already read by node \"again\"; read it once and use that node",
        ),
        (
            format!("{SOURCE}[nodes.t]\nop = \"table\"\ntopic = \"out\"\n[nodes.j]\nop = \"join\"\nleft = \"src\"\nright = \"t\"\nwindow = \"10s\"\nvalue = \"left\"\n"),
            "nodes.j.window: \"t\" is a table: a stream-table join takes no window",
        ),
        (
            format!("{SOURCE}[nodes.o]\nop = \"sink\"\ninput = \"src\"\ntopic = \"out\"\n[nodes.f]\nop = \"filter\"\ninput = \"o\"\nexpr = \"true\"\n"),
            "nodes.f.input: node \"o\" is a sink; it has no output to read",
        ),
        (
            format!("{SOURCE}[nodes.agg]\nop = \"aggregate\"\ninput = \"src\"\ninitial = \"0\"\naggregator = \"agg + 1\"\n[nodes.agg.window]\nsize = \"1m\"\nadvance = \"2m\"\n"),
            "nodes.agg.window.advance: must be more than 0 and at most the window size",
        ),
        (
            format!("{SOURCE}[nodes.m]\nop = \"map\"\ninput = \"src\"\n"),
            "nodes.m.value: a map needs a value or a key expression",
        ),
        (
            format!("{SOURCE}[nodes.agg]\nop = \"aggregate\"\ninput = \"src\"\ninitial = \"0\"\naggregator = \"agg + 1\"\nwindow = {{ size = \"0s\" }}\n"),
            "nodes.agg.window.size: must be more than 0",
        ),
        (
            format!("{SOURCE}[nodes.s]\nop = \"saga\"\ninput = \"src\"\ninitial = \"new\"\ncheck_every = \"0ms\"\n"),
            "nodes.s.check_every: must be more than 0",
        ),
        (
            format!("{SOURCE}[nodes.s]\nop = \"saga\"\ninput = \"src\"\ninitial = \"new\"\nretention = \"0s\"\n"),
            "nodes.s.retention: must be more than 0",
        ),
        (
            format!("{SOURCE}[nodes.s]\nop = \"saga\"\ninput = \"src\"\ninitial = \"new\"\nfinal_states = [\"r\"]\n[nodes.s.rejected]\nfrom = \"new\"\nto = \"r\"\n"),
            "nodes.s.rejected: a rejection takes `to`, `reason` and `emit` only: it leaves whatever state the instance is in",
        ),
        (
            format!("{SOURCE}[nodes.s]\nop = \"saga\"\ninput = \"src\"\ninitial = \"new\"\n[nodes.s.rejected]\nto = \"r\"\n"),
            "nodes.s: the rejection leads to \"r\", which is not a final state",
        ),
        (
            format!("[topics.up]\nupstream = [\"app\"]\n{SOURCE}"),
            "topics.up.upstream: names this application itself; list the other applications that write the topic",
        ),
        (
            format!("{SOURCE}[nodes.m]\nop = \"mask\"\ninput = \"src\"\n"),
            "nodes.m.hash: a mask needs fields to hash, redact or drop",
        ),
        (
            format!("{SOURCE}[nodes.m]\nop = \"mask\"\ninput = \"src\"\nhash = [\"email\"]\n"),
            "nodes.m.hash: hashing needs a secret key: name it with key_env (an environment variable) or key_file",
        ),
        (
            format!("{SOURCE}[nodes.m]\nop = \"mask\"\ninput = \"src\"\nhash = [\"email\"]\nkey = \"hunter2hunter2hunter2\"\n"),
            "nodes.m.key: a key is never written in a topology file: name it with key_env (an environment variable) or key_file",
        ),
        (
            format!("{SOURCE}[nodes.m]\nop = \"mask\"\ninput = \"src\"\nredact = [\"email\"]\nkey_env = \"PATH\"\n"),
            "nodes.m.key_env: the key is only used to hash, and no field is hashed (hash)",
        ),
        (
            format!("{SOURCE}[nodes.m]\nop = \"mask\"\ninput = \"src\"\nhash = [\"email\"]\nkey_env = \"EDDY_NO_SUCH_KEY\"\n"),
            "nodes.m.key_env: environment variable EDDY_NO_SUCH_KEY is not set",
        ),
        (
            format!("{SOURCE}[nodes.m]\nop = \"mask\"\ninput = \"src\"\ndrop = [\"items[x].note\"]\n"),
            "nodes.m.drop: bad path \"items[x].note\": inside brackets: '*' or an index (a whole number from 0)",
        ),
        (
            format!("{SOURCE}[nodes.m]\nop = \"mask\"\ninput = \"src\"\nredact = [\"a..b\"]\n"),
            "nodes.m.redact: bad path \"a..b\": a field name is empty",
        ),
        (
            format!("{SOURCE}[nodes.m]\nop = \"mask\"\ninput = \"nowhere\"\nredact = [\"a\"]\n"),
            "nodes.m.input: unknown node \"nowhere\"",
        ),
    ];
    assert!(cases.len() >= 15);
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(body, expected)| {
            let got = refuse(body);
            (got != *expected)
                .then(|| format!("for:\n{body}\nexpected: {expected}\n     got: {got}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn bad_settings_and_toml_are_refused() {
    let path = Path::new("x.toml");
    let registry = registry();
    let err = |text: &str| {
        Pipeline::parse(text, path, &registry)
            .err()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        err("[application]\nid = \"a\"\nguarantee = \"twice\"\n[nodes.s]\nop = \"source\"\ntopic = \"t\"\n"),
        "x.toml: application.guarantee: unknown variant `twice`, expected `at_least_once` or `exactly_once` (line 3, column 13)"
    );
    let eos = Pipeline::parse(
        "[application]\nid = \"a\"\nguarantee = \"exactly_once\"\n[topics.t]\n[nodes.s]\nop = \"source\"\ntopic = \"t\"\n",
        path,
        &registry,
    )
    .unwrap();
    assert_eq!(eos.config.guarantee, eddy::kafka::Guarantee::ExactlyOnce);
    assert_eq!(
        eos.config.commit_interval_or_default(),
        std::time::Duration::from_millis(100)
    );
    assert_eq!(
        err("[application]\nid = \"a\"\nthreads = \"two\"\n"),
        "x.toml: application.threads: invalid type: string \"two\", expected usize (line 3, column 11)"
    );
    assert_eq!(
        err("[application]\nid = \"a\"\ntrace_sample_ratio = 1.5\n[topics.t]\n[nodes.s]\nop = \"source\"\ntopic = \"t\"\n"),
        "x.toml: application.trace_sample_ratio: 1.5 is not a ratio between 0 and 1"
    );
    assert_eq!(
        err("[application]\nid = \"a\"\notlp_endpoint = \"collector:4318\"\n[topics.t]\n[nodes.s]\nop = \"source\"\ntopic = \"t\"\n"),
        "x.toml: application.otlp_endpoint: \"collector:4318\": expected an http:// URL, such as http://localhost:4318"
    );
    // Secrets are named, never written; what they name must exist.
    let kafka = |section: &str| {
        err(&format!(
            "[application]\nid = \"a\"\n{section}\n[topics.t]\n[nodes.s]\nop = \"source\"\ntopic = \"t\"\n"
        ))
    };
    assert_eq!(
        kafka("[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\npassword = \"hunter2\""),
        "x.toml: kafka.sasl.password: a password is never written in a topology file: name it with password_env (an environment variable) or password_file"
    );
    assert_eq!(
        kafka("[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\npassword_env = \"EDDY_NO_SUCH_VARIABLE\""),
        "x.toml: kafka.sasl.password_env: environment variable EDDY_NO_SUCH_VARIABLE is not set"
    );
    assert_eq!(
        kafka("[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"u\""),
        "x.toml: kafka.sasl.password_env: SASL needs a password: name its environment variable (password_env) or file (password_file)"
    );
    assert_eq!(
        kafka("[kafka.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\npassword_env = \"PATH\""),
        "x.toml: kafka.sasl.mechanism: PLAIN sends the password itself: use it over TLS (kafka.tls) or choose SCRAM-SHA-512"
    );
    // Signing keys are named too, and every key a topic names is declared.
    let signed = |signing: &str, topic: &str| {
        err(&format!(
            "[application]\nid = \"a\"\n{signing}\n[topics.t]\n{topic}\n[nodes.s]\nop = \"source\"\ntopic = \"t\"\n"
        ))
    };
    assert_eq!(
        signed("[signing.keys.k1]\nsecret = \"hunter2hunter2hunter2\"", ""),
        "x.toml: signing.keys.k1.secret: a secret is never written in a topology file: name it with secret_env (an environment variable) or secret_file"
    );
    assert_eq!(
        signed(
            "[signing.keys.k1]\nsecret_env = \"PATH\"",
            "verify = [\"k1\", \"k0\"]"
        ),
        "x.toml: topics.t.verify: unknown key \"k0\" (declared in [signing.keys]: [\"k1\"])"
    );
    assert_eq!(
        signed(
            "[signing.keys.k1]\nsecret_env = \"EDDY_NO_SUCH_KEY\"",
            "sign = \"k1\""
        ),
        "x.toml: signing.keys.k1.secret_env: environment variable EDDY_NO_SUCH_KEY is not set"
    );
    assert_eq!(
        signed("", "signed_headers = [\"type\"]"),
        "x.toml: topics.t.signed_headers: the topic is neither signed (sign) nor verified (verify)"
    );
    assert!(kafka("[kafka.tls]\nca_file = \"certs/missing.pem\"")
        .starts_with("x.toml: kafka.tls.ca_file: cannot read "),);
    assert_eq!(
        err("[application\nid = \"a\"\n"),
        "x.toml: : unclosed table, expected `]` (line 1, column 13)"
    );
    assert_eq!(
        err("[application]\nid = \"a\"\n[topics.t]\nschema = \"schemas/missing.json\"\n[nodes.s]\nop = \"source\"\ntopic = \"t\"\n")
            .split(": cannot read")
            .next()
            .unwrap(),
        "x.toml: topics.t.schema"
    );
}

#[test]
fn the_shipped_file_compiles() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/page-views.toml");
    let p = Pipeline::load(&file, &Registry::new()).unwrap();
    assert_eq!(p.topics, ["views", "views-per-minute"]);
    assert_eq!(p.topology.subtopologies().len(), 2);
    let text = p.topology.describe();
    assert!(text.contains("Processor: per-minute"), "{text}");
}
