//! A bounded cache of API-key lookups, so that authentication (every request) rarely
//! reads the database, and so that a flood of requests with unknown or wrong credentials
//! is refused without one.
//!
//! Refusing from the cache is always safe: a cached key whose token does not match, or an
//! id recently found not to exist, is refused. Accepting from the cache is where
//! revocation could be missed, so it happens only on the embedded engine, where this
//! process performs every change to keys and projects and clears the cache as part of it
//! (`invalidate`). On PostgreSQL other nodes change keys too, so a cached key that matches
//! is still confirmed by a read, and revocation stays immediate on every node.

use crate::ops::org::Tenant;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept; the least recently used goes beyond this. An entry is a few hundred
/// bytes, so the cache stays under a few MiB however many ids a flood invents.
pub const CAPACITY: usize = 10_000;
/// How long "no such live key" is believed. Bounded because on PostgreSQL another node may
/// create the key (ids are random, so only someone who guessed it first would notice).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// A live key is re-read at least this often even where the cache may accept it.
pub const POSITIVE_TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub enum Cached {
    /// The key exists and is live: its token hash and the tenant it authenticates as
    /// (boxed, so that the entries a flood of invented ids leaves stay small).
    Live(Box<LiveKey>),
    /// No live key with this id (unknown, revoked, or its project deleted).
    Missing,
}

#[derive(Clone)]
pub struct LiveKey {
    pub token_hash: String,
    pub tenant: Tenant,
}

struct Slot {
    entry: Cached,
    at: Instant,
}

pub struct AuthCache {
    entries: Mutex<lru::LruCache<String, Slot>>,
    /// Bumped by every change to keys or projects; a lookup that started before a change
    /// must not store what it read.
    generation: AtomicU64,
    /// Whether a matching cached key may be accepted without a read (embedded engine).
    pub accept_from_cache: bool,
}

impl AuthCache {
    pub fn new(accept_from_cache: bool) -> Self {
        AuthCache {
            entries: Mutex::new(lru::LruCache::new(NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN))),
            generation: AtomicU64::new(0),
            accept_from_cache,
        }
    }

    /// The cached lookup for `app_id`, if it is still fresh.
    pub fn get(&self, app_id: &str) -> Option<Cached> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = match entries.get(app_id) {
            None => return None,
            Some(slot) => match slot.entry {
                Cached::Missing => slot.at.elapsed() < NEGATIVE_TTL,
                Cached::Live(_) => slot.at.elapsed() < POSITIVE_TTL,
            },
        };
        if !fresh {
            entries.pop(app_id);
            return None;
        }
        entries.peek(app_id).map(|s| s.entry.clone())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Stores a lookup made when the generation was `seen`, unless keys or projects changed
    /// since (then what was read may already be stale).
    pub fn put(&self, app_id: &str, entry: Cached, seen: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) == seen {
            entries.put(app_id.to_string(), Slot { entry, at: Instant::now() });
        }
    }

    /// Forgets everything; called once a change to keys or projects has committed, before
    /// the change is acknowledged.
    pub fn invalidate(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
