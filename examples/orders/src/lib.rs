//! # eddy-orders
//!
//! The e-commerce order pipeline, an application built on eddy's public API
//! the way any user's would be: four topology files in `config/` (the
//! payment service, the inventory service, the order saga and the
//! notification service), the one processor they name that is written in
//! Rust (the stock reserver), a deterministic order generator, the
//! services they call over HTTP as simulators (a payment [`gateway`] and a
//! [`webhook`] receiver), and a binary, `eddy-orders`, that is eddy's
//! command line with this registry plus `demo`, `gen` and `chaos`.
//!
//! ```
//! let registry = eddy_orders::registry();
//! assert_eq!(registry.names().collect::<Vec<_>>(), ["stock-reserver"]);
//! ```
#![warn(missing_docs)]

pub mod gateway;
mod generate;
mod stock;
pub mod webhook;

pub use generate::{customer, order_created};

/// The environment variable holding the key the order saga hashes e-mail
/// addresses with (`config/order-saga.toml`, node `masked-orders`).
pub const PII_KEY_ENV: &str = "EDDY_PII_KEY";
pub use stock::StockReserver;

use eddy::config::Registry;

/// A simulated service's router served at `addr` (port 0: any free port)
/// on a thread of its own until dropped: as many connections as callers
/// open (a worker holds one per call in flight), idle keep-alive
/// connections kept.
fn simulated(
    router: axum::Router,
    addr: std::net::SocketAddr,
) -> std::io::Result<eddy::observability::HttpServer> {
    let limits = eddy::observability::HttpLimits {
        max_connections: 65_536,
        header_read_timeout: std::time::Duration::from_secs(3_600),
        ..eddy::observability::HttpLimits::default()
    };
    eddy::observability::HttpServer::serve(addr, router, limits).map_err(std::io::Error::other)
}

/// The processors the order pipeline's topology files name:
/// `stock-reserver`.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register("stock-reserver", stock::factory);
    registry
}
