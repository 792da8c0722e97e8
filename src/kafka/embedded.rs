//! The embedded cluster: librdkafka's in-process mock broker.
//!
//! It serves demos and fast tests. It listens on loopback, so other
//! processes can use it too, but it fakes transactions, never compacts and
//! has no CreateTopics API: nothing that claims durability, exactly-once or
//! compaction is proven on it.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;

type Reply = mpsc::Sender<Result<(), KafkaError>>;

enum Command {
    CreateTopic(String, i32, Reply),
}

/// An in-process Kafka cluster, alive until dropped.
///
/// The mock cluster is tied to the thread that made it, so it lives on a
/// thread of its own and this handle talks to it by message.
///
/// ```
/// let cluster = eddy::kafka::EmbeddedKafka::start().unwrap();
/// cluster.create_topic("events", 4).unwrap();
/// assert!(cluster.bootstrap_servers().starts_with("127.0.0.1:"));
/// ```
pub struct EmbeddedKafka {
    bootstrap: String,
    created: std::sync::Mutex<std::collections::HashSet<String>>,
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedKafka {
    /// Starts a one-broker cluster.
    pub fn start() -> Result<Self, KafkaError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (commands, rx) = mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("eddy-embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                for command in rx {
                    match command {
                        Command::CreateTopic(name, partitions, reply) => {
                            let _ = reply.send(cluster.create_topic(&name, partitions, 1));
                        }
                    }
                }
            })
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| KafkaError::ClientCreation("embedded cluster thread died".into()))??;
        Ok(EmbeddedKafka {
            bootstrap,
            created: Default::default(),
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// The `host:port` list to connect to.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic (replication factor 1); a topic this handle created
    /// before is left as it is, so several workers can share the cluster.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), KafkaError> {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if created.contains(name) {
            return Ok(());
        }
        let (tx, rx) = mpsc::channel();
        let gone = || KafkaError::ClientCreation("embedded cluster stopped".into());
        self.commands
            .as_ref()
            .ok_or_else(gone)?
            .send(Command::CreateTopic(name.to_owned(), partitions, tx))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())??;
        created.insert(name.to_owned());
        Ok(())
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
