//! The order in which a poll batch is processed.

use std::collections::VecDeque;

/// A task's partition queues: (queue id, record indexes in batch order).
type Queues = Vec<(u32, VecDeque<usize>)>;

/// Order of a batch's records: tasks one after another (in order of first
/// appearance), and within a task its input partitions merged by
/// timestamp: the partition whose next record has the smallest timestamp
/// goes first (ties: the earlier in the batch), so that a task reading
/// several partitions (a join, a merge) sees them in event-time order while
/// each partition keeps its offset order, as in Kafka Streams.
///
/// `items[i]` is (task, partition queue, timestamp) of record `i`.
pub(crate) fn processing_order(items: &[(u32, u32, i64)]) -> Vec<usize> {
    let mut groups: Vec<(u32, Queues)> = Vec::new();
    for (i, &(task, queue, _)) in items.iter().enumerate() {
        let g = match groups.iter().position(|(t, _)| *t == task) {
            Some(g) => g,
            None => {
                groups.push((task, Vec::new()));
                groups.len() - 1
            }
        };
        let queues = &mut groups[g].1;
        match queues.iter_mut().find(|(q, _)| *q == queue) {
            Some((_, records)) => records.push_back(i),
            None => queues.push((queue, VecDeque::from([i]))),
        }
    }
    let mut order = Vec::with_capacity(items.len());
    for (_, mut queues) in groups {
        if let [(_, only)] = queues.as_mut_slice() {
            order.extend(only.drain(..));
            continue;
        }
        while let Some(next) =
            queues
                .iter_mut()
                .filter(|(_, r)| !r.is_empty())
                .min_by_key(|(_, r)| {
                    let i = r[0];
                    (items[i].2, i)
                })
        {
            order.push(next.1.pop_front().expect("not empty"));
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_a_tasks_partitions_by_timestamp_keeping_offset_order() {
        // Task 0 reads queues 0 and 1; task 1 reads queue 2.
        let items = [
            (0, 0, 10), // 0
            (0, 0, 5),  // 1: out of order within queue 0, stays after 0
            (1, 2, 1),  // 2
            (0, 1, 7),  // 3
            (0, 1, 20), // 4
            (1, 2, 0),  // 5
        ];
        // Queue 0 head 10 vs queue 1 head 7: 3 first; then 0 (10) vs 4 (20):
        // 0, then 1 (5) vs 4: 1, then 4.
        assert_eq!(processing_order(&items), [3, 0, 1, 4, 2, 5]);
    }
}
