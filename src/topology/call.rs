//! The call operator in the builder: a stream whose records each call an
//! external HTTP service, off the stream thread.

use std::sync::Arc;

use super::builder::KStream;
use super::graph::NodeKind;
use super::operator::Operator;
use crate::calls::{Call, CallFactory};
use crate::processor::Data;
use crate::stores::StoreSpec;

impl<K: Data, V: Data> KStream<K, V> {
    /// Calls an external HTTP service for each record, as `call` says, and
    /// emits each answer's output (Flink's async I/O, which Kafka Streams
    /// lacks). Calls run on an async runtime at the edge, at most
    /// [`concurrency`](crate::calls::CallSettings::concurrency) per task,
    /// while the stream thread goes on with other records; outputs keep
    /// input order per key (or per partition). Each try has a timeout,
    /// failures worth another try are retried with backoff and jitter, each
    /// endpoint has a circuit breaker, and every call carries an
    /// idempotency key. Records whose calls are not done are kept in the
    /// changelogged store `name`, so offsets are committed as usual and a
    /// crash or a rebalance never skips a call or loses its result.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use eddy::calls::{Call, CallRequest};
    /// use eddy::testing::TestTopic;
    /// use eddy::{StreamsBuilder, StringSerde, TopologyTestDriver};
    ///
    /// // A service that answers every request with "ok".
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let url = format!("http://{}/check", listener.local_addr().unwrap());
    /// std::thread::spawn(move || {
    ///     for mut s in listener.incoming().flatten() {
    ///         let _ = s.read(&mut [0u8; 4096]);
    ///         let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    ///     }
    /// });
    ///
    /// let call = Call::new(
    ///     StringSerde,
    ///     StringSerde,
    ///     move |_k: &String, v: &String| {
    ///         Ok(CallRequest { method: "POST".into(), url: url.clone(), headers: vec![], body: Some(v.clone().into_bytes()) })
    ///     },
    ///     |_k: &String, v: &String, answer: &eddy::calls::Answer<'_>| {
    ///         Ok(format!("{v}: {}", String::from_utf8_lossy(answer.body)))
    ///     },
    /// );
    /// let builder = StreamsBuilder::new();
    /// builder
    ///     .stream("orders", StringSerde, StringSerde)
    ///     .call("checked", call)
    ///     .to("checked-orders", StringSerde, StringSerde);
    /// let mut driver = TopologyTestDriver::new(builder.build().unwrap());
    /// let input = TestTopic::new("orders", StringSerde, StringSerde);
    /// let output = TestTopic::new("checked-orders", StringSerde, StringSerde);
    /// driver.pipe(&input, "o1".into(), "order 1".into(), 0).unwrap();
    /// assert_eq!(driver.read_key_values(&output).unwrap(), [("o1".into(), "order 1: ok".into())]);
    /// ```
    pub fn call<VO: Data>(&self, name: &str, call: Call<K, V, VO>) -> KStream<K, VO> {
        let op = Operator::keeps_key("call");
        let node = {
            let mut g = self.graph.borrow_mut();
            g.stores.push(Arc::new(StoreSpec::key_value(name)));
            let factory = Arc::new(CallFactory {
                name: name.into(),
                store: name.to_owned(),
                call,
            });
            g.add(
                op,
                NodeKind::Processor { op: op.name() },
                vec![self.node],
                factory,
            )
        };
        let out = KStream::new(self.graph.clone(), node);
        out.uses_stores([name.to_owned()]);
        out.named(name)
    }
}
