//! The compiler of `call` nodes: the request, the mappings of answers and
//! failures as expressions, and the limits, each checked at load with its
//! field.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::nodes::Compiler;
use super::{duration, fail, json, Fail, Out};
use crate::calls::{
    Answer, BreakerConfig, Call, CallFailure, CallLimits, CallOrder, CallRequest, CallSettings,
    CallTls, OnOpen, RetryPolicy, TlsFiles,
};
use crate::config::bind::Bind;
use crate::config::expr::Expr;
use crate::config::model::CallNode;
use crate::processor::BoxError;
use crate::serde::StringSerde;

const RECORD: &[&str] = &["key", "value"];
const ANSWER: &[&str] = &["key", "value", "status", "body"];
const FAILURE: &[&str] = &["key", "value", "reason", "detail", "status", "body"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The expressions that make a request.
struct Request {
    method: String,
    url: Expr,
    headers: Vec<(String, Expr)>,
    body: Option<Expr>,
}

impl<'a> Compiler<'a> {
    /// A `call` node.
    pub(super) fn call(&mut self, name: &str, c: &CallNode) -> Result<Out, Fail> {
        let f = |field: &str| format!("nodes.{name}.{field}");
        let method = c.method.as_deref().unwrap_or("POST").to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return fail(
                f("method"),
                format!("{method:?} is not one of {}", METHODS.join(", ")),
            );
        }
        let mut headers = Vec::new();
        for (header, e) in &c.headers {
            let field = f(&format!("headers.{header}"));
            if hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return fail(field, format!("{header:?} is not a header name"));
            }
            headers.push((header.clone(), self.expr(&field, e, RECORD)?));
        }
        let request = Arc::new(Request {
            method,
            url: self.expr(&f("url"), &c.url, RECORD)?,
            headers,
            body: c
                .body
                .as_deref()
                .map(|b| self.expr(&f("body"), b, RECORD))
                .transpose()?,
        });
        let key = c
            .idempotency_key
            .as_deref()
            .map(|k| self.expr(&f("idempotency_key"), k, RECORD))
            .transpose()?;
        let response = self.expr(&f("response"), &c.response, ANSWER)?;
        let on_failure = c
            .on_failure
            .as_deref()
            .map(|e| self.expr(&f("on_failure"), e, FAILURE))
            .transpose()?;
        let mut settings = settings(name, c)?;
        settings.tls = self.call_tls(name, c)?;
        let vars = self.vars.clone();
        let (v1, v2, v3, v4) = (vars.clone(), vars.clone(), vars.clone(), vars);
        let mut call = Call::new(
            StringSerde,
            json(),
            move |k: &String, v: &Value| request.make(&v1, k, v),
            move |k: &String, v: &Value, a: &Answer<'_>| {
                let body =
                    parse_body(a.body).map_err(|e| format!("the answer is not JSON: {e}"))?;
                let status = i64::from(a.status);
                Ok(response
                    .eval(
                        &v2,
                        &[
                            ("key", Bind::Str(k)),
                            ("value", Bind::Json(v)),
                            ("status", Bind::Int(status)),
                            ("body", Bind::Json(&body)),
                        ],
                    )
                    .map_err(|e| e.to_string())?)
            },
        )
        .settings(settings);
        if let Some(on_failure) = on_failure {
            call = call.on_failure(move |k: &String, v: &Value, failure: &CallFailure| {
                let body = failure
                    .body
                    .as_deref()
                    .and_then(|b| parse_body(b).ok())
                    .unwrap_or(Value::Null);
                let status = failure.status.map_or(Value::Null, Value::from);
                Ok(on_failure
                    .eval(
                        &v3,
                        &[
                            ("key", Bind::Str(k)),
                            ("value", Bind::Json(v)),
                            ("reason", Bind::Str(failure.reason.as_str())),
                            ("detail", Bind::Str(&failure.detail)),
                            ("status", Bind::Json(&status)),
                            ("body", Bind::Json(&body)),
                        ],
                    )
                    .map_err(|e| e.to_string())?)
            });
        }
        if let Some(key) = key {
            call = call.idempotency_key(move |k: &String, v: &Value| {
                match key.eval(&v4, &[("key", Bind::Str(k)), ("value", Bind::Json(v))]) {
                    Ok(Value::String(s)) => s,
                    Ok(other) => other.to_string(),
                    // An expression that fails on a record keys its call by
                    // the failure, the same each time: still idempotent.
                    Err(e) => format!("unkeyed: {e}"),
                }
            });
        }
        let s = self.input(name, "input", &c.input)?.stream();
        Ok(Out::Stream(s.call(name, call)))
    }
}

