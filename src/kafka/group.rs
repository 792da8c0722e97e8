//! How stream threads' consumers share partitions: the consumer group
//! protocol.

/// The consumer group protocol of the stream threads.
///
/// ```
/// use eddy::kafka::{GroupProtocol, StreamsConfig};
/// let config = StreamsConfig::new("orders").bootstrap_servers("127.0.0.1:9092");
/// assert_eq!(config.group_protocol_or_default(), GroupProtocol::Consumer);
/// let config = config.group_protocol(GroupProtocol::Classic);
/// let consumer = config.consumer_client_config("127.0.0.1:9092", "t0");
/// assert_eq!(consumer.get("group.protocol"), Some("classic"));
/// assert_eq!("consumer".parse(), Ok(GroupProtocol::Consumer));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    /// The next-generation protocol (KIP-848, Apache Kafka 4.0+): the
    /// broker assigns partitions with its `range` assignor, which keeps
    /// partition `p` of every co-partitioned input on one member and each
    /// member's partitions where they were; a rebalance revokes only the
    /// partitions that move, and the other tasks keep processing. Session
    /// and heartbeat times are the broker's (`group.consumer.*`).
    Consumer,
    /// The classic protocol with librdkafka's eager `range` assignor: every
    /// rebalance revokes every partition and stops every task. For brokers
    /// older than 4.0; session times are the client's
    /// (`consumer.session.timeout.ms`).
    Classic,
}

impl GroupProtocol {
    /// The name librdkafka, topology files and the command line use.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Consumer => "consumer",
            GroupProtocol::Classic => "classic",
        }
    }

    /// Client properties that this protocol leaves to the broker (set, they
    /// keep the consumer from starting), with the reason.
    pub(crate) fn refused_property(self, key: &str) -> Option<&'static str> {
        match (self, key) {
            (
                GroupProtocol::Consumer,
                "session.timeout.ms" | "heartbeat.interval.ms" | "partition.assignment.strategy",
            ) => Some(
                "the consumer group protocol takes it from the broker \
                 (group.consumer.session.timeout.ms, group.consumer.heartbeat.interval.ms, \
                 the range assignor); set group_protocol = \"classic\" to set it here",
            ),
            _ => None,
        }
    }
}

impl std::fmt::Display for GroupProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for GroupProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "consumer" => Ok(GroupProtocol::Consumer),
            "classic" => Ok(GroupProtocol::Classic),
            _ => Err(format!(
                "unknown group protocol {s:?}: expected consumer or classic"
            )),
        }
    }
}
