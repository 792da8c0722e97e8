//! The scaling decision: KEDA's lag rule, held back when a new worker
//! would not be ready before the lag drains anyway.
//!
//! KEDA's Kafka scaler asks for `ceil(total lag / lag threshold)` workers,
//! none below an activation lag, at most one per partition; the HPA then
//! scales up at once and scales down to the highest recommendation of a
//! stabilization window. Neither knows that a new worker of a stateful
//! application restores the state of the tasks it receives before it
//! processes anything. This policy does as they do, and also estimates:
//!
//! - **drain time**: how long the current workers need to consume the lag,
//!   at their capacity (the mean consumption rate of the latest
//!   observations with a lag, within [`CAPACITY_WINDOW`]) less the rate
//!   records arrive;
//! - **ready time**: how long a new worker needs before it is useful: its
//!   start and group join, then the restore of its share of the state (the
//!   changelogs' records over the workers it would make, at the measured
//!   restore rate).
//!
//! It scales up only when the lag would outlast a new worker's ready time,
//! and says so when it holds back; the condition must hold on two
//! observations in a row, both with a measured capacity (one spike of
//! arrivals alone is not a trend, and a lag seen before any interval of
//! work says nothing of what the workers consume).

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

/// How far back the consumption capacity is remembered.
pub const CAPACITY_WINDOW: Duration = Duration::from_secs(120);
/// The capacity is the mean consumption rate over this many latest
/// intervals with a lag at both ends (the workers had work throughout; the
/// highest one overestimates: a worker that has just caught up on one
/// stage of its topology is then busy with the next).
pub const CAPACITY_SAMPLES: usize = 5;

/// The autoscaler's settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Fewest workers.
    pub min: usize,
    /// Most workers (also capped by the partition count).
    pub max: usize,
    /// Lag one worker is expected to handle (KEDA's `lagThreshold`).
    pub lag_threshold: i64,
    /// Below this total lag the application needs only `min` workers
    /// (KEDA's `activationLagThreshold`).
    pub activation_lag: i64,
    /// How long the recommendation must stay lower before scaling down
    /// (the HPA's scale-down stabilization window, KEDA's cooldown).
    pub cooldown: Duration,
    /// Changelog records a new worker restores per second.
    pub restore_rate: f64,
    /// How long a new worker takes to start and join the group.
    pub startup: Duration,
}

/// What the autoscaler saw at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Observation {
    /// Seconds since the autoscaler started.
    pub at: f64,
    /// Total lag of the application's group over its input partitions.
    pub lag: i64,
    /// Sum of the input partitions' end offsets.
    pub end: i64,
    /// Sum of the group's committed offsets on them.
    pub committed: i64,
    /// Workers running.
    pub workers: usize,
    /// Input partitions of the widest input: no worker beyond that count
    /// gets a task.
    pub partitions: usize,
    /// Records in the application's changelogs (the state to share out).
    pub state_records: i64,
}

/// What the autoscaler chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Keep the workers as they are.
    Hold,
    /// Start workers.
    Up,
    /// Stop workers.
    Down,
}

/// One decision, with its inputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// What was seen.
    pub observed: Observation,
    /// Records arriving per second (since the previous observation).
    pub in_rate: f64,
    /// Records consumed per second (since the previous observation).
    pub out_rate: f64,
    /// Mean consumption rate of the latest observations with a lag.
    pub capacity: f64,
    /// KEDA's recommendation.
    pub recommended: usize,
    /// Seconds the current workers need to consume the lag; `None` when
    /// they do not keep up.
    pub drain_secs: Option<f64>,
    /// Seconds a new worker needs before it processes.
    pub ready_secs: f64,
    /// The workers wanted from now on.
    pub desired: usize,
    /// Whether that starts or stops workers.
    pub action: Action,
    /// Why, in words.
    pub reason: String,
}