impl Request {
    fn make(&self, vars: &Value, k: &str, v: &Value) -> Result<CallRequest, BoxError> {
        let b = [("key", Bind::Str(k)), ("value", Bind::Json(v))];
        let url = match self.url.eval(vars, &b)? {
            Value::String(url) => url,
            other => return Err(format!("url: {other} is not a string").into()),
        };
        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        for (name, e) in &self.headers {
            let value = match e.eval(vars, &b)? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            headers.push((name.clone(), value));
        }
        let body = match &self.body {
            Some(e) => {
                if !headers
                    .iter()
                    .any(|(h, _)| h.eq_ignore_ascii_case("content-type"))
                {
                    headers.push(("Content-Type".into(), "application/json".into()));
                }
                Some(serde_json::to_vec(&e.eval(vars, &b)?)?)
            }
            None => None,
        };
        Ok(CallRequest {
            method: self.method.clone(),
            url,
            headers,
            body,
        })
    }
}

/// An answer body as JSON (`null` when empty).
fn parse_body(body: &[u8]) -> Result<Value, serde_json::Error> {
    match body.iter().all(u8::is_ascii_whitespace) {
        true => Ok(Value::Null),
        false => serde_json::from_slice(body),
    }
}

impl Compiler<'_> {
    /// `[nodes.<name>.tls]`, its files read (when the file's secrets are:
    /// a client key is one).
    fn call_tls(&self, name: &str, c: &CallNode) -> Result<Option<CallTls>, Fail> {
        let (Some(t), true) = (&c.tls, self.secrets.read) else {
            return Ok(None);
        };
        let base = self.secrets.base;
        let files = TlsFiles {
            ca_file: t.ca_file.as_ref().map(|p| base.join(p)),
            cert_file: t.cert_file.as_ref().map(|p| base.join(p)),
            key_file: t.key_file.as_ref().map(|p| base.join(p)),
        };
        CallTls::load(&files)
            .map(Some)
            .or_else(|e| fail(format!("nodes.{name}.tls.{}", e.setting), e.reason))
    }
}

/// The limits and policies of a `call` node, checked.
fn settings(name: &str, c: &CallNode) -> Result<CallSettings, Fail> {
    let f = |field: &str| format!("nodes.{name}.{field}");
    let d = CallSettings::default();
    let at_least_one = |field: &str, n: Option<usize>, default: usize| match n {
        Some(0) => fail(f(field), "must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let positive = |field: &str, text: &Option<String>, default: Duration| match text {
        Some(t) => {
            let d = duration(&f(field), t)?;
            match d.is_zero() {
                true => fail(f(field), "must be more than 0"),
                false => Ok(d),
            }
        }
        None => Ok(default),
    };
    let concurrency = at_least_one("concurrency", c.concurrency, d.concurrency)?;
    let max_pending = at_least_one("max_pending", c.max_pending, d.max_pending.max(concurrency))?;
    if max_pending < concurrency {
        return fail(
            f("max_pending"),
            format!("must be at least concurrency ({concurrency})"),
        );
    }
    let order = match c.order.as_deref() {
        None | Some("key") => CallOrder::PerKey,
        Some("partition") => CallOrder::PerPartition,
        Some(other) => {
            return fail(
                f("order"),
                format!("{other:?} is not \"key\" or \"partition\""),
            )
        }
    };
    let on_open = match c.on_open.as_deref() {
        None | Some("wait") => OnOpen::Wait,
        Some("fail") => OnOpen::Fail,
        Some(other) => {
            return fail(
                f("on_open"),
                format!("{other:?} is not \"wait\" or \"fail\""),
            )
        }
    };
    let attempts = match c.attempts {
        Some(0) => return fail(f("attempts"), "must be at least 1 (the first try)"),
        Some(n) => n,
        None => d.retry.attempts,
    };
    let breaker_failures = match c.breaker_failures {
        Some(0) => return fail(f("breaker_failures"), "must be at least 1"),
        Some(n) => n,
        None => d.breaker.failures,
    };
    let header = c
        .idempotency_header
        .clone()
        .unwrap_or(d.idempotency_header.clone());
    if hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
        return fail(
            f("idempotency_header"),
            format!("{header:?} is not a header name"),
        );
    }
    Ok(CallSettings {
        concurrency,
        worker_concurrency: at_least_one(
            "worker_concurrency",
            c.worker_concurrency,
            d.worker_concurrency,
        )?,
        max_pending,
        order,
        on_open,
        retry: RetryPolicy {
            attempts,
            initial_backoff: positive("backoff", &c.backoff, d.retry.initial_backoff)?,
            max_backoff: positive("max_backoff", &c.max_backoff, d.retry.max_backoff)?,
        },
        limits: CallLimits {
            timeout: positive("timeout", &c.timeout, d.limits.timeout)?,
            max_body: at_least_one("max_answer_bytes", c.max_answer_bytes, d.limits.max_body)?,
        },
        breaker: BreakerConfig {
            failures: breaker_failures,
            open_for: positive("breaker_open_for", &c.breaker_open_for, d.breaker.open_for)?,
        },
        idempotency_header: header,
        tls: None,
    })
}
