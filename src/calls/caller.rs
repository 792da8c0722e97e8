//! One call to an external HTTP service, as the call operator makes it on
//! the async runtime at the edge: admitted by the endpoint's breaker,
//! each try bounded by a timeout, failures worth another try retried by
//! the policy, an answer's body capped, redirects not followed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use prost::bytes::Bytes;

use super::breaker::{Admission, CircuitBreaker};
use super::retry::{retryable_status, RetryPolicy};
use super::tls::CallTls;

/// A request, as the operator builds it from a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// An `http://` or `https://` URL.
    pub url: String,
    /// Headers (an idempotency key among them).
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

/// What became of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The service answered (any status the policy does not retry, or the
    /// last retryable one).
    Answered {
        /// Its status.
        status: u16,
        /// Its body.
        body: Vec<u8>,
        /// Tries made.
        tries: u32,
    },
    /// No usable answer: why, and the tries made.
    Failed {
        /// The kind of failure (a timeout, a connection error, a redirect,
        /// a body too large, ...).
        reason: FailReason,
        /// What happened, in words.
        detail: String,
        /// Tries made.
        tries: u32,
    },
    /// The endpoint's breaker is open: not called; ask again after this long.
    BreakerOpen(Duration),
}

/// Limits of each try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// How long one try may take, answer body included.
    pub timeout: Duration,
    /// The largest answer body read.
    pub max_body: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            timeout: Duration::from_secs(5),
            max_body: 1 << 20,
        }
    }
}

/// Makes calls to one endpoint (cheap to clone: clones share the
/// connection pool and the breaker).
#[derive(Clone)]
pub struct Caller {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    retry: RetryPolicy,
    limits: CallLimits,
    breaker: Arc<CircuitBreaker>,
}

/// Why a call gave no usable answer: the `reason` a failure branch sees
/// (as [`FailReason::as_str`] spells it) and dead letters name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailReason {
    /// The service answered a status that is not a success (after the
    /// retries, for a status worth retrying).
    Status,
    /// No answer within the timeout.
    Timeout,
    /// No connection, or the connection broke off.
    Unreachable,
    /// A redirect (not followed: the request was made for one service).
    Redirect,
    /// An answer body over the limit.
    TooLarge,
    /// The request could not be made from the record (a bad URL, method or
    /// header).
    BadRequest,
    /// The answer could not be mapped to an output (not JSON, a field
    /// missing).
    BadAnswer,
    /// The endpoint's circuit breaker is open.
    CircuitOpen,
}

impl FailReason {
    /// `status`, `timeout`, `unreachable`, `redirect`, `too_large`,
    /// `bad_request`, `bad_answer` or `circuit_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Status => "status",
            FailReason::Timeout => "timeout",
            FailReason::Unreachable => "unreachable",
            FailReason::Redirect => "redirect",
            FailReason::TooLarge => "too_large",
            FailReason::BadRequest => "bad_request",
            FailReason::BadAnswer => "bad_answer",
            FailReason::CircuitOpen => "circuit_open",
        }
    }
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One try's result: an answer, or a failure and whether it is worth
/// another try (with the server's `Retry-After`).
enum Try {
    Answer(u16, Vec<u8>, Option<Duration>),
    Failure(FailReason, String, bool),
}

impl Caller {
    /// A caller with these policies, trusting the system's certificate
    /// authorities for `https://` (call it from a tokio runtime).
    pub fn new(retry: RetryPolicy, limits: CallLimits, breaker: Arc<CircuitBreaker>) -> Caller {
        Caller::with_tls(retry, limits, breaker, &CallTls::system())
    }

    /// A caller whose `https://` connections use `tls`.
    pub fn with_tls(
        retry: RetryPolicy,
        limits: CallLimits,
        breaker: Arc<CircuitBreaker>,
        tls: &CallTls,
    ) -> Caller {
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config((*tls.config()).clone())
            .https_or_http()
            .enable_http1()
            .build();
        Caller {
            client: Client::builder(TokioExecutor::new()).build(connector),
            retry,
            limits,
            breaker,
        }
    }

