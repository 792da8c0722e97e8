//! The settings of a topology file that name secrets: `[kafka]` (TLS and
//! SASL) and `[signing]` (the keys of signed topics), with the per-topic
//! `sign` and `verify`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{fail, Fail};
use crate::config::model::{self, File};
use crate::kafka::{Sasl, Secret, Security, Tls};
use crate::security::{HttpAuth, JwtKey, SigningKey, TopicSigning};

/// `[kafka]` as the builder's settings (paths from the file's folder);
/// `None` when neither TLS nor SASL is set. Without `read_secrets`, the
/// secrets named are left empty, unread.
pub(super) fn security(
    kafka: &model::Kafka,
    base: &Path,
    read_secrets: bool,
) -> Result<Option<Security>, Fail> {
    let secret = |field: &str, env: &Option<String>, file: &Option<PathBuf>| match (env, file) {
        (Some(_), None) | (None, Some(_)) if !read_secrets => {
            Ok(Some(Secret::Value(String::new())))
        }
        (Some(var), None) => Ok(Some(Secret::Env(var.clone()))),
        (None, Some(path)) => Ok(Some(Secret::File(base.join(path)))),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => fail(
            format!("kafka.{field}_env"),
            format!("give {field}_env or {field}_file, not both"),
        ),
    };
    let tls = match &kafka.tls {
        None => None,
        Some(t) => Some(Tls {
            ca_file: t.ca_file.as_ref().map(|p| base.join(p)),
            cert_file: t.cert_file.as_ref().map(|p| base.join(p)),
            key_file: t.key_file.as_ref().map(|p| base.join(p)),
            key_password: secret(
                "tls.key_password",
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
            let Some(password) = secret("sasl.password", &s.password_env, &s.password_file)? else {
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
/// `sign` or `verify`, keys read from `[signing.keys]` (left empty without
/// `read_secrets`).
pub(super) fn signing<'f>(
    file: &'f File,
    base: &Path,
    read_secrets: bool,
) -> Result<Vec<(&'f str, TopicSigning)>, Fail> {
    let mut keys = BTreeMap::new();
    for (id, key) in &file.signing.keys {
        let field = format!("signing.keys.{id}");
        if key.secret.is_some() {
            return fail(
                format!("{field}.secret"),
                "a secret is never written in a topology file: name it with secret_env (an environment variable) or secret_file",
            );
        }
        let secret = match (&key.secret_env, &key.secret_file) {
            _ if !read_secrets => String::new(),
            (Some(var), None) => std::env::var(var).map_err(|_| {
                (
                    format!("{field}.secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?,
            (None, Some(path)) => {
                let path = base.join(path);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    (
                        format!("{field}.secret_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                text.trim_end_matches(['\r', '\n']).to_owned()
            }
            _ => return fail(field, "give secret_env or secret_file (one of them)"),
        };
        if read_secrets && secret.len() < 16 {
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
/// their scope. Without `read_secrets`, a placeholder key.
pub(super) fn http_auth(
    settings: &model::HttpAuthSettings,
    base: &Path,
    read_secrets: bool,
) -> Result<(HttpAuth, String), Fail> {
    let field = "http_auth";
    let read = |path: &PathBuf, name: &str| {
        let path = base.join(path);
        std::fs::read(&path).map_err(|e| {
            (
                format!("{field}.{name}"),
                format!("cannot read {}: {e}", path.display()),
            )
        })
    };
    let key = match (
        &settings.hs256_secret_env,
        &settings.hs256_secret_file,
        &settings.rs256_public_key_file,
    ) {
        _ if !read_secrets => JwtKey::Hs256(vec![0; 32]),
        (Some(var), None, None) => JwtKey::Hs256(
            std::env::var(var)
                .map_err(|_| {
                    (
                        format!("{field}.hs256_secret_env"),
                        format!("environment variable {var} is not set"),
                    )
                })?
                .into_bytes(),
        ),
        (None, Some(path), None) => {
            let mut secret = read(path, "hs256_secret_file")?;
            while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                secret.pop();
            }
            JwtKey::Hs256(secret)
        }
        (None, None, Some(path)) => JwtKey::Rs256Pem(read(path, "rs256_public_key_file")?),
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
