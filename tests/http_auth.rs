//! The query routes of a worker behind bearer JWTs (`[http_auth]` of a
//! topology file): missing, expired, wrong-audience, wrong-signature and
//! `alg: none` tokens are refused with 401 and a JSON reason, a valid token
//! without the routes' scope with 403; valid HS256 and RS256 tokens pass.
//! `/metrics` and `/health` stay open.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{cluster, unique, wait_for};
use eddy::config::{Overrides, Pipeline, Registry};
use eddy::runtime::{KafkaStreams, RunningStreams};
use eddy::serde::{I64Serde, StringSerde};
use eddy::topology::StreamsBuilder;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "an HS256 secret for the test, 32+";

fn file(key: &str) -> String {
    format!(
        r#"
[application]
id = "auth"
http_port = 0
commit_interval = "200ms"

[http_auth]
issuer = "https://idp.test"
audience = "orders"
query_scope = "orders:read"
{key}

[topics.in]

[nodes.in]
op = "source"
topic = "in"

[nodes.counts]
op = "aggregate"
input = "in"
initial = "0"
aggregator = "agg + 1"
store = "counts"
"#
    )
}

/// A GET with an `Authorization` header (if any): status and JSON body.
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(aud: &str, exp: u64, scope: &str) -> Value {
    json!({"iss": "https://idp.test", "aud": aud, "exp": exp, "scope": scope, "sub": "alice"})
}

/// A worker with the settings of the file (its `[http_auth]` among them)
/// counting records per key in a queryable store `counts`.
fn start(dir: &Path, key: &str, suffix: &str) -> RunningStreams {
    let c = cluster();
    let path = dir.join("auth.toml");
    std::fs::write(&path, file(key)).unwrap();
    let overrides = Overrides {
        suffix: Some(suffix.to_owned()),
        ..Overrides::default()
    };
    let p = Pipeline::load_with(&path, &Registry::new(), &overrides).unwrap();
    assert!(p.config.http_auth.is_some());
    let mut config = p.config.state_dir(dir.join("state"));
    if !c.is_embedded() {
        config = config.bootstrap_servers(&c.bootstrap);
    }
    let input = format!("in-{suffix}");
    c.create_topic(&input, 1);
    if c.is_embedded() {
        for t in ["dlq", "counts-changelog", "members"] {
            c.create_topic(&format!("auth-{suffix}-{t}"), 1);
        }
    }
    let b = StreamsBuilder::new();
    b.stream(&input, StringSerde, StringSerde)
        .group_by_key(StringSerde, StringSerde)
        .count("counts");
    let mut s = KafkaStreams::new(b.build().unwrap(), config).queryable_store("counts", I64Serde);
    if let Some(e) = c.embedded() {
        s = s.embedded_cluster(e);
    }
    let running = s.start().unwrap();
    c.produce(&input, &[(Some(b"k".to_vec()), Some(b"{}".to_vec()))]);
    running
}

#[test]
fn hs256_tokens_are_checked_for_issuer_audience_expiry_signature_and_scope() {
    let u = unique("auth");
    let dir = std::env::temp_dir().join(&u);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    let running = start(&dir, "hs256_secret_file = \"secret\"", &u);
    let addr = running.http_addr().unwrap();
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = |c: &Value| encode(&Header::new(Algorithm::HS256), c, &key).unwrap();
    let valid = token(&claims("orders", now() + 600, "orders:read"));
    wait_for("the count is queryable", Duration::from_secs(60), || {
        let (status, body) = get(addr, "/stores/counts/k", Some(&valid));
        status == 200 && body["value"] == 1
    });

    let refused = |token: Option<&str>| {
        let (status, body) = get(addr, "/stores/counts/k", token);
        (
            status,
            body["error"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let (status, reason) = refused(None);
    assert_eq!(
        (status, reason.as_str()),
        (401, "a bearer token is required")
    );
    let expired = token(&claims("orders", now() - 3600, "orders:read"));
    assert_eq!(
        refused(Some(&expired)),
        (401, "invalid token: ExpiredSignature".into())
    );
    let foreign = token(&claims("payments", now() + 600, "orders:read"));
    assert_eq!(
        refused(Some(&foreign)),
        (401, "invalid token: InvalidAudience".into())
    );
    let other_key = EncodingKey::from_secret(b"not the secret the worker knows!!");
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims("orders", now() + 600, "orders:read"),
        &other_key,
    )
    .unwrap();
    assert_eq!(
        refused(Some(&forged)),
        (401, "invalid token: InvalidSignature".into())
    );
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims("orders", now() + 600, "orders:read"))
    );
    let (status, _) = refused(Some(&none));
    assert_eq!(status, 401);
    let unscoped = token(&claims("orders", now() + 600, "orders:write"));
    assert_eq!(
        refused(Some(&unscoped)),
        (
            403,
            "the token does not grant the scope \"orders:read\"".into()
        )
    );
    // What operators scrape stays open.
    assert_eq!(get(addr, "/health", None).0, 200);
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    running.close().unwrap();
}

#[test]
fn rs256_tokens_are_verified_with_the_public_key() {
    let u = unique("auth-rs");
    let dir = std::env::temp_dir().join(&u);
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "private.pem",
    ]);
    openssl(&[
        "pkey",
        "-in",
        "private.pem",
        "-pubout",
        "-out",
        "public.pem",
    ]);
    let running = start(&dir, "rs256_public_key_file = \"public.pem\"", &u);
    let addr = running.http_addr().unwrap();
    let private = std::fs::read(dir.join("private.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&private).unwrap();
    let valid = encode(
        &Header::new(Algorithm::RS256),
        &claims("orders", now() + 600, "orders:read"),
        &key,
    )
    .unwrap();
    wait_for("the count is queryable", Duration::from_secs(60), || {
        let (status, body) = get(addr, "/stores/counts/k", Some(&valid));
        status == 200 && body["value"] == 1
    });
    // An HS256 token made with the public key as its secret (the
    // algorithm-confusion attack) is refused.
    let public = std::fs::read(dir.join("public.pem")).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("orders", now() + 600, "orders:read"),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    let (status, body) = get(addr, "/stores/counts/k", Some(&confused));
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid token: InvalidAlgorithm"))
    );
    running.close().unwrap();
}
