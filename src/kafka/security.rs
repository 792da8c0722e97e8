//! TLS and SASL to Kafka: the settings, the secrets they name (read from
//! the environment or from files, never written in a topology file), and
//! the librdkafka properties they become.
//!
//! ```
//! use eddy::kafka::{Mechanism, Sasl, Secret, Security, StreamsConfig, Tls};
//! std::env::set_var("PAYMENT_KAFKA_PASSWORD", "s3cret");
//! let security = Security {
//!     tls: Some(Tls::default()), // the broker verified against the system's CAs
//!     sasl: Some(Sasl {
//!         mechanism: Mechanism::ScramSha512,
//!         username: "payment".into(),
//!         password: Secret::Env("PAYMENT_KAFKA_PASSWORD".into()),
//!     }),
//! };
//! let config = StreamsConfig::new("payment").security(&security).unwrap();
//! assert_eq!(config.principal().as_deref(), Some("User:payment"));
//! // Debug output never shows the password.
//! assert!(!format!("{config:?}").contains("s3cret"));
//! ```

use std::fmt;
use std::path::PathBuf;

/// Where a secret is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// An environment variable, by name.
    Env(String),
    /// A file (its content, without a final newline).
    File(PathBuf),
    /// The secret itself, which the program got elsewhere (a vault, say).
    Value(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(var) => f.debug_tuple("Env").field(var).finish(),
            Secret::File(path) => f.debug_tuple("File").field(path).finish(),
            Secret::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// TLS to the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The CA certificates (PEM) the brokers' certificates are verified
    /// against; `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) presented to the brokers, with its key.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The password of an encrypted private key.
    pub key_password: Option<Secret>,
    /// Whether the broker's name must match its certificate (default true).
    pub verify_hostname: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password: None,
            verify_hostname: true,
        }
    }
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Mechanism {
    /// SCRAM with SHA-512 (the password never crosses the wire).
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// The password itself, sent to the broker: over TLS only.
    #[serde(rename = "PLAIN")]
    Plain,
}

impl Mechanism {
    /// Its name, as Kafka writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::Plain => "PLAIN",
        }
    }
}

/// SASL authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The user (the principal is `User:<username>`).
    pub username: String,
    /// The password.
    pub password: Secret,
}

/// How a worker's clients connect: TLS, SASL, both, or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// TLS, if on.
    pub tls: Option<Tls>,
    /// SASL, if on.
    pub sasl: Option<Sasl>,
}

/// Why security settings were refused: the setting, named as in topology
/// files (`kafka.sasl.password_env`, `kafka.tls.ca_file`...), and why.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct SecurityError {
    /// The setting.
    pub setting: String,
    /// Why.
    pub reason: String,
}