/// The policy with what it remembers between observations.
pub struct Autoscaler {
    policy: Policy,
    last: Option<Observation>,
    /// (time, consumption rate) while there was a lag.
    rates: VecDeque<(f64, f64)>,
    /// (time, recommendation), over the cooldown.
    recommendations: VecDeque<(f64, usize)>,
    /// Whether the previous observation wanted more workers.
    wanted_up: bool,
    /// Since when the recommendations are kept (the start, or the last
    /// scale-up): no scale-down before a whole cooldown of them.
    window_start: Option<f64>,
}

impl Autoscaler {
    /// An autoscaler following `policy`.
    pub fn new(policy: Policy) -> Self {
        Autoscaler {
            policy,
            last: None,
            rates: VecDeque::new(),
            recommendations: VecDeque::new(),
            wanted_up: false,
            window_start: None,
        }
    }

    /// The settings.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides on `now`.
    pub fn decide(&mut self, now: Observation) -> Decision {
        let p = &self.policy;
        let (in_rate, out_rate, busy) = match self.last {
            Some(last) if now.at > last.at => {
                let secs = now.at - last.at;
                (
                    (now.end - last.end).max(0) as f64 / secs,
                    (now.committed - last.committed).max(0) as f64 / secs,
                    // A lag at both ends: the workers had work throughout.
                    last.lag > 0 && now.lag > 0,
                )
            }
            _ => (0.0, 0.0, false),
        };
        self.last = Some(now);
        if busy {
            self.rates.push_back((now.at, out_rate));
        }
        let window = CAPACITY_WINDOW.as_secs_f64();
        while self
            .rates
            .front()
            .is_some_and(|&(t, _)| now.at - t > window)
        {
            self.rates.pop_front();
        }
        let busy: Vec<f64> = self
            .rates
            .iter()
            .rev()
            .take(CAPACITY_SAMPLES)
            .map(|&(_, r)| r)
            .collect();
        let capacity = busy.iter().sum::<f64>() / busy.len().max(1) as f64;
        // Until one interval with work throughout has been seen, nothing
        // says whether the workers keep up: a lag that has just appeared
        // is not yet a trend.
        let measured = !busy.is_empty();

        let cap = p.max.min(now.partitions.max(1)).max(p.min);
        let recommended = if now.lag < p.activation_lag {
            p.min
        } else {
            let n = (now.lag as f64 / p.lag_threshold.max(1) as f64).ceil() as usize;
            n.clamp(p.min, cap)
        };
        let drain_secs = if now.lag <= 0 {
            Some(0.0)
        } else if capacity > in_rate {
            Some(now.lag as f64 / (capacity - in_rate))
        } else {
            None
        };
        let share = now.state_records as f64 / (now.workers + 1) as f64;
        let ready_secs = p.startup.as_secs_f64() + share / p.restore_rate.max(1.0);

        self.recommendations.push_back((now.at, recommended));
        let cooldown = p.cooldown.as_secs_f64();
        while self
            .recommendations
            .front()
            .is_some_and(|&(t, _)| now.at - t > cooldown)
        {
            self.recommendations.pop_front();
        }
        let mut decision = Decision {
            observed: now,
            in_rate,
            out_rate,
            capacity,
            recommended,
            drain_secs,
            ready_secs,
            desired: now.workers,
            action: Action::Hold,
            reason: String::new(),
        };
        if now.workers < p.min {
            decision.desired = p.min;
            decision.action = Action::Up;
            decision.reason = format!("fewer than the minimum of {}", p.min);
            return decision;
        }
        if recommended > now.workers && !measured {
            self.wanted_up = false;
            decision.reason = format!(
                "a lag of {} asks for {recommended} workers; no consumption rate measured yet",
                now.lag
            );
            return decision;
        }
        if recommended > now.workers {
            let outlasts = drain_secs.is_none_or(|d| d > ready_secs);
            let confirmed = self.wanted_up;
            self.wanted_up = outlasts;
            decision.reason = match (outlasts, confirmed, drain_secs) {
                (false, _, Some(d)) => format!(
                    "the lag of {} drains in {d:.1} s, before a new worker would be ready ({ready_secs:.1} s)",
                    now.lag
                ),
                (true, false, _) => format!(
                    "a lag of {} asks for {recommended} workers; waiting for a second observation",
                    now.lag
                ),
                (true, true, d) => {
                    decision.desired = recommended;
                    decision.action = Action::Up;
                    match d {
                        Some(d) => format!(
                            "a lag of {} asks for {recommended} workers and drains in {d:.1} s, longer than a new worker needs ({ready_secs:.1} s)",
                            now.lag
                        ),
                        None => format!(
                            "a lag of {} asks for {recommended} workers and the current ones do not keep up",
                            now.lag
                        ),
                    }
                }
                (false, _, None) => unreachable!("no drain time means it outlasts"),
            };
            if decision.action == Action::Up {
                self.wanted_up = false;
                // A scale-up restarts the stabilization window.
                self.recommendations.clear();
                self.recommendations.push_back((now.at, recommended));
                self.window_start = Some(now.at);
            }
            return decision;
        }
        self.wanted_up = false;
        // Scale down only to the highest recommendation of the cooldown,
        // and only once the window is full.
        let highest = self
            .recommendations
            .iter()
            .map(|&(_, r)| r)
            .max()
            .unwrap_or(recommended);
        let since = *self.window_start.get_or_insert(now.at);
        let full = now.at - since >= cooldown - 1e-9;
        if highest < now.workers && full {
            decision.desired = highest;
            decision.action = Action::Down;
            decision.reason = format!(
                "for {cooldown:.0} s no more than {highest} workers were needed (lag {})",
                now.lag
            );
        } else if highest < now.workers {
            decision.reason =
                format!("{highest} workers would do; waiting out the {cooldown:.0} s cooldown");
        } else {
            decision.reason = format!("a lag of {} needs {recommended} workers", now.lag);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min: 1,
            max: 4,
            lag_threshold: 1000,
            activation_lag: 100,
            cooldown: Duration::from_secs(10),
            restore_rate: 100_000.0,
            startup: Duration::from_secs(3),
        }
    }

