//! The settings of a topology file that name secrets: `[kafka]` (TLS and
//! SASL), `[signing]` (the keys of signed topics) with the per-topic `sign`
//! and `verify`, `[http_auth]`, and the keys of `mask` nodes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{fail, Fail};
use crate::config::model::{self, File};
use crate::kafka::{Sasl, Secret, Security, Tls};
use crate::security::{
    HttpAuth, JwtKey, MaskError, Masking, SigningKey, TopicSigning, MIN_KEY_BYTES,
};

/// Where the secrets a file names are found: files from the file's
/// folder, environment variables in `given` first, then in the process's
/// environment. Without `read`, each secret is left empty, unread.
pub(in crate::config) struct Secrets<'a> {
    pub(in crate::config) base: &'a Path,
    pub(in crate::config) read: bool,
    pub(in crate::config) given: &'a BTreeMap<String, Secret>,
}

impl Secrets<'_> {
    /// The secret a setting names by `<field>_env` or `<field>_file`
    /// (`field` as in the file: `kafka.sasl.password`); `None` if neither
    /// is given.
    fn named(
        &self,
        field: &str,
        env: &Option<String>,
        file: &Option<PathBuf>,
    ) -> Result<Option<Secret>, Fail> {
        match (env, file) {
            (Some(_), None) | (None, Some(_)) if !self.read => {
                Ok(Some(Secret::Value(String::new())))
            }
            (Some(var), None) => Ok(Some(
                self.given
                    .get(var)
                    .cloned()
                    .unwrap_or_else(|| Secret::Env(var.clone())),
            )),
            (None, Some(path)) => Ok(Some(Secret::File(self.base.join(path)))),
            (None, None) => Ok(None),
            (Some(_), Some(_)) => {
                let name = field.rsplit('.').next().unwrap_or(field);
                fail(
                    format!("{field}_env"),
                    format!("give {name}_env or {name}_file, not both"),
                )
            }
        }
    }
}

/// A secret [`Secrets::named`] found, read.
fn read_secret(secret: &Secret, field: &str) -> Result<String, Fail> {
    secret.read(field).map_err(|e| (e.setting, e.reason))
}

/// `[kafka]` as the builder's settings (paths from the file's folder);
/// `None` when neither TLS nor SASL is set. Without reading secrets, the
/// secrets named are left empty, unread.
pub(super) fn security(kafka: &model::Kafka, secrets: &Secrets) -> Result<Option<Security>, Fail> {
    let base = secrets.base;
    let tls = match &kafka.tls {
        None => None,
        Some(t) => Some(Tls {
            ca_file: t.ca_file.as_ref().map(|p| base.join(p)),
            cert_file: t.cert_file.as_ref().map(|p| base.join(p)),
            key_file: t.key_file.as_ref().map(|p| base.join(p)),
            key_password: secrets.named(
                "kafka.tls.key_password",
                &t.key_password_env,
                &t.key_password_file,
            )?,
            verify_hostname: t.verify_hostname.unwrap_or(true),
        }),
    };
    let sasl = match &kafka.sasl {
        None => None,
        Some(s) => {
            if s.password.is_some() {
                return fail(
                    "kafka.sasl.password",
                    "a password is never written in a topology file: name it with password_env (an environment variable) or password_file",
                );
            }
            let Some(password) =
                secrets.named("kafka.sasl.password", &s.password_env, &s.password_file)?
            else {
                return fail(
                    "kafka.sasl.password_env",
                    "SASL needs a password: name its environment variable (password_env) or file (password_file)",
                );
            };
            Some(Sasl {
                mechanism: s.mechanism,
                username: s.username.clone(),
                password,
            })
        }
    };
    Ok((tls.is_some() || sasl.is_some()).then_some(Security { tls, sasl }))
}

