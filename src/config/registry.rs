//! Custom processors that topology files name (`op = "processor"`),
//! registered from Rust code.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::processor::{BoxError, Processor};
use crate::stores::StoreSpec;

/// A processor over JSON records keyed by strings, boxed.
pub type JsonProcessor = Box<dyn Processor<String, Value, String, Value>>;

/// What a registered factory makes of a node's `params`: the stores the
/// processor uses (declared with the node) and a supplier of one processor
/// per task.
pub struct CustomProcessor {
    /// Stores to declare and connect.
    pub stores: Vec<StoreSpec>,
    /// Makes one processor per task.
    pub supplier: Arc<dyn Fn() -> JsonProcessor + Send + Sync>,
}

/// Builds a [`CustomProcessor`] from a node's `params`, or says what is wrong
/// with them.
pub type Factory = Arc<dyn Fn(&toml::Table) -> Result<CustomProcessor, BoxError> + Send + Sync>;

/// Processors by name.
///
/// ```
/// use std::sync::Arc;
/// use eddy::config::{CustomProcessor, JsonProcessor, Registry};
/// use eddy::processor::{Processor, ProcessorContext, Record};
/// use serde_json::Value;
///
/// struct Upper;
/// impl Processor<String, Value, String, Value> for Upper {
///     fn process(&mut self, r: Record<String, Value>, ctx: &mut ProcessorContext<'_, String, Value>) {
///         ctx.forward(Record { key: r.key.to_uppercase(), ..r });
///     }
/// }
///
/// let mut registry = Registry::new();
/// registry.register("upper-key", |_params| {
///     Ok(CustomProcessor {
///         stores: Vec::new(),
///         supplier: Arc::new(|| Box::new(Upper) as JsonProcessor),
///     })
/// });
/// assert_eq!(registry.names().collect::<Vec<_>>(), ["upper-key"]);
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, Factory>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `factory` under `name`, replacing any previous one. Its
    /// error (any error, or a message) is reported at load, naming the
    /// file and the node's `params`.
    pub fn register<F>(&mut self, name: &str, factory: F) -> &mut Self
    where
        F: Fn(&toml::Table) -> Result<CustomProcessor, BoxError> + Send + Sync + 'static,
    {
        self.factories.insert(name.to_owned(), Arc::new(factory));
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Factory> {
        self.factories.get(name)
    }
}
