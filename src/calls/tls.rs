//! TLS to called services: which certificate authorities a call operator
//! trusts (the system's, or those of a PEM file) and the client
//! certificate it presents, if the service asks for one (mutual TLS).
//! Loaded once, when the topology is built, so a missing or malformed file
//! is refused at start rather than at the first call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// The files of a call operator's TLS settings.
///
/// ```no_run
/// use eddy::calls::{CallTls, TlsFiles};
///
/// let tls = CallTls::load(&TlsFiles {
///     ca_file: Some("certs/gateway-ca.pem".into()),
///     ..TlsFiles::default()
/// })?;
/// # Ok::<(), eddy::calls::CallTlsError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificates (PEM) the services' certificates are verified
    /// against; `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM) presented to services that ask
    /// for one.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM, unencrypted: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

/// Why TLS settings could not be loaded; `setting` names the file's field
/// (`ca_file`, `cert_file`, `key_file`).
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct CallTlsError {
    /// The setting at fault.
    pub setting: &'static str,
    /// Why, with the path.
    pub reason: String,
}

/// What a call operator's HTTPS connections trust and present (cheap to
/// clone). Compared by identity: two loads of the same files are two
/// settings.
#[derive(Clone)]
pub struct CallTls {
    config: Arc<ClientConfig>,
    files: TlsFiles,
}

impl CallTls {
    /// TLS with the system's certificate authorities and no client
    /// certificate (made once per process).
    pub fn system() -> CallTls {
        static SYSTEM: OnceLock<CallTls> = OnceLock::new();
        SYSTEM
            .get_or_init(|| CallTls {
                config: Arc::new(
                    client_config(system_roots().clone(), None).expect("no client certificate"),
                ),
                files: TlsFiles::default(),
            })
            .clone()
    }

    /// TLS from these files (the system's authorities where `ca_file` is
    /// `None`).
    pub fn load(files: &TlsFiles) -> Result<CallTls, CallTlsError> {
        let roots = match &files.ca_file {
            None => system_roots().clone(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates("ca_file", path)? {
                    roots.add(cert).map_err(|e| CallTlsError {
                        setting: "ca_file",
                        reason: format!("{}: not a CA certificate: {e}", path.display()),
                    })?;
                }
                roots
            }
        };
        let client = match (&files.cert_file, &files.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let chain = certificates("cert_file", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| CallTlsError {
                    setting: "key_file",
                    reason: format!("{}: no private key read: {e}", key.display()),
                })?;
                Some((chain, key))
            }
            (Some(_), None) => {
                return Err(CallTlsError {
                    setting: "key_file",
                    reason: "a client certificate needs its key_file".into(),
                })
            }
            (None, Some(_)) => {
                return Err(CallTlsError {
                    setting: "cert_file",
                    reason: "a key_file needs its client certificate, cert_file".into(),
                })
            }
        };
        Ok(CallTls {
            config: Arc::new(client_config(roots, client)?),
            files: files.clone(),
        })
    }

    /// The rustls configuration of the connections.
    pub(crate) fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

/// The system's certificate authorities, read once.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("calls: a system CA certificate could not be read: {e}");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                ignored,
                "calls: no system CA certificate found: https calls fail unless the call's tls.ca_file names one"
            );
        }
        roots
    })
}

fn client_config(
    roots: RootCertStore,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, CallTlsError> {
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| CallTlsError {
        setting: "tls",
        reason: e.to_string(),
    })?
    .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| CallTlsError {
                setting: "key_file",
                reason: format!("the key does not fit the client certificate: {e}"),
            }),
    }
}

/// The certificates of a PEM file, at least one.
fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CallTlsError> {
    let fail = |reason: String| CallTlsError {
        setting,
        reason: format!("{}: {reason}", path.display()),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no certificate in it".into()));
    }
    Ok(certs)
}

impl std::fmt::Debug for CallTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallTls")
            .field("files", &self.files)
            .finish()
    }
}

impl PartialEq for CallTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for CallTls {}
