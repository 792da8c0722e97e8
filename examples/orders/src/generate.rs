//! Deterministic `order_created` events, for the demo, `eddy-orders gen orders`,
//! tests and benchmarks.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Deterministic pseudo-random numbers (splitmix64).
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where the customers live: (city, country).
const CITIES: [(&str, &str); 8] = [
    ("Lyon", "FR"),
    ("Porto", "PT"),
    ("Leeds", "GB"),
    ("Graz", "AT"),
    ("Ghent", "BE"),
    ("Turku", "FI"),
    ("Bergen", "NO"),
    ("Cork", "IE"),
];

/// Customer `u`'s e-mail address and shipping address (made up, the same
/// for every order of theirs): personal data the pipeline masks.
///
/// ```
/// let (email, address) = eddy_orders::customer(42);
/// assert_eq!(email, "shopper.42@example.com");
/// assert_eq!(address["street"], "43 Harbour Street");
/// ```
pub fn customer(u: u64) -> (String, Value) {
    let (city, country) = CITIES[(u % CITIES.len() as u64) as usize];
    (
        format!("shopper.{u}@example.com"),
        json!({
            "name": format!("Shopper {u}"),
            "street": format!("{} Harbour Street", 1 + u % 97),
            "city": city,
            "postal_code": format!("PC-{:05}", (u * 7_919) % 100_000),
            "country": country,
        }),
    )
}

/// Order `i` of generator `seed`: id `order-<seed>-<i>`, one of 1 000
/// customers ([`customer`]), one to three items drawn from `products`
/// products (`product-<n>`), one to four of each, at 1.00 to 99.99 (in
/// cents), created at `created_at_ms` (RFC 3339).
///
/// ```
/// let o = eddy_orders::order_created(7, 3, 10, 1_700_000_000_000);
/// assert_eq!(o["type"], "order_created");
/// assert_eq!(o["order_id"], "order-7-3");
/// assert_eq!(o["created_at"], "2023-11-14T22:13:20Z");
/// let user: u64 = o["user_id"].as_str().unwrap()["user-".len()..].parse().unwrap();
/// assert_eq!(o["email"], eddy_orders::customer(user).0);
/// ```
pub fn order_created(seed: u64, i: u64, products: u64, created_at_ms: i64) -> Value {
    let r = mix(seed.wrapping_mul(1_000_003) ^ i);
    let items: Vec<Value> = (0..1 + r % 3)
        .map(|j| {
            let x = mix(r ^ j);
            json!({
                "product_id": format!("product-{}", x % products.max(1)),
                "qty": 1 + (x >> 20) % 4,
                "unit_price": 100 + (x >> 32) % 9_900,
            })
        })
        .collect();
    let created_at =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(created_at_ms) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default();
    let user = (r >> 40) % 1000;
    let (email, address) = customer(user);
    json!({
        "type": "order_created",
        "order_id": format!("order-{seed}-{i}"),
        "user_id": format!("user-{user}"),
        "email": email,
        "shipping_address": address,
        "items": items,
        "created_at": created_at,
    })
}
