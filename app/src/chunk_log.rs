//! The recorder chunks a page keeps after sending them, so that after a dropped socket it
//! can send again whatever the server did not get. Bounded by bytes: the oldest go first.
//! Pure (generic over the chunk type), so it is tested natively.

use std::collections::VecDeque;

/// Chunks numbered in the order they were recorded, the newest kept.
#[derive(Debug)]
pub struct ChunkLog<T> {
    /// Number of the oldest chunk kept.
    first: u64,
    items: VecDeque<(T, usize)>,
    bytes: usize,
    max_bytes: usize,
}

impl<T> ChunkLog<T> {
    /// A log keeping at most `max_bytes` of chunks (always at least the newest one).
    pub fn new(max_bytes: usize) -> Self {
        ChunkLog {
            first: 0,
            items: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Adds the next chunk (`size` bytes); returns its number.
    pub fn push(&mut self, chunk: T, size: usize) -> u64 {
        let number = self.first + self.items.len() as u64;
        self.items.push_back((chunk, size));
        self.bytes += size;
        while self.bytes > self.max_bytes && self.items.len() > 1 {
            if let Some((_, dropped)) = self.items.pop_front() {
                self.bytes -= dropped;
                self.first += 1;
            }
        }
        number
    }

    /// The chunks from number `from` on, in order; `None` if some of them are no longer
    /// kept (or `from` is beyond the newest, which the server cannot have).
    pub fn since(&self, from: u64) -> Option<impl Iterator<Item = &T>> {
        let end = self.first + self.items.len() as u64;
        if from < self.first || from > end {
            return None;
        }
        Some(
            self.items
                .iter()
                .skip((from - self.first) as usize)
                .map(|(c, _)| c),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_chunks_within_its_bytes() {
        let mut log = ChunkLog::new(10);
        for n in 0..5u64 {
            assert_eq!(log.push(n, 4), n);
        }
        // 10 bytes hold two 4-byte chunks: 3 and 4.
        assert_eq!(
            log.since(3).unwrap().copied().collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(
            log.since(5).unwrap().count(),
            0,
            "the server has everything"
        );
        assert!(log.since(2).is_none(), "chunk 2 is gone");
        assert!(log.since(6).is_none(), "the server cannot be ahead");
        // A chunk larger than the limit is still kept on its own.
        assert_eq!(log.push(9, 100), 5);
        assert_eq!(log.since(5).unwrap().copied().collect::<Vec<_>>(), vec![9]);
    }
}
