//! Which open connections may give way when the server is full: each connection's last
//! byte either way and its requests in flight. A keep-alive connection with no request in
//! flight and nothing sent for a while is the one asked to close, so a client holding many
//! idle connections cannot keep a new visitor out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One open connection as the board sees it.
#[derive(Debug)]
pub struct Entry {
    /// Milliseconds since the board's start at the connection's last byte either way.
    last_ms: AtomicU64,
    /// Requests being answered on it now.
    in_flight: AtomicUsize,
    /// Cancelled when the connection is asked to give way.
    pub evict: CancellationToken,
    epoch: Instant,
}

impl Entry {
    /// A byte moved on the connection.
    pub fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Marks a request in flight until the guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn silent_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A request being answered (see [`Entry::request`]).
pub struct InFlight(Arc<Entry>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Every open connection.
#[derive(Debug)]
pub struct Board {
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
    next: AtomicU64,
    epoch: Instant,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            entries: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

/// A connection's place on the board, removed when dropped.
pub struct Listed {
    board: Arc<Board>,
    id: u64,
    pub entry: Arc<Entry>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.board
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Board {
    /// Lists a new connection (active now).
    pub fn list(self: &Arc<Self>) -> Listed {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            evict: CancellationToken::new(),
            epoch: self.epoch,
        });
        entry.touch();
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, entry.clone());
        Listed {
            board: self.clone(),
            id,
            entry,
        }
    }

    /// Asks the connection silent the longest — at least `min_silence`, with no request in
    /// flight and not already asked — to close; whether there was one.
    pub fn evict_idlest(&self, min_silence: Duration) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let idlest = entries
            .values()
            .filter(|e| e.in_flight.load(Ordering::Relaxed) == 0 && !e.evict.is_cancelled())
            .map(|e| (e.silent_for(), e))
            .filter(|(silent, _)| *silent >= min_silence)
            .max_by_key(|(silent, _)| *silent);
        match idlest {
            Some((_, entry)) => {
                entry.evict.cancel();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idlest_connection_without_a_request_gives_way() {
        let board = Arc::new(Board::default());
        let busy = board.list();
        let idle = board.list();
        let fresh = board.list();
        let _request = busy.entry.request();
        // Make `idle` and `busy` look silent for a second, `fresh` just active.
        for e in [&idle.entry, &busy.entry] {
            e.last_ms.store(0, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(20));
        fresh.entry.touch();
        assert!(board.evict_idlest(Duration::from_millis(10)));
        assert!(idle.entry.evict.is_cancelled(), "the idle one goes");
        assert!(
            !busy.entry.evict.is_cancelled(),
            "a request in flight stays"
        );
        assert!(!fresh.entry.evict.is_cancelled());
        assert!(
            !board.evict_idlest(Duration::from_millis(10)),
            "nobody else is idle enough"
        );
        drop(idle);
        assert_eq!(board.entries.lock().unwrap().len(), 2);
    }
}
