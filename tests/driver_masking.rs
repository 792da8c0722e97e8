//! A `mask` node of a topology file: the masked value is exact (a hashed
//! e-mail and list items, a redacted street, dropped fields), and
//! grouping and joining on the hashed e-mail give exactly the results they
//! would give on the e-mail itself, while no output holds it in clear.

use std::path::Path;

use eddy::config::{Overrides, Pipeline, Registry};
use eddy::kafka::Secret;
use eddy::processor::Headers;
use eddy::testing::{DriverConfig, TopologyTestDriver};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

const KEY: &str = "a key the deployment keeps secret";

const FILE: &str = r#"
[application]
id = "customers"

[topics.orders]
[topics.loyalty]
[topics.orders-masked]
[topics.customer-orders]
[topics.orders-with-tier]

[nodes.orders]
op = "source"
topic = "orders"

[nodes.masked]
op = "mask"
input = "orders"
hash = ["email", "contacts[*]"]
redact = ["address.street"]
drop = ["address.name", "items[*].gift_note"]
key_env = "CUSTOMERS_PII_KEY"

[nodes.to-masked]
op = "sink"
input = "masked"
topic = "orders-masked"

[nodes.by-customer]
op = "rekey"
input = "masked"
field = "email"

[nodes.per-customer]
op = "repartition"
input = "by-customer"

[nodes.counts]
op = "aggregate"
input = "per-customer"
initial = "{'orders': 0, 'units': 0}"
aggregator = "{'orders': agg.orders + 1, 'units': agg.units + sum(value.items.map(i, i.qty))}"

[nodes.to-counts]
op = "sink"
input = "counts"
topic = "customer-orders"

# Loyalty tiers, keyed by the same hash of the e-mail (written by a service
# that masks with the same key).
[nodes.loyalty]
op = "table"
topic = "loyalty"

[nodes.tiered]
op = "join"
left = "per-customer"
right = "loyalty"
value = "{'order_id': left.order_id, 'tier': right.tier}"

[nodes.to-tiered]
op = "sink"
input = "tiered"
topic = "orders-with-tier"
"#;

/// The keyed hash of `text`, computed here on its own.
fn hashed(text: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn driver() -> TopologyTestDriver {
    let mut overrides = Overrides::default();
    overrides
        .env_secrets
        .insert("CUSTOMERS_PII_KEY".into(), Secret::Value(KEY.into()));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/customers.toml");
    let p = Pipeline::parse_with(FILE, &path, &Registry::new(), &overrides).unwrap();
    let config = DriverConfig {
        application_id: p.config.application_id.clone(),
        ..DriverConfig::default()
    }
    .partitions("orders", 2)
    .partitions("loyalty", 2);
    TopologyTestDriver::with_config(p.topology, config)
}

fn pipe(d: &mut TopologyTestDriver, topic: &str, key: &str, value: &Value, ts: i64) {
    d.pipe_raw(
        topic,
        None,
        Some(key.as_bytes()),
        Some(value.to_string().as_bytes()),
        ts,
        Headers::default(),
    )
    .unwrap();
}

fn read(d: &mut TopologyTestDriver, topic: &str) -> Vec<(String, Value)> {
    d.read_raw(topic)
        .into_iter()
        .map(|r| {
            let (k, v) = (r.key.unwrap(), r.value.unwrap());
            for clear in ["@example.com", "Lovelace", "Analytical Row", "+44"] {
                let all = [&k[..], &v[..]].concat();
                assert!(
                    !all.windows(clear.len()).any(|w| w == clear.as_bytes()),
                    "{topic}: {clear:?} in clear"
                );
            }
            (
                String::from_utf8(k).unwrap(),
                serde_json::from_slice(&v).unwrap(),
            )
        })
        .collect()
}

fn order(id: &str, email: &str, qty: &[i64]) -> Value {
    let items: Vec<Value> = qty
        .iter()
        .map(|q| json!({"sku": "s", "qty": q, "gift_note": "for Ada Lovelace"}))
        .collect();
    json!({
        "order_id": id,
        "email": email,
        "contacts": ["+44 20 7946 0000", email],
        "address": {"name": "Ada Lovelace", "street": "12 Analytical Row", "city": "London"},
        "items": items,
    })
}

#[test]
fn hashed_ids_group_and_join_exactly_and_nothing_leaves_in_clear() {
    let mut d = driver();
    let (ada, bob) = ("ada@example.com", "bob@example.com");
    pipe(&mut d, "loyalty", &hashed(ada), &json!({"tier": "gold"}), 0);
    pipe(&mut d, "orders", "o1", &order("o1", ada, &[1, 2]), 1);
    pipe(&mut d, "orders", "o2", &order("o2", bob, &[5]), 2);
    pipe(&mut d, "orders", "o3", &order("o3", ada, &[4]), 3);

    let masked = read(&mut d, "orders-masked");
    assert_eq!(masked.len(), 3);
    assert_eq!(
        masked[0],
        (
            "o1".to_owned(),
            json!({
                "order_id": "o1",
                "email": hashed(ada),
                "contacts": [hashed("+44 20 7946 0000"), hashed(ada)],
                "address": {"street": "[redacted]", "city": "London"},
                "items": [{"sku": "s", "qty": 1}, {"sku": "s", "qty": 2}],
            })
        )
    );
    // Grouped by the hash: Ada's two orders count together, Bob's apart.
    assert_eq!(
        read(&mut d, "customer-orders"),
        [
            (hashed(ada), json!({"orders": 1, "units": 3})),
            (hashed(bob), json!({"orders": 1, "units": 5})),
            (hashed(ada), json!({"orders": 2, "units": 7})),
        ]
    );
    // Joined on the hash with a table keyed by it: Ada's orders find her
    // tier; Bob has none (an inner join).
    assert_eq!(
        read(&mut d, "orders-with-tier"),
        [
            (hashed(ada), json!({"order_id": "o1", "tier": "gold"})),
            (hashed(ada), json!({"order_id": "o3", "tier": "gold"})),
        ]
    );
    // The repartition topic and the aggregate's changelog hold hashes only
    // (read() refuses clear data).
    for t in [
        "customers-per-customer-repartition",
        "customers-counts-changelog",
    ] {
        assert!(!read(&mut d, t).is_empty(), "{t}");
    }
}
