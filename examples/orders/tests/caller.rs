//! `eddy::calls::Caller` against the payment gateway simulator and against
//! hostile servers: retries through failures and an outage to one charge,
//! the last answer when tries run out, the breaker opening and refusing,
//! and a redirect, a 10 MB body and a server that never answers each
//! failing with its reason.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use eddy::calls::{
    BreakerConfig, CallLimits, CallOutcome, CallRequest, Caller, CircuitBreaker, FailReason,
    RetryPolicy,
};
use eddy_orders::gateway::{Gateway, GatewayConfig};

fn charge(addr: SocketAddr, key: &str) -> CallRequest {
    CallRequest {
        method: "POST".into(),
        url: format!("http://{addr}/charges"),
        headers: vec![
            ("Idempotency-Key".into(), key.into()),
            ("Content-Type".into(), "application/json".into()),
        ],
        body: Some(br#"{"order_id": "o1", "amount": 100}"#.to_vec()),
    }
}

fn caller(attempts: u32, breaker: BreakerConfig, limits: CallLimits) -> Caller {
    let retry = RetryPolicy {
        attempts,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    };
    Caller::new(retry, limits, Arc::new(CircuitBreaker::new(breaker)))
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn gateway(config: GatewayConfig) -> Gateway {
    Gateway::start(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

const NO_BREAKER: BreakerConfig = BreakerConfig {
    failures: 1000,
    open_for: Duration::from_secs(1),
};

#[test]
fn retries_through_an_outage_to_one_charge() {
    let g = gateway(GatewayConfig {
        outages: vec![Duration::ZERO..Duration::from_millis(300)],
        ..GatewayConfig::default()
    });
    let c = caller(100, NO_BREAKER, CallLimits::default());
    let outcome = run(c.call(&charge(g.addr(), "o1-pay")));
    let CallOutcome::Answered {
        status,
        body,
        tries,
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(status, 200);
    assert!(tries > 1, "{tries}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "approved");
    // Called again (a re-processed record): the same answer, one charge.
    let again = run(c.call(&charge(g.addr(), "o1-pay")));
    assert!(
        matches!(
            again,
            CallOutcome::Answered {
                status: 200,
                tries: 1,
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(g.stats().charges, 1);
}

#[test]
fn the_last_answer_when_tries_run_out() {
    let g = gateway(GatewayConfig {
        failure_rate: 1.0,
        ..GatewayConfig::default()
    });
    let c = caller(3, NO_BREAKER, CallLimits::default());
    let outcome = run(c.call(&charge(g.addr(), "k")));
    let CallOutcome::Answered { status, tries, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(status == 500 || status == 429, "{status}");
    assert_eq!(tries, 3);
    assert_eq!(g.stats().requests, 3);
    assert_eq!(g.stats().charges, 0);
}

#[test]
fn the_breaker_opens_and_refuses_without_calling() {
    let g = gateway(GatewayConfig {
        outages: vec![Duration::ZERO..Duration::from_secs(3600)],
        ..GatewayConfig::default()
    });
    let breaker = BreakerConfig {
        failures: 2,
        open_for: Duration::from_secs(60),
    };
    let c = caller(5, breaker, CallLimits::default());
    let first = run(c.call(&charge(g.addr(), "k")));
    assert_eq!(
        first,
        CallOutcome::Failed {
            reason: FailReason::CircuitOpen,
            detail: "the circuit breaker opened between tries".into(),
            tries: 2
        }
    );
    let second = run(c.call(&charge(g.addr(), "k")));
    assert!(
        matches!(second, CallOutcome::BreakerOpen(d) if d > Duration::from_secs(50)),
        "{second:?}"
    );
    assert_eq!(g.stats().requests, 2);
}

/// A server that answers every connection with `reply` (or never, if
/// `None`), on a thread of its own.
fn hostile(reply: Option<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            match &reply {
                Some(r) => {
                    let _ = s.write_all(r);
                }
                None => held.push(s),
            }
        }
    });
    addr
}

#[test]
fn hostile_answers_fail_with_their_reason() {
    let limits = CallLimits {
        timeout: Duration::from_millis(300),
        max_body: 1 << 20,
    };
    let c = caller(2, NO_BREAKER, limits);
    let redirect = hostile(Some(
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/loop\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    ));
    assert_eq!(
        run(c.call(&charge(redirect, "k"))),
        CallOutcome::Failed {
            reason: FailReason::Redirect,
            detail: "a redirect (302 Found) to http://127.0.0.1:1/loop, not followed".into(),
            tries: 1
        }
    );
    let mut huge = b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n".to_vec();
    huge.resize(huge.len() + 10 * 1024 * 1024, b'x');
    assert_eq!(
        run(c.call(&charge(hostile(Some(huge)), "k"))),
        CallOutcome::Failed {
            reason: FailReason::TooLarge,
            detail: "an answer over 1048576 bytes".into(),
            tries: 1
        }
    );
    assert_eq!(
        run(c.call(&charge(hostile(None), "k"))),
        CallOutcome::Failed {
            reason: FailReason::Timeout,
            detail: "no answer within 300ms".into(),
            tries: 2
        }
    );
}
