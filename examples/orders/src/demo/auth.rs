//! The demo's bearer tokens (`--jwt-secret-env`): the authentication of
//! `POST /orders` and of the read model's routes, and a token to try them
//! with.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use eddy::security::{HttpAuth, JwtKey};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::DemoArgs;

/// The scope `POST /orders` requires.
pub(super) const WRITE_SCOPE: &str = "orders:write";
/// The scope the read model's routes require.
pub(super) const QUERY_SCOPE: &str = "query";

/// What checks the demo's tokens, and the secret to make them.
pub(super) struct DemoAuth {
    pub(super) auth: HttpAuth,
    secret: Vec<u8>,
    issuer: String,
    audience: String,
}

impl DemoAuth {
    /// The authentication `args` ask for, if any.
    pub(super) fn from_args(args: &DemoArgs) -> anyhow::Result<Option<DemoAuth>> {
        let Some(var) = &args.jwt_secret_env else {
            return Ok(None);
        };
        let Some(secret) = std::env::var_os(var) else {
            bail!("--jwt-secret-env {var}: the environment variable is not set");
        };
        let secret = secret.into_encoded_bytes();
        let auth = HttpAuth::new(
            JwtKey::Hs256(secret.clone()),
            &args.jwt_issuer,
            &args.jwt_audience,
        )
        .with_context(|| format!("--jwt-secret-env {var}"))?;
        Ok(Some(DemoAuth {
            auth,
            secret,
            issuer: args.jwt_issuer.clone(),
            audience: args.jwt_audience.clone(),
        }))
    }

    /// A token granting `scopes` (space-separated), valid for `valid`.
    pub(super) fn token(&self, scopes: &str, valid: Duration) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "eddy-demo",
            "iat": now,
            "exp": now + valid.as_secs(),
            "scope": scopes,
        });
        Ok(encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )?)
    }
}