    /// The breaker of its endpoint.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Calls, retrying as the policy says.
    pub async fn call(&self, request: &CallRequest) -> CallOutcome {
        // The body once, shared by every try.
        let body = Bytes::from(request.body.clone().unwrap_or_default());
        let mut tries = 0;
        loop {
            let probe = match self.breaker.admit(Instant::now()) {
                Admission::Refused(wait) if tries == 0 => return CallOutcome::BreakerOpen(wait),
                Admission::Refused(_) => {
                    return CallOutcome::Failed {
                        reason: FailReason::CircuitOpen,
                        detail: "the circuit breaker opened between tries".into(),
                        tries,
                    }
                }
                Admission::Probe => true,
                Admission::Call => false,
            };
            tries += 1;
            let (reason, detail) = match self.try_once(request, &body).await {
                Try::Answer(status, body, retry_after) => {
                    let again = retryable_status(status);
                    // A service that answers 409 (a request with the same
                    // key in progress) or 429 (slow down) is up: only
                    // timeouts and 5xx count against its breaker.
                    let healthy = status < 500 && status != 408;
                    self.breaker.record(healthy, Instant::now());
                    let next = again
                        .then(|| self.retry.backoff(tries + 1, retry_after, fastrand::f64()))
                        .flatten();
                    match next {
                        Some(wait) if !probe => {
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        _ => {
                            return CallOutcome::Answered {
                                status,
                                body,
                                tries,
                            }
                        }
                    }
                }
                Try::Failure(reason, detail, again) => {
                    // A redirect or an answer too large came from a service
                    // that is up; a request that could not be made says
                    // nothing of it.
                    let down = matches!(reason, FailReason::Timeout | FailReason::Unreachable);
                    self.breaker.record(!down, Instant::now());
                    if !again || probe {
                        return CallOutcome::Failed {
                            reason,
                            detail,
                            tries,
                        };
                    }
                    (reason, detail)
                }
            };
            match self.retry.backoff(tries + 1, None, fastrand::f64()) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    return CallOutcome::Failed {
                        reason,
                        detail,
                        tries,
                    }
                }
            }
        }
    }

    async fn try_once(&self, request: &CallRequest, body: &Bytes) -> Try {
        let mut builder = hyper::Request::builder()
            .method(request.method.as_str())
            .uri(request.url.as_str());
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let built = match builder.body(Full::new(body.clone())) {
            Ok(r) => r,
            Err(e) => return Try::Failure(FailReason::BadRequest, e.to_string(), false),
        };
        let timeout = self.limits.timeout;
        let answer = tokio::time::timeout(timeout, async {
            let response = self.client.request(built).await.map_err(|e| {
                (
                    FailReason::Unreachable,
                    format!("no answer: {}", chain(&e)),
                    true,
                )
            })?;
            let status = response.status();
            if status.is_redirection() {
                let to = response
                    .headers()
                    .get(hyper::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("nowhere");
                return Err((
                    FailReason::Redirect,
                    format!("a redirect ({status}) to {to}, not followed"),
                    false,
                ));
            }
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = Limited::new(response.into_body(), self.limits.max_body)
                .collect()
                .await
                .map_err(
                    |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                        Some(_) => (
                            FailReason::TooLarge,
                            format!("an answer over {} bytes", self.limits.max_body),
                            false,
                        ),
                        None => (
                            FailReason::Unreachable,
                            format!("the answer broke off: {e}"),
                            true,
                        ),
                    },
                )?;
            Ok((status.as_u16(), body.to_bytes().to_vec(), retry_after))
        })
        .await;
        match answer {
            Ok(Ok((status, body, retry_after))) => Try::Answer(status, body, retry_after),
            Ok(Err((reason, detail, again))) => Try::Failure(reason, detail, again),
            Err(_) => Try::Failure(
                FailReason::Timeout,
                format!("no answer within {timeout:?}"),
                true,
            ),
        }
    }
}

/// An error and its causes, `: `-separated (hyper's own says only
/// "client error (Connect)"; the cause says which: refused, a certificate
/// not trusted, ...).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}
