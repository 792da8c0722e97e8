//! Human-readable views of a topology: text (Kafka Streams' layout) and
//! Mermaid.

use std::fmt::Write;

use super::graph::{NodeKind, Topology};

impl Topology {
    /// The topology as text, one block per sub-topology, in the layout of
    /// Kafka Streams' `Topology#describe()`.
    ///
    /// ```
    /// # use eddy::serde::StringSerde;
    /// # use eddy::topology::StreamsBuilder;
    /// let b = StreamsBuilder::new();
    /// b.stream("in", StringSerde, StringSerde).to("out", StringSerde, StringSerde);
    /// let text = b.build().unwrap().describe();
    /// assert!(text.contains("Source: KSTREAM-SOURCE-0000000000 (topics: [in])"));
    /// ```
    pub fn describe(&self) -> String {
        let mut out = String::from("Topologies:\n");
        for sub in &self.subtopologies {
            let _ = writeln!(out, "   Sub-topology: {}", sub.id);
            for &i in &sub.nodes {
                let n = &self.nodes[i];
                let _ = match &n.kind {
                    NodeKind::Source { topic } => {
                        writeln!(out, "    Source: {} (topics: [{topic}])", n.name)
                    }
                    NodeKind::Processor { op } => {
                        writeln!(out, "    Processor: {} (op: {op})", n.name)
                    }
                    NodeKind::Sink { topic } => {
                        writeln!(out, "    Sink: {} (topic: {topic})", n.name)
                    }
                };
                if !n.children.is_empty() {
                    let _ = writeln!(out, "      --> {}", self.names(&n.children));
                }
                if !n.parents.is_empty() {
                    let _ = writeln!(out, "      <-- {}", self.names(&n.parents));
                }
            }
            out.push('\n');
        }
        out
    }

    fn names(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .map(|&i| &*self.nodes[i].name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The topology as a Mermaid flowchart: one subgraph per sub-topology,
    /// topics as stadium-shaped nodes.
    pub fn to_mermaid(&self) -> String {
        fn topic_id(topic: &str, topics: &mut Vec<String>) -> usize {
            topics.iter().position(|t| t == topic).unwrap_or_else(|| {
                topics.push(topic.to_owned());
                topics.len() - 1
            })
        }
        let mut out = String::from("flowchart LR\n");
        let mut topics: Vec<String> = Vec::new();
        let mut edges = String::new();
        for sub in &self.subtopologies {
            let _ = writeln!(out, "  subgraph s{}[\"Sub-topology {}\"]", sub.id, sub.id);
            for &i in &sub.nodes {
                let n = &self.nodes[i];
                let _ = writeln!(out, "    n{i}[\"{}\"]", n.name);
                let _ = match &n.kind {
                    NodeKind::Source { topic } => {
                        writeln!(edges, "  t{} --> n{i}", topic_id(topic, &mut topics))
                    }
                    NodeKind::Sink { topic } => {
                        writeln!(edges, "  n{i} --> t{}", topic_id(topic, &mut topics))
                    }
                    NodeKind::Processor { .. } => Ok(()),
                };
                for &c in &n.children {
                    let _ = writeln!(edges, "  n{i} --> n{c}");
                }
            }
            out.push_str("  end\n");
        }
        for (i, t) in topics.iter().enumerate() {
            let _ = writeln!(out, "  t{i}([\"{t}\"])");
        }
        out + &edges
    }
}

#[cfg(test)]
mod tests {
    use crate::serde::StringSerde;
    use crate::topology::StreamsBuilder;

    #[test]
    fn describes_subtopologies_and_edges() {
        let b = StreamsBuilder::new();
        let s = b.stream("a", StringSerde, StringSerde);
        s.filter(|_, v| !v.is_empty())
            .named("non-empty")
            .to("b", StringSerde, StringSerde);
        b.stream("b", StringSerde, StringSerde)
            .to("c", StringSerde, StringSerde);
        let t = b.build().unwrap();
        assert_eq!(
            t.describe(),
            "Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [a])
      --> non-empty
    Processor: non-empty (op: filter)
      --> KSTREAM-SINK-0000000002
      <-- KSTREAM-SOURCE-0000000000
    Sink: KSTREAM-SINK-0000000002 (topic: b)
      <-- non-empty

   Sub-topology: 1
    Source: KSTREAM-SOURCE-0000000003 (topics: [b])
      --> KSTREAM-SINK-0000000004
    Sink: KSTREAM-SINK-0000000004 (topic: c)
      <-- KSTREAM-SOURCE-0000000003

"
        );
        assert_eq!(
            t.to_mermaid(),
            "flowchart LR
  subgraph s0[\"Sub-topology 0\"]
    n0[\"KSTREAM-SOURCE-0000000000\"]
    n1[\"non-empty\"]
    n2[\"KSTREAM-SINK-0000000002\"]
  end
  subgraph s1[\"Sub-topology 1\"]
    n3[\"KSTREAM-SOURCE-0000000003\"]
    n4[\"KSTREAM-SINK-0000000004\"]
  end
  t0([\"a\"])
  t1([\"b\"])
  t2([\"c\"])
  t0 --> n0
  n0 --> n1
  n1 --> n2
  n2 --> t1
  t1 --> n3
  n3 --> n4
  n4 --> t2
"
        );
    }
}
