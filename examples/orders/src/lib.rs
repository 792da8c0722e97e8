//! # eddy-orders
//!
//! The e-commerce order pipeline, an application built on eddy's public API
//! the way any user's would be: three topology files in `config/` (the
//! payment service, the inventory service and the order saga), the one
//! processor they name that is written in Rust (the stock reserver), a
//! deterministic order generator, a payment gateway simulator
//! ([`gateway`]), and a binary, `eddy-orders`, that is
//! eddy's command line with this registry plus `demo` and `gen`.
//!
//! ```
//! let registry = eddy_orders::registry();
//! assert_eq!(registry.names().collect::<Vec<_>>(), ["stock-reserver"]);
//! ```
#![warn(missing_docs)]

pub mod gateway;
mod generate;
mod stock;

pub use generate::{customer, order_created};

/// The environment variable holding the key the order saga hashes e-mail
/// addresses with (`config/order-saga.toml`, node `masked-orders`).
pub const PII_KEY_ENV: &str = "EDDY_PII_KEY";
pub use stock::StockReserver;

use eddy::config::Registry;

/// The processors the order pipeline's topology files name:
/// `stock-reserver`.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register("stock-reserver", stock::factory);
    registry
}
