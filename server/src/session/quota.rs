//! Per-key quotas: how many sessions one browser (its cookie) or one network address runs.
//! A [`Held`] place counts until it is dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Running counts per key, each at most `limit` (which a settings reload may change: places
/// already held stay held, new ones wait until the count is under the new limit).
#[derive(Debug)]
pub struct Quota<K: Hash + Eq + Clone> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    limit: AtomicUsize,
}

impl<K: Hash + Eq + Clone> Quota<K> {
    pub fn new(limit: usize) -> Self {
        Quota {
            counts: Arc::default(),
            limit: AtomicUsize::new(limit),
        }
    }

    /// The limit new places are checked against.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit for new places.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Places `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        lock(&self.counts).get(key).copied().unwrap_or(0)
    }

    /// A place for `key`, or `None` when it holds `limit` already.
    pub fn take(&self, key: &K) -> Option<Held<K>> {
        let mut counts = lock(&self.counts);
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= self.limit() {
            if *n == 0 {
                counts.remove(key);
            }
            return None;
        }
        *n += 1;
        Some(Held {
            key: key.clone(),
            counts: self.counts.clone(),
        })
    }
}

/// One counted place; dropping it gives the place back.
#[derive(Debug)]
pub struct Held<K: Hash + Eq + Clone> {
    key: K,
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq + Clone> Drop for Held<K> {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A poisoned map is still a consistent map: entries are inserted and removed whole.
pub(crate) fn lock<K, V>(map: &Mutex<HashMap<K, V>>) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
    map.lock().unwrap_or_else(|p| p.into_inner())
}

/// The network a client counts against: its IPv4 address, or its IPv6 /64 (one household
/// or phone is given a whole /64; counting single IPv6 addresses would let it pick new ones).
pub fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_limit_and_gets_places_back() {
        let quota = Quota::new(2);
        let a = quota.take(&"me").unwrap();
        let _b = quota.take(&"me").unwrap();
        assert!(quota.take(&"me").is_none());
        assert!(quota.take(&"you").is_some(), "others are not affected");
        drop(a);
        assert!(quota.take(&"me").is_some());
        assert!(
            lock(&quota.counts).get(&"you").is_none(),
            "empty keys leave"
        );
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(network_of(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
