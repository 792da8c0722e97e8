//! A state-aware lag autoscaler: the decision ([`policy`]) and a
//! supervisor that starts and stops worker processes on this machine by it
//! ([`supervisor`]); `eddy autoscale` runs both.
//!
//! ```
//! use std::time::Duration;
//! use eddy::autoscale::{Action, Autoscaler, Observation, Policy};
//!
//! let mut a = Autoscaler::new(Policy {
//!     min: 1,
//!     max: 4,
//!     lag_threshold: 1_000,
//!     activation_lag: 100,
//!     cooldown: Duration::from_secs(30),
//!     restore_rate: 150_000.0,
//!     startup: Duration::from_secs(3),
//! });
//! let seen = |at, lag, committed| Observation {
//!     at, lag, end: committed + lag, committed, workers: 1, partitions: 4, state_records: 0,
//! };
//! a.decide(seen(0.0, 0, 0));
//! // 10 000 records a second arrive and one worker consumes 2 000. A lag
//! // seen after none measures nothing yet; the second observation of a
//! // lag with the workers' capacity known starts workers.
//! assert_eq!(a.decide(seen(1.0, 8_000, 2_000)).action, Action::Hold);
//! assert_eq!(a.decide(seen(2.0, 16_000, 4_000)).action, Action::Hold);
//! let d = a.decide(seen(3.0, 24_000, 6_000));
//! assert_eq!((d.action, d.desired), (Action::Up, 4));
//! ```

pub mod policy;
pub mod supervisor;

pub use policy::{Action, Autoscaler, Decision, Observation, Policy};
pub use supervisor::{supervise, SupervisorSpec};
