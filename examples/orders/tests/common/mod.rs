//! Shared helpers of the order pipeline's tests: its topology files loaded
//! for the cluster under test.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

pub use eddy::testing::{free_addr, unique, wait_for, Consumed, TestCluster};

use eddy::config::{Overrides, Pipeline};
use eddy::runtime::RunningStreams;

/// The cluster under test.
pub fn cluster() -> TestCluster {
    TestCluster::from_env()
}

/// The example's `config/<file>`.
pub fn config_file(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(file)
}

/// Loads the order pipeline's `config/<file>` with its topics and
/// application id suffixed by `suffix`, payments of user `manual` left to
/// the test, and this cluster's settings.
pub fn order_pipeline(file: &str, suffix: &str, c: &TestCluster, state: &Path) -> Pipeline {
    let mut overrides = Overrides {
        suffix: Some(suffix.to_owned()),
        ..Overrides::default()
    };
    overrides.vars.insert(
        "manual_users".into(),
        toml::Value::Array(vec!["manual".into()]),
    );
    let mut p =
        Pipeline::load_with(&config_file(file), &eddy_orders::registry(), &overrides).unwrap();
    if !c.is_embedded() {
        p.config.bootstrap_servers = Some(c.bootstrap.clone());
    }
    p.config.state_dir = state.to_owned();
    p.config.embedded_partitions = 3;
    p
}

/// Starts a loaded pipeline on the cluster under test.
pub fn start_pipeline(p: Pipeline, c: &TestCluster) -> RunningStreams {
    let mut s = p.into_streams();
    if let Some(e) = c.embedded() {
        s = s.embedded_cluster(e);
    }
    s.start().unwrap()
}
