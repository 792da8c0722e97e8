//! Window specifications and windowed keys.

use std::fmt;
use std::time::Duration;

use crate::processor::millis;
use crate::serde::{Serde, SerdeError};

/// A time window `[start, end)` in epoch milliseconds. Session windows are
/// inclusive at both ends, as in Kafka Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// First millisecond of the window.
    pub start: i64,
    /// End of the window (exclusive for time windows).
    pub end: i64,
}

/// A key together with the window it was aggregated in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}

impl<K: fmt::Display> fmt::Display for Windowed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@[{},{})",
            self.key, self.window.start, self.window.end
        )
    }
}

/// Encodes a [`Windowed`] key as the inner key's bytes followed by the
/// window start and end (8 bytes each, big-endian).
///
/// ```
/// use eddy::serde::{Serde, StringSerde};
/// use eddy::topology::{Window, Windowed, WindowedSerde};
/// let serde = WindowedSerde(StringSerde);
/// let w = Windowed { key: "k".to_string(), window: Window { start: 0, end: 10 } };
/// let mut buf = Vec::new();
/// serde.serialize(&w, &mut buf).unwrap();
/// assert_eq!(buf.len(), 1 + 16);
/// assert_eq!(serde.deserialize(Some(&buf)).unwrap(), w);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowedSerde<S>(pub S);

impl<K, S: Serde<K>> Serde<Windowed<K>> for WindowedSerde<S> {
    fn serialize(&self, value: &Windowed<K>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        self.0.serialize(&value.key, out)?;
        out.extend_from_slice(&value.window.start.to_be_bytes());
        out.extend_from_slice(&value.window.end.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, data: Option<&[u8]>) -> Result<Windowed<K>, SerdeError> {
        let data = data.ok_or(SerdeError::UnexpectedNull)?;
        if data.len() < 16 {
            return Err(SerdeError::Size {
                expected: 16,
                actual: data.len(),
            });
        }
        let (key, times) = data.split_at(data.len() - 16);
        let start = i64::from_be_bytes(times[..8].try_into().expect("8 bytes"));
        let end = i64::from_be_bytes(times[8..].try_into().expect("8 bytes"));
        Ok(Windowed {
            key: self.0.deserialize(Some(key))?,
            window: Window { start, end },
        })
    }
}

/// Fixed-size windows aligned to the epoch: tumbling (`advance == size`) or
/// hopping (`advance < size`), with an explicit grace period for
/// out-of-order records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    /// Window length in milliseconds.
    pub size: i64,
    /// Distance between window starts in milliseconds.
    pub advance: i64,
    /// How long after a window ends records are still accepted.
    pub grace: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` with `grace`.
    ///
    /// # Panics
    /// If `size` is zero.
    pub fn tumbling(size: Duration, grace: Duration) -> Self {
        let size = millis(size);
        assert!(size > 0, "window size must be positive");
        TimeWindows {
            size,
            advance: size,
            grace: millis(grace),
        }
    }

    /// Hopping windows of `size` starting every `advance`, with `grace`.
    ///
    /// # Panics
    /// If `advance` is zero or larger than `size`.
    pub fn hopping(size: Duration, advance: Duration, grace: Duration) -> Self {
        let (size, advance) = (millis(size), millis(advance));
        assert!(
            advance > 0 && advance <= size,
            "advance must be in (0, size]"
        );
        TimeWindows {
            size,
            advance,
            grace: millis(grace),
        }
    }

    /// The windows a record at `timestamp` belongs to, earliest first.
    pub fn windows_for(&self, timestamp: i64) -> impl Iterator<Item = Window> + '_ {
        // The first start after `timestamp - size`, as in Kafka Streams.
        let first = (timestamp - self.size + self.advance)
            .max(0)
            .div_euclid(self.advance)
            * self.advance;
        (0..)
            .map(move |i| first + i * self.advance)
            .take_while(move |s| *s <= timestamp)
            .map(move |start| Window {
                start,
                end: start + self.size,
            })
    }
}

/// Session windows: a key's records closer than `gap` to each other form
/// one session; sessions merge when a record bridges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    /// Inactivity gap in milliseconds.
    pub gap: i64,
    /// How long after a session ends records are still accepted.
    pub grace: i64,
}

impl SessionWindows {
    /// Sessions split by `gap` of inactivity, with `grace`.
    pub fn with_inactivity_gap(gap: Duration, grace: Duration) -> Self {
        SessionWindows {
            gap: millis(gap),
            grace: millis(grace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(w: TimeWindows, ts: i64) -> Vec<i64> {
        w.windows_for(ts).map(|w| w.start).collect()
    }

    #[test]
    fn tumbling_and_hopping_windows_are_aligned_to_the_epoch() {
        let t = TimeWindows::tumbling(Duration::from_millis(10), Duration::ZERO);
        assert_eq!(starts(t, 0), [0]);
        assert_eq!(starts(t, 9), [0]);
        assert_eq!(starts(t, 10), [10]);
        let h = TimeWindows::hopping(
            Duration::from_millis(10),
            Duration::from_millis(5),
            Duration::ZERO,
        );
        assert_eq!(starts(h, 3), [0]);
        assert_eq!(starts(h, 7), [0, 5]);
        assert_eq!(starts(h, 10), [5, 10]);
        assert_eq!(starts(h, 14), [5, 10]);
        let h3 = TimeWindows::hopping(
            Duration::from_millis(10),
            Duration::from_millis(3),
            Duration::ZERO,
        );
        assert_eq!(starts(h3, 10), [3, 6, 9]);
        assert_eq!(starts(h3, 12), [3, 6, 9, 12]);
    }
}