/// The signing of each declared topic (by its name in the file) that has
/// `sign` or `verify`, keys read from `[signing.keys]` (left empty when
/// secrets are not read).
pub(super) fn signing<'f>(
    file: &'f File,
    secrets: &Secrets,
) -> Result<Vec<(&'f str, TopicSigning)>, Fail> {
    let mut keys = BTreeMap::new();
    for (id, key) in &file.signing.keys {
        let field = format!("signing.keys.{id}");
        let secret_field = format!("{field}.secret");
        if key.secret.is_some() {
            return fail(
                secret_field,
                "a secret is never written in a topology file: name it with secret_env (an environment variable) or secret_file",
            );
        }
        let named = secrets.named(&secret_field, &key.secret_env, &key.secret_file)?;
        let Some(secret) = named else {
            return fail(field, "give secret_env or secret_file (one of them)");
        };
        let secret = read_secret(&secret, &secret_field)?;
        if secrets.read && secret.len() < 16 {
            return fail(
                field,
                "the secret is shorter than 16 bytes: use 32 random bytes or more",
            );
        }
        keys.insert(id.as_str(), SigningKey::new(id, secret.as_bytes()));
    }
    let key = |field: String, id: &str| {
        keys.get(id).cloned().ok_or_else(|| {
            let declared: Vec<&&str> = keys.keys().collect();
            (
                field,
                format!("unknown key {id:?} (declared in [signing.keys]: {declared:?})"),
            )
        })
    };
    let mut out = Vec::new();
    for (name, t) in &file.topics {
        if t.sign.is_none() && t.verify.is_empty() {
            if !t.signed_headers.is_empty() {
                return fail(
                    format!("topics.{name}.signed_headers"),
                    "the topic is neither signed (sign) nor verified (verify)",
                );
            }
            continue;
        }
        let sign = match &t.sign {
            Some(id) => Some(key(format!("topics.{name}.sign"), id)?),
            None => None,
        };
        let verify = t
            .verify
            .iter()
            .map(|id| key(format!("topics.{name}.verify"), id))
            .collect::<Result<_, _>>()?;
        out.push((
            name.as_str(),
            TopicSigning {
                sign,
                verify,
                headers: t.signed_headers.clone(),
            },
        ));
    }
    Ok(out)
}

/// `[http_auth]` as the worker's authentication of its query routes, and
/// their scope. Without reading secrets, a placeholder key.
pub(super) fn http_auth(
    settings: &model::HttpAuthSettings,
    secrets: &Secrets,
) -> Result<(HttpAuth, String), Fail> {
    let field = "http_auth";
    let hs256 = secrets.named(
        "http_auth.hs256_secret",
        &settings.hs256_secret_env,
        &settings.hs256_secret_file,
    )?;
    let key = match (hs256, &settings.rs256_public_key_file) {
        _ if !secrets.read => JwtKey::Hs256(vec![0; 32]),
        (Some(secret), None) => {
            JwtKey::Hs256(read_secret(&secret, "http_auth.hs256_secret")?.into_bytes())
        }
        (None, Some(path)) => {
            let path = secrets.base.join(path);
            JwtKey::Rs256Pem(std::fs::read(&path).map_err(|e| {
                (
                    format!("{field}.rs256_public_key_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?)
        }
        _ => {
            return fail(
                field,
                "give one key: hs256_secret_env, hs256_secret_file or rs256_public_key_file",
            )
        }
    };
    let auth = HttpAuth::new(key, &settings.issuer, &settings.audience)
        .map_err(|e| (field.to_owned(), e.to_string()))?;
    let scope = settings
        .query_scope
        .clone()
        .unwrap_or_else(|| "query".into());
    Ok((auth, scope))
}

/// The masking of a `mask` node: its rules, keyed by `key_env` or
/// `key_file` when it hashes. Without reading secrets, a placeholder key.
pub(super) fn masking(
    node: &str,
    settings: &model::MaskSettings,
    secrets: &Secrets,
) -> Result<Masking, Fail> {
    let f = |field: &str| format!("nodes.{node}.{field}");
    if settings.key.is_some() {
        return fail(
            f("key"),
            "a key is never written in a topology file: name it with key_env (an environment variable) or key_file",
        );
    }
    if settings.hash.is_empty() && settings.redact.is_empty() && settings.drop.is_empty() {
        return fail(f("hash"), "a mask needs fields to hash, redact or drop");
    }
    let key = secrets.named(&f("key"), &settings.key_env, &settings.key_file)?;
    let mut masking = match (&key, settings.hash.is_empty()) {
        (None, false) => {
            return fail(
                f("hash"),
                "hashing needs a secret key: name it with key_env (an environment variable) or key_file",
            )
        }
        (Some(_), true) => {
            return fail(
                f("key_env"),
                "the key is only used to hash, and no field is hashed (hash)",
            )
        }
        (None, true) => Masking::new(),
        (Some(_), false) if !secrets.read => Masking::keyed(&[0; MIN_KEY_BYTES]).expect("long enough"),
        (Some(secret), false) => {
            let field = match settings.key_env {
                Some(_) => f("key_env"),
                None => f("key_file"),
            };
            let secret = read_secret(secret, &f("key"))?;
            Masking::keyed(secret.as_bytes()).map_err(|e| (field, e.to_string()))?
        }
    };
    type Add = fn(Masking, &str) -> Result<Masking, MaskError>;
    let rules: [(&str, &Vec<String>, Add); 3] = [
        ("hash", &settings.hash, Masking::hash),
        ("redact", &settings.redact, Masking::redact),
        ("drop", &settings.drop, Masking::drop),
    ];
    for (field, paths, add) in rules {
        for path in paths {
            masking = add(masking, path).map_err(|e| (f(field), e.to_string()))?;
        }
    }
    Ok(masking)
}