    /// Observations one second apart: lag, consumed so far, arrived so far.
    fn obs(at: f64, lag: i64, committed: i64, workers: usize, state: i64) -> Observation {
        Observation {
            at,
            lag,
            end: committed + lag,
            committed,
            workers,
            partitions: 4,
            state_records: state,
        }
    }

    #[test]
    fn a_lasting_lag_scales_up_on_its_second_measured_observation_to_kedas_count() {
        let mut a = Autoscaler::new(policy());
        assert_eq!(a.decide(obs(0.0, 0, 0, 1, 0)).action, Action::Hold);
        // 10 000 records a second arrive; one worker consumes 2 000. The
        // first lag follows none: no capacity is known yet.
        let d = a.decide(obs(1.0, 8_000, 2_000, 1, 0));
        assert_eq!((d.action, d.recommended), (Action::Hold, 4));
        assert!(d.reason.contains("no consumption rate"), "{}", d.reason);
        let d = a.decide(obs(2.0, 16_000, 4_000, 1, 0));
        assert_eq!(
            (d.action, d.recommended, d.drain_secs),
            (Action::Hold, 4, None)
        );
        assert!(d.reason.contains("second observation"), "{}", d.reason);
        let d = a.decide(obs(3.0, 24_000, 6_000, 1, 0));
        assert_eq!((d.action, d.desired), (Action::Up, 4));
        assert_eq!(
            (d.in_rate, d.out_rate, d.capacity),
            (10_000.0, 2_000.0, 2_000.0)
        );
    }

