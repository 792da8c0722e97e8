//! Labelled series that leave their family with their owner: a task's
//! series go when the task is closed, as Kafka Streams removes a task's
//! sensors, so a worker exports no series of tasks it no longer runs.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use prometheus::core::{MetricVec, MetricVecBuilder};

/// How many owners hold each series, by family name and label values: a
/// task made again before the old one is dropped shares its series, which
/// go with the last owner.
#[derive(Default, Clone)]
pub(super) struct Owners(Arc<Mutex<HashMap<SeriesKey, usize>>>);

/// A family's name and a series' label values.
type SeriesKey = (&'static str, Vec<String>);

/// A series of a family (a counter, gauge or histogram with its label
/// values), removed from the family when its last owner drops it.
pub(crate) struct Owned<T: MetricVecBuilder> {
    metric: T::M,
    family: &'static str,
    vec: MetricVec<T>,
    labels: Vec<String>,
    owners: Owners,
}

/// The builder of a metric vector, to name the series of a family (the
/// prometheus crate does not export its builders' names).
pub(crate) trait Family {
    type Builder: MetricVecBuilder;
}

impl<T: MetricVecBuilder> Family for MetricVec<T> {
    type Builder = T;
}

/// A series of an `IntCounterVec`.
pub(crate) type CounterSeries = Owned<<prometheus::IntCounterVec as Family>::Builder>;
/// A series of an `IntGaugeVec`.
pub(crate) type GaugeSeries = Owned<<prometheus::IntGaugeVec as Family>::Builder>;
/// A series of a `HistogramVec`.
pub(crate) type HistogramSeries = Owned<<prometheus::HistogramVec as Family>::Builder>;

impl Owners {
    /// The series `labels` of `vec` (named `family`), held once more.
    pub(super) fn take<T: MetricVecBuilder>(
        &self,
        family: &'static str,
        vec: &MetricVec<T>,
        labels: &[&str],
    ) -> Owned<T> {
        let labels: Vec<String> = labels.iter().map(|&l| l.to_owned()).collect();
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *held.entry((family, labels.clone())).or_default() += 1;
        drop(held);
        let values: Vec<&str> = labels.iter().map(String::as_str).collect();
        Owned {
            metric: vec.with_label_values(&values),
            family,
            vec: vec.clone(),
            labels,
            owners: self.clone(),
        }
    }
}

impl<T: MetricVecBuilder> Deref for Owned<T> {
    type Target = T::M;

    fn deref(&self) -> &T::M {
        &self.metric
    }
}

impl<T: MetricVecBuilder> Drop for Owned<T> {
    fn drop(&mut self) {
        let mut held = self.owners.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (self.family, std::mem::take(&mut self.labels));
        let last = match held.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                held.remove(&key);
                true
            }
        };
        drop(held);
        if last {
            let values: Vec<&str> = key.1.iter().map(String::as_str).collect();
            let _ = self.vec.remove_label_values(&values);
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{IntCounterVec, Opts};

    use super::*;

    #[test]
    fn a_series_goes_with_its_last_owner() {
        let vec = IntCounterVec::new(Opts::new("c", "c"), &["task"]).unwrap();
        let owners = Owners::default();
        let a = owners.take("c", &vec, &["0_1"]);
        let b = owners.take("c", &vec, &["0_1"]);
        a.inc();
        b.inc();
        drop(a);
        assert_eq!(vec.with_label_values(&["0_1"]).get(), 2, "b still holds it");
        drop(b);
        assert!(vec.remove_label_values(&["0_1"]).is_err(), "removed");
    }
}
