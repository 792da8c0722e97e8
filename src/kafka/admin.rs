//! Topic checks and creation at start-up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

use super::ClientSecurity;
use crate::error::Error;

/// Partition counts of the topics that exist, fetched from cluster
/// metadata; fails if no broker answers within `timeout`, at once and
/// naming the setting to check if the brokers refuse the credentials or
/// the TLS handshake fails (`security`: the worker's settings, if any).
pub(crate) fn topic_partitions(
    config: &ClientConfig,
    security: Option<&ClientSecurity>,
    timeout: Duration,
) -> Result<HashMap<String, i32>, Error> {
    let servers = config
        .get("bootstrap.servers")
        .unwrap_or_default()
        .to_owned();
    let unreachable = |source| Error::Unreachable {
        servers: servers.clone(),
        timeout,
        source,
    };
    let client: BaseConsumer<StartContext> = config
        .create_with_context(StartContext::default())
        .map_err(unreachable)?;
    let deadline = Instant::now() + timeout;
    let metadata = loop {
        // Asked in short rounds: refused credentials or certificates are
        // reported between them, and end the wait.
        let round = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        match client.fetch_metadata(None, round) {
            Ok(m) => break m,
            Err(e) => {
                // Errors and logs reach the context, one at a time, when
                // the client is polled.
                let served = Instant::now() + Duration::from_millis(100);
                while Instant::now() < served {
                    if let Some(Err(e)) = client.poll(Duration::from_millis(10)) {
                        client
                            .context()
                            .note(e.rdkafka_error_code(), &e.to_string());
                    }
                }
                if let Some(refused) = client.context().refused(security, &servers) {
                    return Err(refused);
                }
                let transient = match e {
                    KafkaError::MetadataFetch(code) => passes(code),
                    _ => false,
                };
                if !transient || Instant::now() >= deadline {
                    return Err(unreachable(e));
                }
            }
        }
    };
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect())
}

/// Of `topics`, those the worker's principal may not see (the brokers
/// answer "topic authorization failed" for them).
pub(crate) fn denied_topics(
    config: &ClientConfig,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<String>, Error> {
    let client: BaseConsumer = config.create()?;
    let mut denied = Vec::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), timeout)?;
        let refused = metadata.topics().iter().any(|t| {
            t.error().map(RDKafkaErrorCode::from)
                == Some(RDKafkaErrorCode::TopicAuthorizationFailed)
        });
        if refused {
            denied.push((*topic).to_owned());
        }
    }
    Ok(denied)
}

