//! Human-readable views of a topology: text (Kafka Streams' layout),
//! Mermaid and Graphviz DOT.

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
                    NodeKind::Processor { op } if n.stores.is_empty() => {
                        writeln!(out, "    Processor: {} (op: {op})", n.name)
                    }
                    NodeKind::Processor { op } => writeln!(
                        out,
                        "    Processor: {} (op: {op}, stores: [{}])",
                        n.name,
                        n.stores.join(", ")
                    ),
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

    /// The topology as JSON, for tools and the status page: its
    /// sub-topologies, each with its nodes in topological order (name,
    /// kind, topic or operator, stores, children).
    ///
    /// ```
    /// # use eddy::serde::StringSerde;
    /// # use eddy::topology::StreamsBuilder;
    /// let b = StreamsBuilder::new();
    /// b.stream("in", StringSerde, StringSerde).to("out", StringSerde, StringSerde);
    /// let json = b.build().unwrap().to_json();
    /// assert_eq!(json["subtopologies"][0]["nodes"][0]["topic"], "in");
    /// assert_eq!(json["subtopologies"][0]["nodes"][1]["kind"], "sink");
    /// ```
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let subtopologies: Vec<_> = self
            .subtopologies
            .iter()
            .map(|sub| {
                let nodes: Vec<_> = sub
                    .nodes
                    .iter()
                    .map(|&i| {
                        let n = &self.nodes[i];
                        let children: Vec<&str> =
                            n.children.iter().map(|&c| &*self.nodes[c].name).collect();
                        let (kind, topic, op) = match &n.kind {
                            NodeKind::Source { topic } => ("source", Some(topic), None),
                            NodeKind::Processor { op } => ("processor", None, Some(*op)),
                            NodeKind::Sink { topic } => ("sink", Some(topic), None),
                        };
                        json!({
                            "name": &*n.name,
                            "kind": kind,
                            "topic": topic,
                            "op": op,
                            "stores": n.stores,
                            "children": children,
                        })
                    })
                    .collect();
                json!({ "id": sub.id, "nodes": nodes })
            })
            .collect();
        json!({ "subtopologies": subtopologies })
    }

    fn names(&self, nodes: &[usize]) -> String {
        nodes
            .iter()
            .map(|&i| &*self.nodes[i].name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The topology as a Mermaid flowchart: one subgraph per sub-topology,
    /// topics as stadium-shaped nodes, stores as cylinders.
    pub fn to_mermaid(&self) -> String {
        let d = self.drawing();
        let mut out = String::from("flowchart LR\n");
        for (sub, nodes) in &d.subtopologies {
            let _ = writeln!(out, "  subgraph s{sub}[\"Sub-topology {sub}\"]");
            for &i in nodes {
                let _ = writeln!(out, "    n{i}[\"{}\"]", self.nodes[i].name);
            }
            out.push_str("  end\n");
        }
        for (i, t) in d.topics.iter().enumerate() {
            let _ = writeln!(out, "  t{i}([\"{t}\"])");
        }
        for (i, s) in d.stores.iter().enumerate() {
            let _ = writeln!(out, "  st{i}[(\"{s}\")]");
        }
        for (a, b) in &d.edges {
            let _ = writeln!(out, "  {a} --> {b}");
        }
        for (n, s) in &d.store_links {
            let _ = writeln!(out, "  {n} -.- {s}");
        }
        out
    }

    /// The topology in Graphviz DOT: one cluster per sub-topology, topics as
    /// rounded boxes, stores as cylinders.
    ///
    /// ```
    /// # use eddy::serde::StringSerde;
    /// # use eddy::topology::StreamsBuilder;
    /// let b = StreamsBuilder::new();
    /// b.stream("in", StringSerde, StringSerde).to("out", StringSerde, StringSerde);
    /// let dot = b.build().unwrap().to_dot();
    /// assert!(dot.starts_with("digraph topology {"));
    /// assert!(dot.contains("t0 -> n0;"));
    /// ```
    pub fn to_dot(&self) -> String {
        let d = self.drawing();
        let mut out = String::from("digraph topology {\n  rankdir=LR;\n");
        for (sub, nodes) in &d.subtopologies {
            let _ = writeln!(
                out,
                "  subgraph cluster_{sub} {{\n    label=\"Sub-topology {sub}\";"
            );
            for &i in nodes {
                let n = &self.nodes[i];
                let op = match &n.kind {
                    NodeKind::Source { .. } => "source",
                    NodeKind::Sink { .. } => "sink",
                    NodeKind::Processor { op } => op,
                };
                let _ = writeln!(out, "    n{i} [label=\"{}\\n({op})\"];", n.name);
            }
            out.push_str("  }\n");
        }
        for (i, t) in d.topics.iter().enumerate() {
            let _ = writeln!(out, "  t{i} [label=\"{t}\", shape=box, style=rounded];");
        }
        for (i, s) in d.stores.iter().enumerate() {
            let _ = writeln!(out, "  st{i} [label=\"{s}\", shape=cylinder];");
        }
        for (a, b) in &d.edges {
            let _ = writeln!(out, "  {a} -> {b};");
        }
        for (n, s) in &d.store_links {
            let _ = writeln!(out, "  {n} -> {s} [style=dashed, arrowhead=none];");
        }
        out + "}\n"
    }

    /// What the drawings show: sub-topologies, topics, stores and edges, with
    /// ids `n<node>`, `t<topic>`, `st<store>`.
    fn drawing(&self) -> Drawing {
        fn id(name: &str, names: &mut Vec<String>) -> usize {
            names.iter().position(|t| t == name).unwrap_or_else(|| {
                names.push(name.to_owned());
                names.len() - 1
            })
        }
        let mut d = Drawing::default();
        for sub in &self.subtopologies {
            d.subtopologies.push((sub.id, sub.nodes.clone()));
            for &i in &sub.nodes {
                let n = &self.nodes[i];
                match &n.kind {
                    NodeKind::Source { topic } => d
                        .edges
                        .push((format!("t{}", id(topic, &mut d.topics)), format!("n{i}"))),
                    NodeKind::Sink { topic } => d
                        .edges
                        .push((format!("n{i}"), format!("t{}", id(topic, &mut d.topics)))),
                    NodeKind::Processor { .. } => {}
                }
                for &c in &n.children {
                    d.edges.push((format!("n{i}"), format!("n{c}")));
                }
                for store in &n.stores {
                    let s = id(store, &mut d.stores);
                    d.store_links.push((format!("n{i}"), format!("st{s}")));
                }
            }
        }
        d
    }
}

#[derive(Default)]
struct Drawing {
    subtopologies: Vec<(u32, Vec<usize>)>,
    topics: Vec<String>,
    stores: Vec<String>,
    edges: Vec<(String, String)>,
    store_links: Vec<(String, String)>,
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
