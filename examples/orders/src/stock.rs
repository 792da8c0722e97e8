//! Stock reservation per product: the stock level never goes below zero,
//! and reserving or releasing the same order line twice changes nothing.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use eddy::config::{CustomProcessor, JsonProcessor};
use eddy::processor::{
    BoxError, InitError, Processor, ProcessorContext, PunctuationId, PunctuationType, Record,
};
use eddy::serde::{BytesSerde, I64Serde, JsonSerde, StringSerde};
use eddy::stores::{sortable, unsortable, KeyValueStore, StateError, StoreSpec};

/// `process` and `punctuate` run only after `init` opened the stores.
const OPENED: &str = "the stores are opened in init, which succeeded";

/// One order line's reservation, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Reservation {
    qty: i64,
    ok: bool,
    released: bool,
    /// Event time after which it is forgotten (`None`: made before
    /// reservations expired, kept).
    #[serde(default)]
    expires: Option<i64>,
}

/// How long a reservation is remembered by default: far longer than the
/// saga takes to release it (its timeouts are 30 s) or than a replayed
/// request can come late (a commit interval).
const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// An expiry index key: the time (sign bit flipped, big-endian, so byte
/// order is time order), then the reservation id.
fn expiry_key(at: i64, id: &str) -> Vec<u8> {
    let mut k = sortable(at).to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn decode_expiry_key(k: &[u8]) -> Option<(i64, &str)> {
    let (t, id) = k.split_at_checked(8)?;
    Some((unsortable(t), std::str::from_utf8(id).ok()?))
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
///
/// A reservation is remembered for `retention` of event time after it was
/// made (default 1 h), then forgotten and counted in
/// `eddy_node_expired_state_total`: a release after that returns nothing.
pub struct StockReserver {
    names: Arc<Names>,
    stores: Option<Stores>,
}

struct Names {
    stock: String,
    reservations: String,
    expiry: String,
    retention: i64,
}

struct Stores {
    stock: KeyValueStore<String, i64>,
    reservations: KeyValueStore<String, Reservation>,
    /// When each reservation expires ([`expiry_key`] → nothing).
    expiry: KeyValueStore<Vec<u8>, Vec<u8>>,
}

/// Builds the processor from its parameters: `stock_store` (default
/// `stock`), `reservations_store` (default `reservations`; its expiry index
/// is `<reservations_store>-expiry`) and `retention` (default `"1h"`).
pub(super) fn factory(params: &toml::Table) -> Result<CustomProcessor, BoxError> {
    let name = |key: &str, default: &str| -> Result<String, String> {
        match params.get(key) {
            None => Ok(default.to_owned()),
            Some(toml::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(other) => Err(format!("{key} must be a store name, not {other}")),
        }
    };
    if let Some(unknown) = params
        .keys()
        .find(|k| !["stock_store", "reservations_store", "retention"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown parameter {unknown:?} (stock-reserver takes stock_store, reservations_store, retention)"
        )
        .into());
    }
    let retention = match params.get("retention") {
        None => DEFAULT_RETENTION,
        Some(toml::Value::String(s)) => match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => return Err("retention must be more than 0".into()),
            Err(e) => return Err(format!("retention {s:?} is not a duration: {e}").into()),
        },
        Some(other) => {
            return Err(format!("retention must be a duration such as \"1h\", not {other}").into())
        }
    };
    let reservations = name("reservations_store", "reservations")?;
    let names = Arc::new(Names {
        stock: name("stock_store", "stock")?,
        expiry: format!("{reservations}-expiry"),
        reservations,
        retention: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
    });
    Ok(CustomProcessor {
        stores: vec![
            StoreSpec::key_value(&names.stock),
            StoreSpec::key_value(&names.reservations),
            StoreSpec::key_value(&names.expiry),
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
        let Stores {
            stock,
            reservations,
            expiry,
        } = self.stores.as_ref().expect(OPENED);
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
                        let expires = r.timestamp.saturating_add(self.names.retention);
                        let made = Reservation {
                            qty,
                            ok,
                            released: false,
                            expires: Some(expires),
                        };
                        reservations.put(&id, &made).map_err(e)?;
                        expiry
                            .put(&expiry_key(expires, &id), &Vec::new())
                            .map_err(e)?;
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

impl StockReserver {
    /// Forgets the reservations whose retention ended by `now`.
    fn expire(
        &mut self,
        now: i64,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) -> Result<(), StateError> {
        let Stores {
            reservations,
            expiry,
            ..
        } = self.stores.as_ref().expect(OPENED);
        let due = expiry.range(None, Some(&expiry_key(now.saturating_add(1), "")))?;
        let mut expired = 0;
        for (k, _) in due {
            if let Some((at, id)) = decode_expiry_key(&k) {
                let id = id.to_owned();
                if reservations
                    .get(&id)?
                    .is_some_and(|r| r.expires == Some(at))
                {
                    reservations.delete(&id)?;
                    expired += 1;
                }
            }
            expiry.delete(&k)?;
        }
        ctx.record_expired(expired);
        Ok(())
    }
}

impl Processor<String, Value, String, Value> for StockReserver {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, Value>) -> Result<(), InitError> {
        let names = &self.names;
        self.stores = Some(Stores {
            stock: ctx.key_value_store(&names.stock, Arc::new(StringSerde), Arc::new(I64Serde))?,
            reservations: ctx.key_value_store(
                &names.reservations,
                Arc::new(StringSerde),
                Arc::new(JsonSerde::<Reservation>::new()),
            )?,
            expiry: ctx.key_value_store(
                &names.expiry,
                Arc::new(BytesSerde),
                Arc::new(BytesSerde),
            )?,
        });
        ctx.schedule(Duration::from_secs(1), PunctuationType::Watermark);
        Ok(())
    }

    fn punctuate(
        &mut self,
        _id: PunctuationId,
        now: i64,
        ctx: &mut ProcessorContext<'_, String, Value>,
    ) {
        if let Err(e) = self.expire(now, ctx) {
            tracing::error!("stock-reserver: expiring reservations at {now}: {e}");
        }
    }

    fn process(&mut self, r: Record<String, Value>, ctx: &mut ProcessorContext<'_, String, Value>) {
        if let Err(e) = self.step(r, ctx) {
            ctx.fail(format!("stock-reserver: {e}"));
        }
    }
}