impl SecurityError {
    fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        SecurityError {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}

impl Secret {
    /// Its value. `setting` names it as topology files do, without the
    /// `_env` or `_file` of the way it is given (`kafka.sasl.password`).
    pub(crate) fn read(&self, setting: &str) -> Result<String, SecurityError> {
        match self {
            Secret::Env(var) => std::env::var(var).map_err(|_| {
                SecurityError::new(
                    format!("{setting}_env"),
                    format!("environment variable {var} is not set"),
                )
            }),
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| {
                    SecurityError::new(
                        format!("{setting}_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                }),
            Secret::Value(value) => Ok(value.clone()),
        }
    }

    /// Where it comes from, as a topology file says it
    /// (`kafka.sasl.password_env = VAR`), for errors to name.
    pub(crate) fn origin(&self, setting: &str) -> String {
        match self {
            Secret::Env(var) => format!("{setting}_env = {var}"),
            Secret::File(path) => format!("{setting}_file = {}", path.display()),
            Secret::Value(_) => format!("{setting} (given by the program)"),
        }
    }
}

/// Security settings turned into librdkafka properties, secrets read.
#[derive(Clone)]
pub(crate) struct ClientSecurity {
    pub(crate) properties: Vec<(&'static str, String)>,
    /// `User:<name>` with SASL.
    pub(crate) principal: Option<String>,
    /// Where the password came from, to name in errors.
    pub(crate) password_setting: Option<String>,
    /// The CA file, to name in errors.
    pub(crate) ca_setting: String,
}

impl fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys only: values include secrets.
        let keys: Vec<_> = self.properties.iter().map(|(k, _)| *k).collect();
        f.debug_struct("ClientSecurity")
            .field("properties", &keys)
            .field("principal", &self.principal)
            .finish()
    }
}

impl Security {
    /// Reads the secrets and checks the files: what the clients are given.
    pub(crate) fn resolve(&self) -> Result<ClientSecurity, SecurityError> {
        let mut properties = Vec::new();
        let protocol = match (&self.tls, &self.sasl) {
            (None, None) => "plaintext",
            (Some(_), None) => "ssl",
            (None, Some(_)) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        properties.push(("security.protocol", protocol.to_owned()));
        let mut ca_setting = "kafka.tls.ca_file (absent: the system's CAs)".to_owned();
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca_file {
                properties.push(("ssl.ca.location", readable("kafka.tls.ca_file", ca)?));
                ca_setting = format!("kafka.tls.ca_file = {}", ca.display());
            }
            match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => {
                    let cert = readable("kafka.tls.cert_file", cert)?;
                    properties.push(("ssl.certificate.location", cert));
                    let key = readable("kafka.tls.key_file", key)?;
                    properties.push(("ssl.key.location", key));
                }
                (None, None) => {}
                (Some(_), None) => {
                    return Err(SecurityError::new(
                        "kafka.tls.key_file",
                        "a client certificate needs its key",
                    ))
                }
                (None, Some(_)) => {
                    return Err(SecurityError::new(
                        "kafka.tls.cert_file",
                        "a client key needs its certificate",
                    ))
                }
            }
            if let Some(pw) = &tls.key_password {
                properties.push(("ssl.key.password", pw.read("kafka.tls.key_password")?));
            }
            let identify = if tls.verify_hostname { "https" } else { "none" };
            properties.push(("ssl.endpoint.identification.algorithm", identify.to_owned()));
        }
        let (mut principal, mut password_setting) = (None, None);
        if let Some(sasl) = &self.sasl {
            if sasl.mechanism == Mechanism::Plain && self.tls.is_none() {
                return Err(SecurityError::new(
                    "kafka.sasl.mechanism",
                    "PLAIN sends the password itself: use it over TLS (kafka.tls) or choose SCRAM-SHA-512",
                ));
            }
            if sasl.username.is_empty() {
                return Err(SecurityError::new(
                    "kafka.sasl.username",
                    "must not be empty",
                ));
            }
            let password = sasl.password.read("kafka.sasl.password")?;
            properties.push(("sasl.mechanism", sasl.mechanism.as_str().to_owned()));
            properties.push(("sasl.username", sasl.username.clone()));
            properties.push(("sasl.password", password));
            principal = Some(format!("User:{}", sasl.username));
            password_setting = Some(sasl.password.origin("kafka.sasl.password"));
        }
        Ok(ClientSecurity {
            properties,
            principal,
            password_setting,
            ca_setting,
        })
    }
}

/// The path of a file that can be read, as text for librdkafka.
fn readable(setting: &str, path: &std::path::Path) -> Result<String, SecurityError> {
    std::fs::File::open(path)
        .map_err(|e| SecurityError::new(setting, format!("cannot read {}: {e}", path.display())))?;
    Ok(path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(mechanism: Mechanism, password: Secret) -> Sasl {
        Sasl {
            mechanism,
            username: "payment".into(),
            password,
        }
    }

    #[test]
    fn settings_become_client_properties() {
        let dir = std::env::temp_dir().join(format!("eddy-security-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "ca").unwrap();
        let secret = dir.join("password");
        std::fs::write(&secret, "from-file\n").unwrap();
        let security = Security {
            tls: Some(Tls {
                ca_file: Some(ca.clone()),
                verify_hostname: false,
                ..Tls::default()
            }),
            sasl: Some(sasl(Mechanism::Plain, Secret::File(secret.clone()))),
        };
        let c = security.resolve().unwrap();
        let get = |k: &str| {
            c.properties
                .iter()
                .find(|(p, _)| *p == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(get("ssl.ca.location"), Some(ca.to_str().unwrap()));
        assert_eq!(get("ssl.endpoint.identification.algorithm"), Some("none"));
        assert_eq!(get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(get("sasl.password"), Some("from-file"));
        assert_eq!(c.principal.as_deref(), Some("User:payment"));
        assert!(!format!("{c:?}").contains("from-file"));
        assert_eq!(
            c.password_setting.unwrap(),
            format!("kafka.sasl.password_file = {}", secret.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_cannot_work_is_refused_naming_the_setting() {
        let missing = Security {
            tls: None,
            sasl: Some(sasl(
                Mechanism::ScramSha512,
                Secret::Env("EDDY_TEST_NO_SUCH_VARIABLE".into()),
            )),
        };
        assert_eq!(
            missing.resolve().unwrap_err().to_string(),
            "kafka.sasl.password_env: environment variable EDDY_TEST_NO_SUCH_VARIABLE is not set"
        );
        let plain = Security {
            tls: None,
            sasl: Some(sasl(Mechanism::Plain, Secret::Env("PATH".into()))),
        };
        assert!(plain
            .resolve()
            .unwrap_err()
            .to_string()
            .starts_with("kafka.sasl.mechanism: PLAIN sends the password itself"));
        let no_ca = Security {
            tls: Some(Tls {
                ca_file: Some("/no/such/ca.pem".into()),
                ..Tls::default()
            }),
            sasl: None,
        };
        assert!(no_ca
            .resolve()
            .unwrap_err()
            .to_string()
            .starts_with("kafka.tls.ca_file: cannot read /no/such/ca.pem: "));
        let half = Security {
            tls: Some(Tls {
                cert_file: Some("/etc/hostname".into()),
                ..Tls::default()
            }),
            sasl: None,
        };
        assert_eq!(
            half.resolve().unwrap_err().to_string(),
            "kafka.tls.key_file: a client certificate needs its key"
        );
    }
}
