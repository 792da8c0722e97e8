//! `https://` calls of a `call` node, in the test driver against local
//! TLS services whose certificates a test CA made: a service the node's
//! `tls.ca_file` vouches for answers; one whose CA it does not trust, one
//! whose certificate names another host, and one that asks for a client
//! certificate the node does not present each fail their record with the
//! reason; with `cert_file` and `key_file` the last one answers too. Bad
//! TLS files are refused at load with their field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy::config::{Overrides, Pipeline, Registry};
use eddy::processor::Headers;
use eddy::testing::{DriverConfig, TopologyTestDriver};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use serde_json::{json, Value};

/// A certificate authority of the test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate for `names` and its key, as PEM.
    fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// An HTTPS service presenting `cert` (PEM, with `key`) that echoes each
/// request's JSON body; with `clients`, it asks for a client certificate
/// of that CA and refuses the handshake without one.
fn https_service(cert: &str, key: &str, clients: Option<&Ca>) -> SocketAddr {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = match clients {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider())
                .build()
                .unwrap(),
        ),
    }
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A refused handshake ends the connection, as it should.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        |request: hyper::Request<Incoming>| async move {
                            let body = request.into_body().collect().await?.to_bytes();
                            let got: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let answer = json!({"got": got, "tls": true}).to_string();
                            Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                                answer,
                            ))))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    addr
}