    #[test]
    fn a_spike_that_drains_before_a_new_worker_is_ready_is_left_alone() {
        let mut a = Autoscaler::new(policy());
        // Capacity seen: 10 000 records a second with a small lag.
        a.decide(obs(0.0, 500, 0, 1, 1_000_000));
        assert_eq!(
            a.decide(obs(1.0, 500, 10_000, 1, 1_000_000)).capacity,
            10_000.0
        );
        // A spike of 34 500 records, then nothing more arrives.
        let d = a.decide(obs(2.0, 30_000, 15_000, 1, 1_000_000));
        assert_eq!((d.action, d.drain_secs), (Action::Hold, None));
        let d = a.decide(obs(3.0, 20_000, 25_000, 1, 1_000_000));
        // Capacity (10 000 + 5 000 + 10 000) / 3: 20 000 left drain in
        // 2.4 s; a new worker restores 500 000 records (its half of the
        // state) at 100 000/s after a 3 s start.
        assert_eq!(d.capacity, 25_000.0 / 3.0);
        assert_eq!(d.drain_secs, Some(2.4));
        assert_eq!(d.ready_secs, 8.0);
        assert_eq!(d.action, Action::Hold);
        assert!(
            d.reason.contains("before a new worker would be ready"),
            "{}",
            d.reason
        );
        // Without state the same lag outlasts the 3 s start: up.
        let mut a = Autoscaler::new(policy());
        a.decide(obs(0.0, 500, 0, 1, 0));
        a.decide(obs(1.0, 500, 10_000, 1, 0));
        a.decide(obs(2.0, 50_000, 15_000, 1, 0));
        let d = a.decide(obs(3.0, 40_000, 25_000, 1, 0));
        assert_eq!(
            (d.action, d.desired, d.drain_secs),
            (Action::Up, 4, Some(4.8))
        );
    }

    #[test]
    fn scaling_down_waits_for_the_cooldown_and_takes_its_highest_need() {
        let mut a = Autoscaler::new(policy());
        a.decide(obs(0.0, 0, 0, 4, 0));
        // Lag 2 500 needs 3 workers, then nothing for a while.
        let d = a.decide(obs(1.0, 2_500, 1_000, 4, 0));
        assert_eq!((d.action, d.recommended), (Action::Hold, 3));
        for t in 2..10 {
            let d = a.decide(obs(t as f64, 0, 3_500, 4, 0));
            assert_eq!(d.action, Action::Hold, "at {t}: {}", d.reason);
        }
        // A full window: down to its highest need, the 3 of second 1.
        let d = a.decide(obs(10.0, 0, 3_500, 4, 0));
        assert_eq!((d.action, d.desired), (Action::Down, 3), "{}", d.reason);
        let d = a.decide(obs(11.0, 0, 3_500, 3, 0));
        assert_eq!(d.action, Action::Hold, "{}", d.reason);
        // Once second 1 is out of the window, 1 is enough.
        let d = a.decide(obs(12.0, 0, 3_500, 3, 0));
        assert_eq!((d.action, d.desired), (Action::Down, 1), "{}", d.reason);
        // Below the activation lag the minimum is enough.
        let mut a = Autoscaler::new(policy());
        for t in 0..12 {
            let d = a.decide(obs(t as f64, 99, 0, 2, 0));
            assert_eq!(d.recommended, 1);
            if t >= 10 {
                assert_eq!(d.action, Action::Down);
                break;
            }
        }
    }

    #[test]
    fn never_more_workers_than_partitions_nor_fewer_than_the_minimum() {
        let mut a = Autoscaler::new(Policy {
            max: 10,
            ..policy()
        });
        a.decide(obs(0.0, 100_000, 0, 1, 0));
        a.decide(obs(1.0, 200_000, 0, 1, 0));
        let d = a.decide(obs(2.0, 300_000, 0, 1, 0));
        assert_eq!((d.recommended, d.desired), (4, 4));
        let d = a.decide(obs(3.0, 0, 0, 0, 0));
        assert_eq!((d.action, d.desired), (Action::Up, 1));
    }
}
