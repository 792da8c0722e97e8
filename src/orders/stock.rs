//! Stock reservation per product: the stock level never goes below zero,
//! and reserving or releasing the same order line twice changes nothing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{CustomProcessor, JsonProcessor};
use crate::processor::{Processor, ProcessorContext, Record};
use crate::serde::{I64Serde, JsonSerde, StringSerde};
use crate::stores::{KeyValueStore, StateError, StoreSpec};

/// One order line's reservation, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Reservation {
    qty: i64,
    ok: bool,
    released: bool,
}

/// Keeps the available stock per product (key: product id) and the
/// reservations made against it. Input values carry an `op`:
/// - `{"op": "set", "qty"}` sets the level (stock seeding and restocking);
/// - `{"op": "reserve", "order_id", "line", "qty", ...}` takes `qty` if that
///   many are available and answers `{"type": "reservation", "ok", ...}`
///   keyed by order id, echoing the request's other fields; a repeated
///   request gets the first answer again;
/// - `{"op": "release", "order_id", "line"}` gives a successful
///   reservation's quantity back, once.
pub struct StockReserver {
    names: Arc<(String, String)>,
    stores: Option<(
        KeyValueStore<String, i64>,
        KeyValueStore<String, Reservation>,
    )>,
}

/// Builds the processor from its parameters: `stock_store` (default
/// `stock`) and `reservations_store` (default `reservations`).
pub(super) fn factory(params: &toml::Table) -> Result<CustomProcessor, String> {
    let name = |key: &str, default: &str| -> Result<String, String> {
        match params.get(key) {
            None => Ok(default.to_owned()),
            Some(toml::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(other) => Err(format!("{key} must be a store name, not {other}")),
        }
    };
    if let Some(unknown) = params
        .keys()
        .find(|k| !["stock_store", "reservations_store"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown parameter {unknown:?} (stock-reserver takes stock_store, reservations_store)"
        ));
    }
    let names = Arc::new((
        name("stock_store", "stock")?,
        name("reservations_store", "reservations")?,
    ));
    Ok(CustomProcessor {
        stores: vec![
            StoreSpec::key_value(&names.0),
            StoreSpec::key_value(&names.1),
        ],
        supplier: Arc::new(move || {
            Box::new(StockReserver {
                names: names.clone(),
                stores: None,
            }) as JsonProcessor
        }),
    })
}

fn field<'v>(v: &'v Value, name: &str) -> Result<&'v Value, String> {
    v.get(name)
        .ok_or_else(|| format!("stock request without {name:?}"))
}

fn int(v: &Value, name: &str) -> Result<i64, String> {
    field(v, name)?
        .as_i64()
        .ok_or_else(|| format!("stock request field {name:?} is not an integer"))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl StockReserver {
    fn step(
        &mut self,
        r: Record<String, Value>,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) -> Result<(), String> {
        let (stock, reservations) = self.stores.as_ref().ok_or("stock stores unavailable")?;
        let e = |e: StateError| e.to_string();
        let product = &r.key;
        let op = field(&r.value, "op")?.as_str().unwrap_or_default();
        if op == "set" {
            let qty = int(&r.value, "qty")?;
            if qty < 0 {
                return Err(format!("stock level {qty} for {product:?} is negative"));
            }
            return stock.put(product, &qty).map_err(e);
        }
        let order = text(field(&r.value, "order_id")?);
        let line = text(field(&r.value, "line")?);
        let id = format!("{product}\u{0}{order}\u{0}{line}");
        let existing = reservations.get(&id).map_err(e)?;
        match op {
            "reserve" => {
                let qty = int(&r.value, "qty")?;
                if qty <= 0 {
                    return Err(format!("reservation of {qty} items"));
                }
                let reservation = match existing {
                    Some(found) => found,
                    None => {
                        let available = stock.get(product).map_err(e)?.unwrap_or(0);
                        let ok = available >= qty;
                        if ok {
                            stock.put(product, &(available - qty)).map_err(e)?;
                        }
                        let made = Reservation {
                            qty,
                            ok,
                            released: false,
                        };
                        reservations.put(&id, &made).map_err(e)?;
                        made
                    }
                };
                let mut answer = r.value.clone();
                if let Value::Object(m) = &mut answer {
                    m.remove("op");
                    m.insert("type".into(), json!("reservation"));
                    m.insert("product_id".into(), json!(product));
                    m.insert("ok".into(), json!(reservation.ok));
                }
                ctx.forward(Record {
                    key: order,
                    value: answer,
                    timestamp: r.timestamp,
                    headers: r.headers,
                });
                Ok(())
            }
            "release" => {
                if let Some(mut found) = existing.filter(|f| f.ok && !f.released) {
                    let available = stock.get(product).map_err(e)?.unwrap_or(0);
                    stock.put(product, &(available + found.qty)).map_err(e)?;
                    found.released = true;
                    reservations.put(&id, &found).map_err(e)?;
                }
                Ok(())
            }
            other => Err(format!("unknown stock operation {other:?}")),
        }
    }
}

impl Processor<String, Value, String, Value> for StockReserver {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, Value>) {
        let stock = ctx.key_value_store(&self.names.0, Arc::new(StringSerde), Arc::new(I64Serde));
        let reservations = ctx.key_value_store(
            &self.names.1,
            Arc::new(StringSerde),
            Arc::new(JsonSerde::<Reservation>::new()),
        );
        match (stock, reservations) {
            (Ok(s), Ok(r)) => self.stores = Some((s, r)),
            (Err(e), _) | (_, Err(e)) => tracing::error!("{e}"),
        }
    }

    fn process(&mut self, r: Record<String, Value>, ctx: &mut ProcessorContext<'_, String, Value>) {
        if let Err(e) = self.step(r, ctx) {
            ctx.fail(format!("stock-reserver: {e}"));
        }
    }
}
