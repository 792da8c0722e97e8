//! Bearer JWT authentication of HTTP routes: HS256 or RS256 tokens, their
//! issuer, audience and expiry checked, and a scope per route (the token's
//! `scope` claim, space-separated, or its `scp` list). A request without a
//! valid token is refused with 401, one whose token lacks the route's scope
//! with 403, both with a JSON reason; `alg: none` and algorithms other than
//! the configured one are refused.
//!
//! ```
//! use eddy::security::{HttpAuth, JwtKey};
//! let auth = HttpAuth::new(JwtKey::Hs256(b"a secret of 32 bytes or more....".to_vec()), "https://idp", "orders").unwrap();
//! let routes = auth.protect(axum::Router::new(), "orders:read");
//! # let _ = routes;
//! ```

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// The key tokens are verified with.
#[derive(Clone)]
pub enum JwtKey {
    /// A shared secret (HS256).
    Hs256(Vec<u8>),
    /// An RSA public key in PEM (RS256).
    Rs256Pem(Vec<u8>),
}

/// Why authentication settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The key cannot be used.
    #[error("{0}")]
    Key(String),
}

/// Verifies bearer tokens for the routes it protects; cheap to clone.
#[derive(Clone)]
pub struct HttpAuth {
    inner: Arc<Inner>,
}

struct Inner {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = &self.inner.validation;
        f.debug_struct("HttpAuth")
            .field("algorithms", &v.algorithms)
            .field("issuer", &v.iss)
            .field("audience", &v.aud)
            .finish()
    }
}

/// The claims eddy reads beyond those the validation checks.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
}

impl HttpAuth {
    /// Tokens signed with `key`, issued by `issuer` for `audience`, not
    /// expired (a minute of leeway for clocks).
    pub fn new(key: JwtKey, issuer: &str, audience: &str) -> Result<HttpAuth, AuthError> {
        let (key, algorithm) = match key {
            JwtKey::Hs256(secret) if secret.len() < 32 => {
                return Err(AuthError::Key(
                    "an HS256 secret must be 32 bytes or more".into(),
                ))
            }
            JwtKey::Hs256(secret) => (DecodingKey::from_secret(&secret), Algorithm::HS256),
            JwtKey::Rs256Pem(pem) => (
                DecodingKey::from_rsa_pem(&pem)
                    .map_err(|e| AuthError::Key(format!("RS256 public key: {e}")))?,
                Algorithm::RS256,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 60;
        Ok(HttpAuth {
            inner: Arc::new(Inner { key, validation }),
        })
    }

    /// Whether the `Authorization` header `authorization` carries a valid
    /// token granting `scope`; the refusal (401 or 403) if not.
    pub fn check(&self, authorization: Option<&str>, scope: &str) -> Result<(), Refusal> {
        let Some(value) = authorization else {
            return Err(Refusal::unauthorized("a bearer token is required"));
        };
        let Some(token) = value.strip_prefix("Bearer ").map(str::trim) else {
            return Err(Refusal::unauthorized(
                "the Authorization header is not a bearer token",
            ));
        };
        let claims = decode::<Claims>(token, &self.inner.key, &self.inner.validation)
            .map_err(|e| Refusal::unauthorized(&format!("invalid token: {e}")))?
            .claims;
        let mut granted = claims
            .scope
            .iter()
            .flat_map(|s| s.split_whitespace())
            .chain(claims.scp.iter().flatten().map(String::as_str));
        match granted.any(|s| s == scope) {
            true => Ok(()),
            false => Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: format!("the token does not grant the scope {scope:?}"),
            }),
        }
    }

    /// `routes`, each request refused unless its token grants `scope`.
    pub fn protect(&self, routes: Router, scope: &str) -> Router {
        let scope: Arc<str> = scope.into();
        routes.layer(middleware::from_fn_with_state(
            (self.clone(), scope),
            authenticate,
        ))
    }
}

async fn authenticate(
    State((auth, scope)): State<(HttpAuth, Arc<str>)>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.check(authorization, &scope) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// A request refused: 401 (no valid token) or 403 (a valid token without
/// the route's scope), with a JSON reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 401 or 403.
    pub status: StatusCode,
    /// Why.
    pub message: String,
}

impl Refusal {
    fn unauthorized(message: &str) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_owned(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a shared secret of 32 bytes long";

    fn token(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn missing_expired_foreign_forged_and_unsigned_tokens_are_refused() {
        let auth = HttpAuth::new(JwtKey::Hs256(SECRET.to_vec()), "idp", "orders").unwrap();
        let valid = json!({"iss": "idp", "aud": "orders", "exp": now() + 600, "scope": "orders:read orders:write"});
        let check = |t: &str| auth.check(Some(&format!("Bearer {t}")), "orders:read");
        assert_eq!(check(&token(valid.clone(), SECRET)), Ok(()));
        // A list of scopes (scp) works as well as a string.
        let scp =
            json!({"iss": "idp", "aud": "orders", "exp": now() + 600, "scp": ["orders:read"]});
        assert_eq!(check(&token(scp, SECRET)), Ok(()));

        let unauthorized = |r: Result<(), Refusal>| {
            let r = r.unwrap_err();
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.message);
            r.message
        };
        assert_eq!(
            unauthorized(auth.check(None, "orders:read")),
            "a bearer token is required"
        );
        assert_eq!(
            unauthorized(auth.check(Some("Basic dXNlcjpwdw=="), "orders:read")),
            "the Authorization header is not a bearer token"
        );
        let mut expired = valid.clone();
        expired["exp"] = json!(now() - 3600);
        assert!(unauthorized(check(&token(expired, SECRET))).contains("ExpiredSignature"));
        let mut foreign = valid.clone();
        foreign["aud"] = json!("payments");
        assert!(unauthorized(check(&token(foreign, SECRET))).contains("InvalidAudience"));
        let mut other_issuer = valid.clone();
        other_issuer["iss"] = json!("elsewhere");
        assert!(unauthorized(check(&token(other_issuer, SECRET))).contains("InvalidIssuer"));
        let forged = token(valid.clone(), b"another secret of 32 bytes long!");
        assert!(unauthorized(check(&forged)).contains("InvalidSignature"));
        // alg: none, with no signature.
        use base64::Engine as _;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let unsigned = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&valid)
        );
        unauthorized(check(&unsigned));
        // A valid token without the route's scope: 403.
        let r = auth.check(Some(&format!("Bearer {}", token(valid, SECRET))), "admin");
        assert_eq!(
            r,
            Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "the token does not grant the scope \"admin\"".into()
            })
        );
        assert!(HttpAuth::new(JwtKey::Hs256(b"short".to_vec()), "i", "a").is_err());
    }
}