/// Remembers what librdkafka reported while a client connects.
#[derive(Default)]
struct StartContext {
    /// The last authentication or TLS failure, with librdkafka's reason.
    refused: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ClientContext for StartContext {
    // Connection failures are reported once, as the start's error.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(?level, "librdkafka: {fac}: {log_message}");
        // With librdkafka's `debug` on, a failure is logged and not always
        // also raised as an error.
        if fac == "FAIL" {
            self.note(None, log_message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("librdkafka: {error}: {reason}");
        self.note(error.rdkafka_error_code(), reason);
    }
}

impl ConsumerContext for StartContext {}

impl StartContext {
    /// Keeps a failure to authenticate or to make the TLS handshake.
    fn note(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        let code = if reason.contains("SSL handshake failed") || code == Some(RDKafkaErrorCode::SSL)
        {
            RDKafkaErrorCode::SSL
        } else if reason.contains("SASL authentication error")
            || matches!(
                code,
                Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
            )
        {
            RDKafkaErrorCode::Authentication
        } else {
            return;
        };
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        // librdkafka's reason says more than the bare code of a polled error.
        if refused.is_none() || reason.contains(": ") {
            *refused = Some((code, reason.to_owned()));
        }
    }

    /// The failure to report, if the brokers refused the connection.
    fn refused(&self, security: Option<&ClientSecurity>, servers: &str) -> Option<Error> {
        let (code, reason) = self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        // librdkafka's reason starts with the broker's name.
        let detail = reason
            .split_once(": ")
            .map_or(reason.as_str(), |(_, d)| d)
            .to_owned();
        Some(match code {
            RDKafkaErrorCode::SSL => Error::Tls {
                servers: servers.to_owned(),
                setting: security.map_or_else(|| "kafka.tls".to_owned(), |s| s.ca_setting.clone()),
                detail,
            },
            _ => Error::Authentication {
                servers: servers.to_owned(),
                principal: security
                    .and_then(|s| s.principal.clone())
                    .unwrap_or_else(|| "the worker".to_owned()),
                setting: security
                    .and_then(|s| s.password_setting.clone())
                    .unwrap_or_else(|| "kafka.sasl".to_owned()),
                detail,
            },
        })
    }
}

/// Creates `topic` with `partitions` partitions, the broker's default
/// replication factor and the given topic configs, unless it exists.
pub fn ensure_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Spawn {
            what: "an async runtime".into(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    let created = retrying(deadline, || {
        let results = runtime.block_on(admin.create_topics([&new], &options))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(KafkaError::AdminOp(code)),
            }
        }
        Ok(())
    });
    created.map_err(|e| match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => Error::NotAuthorized {
            principal: principal(config),
            operation: "create",
            resource: format!("topic {topic:?}"),
        },
        _ => Error::CreateTopic {
            topic: topic.to_owned(),
            reason: e.to_string(),
        },
    })
}

/// The principal a client configuration authenticates as: its SASL user,
/// else Kafka's anonymous one.
pub(crate) fn principal(config: &ClientConfig) -> String {
    match config.get("sasl.username") {
        Some(user) => format!("User:{user}"),
        None => "User:ANONYMOUS".to_owned(),
    }
}

/// Runs `op` again, every half second until `deadline`, while it fails
/// for a reason that passes: a broker that restarts refuses connections
/// for a while, and librdkafka sends an admin request to one broker (the
/// controller it last heard of) without trying another.
fn retrying<T>(
    deadline: Instant,
    mut op: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    loop {
        match op() {
            Err(KafkaError::AdminOp(code) | KafkaError::MetadataFetch(code))
                if passes(code) && Instant::now() < deadline =>
            {
                tracing::warn!("a Kafka admin request failed ({code}); trying again");
                std::thread::sleep(Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

/// Whether an admin request that failed with `code` may succeed later.
fn passes(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        BrokerTransportFailure
            | AllBrokersDown
            | OperationTimedOut
            | RequestTimedOut
            | NotController
            | LeaderNotAvailable
            | NotLeaderForPartition
            | NetworkException
            | BrokerNotAvailable
            | CoordinatorNotAvailable
            | KafkaStorageError
    )
}

/// How far ahead of the broker's clock each of `topics` accepts a record
/// timestamp, in ms: `message.timestamp.after.max.ms` (Kafka 3.6+), else
/// `message.timestamp.difference.max.ms`. Topics whose config cannot be
/// read are left out.
pub fn future_timestamp_limits(
    config: &ClientConfig,
    topics: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, i64>, Error> {
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let specifiers: Vec<_> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Spawn {
            what: "an async runtime".into(),
            source,
        })?;
    let results = runtime.block_on(admin.describe_configs(&specifiers, &options))?;
    let mut limits = HashMap::new();
    for (topic, result) in topics.iter().zip(results) {
        let Ok(resource) = result else { continue };
        let entries = resource.entry_map();
        let limit = [
            "message.timestamp.after.max.ms",
            "message.timestamp.difference.max.ms",
        ]
        .iter()
        .find_map(|k| entries.get(k)?.value.as_deref()?.parse::<i64>().ok());
        if let Some(limit) = limit {
            limits.insert((*topic).to_owned(), limit);
        }
    }
    Ok(limits)
}
