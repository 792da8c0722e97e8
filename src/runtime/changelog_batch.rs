//! A batch of changelog records, copied off the consumer for a store's
//! engine (restore and standby replicas).

/// Changelog records to write to a store: their keys and values side by
/// side in one buffer, so that copying a record off the consumer costs no
/// allocation of its own (a restore's batches also go back to their reader
/// once written, to be filled again).
#[derive(Default)]
pub(crate) struct ChangelogBatch {
    bytes: Vec<u8>,
    /// Where each record's key ends, and its value (`None`: a tombstone).
    ends: Vec<(usize, Option<usize>)>,
}

impl ChangelogBatch {
    /// Appends a record (`None`: a tombstone).
    pub(crate) fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        let value_end = value.map(|v| {
            self.bytes.extend_from_slice(v);
            self.bytes.len()
        });
        self.ends.push((key_end, value_end));
    }

    /// How many records it holds.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Its records, in order, as the engines' `write` takes them.
    pub(crate) fn records(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let key = &self.bytes[start..key_end];
            let value = value_end.map(|e| &self.bytes[key_end..e]);
            start = value_end.unwrap_or(key_end);
            (key, value)
        })
    }

    /// Empties it, keeping its buffers.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::ChangelogBatch;

    #[test]
    fn a_batch_gives_back_its_records_in_order() {
        let mut b = ChangelogBatch::default();
        b.push(b"a", Some(b"1"));
        b.push(b"bb", None);
        b.push(b"c", Some(b""));
        b.push(b"", Some(b"v"));
        assert_eq!(b.len(), 4);
        let got: Vec<_> = b.records().collect();
        let want: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"a", Some(b"1")),
            (b"bb", None),
            (b"c", Some(b"")),
            (b"", Some(b"v")),
        ];
        assert_eq!(got, want);
        b.clear();
        assert_eq!(b.records().count(), 0);
    }
}