/// The file's TLS files, written to a folder of the test.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir =
            std::env::temp_dir().join(format!("eddy-calls-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn file(tls: &str) -> String {
    format!(
        r#"
[application]
id = "calls-tls"

[topics.in]
[topics.out]

[nodes.in]
op = "source"
topic = "in"

[nodes.called]
op = "call"
input = "in"
url = "value.url"
body = "{{'order': key}}"
response = "{{'order': key, 'echo': body.got, 'tls': body.tls}}"
on_failure = "{{'order': key, 'failed': reason, 'detail': detail}}"
attempts = 1
timeout = "2s"
breaker_failures = 1000
{tls}

[nodes.to-out]
op = "sink"
input = "called"
topic = "out"
"#
    )
}

fn parse(tls: &str) -> Result<Pipeline, String> {
    Pipeline::parse_with(
        &file(tls),
        Path::new("calls-tls.toml"),
        &Registry::new(),
        &Overrides::default(),
    )
    .map_err(|e| e.to_string())
}

/// Each (key, URL) called once; the outputs by key.
fn run(tls: &str, calls: &[(&str, String)]) -> Vec<(String, Value)> {
    let p = parse(tls).unwrap();
    let config = DriverConfig {
        application_id: p.config.application_id.clone(),
        ..DriverConfig::default()
    };
    let mut d = TopologyTestDriver::with_config(p.topology, config);
    for (key, url) in calls {
        let value = json!({ "url": url }).to_string();
        d.pipe_raw(
            "in",
            None,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            7,
            Headers::default(),
        )
        .unwrap();
    }
    d.read_raw("out")
        .into_iter()
        .map(|r| {
            (
                String::from_utf8(r.key.unwrap()).unwrap(),
                serde_json::from_slice(&r.value.unwrap()).unwrap(),
            )
        })
        .collect()
}

fn ok(order: &str) -> (String, Value) {
    (
        order.to_owned(),
        json!({"order": order, "echo": {"order": order}, "tls": true}),
    )
}

/// The failure of `order`: its reason, and whether its detail holds `why`.
fn failure(out: &[(String, Value)], order: &str) -> (String, String) {
    let (_, v) = out.iter().find(|(k, _)| k == order).unwrap();
    (
        v["failed"].as_str().unwrap_or("").to_owned(),
        v["detail"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn https_calls_trust_the_named_ca_and_present_the_client_certificate() {
    let ca = Ca::new("eddy test CA");
    let other = Ca::new("a CA nobody named");
    let clients = Ca::new("eddy test client CA");
    let files = Files::new("ok");
    let ca_file = files.write("ca.pem", &ca.cert.pem());

    let (cert, key) = ca.issue(&["localhost"]);
    let service = https_service(&cert, &key, None);
    let (cert, key) = other.issue(&["localhost"]);
    let untrusted = https_service(&cert, &key, None);
    let (cert, key) = ca.issue(&["localhost"]);
    let mutual = https_service(&cert, &key, Some(&clients));
    let (client_cert, client_key) = clients.issue(&["payment-service"]);
    let cert_file = files.write("client.pem", &client_cert);
    let key_file = files.write("client.key", &client_key);

    let calls = [
        (
            "o1",
            format!("https://localhost:{}/charges", service.port()),
        ),
        (
            "o2",
            format!("https://localhost:{}/charges", untrusted.port()),
        ),
        // The certificate names localhost, not the address.
        (
            "o3",
            format!("https://127.0.0.1:{}/charges", service.port()),
        ),
        ("o4", format!("https://localhost:{}/charges", mutual.port())),
    ];

    // The CA named, no client certificate.
    let tls = format!("[nodes.called.tls]\nca_file = {:?}\n", ca_file);
    let out = run(&tls, &calls);
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[0], ok("o1"));
    let (reason, detail) = failure(&out, "o2");
    assert_eq!(reason, "unreachable", "{detail}");
    assert!(detail.contains("UnknownIssuer"), "{detail}");
    let (reason, detail) = failure(&out, "o3");
    assert_eq!(reason, "unreachable", "{detail}");
    assert!(
        detail.contains("certificate not valid for name \"127.0.0.1\""),
        "{detail}"
    );
    let (reason, _) = failure(&out, "o4");
    assert_eq!(reason, "unreachable");

    // With the client certificate the mutual-TLS service answers.
    let tls = format!(
        "[nodes.called.tls]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        ca_file, cert_file, key_file
    );
    let out = run(&tls, &calls[3..]);
    assert_eq!(out, [ok("o4")]);

    // Without a [tls] table the system's CAs are trusted, and the test CA
    // is not one of them.
    let out = run("", &calls[..1]);
    let (reason, detail) = failure(&out, "o1");
    assert_eq!(reason, "unreachable", "{detail}");
    assert!(detail.contains("UnknownIssuer"), "{detail}");
}

#[test]
fn bad_tls_files_are_refused_at_load_with_their_field() {
    let ca = Ca::new("eddy test CA");
    let files = Files::new("bad");
    let ca_file = files.write("ca.pem", &ca.cert.pem());
    let empty = files.write("empty.pem", "not a certificate\n");
    let (cert, _) = ca.issue(&["client"]);
    let cert_file = files.write("client.pem", &cert);
    let (_, other_key) = ca.issue(&["client"]);
    let other_key = files.write("other.key", &other_key);

    let refused = |tls: String| {
        parse(&tls)
            .err()
            .unwrap_or_else(|| panic!("accepted: {tls}"))
    };
    let e = refused("[nodes.called.tls]\nca_file = \"/no/such/ca.pem\"\n".into());
    assert!(
        e.contains("nodes.called.tls.ca_file: /no/such/ca.pem: cannot read"),
        "{e}"
    );
    let e = refused(format!("[nodes.called.tls]\nca_file = {empty:?}\n"));
    assert!(
        e.contains(&format!(
            "nodes.called.tls.ca_file: {}: no certificate in it",
            empty.display()
        )),
        "{e}"
    );
    let e = refused(format!("[nodes.called.tls]\ncert_file = {cert_file:?}\n"));
    assert!(
        e.contains("nodes.called.tls.key_file: a client certificate needs its key_file"),
        "{e}"
    );
    let e = refused(format!(
        "[nodes.called.tls]\nca_file = {ca_file:?}\ncert_file = {cert_file:?}\nkey_file = {other_key:?}\n"
    ));
    assert!(
        e.contains("nodes.called.tls.key_file: the key does not fit the client certificate"),
        "{e}"
    );
    let e = refused("[nodes.called.tls]\nca = \"x\"\n".into());
    assert!(e.contains("unknown field `ca`"), "{e}");
}
