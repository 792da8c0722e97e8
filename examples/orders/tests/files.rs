//! The order pipeline's topology files compile with its registry, and the
//! stock reserver's parameters are checked when a file is loaded.

use std::path::Path;

mod common;

use eddy::config::{Overrides, Pipeline, Registry};

#[test]
fn the_shipped_files_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for file in [
        "payment.toml",
        "inventory.toml",
        "order-saga.toml",
        "notification.toml",
    ] {
        let overrides = common::with_pii_key(Overrides::default());
        let p = Pipeline::load_with(&dir.join(file), &eddy_orders::registry(), &overrides).unwrap();
        assert!(!p.topology.source_topics().is_empty(), "{file}");
    }
    // The inventory: three sub-topologies joined by two repartition topics,
    // with the join buffers, stock and aggregation stores.
    let p = Pipeline::load(&dir.join("inventory.toml"), &eddy_orders::registry()).unwrap();
    let t = &p.topology;
    assert_eq!(t.subtopologies().len(), 3);
    let text = t.describe();
    assert!(
        text.contains("Processor: reserve (op: processor, stores: [stock-levels, reservations, reservations-expiry])"),
        "{text}"
    );
    assert!(
        text.contains("Sink: KSTREAM-SINK-0000000016 (topic: by-product-repartition)"),
        "{text}"
    );
    let dot = t.to_dot();
    for part in [
        "subgraph cluster_2 {",
        "[label=\"stock-levels\", shape=cylinder];",
        "[label=\"by-order-repartition\", shape=box, style=rounded];",
    ] {
        assert!(dot.contains(part), "{part} not in {dot}");
    }
    let mermaid = t.to_mermaid();
    assert!(mermaid.contains("[(\"gathered\")]"), "{mermaid}");
}

#[test]
fn the_stock_reserver_refuses_unknown_parameters_and_eddy_alone_does_not_know_it() {
    let text = "[application]\nid = \"app\"\n[topics.in]\n[nodes.src]\nop = \"source\"\ntopic = \"in\"\n[nodes.p]\nop = \"processor\"\ninput = \"src\"\nprocessor = \"stock-reserver\"\nparams = { stock = \"s\" }\n";
    let path = Path::new("x.toml");
    let e = Pipeline::parse(text, path, &eddy_orders::registry())
        .err()
        .unwrap();
    assert_eq!(
        format!("{}: {}", e.field, e.reason),
        "nodes.p.params: unknown parameter \"stock\" (stock-reserver takes stock_store, reservations_store, retention)"
    );
    let e = Pipeline::parse(text, path, &Registry::new()).err().unwrap();
    assert_eq!(
        format!("{}: {}", e.field, e.reason),
        "nodes.p.processor: unknown processor \"stock-reserver\" (registered: none)"
    );
}
