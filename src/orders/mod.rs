//! The e-commerce order pipeline's own code: the processors its topology
//! files name. The topologies themselves are files in `config/`.

mod generate;
mod stock;

pub use generate::order_created;
pub use stock::StockReserver;

use crate::config::Registry;

/// Registers `stock-reserver`.
pub fn register(registry: &mut Registry) {
    registry.register("stock-reserver", stock::factory);
}
