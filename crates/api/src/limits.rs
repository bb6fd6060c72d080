//! Traffic protection: rate limits per project, per API key and per client IP, a
//! per-project cap on requests in progress, and a global overload guard.
//!
//! Limiter state exists only for what has authenticated (projects and live keys), plus a
//! fixed table of client IPs allocated at start, and idle entries are dropped. An idle GCRA bucket is
//! indistinguishable from a fresh one, so dropping it loses nothing. See
//! docs/ARCHITECTURE.md for the worst-case memory of each structure.

use crate::error::ApiError;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_domain::project::RateLimits;

type Gcra = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// Defaults for projects without their own budgets: 500 requests a second is far beyond a
/// busy shop's checkout (the market leader's published load test is 55 redemptions a
/// second), yet about a quarter of what a small 2-core node validates, so one runaway
/// integration on default budgets cannot take a node from the others. Big tenants get
/// raised budgets per project.
pub const DEFAULT_LIMITS: RateLimits = RateLimits {
    per_minute: 30_000,
    burst: 1_000,
    per_key_per_minute: None,
    per_client_ip_per_minute: Some(600),
    max_in_flight: Some(256),
};
/// Slots of the client-IP table (a power of two). The table is allocated and written once
/// at start, so a flood of new client IPs cannot move the server's memory at all.
pub const MAX_TRACKED_IPS: usize = 1 << 17;
/// Slots per set of the client-IP table: an IP can live in any of these.
const IP_WAYS: usize = 4;
/// Buckets idle this long are dropped (they would have refilled completely).
pub const IDLE_EVICTION: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub allowed: bool,
    /// The binding budget, per minute.
    pub limit: u32,
    pub remaining: u32,
    pub retry_after: Duration,
}

struct Entry {
    quota: (u32, u32),
    gcra: Arc<Gcra>,
    last_used: Instant,
}

fn gcra(per_minute: u32, burst: u32) -> Gcra {
    let per_minute = per_minute.max(1);
    let period = Duration::from_nanos((60_000_000_000u64 / per_minute as u64).max(1));
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>()
}

fn check(entry: &Entry, per_minute: u32) -> Decision {
    match entry.gcra.check() {
        Ok(snapshot) => Decision {
            allowed: true,
            limit: per_minute,
            remaining: snapshot.remaining_burst_capacity(),
            retry_after: Duration::ZERO,
        },
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Decision {
                allowed: false,
                limit: per_minute,
                remaining: 0,
                retry_after: wait,
            }
        }
    }
}

/// A map of buckets whose keys come only from authenticated callers.
#[derive(Default)]
struct Buckets {
    map: Mutex<HashMap<String, Entry>>,
}

impl Buckets {
    fn check(&self, key: &str, per_minute: u32, burst: u32) -> Decision {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = map.entry(key.to_string()).or_insert_with(|| Entry {
            quota: (per_minute, burst),
            gcra: Arc::new(gcra(per_minute, burst)),
            last_used: now,
        });
        if entry.quota != (per_minute, burst) {
            // The project's budget changed: start a bucket with the new quota.
            *entry = Entry {
                quota: (per_minute, burst),
                gcra: Arc::new(gcra(per_minute, burst)),
                last_used: now,
            };
        }
        entry.last_used = now;
        check(entry, per_minute)
    }

    fn evict_idle(&self) -> usize {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| e.last_used.elapsed() < IDLE_EVICTION);
        map.len()
    }

    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// One client IP's bucket: GCRA in 16 bytes. Client IPs are the one limiter key an
/// anonymous caller chooses, so this map is the one that fills to its cap under a flood;
/// a governor limiter per entry plus a string key cost about 300 bytes, this about 80
/// with the map's own overhead.
#[derive(Clone, Copy, Default)]
struct IpBucket {
    /// Theoretical arrival time, in nanoseconds since the limiter's epoch.
    tat: u64,
    per_minute: u32,
    burst: u32,
}

impl IpBucket {
    fn interval(per_minute: u32) -> u64 {
        (60_000_000_000u64 / per_minute.max(1) as u64).max(1)
    }

    /// GCRA: a request is allowed while the bucket's arrival time runs at most `burst`
    /// intervals ahead of now; each allowed request moves it one interval on.
    fn check(&mut self, now: u64) -> Decision {
        let t = Self::interval(self.per_minute);
        let capacity = t.saturating_mul(self.burst.max(1) as u64);
        let tat = self.tat.max(now);
        let ahead = tat - now + t;
        if ahead > capacity {
            return Decision {
                allowed: false,
                limit: self.per_minute,
                remaining: 0,
                retry_after: Duration::from_nanos(ahead - capacity),
            };
        }
        self.tat = tat + t;
        Decision {
            allowed: true,
            limit: self.per_minute,
            remaining: ((capacity - ahead) / t) as u32,
            retry_after: Duration::ZERO,
        }
    }
}

/// One slot of the client-IP table. `tag` is a keyed 64-bit hash of (project, IP), never
/// 0 for a used slot; a collision (odds 2^-64 per pair) would make two clients share a
/// bucket, never crash or grow anything.
#[derive(Clone, Copy, Default)]
struct IpSlot {
    tag: u64,
    bucket: IpBucket,
}

/// Client-IP buckets in a set-associative table of fixed size: an IP hashes to one set
/// of `IP_WAYS` slots. A bucket whose arrival time has passed is exactly a fresh bucket,
/// so such slots are free to reuse; only when every slot of a set is still "ahead" does a
/// newcomer replace the one closest to full (its client gets at most one burst early).
/// With the default 600/min a bucket stays ahead for 100 ms per request, so even 10,000
/// new IPs a second keep about 1,000 of 131,072 slots busy.
struct IpTable {
    slots: Box<[IpSlot]>,
    hasher: std::collections::hash_map::RandomState,
}

impl IpTable {
    fn new(slots: usize) -> Self {
        let sets = (slots / IP_WAYS).max(1).next_power_of_two();
        // Written, not merely reserved: the pages are resident from the start, so RSS
        // under a flood of new IPs stays where it was at start-up.
        let slots: Vec<IpSlot> = std::iter::repeat_n(IpSlot::default(), sets * IP_WAYS).collect();
        IpTable {
            slots: slots.into_boxed_slice(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn check(&mut self, project: &str, ip: IpAddr, per_minute: u32, burst: u32, now: u64) -> Decision {
        let tag = std::hash::BuildHasher::hash_one(&self.hasher, (project, ip)) | 1;
        let sets = self.slots.len() / IP_WAYS;
        // The low bit is forced to 1 above; take the set from the high bits.
        let set = ((tag >> 32) as usize) & (sets - 1);
        let ways = &mut self.slots[set * IP_WAYS..(set + 1) * IP_WAYS];
        let i = match ways.iter().position(|s| s.tag == tag) {
            Some(i) => i,
            None => {
                // The free slot, else the bucket closest to full (earliest arrival time).
                let victim = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| if s.tag == 0 { 0 } else { s.bucket.tat.max(1) })
                    .map_or(0, |(i, _)| i);
                ways[victim] = IpSlot {
                    tag,
                    bucket: IpBucket { tat: 0, per_minute, burst },
                };
                victim
            }
        };
        let slot = &mut ways[i];
        if (slot.bucket.per_minute, slot.bucket.burst) != (per_minute, burst) {
            slot.bucket = IpBucket { tat: 0, per_minute, burst };
        }
        slot.bucket.check(now)
    }

    /// Buckets still ahead of now: the clients the table actually remembers.
    fn live(&self, now: u64) -> usize {
        self.slots.iter().filter(|s| s.tag != 0 && s.bucket.tat > now).count()
    }
}

/// In-process limits, used alone or as the fallback when Redis is unreachable.
pub struct LocalLimiter {
    projects: Buckets,
    keys: Buckets,
    ips: Mutex<IpTable>,
    epoch: Instant,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter {
            projects: Buckets::default(),
            keys: Buckets::default(),
            ips: Mutex::new(IpTable::new(MAX_TRACKED_IPS)),
            epoch: Instant::now(),
        }
    }
}

impl LocalLimiter {
    pub fn check_project(&self, project: &str, l: &RateLimits) -> Decision {
        self.projects.check(project, l.per_minute, l.burst)
    }

    pub fn check_key(&self, key: &str, l: &RateLimits) -> Decision {
        let per_minute = l.per_key_per_minute.unwrap_or(l.per_minute);
        self.keys.check(key, per_minute, l.burst.min(per_minute))
    }

    pub fn check_ip(&self, project: &str, ip: IpAddr, l: &RateLimits) -> Decision {
        let per_minute = l
            .per_client_ip_per_minute
            .or(DEFAULT_LIMITS.per_client_ip_per_minute)
            .unwrap_or(600);
        let burst = (per_minute / 10).max(1);
        let now = self.now();
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        ips.check(project, ip, per_minute, burst, now)
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Drops idle buckets; returns the entries left (projects, keys, live client IPs).
    /// The client-IP table needs no sweep: a slot whose bucket has refilled is free.
    pub fn evict_idle(&self) -> (usize, usize, usize) {
        let p = self.projects.evict_idle();
        let k = self.keys.evict_idle();
        (p, k, self.live_ips())
    }

    pub fn entries(&self) -> (usize, usize, usize) {
        (self.projects.len(), self.keys.len(), self.live_ips())
    }

    fn live_ips(&self) -> usize {
        let now = self.now();
        self.ips.lock().map(|t| t.live(now)).unwrap_or(0)
    }
}

/// Limits shared by every node through Redis: one GCRA script, Redis's own clock, keys
/// that expire by themselves. The connection is made lazily and re-attempted at most
/// every few seconds, so a node starts and serves (on local limits) while Redis is down.
pub struct RedisLimiter {
    client: redis::Client,
    state: Arc<Mutex<RedisState>>,
    script: redis::Script,
}

#[derive(Default)]
struct RedisState {
    conn: Option<redis::aio::ConnectionManager>,
    connecting: bool,
    last_attempt: Option<Instant>,
}

const GCRA_SCRIPT: &str = r#"
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, math.floor((tolerance - (new_tat - now)) / emission), 0}
"#;

impl RedisLimiter {
    pub fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
        Ok(RedisLimiter {
            client,
            state: Arc::new(Mutex::new(RedisState::default())),
            script: redis::Script::new(GCRA_SCRIPT),
        })
    }

    /// Connects before the node starts serving, so shared limits apply from its first
    /// request; if Redis is down the node starts anyway and keeps trying in the background.
    pub async fn warm_up(&self) -> bool {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_millis(1000))
            .set_response_timeout(Duration::from_millis(250))
            .set_number_of_retries(1);
        match redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await {
            Ok(c) => {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.conn = Some(c);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "Redis unreachable at start: local rate limits until it answers");
                false
            }
        }
    }

    /// The shared connection, or an immediate error while there is none. Connecting
    /// happens on a background task (at most every few seconds), so no request ever waits
    /// for Redis to time out.
    fn connection(&self) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = &st.conn {
            return Ok(c.clone());
        }
        if !st.connecting && st.last_attempt.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            st.connecting = true;
            st.last_attempt = Some(Instant::now());
            let (client, state) = (self.client.clone(), self.state.clone());
            tokio::spawn(async move {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Duration::from_millis(500))
                    .set_response_timeout(Duration::from_millis(250))
                    .set_number_of_retries(1);
                let result = redis::aio::ConnectionManager::new_with_config(client, config).await;
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                st.connecting = false;
                match result {
                    Ok(c) => st.conn = Some(c),
                    Err(e) => tracing::debug!(error = %e, "Redis connection attempt failed"),
                }
            });
        }
        Err(redis::RedisError::from((redis::ErrorKind::IoError, "Redis unreachable")))
    }

    async fn check(&self, key: &str, per_minute: u32, burst: u32) -> Result<Decision, redis::RedisError> {
        let emission_us = (60_000_000u64 / per_minute.max(1) as u64).max(1);
        // The script admits a request arriving no earlier than TAT + T - tolerance; with
        // tolerance = burst * T a fresh key admits exactly `burst` requests at once.
        let tolerance_us = emission_us * burst.max(1) as u64;
        let mut conn = self.connection()?;
        let (allowed, remaining, wait_us): (i64, i64, i64) = self
            .script
            .key(format!("tessera:rl:{key}"))
            .arg(emission_us)
            .arg(tolerance_us)
            .invoke_async(&mut conn)
            .await?;
        Ok(Decision {
            allowed: allowed == 1,
            limit: per_minute,
            remaining: remaining.clamp(0, u32::MAX as i64) as u32,
            retry_after: Duration::from_micros(wait_us.max(0) as u64),
        })
    }
}

/// What to do when Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailure {
    /// Use this node's local limits (the default: availability over strictness).
    Open,
    /// Refuse with 503 until Redis answers again.
    Closed,
}

pub struct Limiter {
    pub local: LocalLimiter,
    redis: Option<RedisLimiter>,
    on_redis_failure: RedisFailure,
    last_redis_warning: Mutex<Option<Instant>>,
    in_flight_global: AtomicUsize,
    max_in_flight_global: usize,
    projects_in_flight: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

pub enum Outcome {
    Allowed(Decision),
    Limited(Decision),
    Unavailable,
}

impl Limiter {
    pub fn new(redis: Option<RedisLimiter>, on_redis_failure: RedisFailure, max_in_flight_global: usize) -> Self {
        Limiter {
            local: LocalLimiter::default(),
            redis,
            on_redis_failure,
            last_redis_warning: Mutex::new(None),
            in_flight_global: AtomicUsize::new(0),
            max_in_flight_global,
            projects_in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the key's and the project's budgets (and the client IP's for client keys).
    /// The tightest decision is the one reported.
    pub async fn check(&self, project: &str, key: &str, ip: Option<IpAddr>, limits: &RateLimits) -> Outcome {
        // Narrowest first, stopping at the first refusal: one client IP or one key that is
        // over its budget does not drain the budgets of the whole project.
        let ip = ip.map(client_bucket);
        if let Some(r) = &self.redis {
            let key_rate = limits.per_key_per_minute.unwrap_or(limits.per_minute);
            let mut checks: Vec<(String, u32, u32)> = Vec::with_capacity(3);
            if let Some(ip) = ip {
                let per_ip = limits
                    .per_client_ip_per_minute
                    .or(DEFAULT_LIMITS.per_client_ip_per_minute)
                    .unwrap_or(600);
                checks.push((format!("i:{project}:{ip}"), per_ip, (per_ip / 10).max(1)));
            }
            checks.push((format!("k:{key}"), key_rate, limits.burst.min(key_rate)));
            checks.push((format!("p:{project}"), limits.per_minute, limits.burst));
            let mut tightest: Option<Decision> = None;
            let mut failed = false;
            for (k, rate, burst) in &checks {
                match r.check(k, *rate, *burst).await {
                    Ok(d) => {
                        if !d.allowed {
                            return Outcome::Limited(d);
                        }
                        if tightest.is_none_or(|t| d.remaining < t.remaining) {
                            tightest = Some(d);
                        }
                    }
                    Err(e) => {
                        failed = true;
                        self.redis_failed(&e);
                        break;
                    }
                }
            }
            if !failed {
                if let Some(d) = tightest {
                    return Outcome::Allowed(d);
                }
            } else if self.on_redis_failure == RedisFailure::Closed {
                return Outcome::Unavailable;
            }
        }
        let mut decisions = Vec::with_capacity(3);
        if let Some(ip) = ip {
            decisions.push(self.local.check_ip(project, ip, limits));
        }
        if decisions.iter().all(|d| d.allowed) {
            decisions.push(self.local.check_key(key, limits));
        }
        if decisions.iter().all(|d| d.allowed) {
            decisions.push(self.local.check_project(project, limits));
        }
        match decisions.iter().find(|d| !d.allowed) {
            Some(d) => Outcome::Limited(*d),
            None => Outcome::Allowed(decisions.into_iter().min_by_key(|d| d.remaining).unwrap_or(Decision {
                allowed: true,
                limit: limits.per_minute,
                remaining: limits.burst,
                retry_after: Duration::ZERO,
            })),
        }
    }

    fn redis_failed(&self, e: &redis::RedisError) {
        metrics::counter!("tessera_rate_limit_redis_errors_total").increment(1);
        let mut last = self.last_redis_warning.lock().unwrap_or_else(|e| e.into_inner());
        // One log line per ten seconds is enough to page someone without flooding logs.
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            match self.on_redis_failure {
                RedisFailure::Open => tracing::warn!(error = %e, "Redis unreachable: falling back to local rate limits"),
                RedisFailure::Closed => tracing::error!(error = %e, "Redis unreachable: refusing requests (rate limits fail closed)"),
            }
        }
    }

    /// Admits a request to the node if the global overload guard allows it. Critical
    /// requests (validate, redeem) may use the whole capacity; others only three quarters,
    /// so checkout keeps working while listings and imports are shed first.
    pub fn admit_global(self: &Arc<Self>, critical: bool) -> Option<InFlight> {
        let cap = if critical {
            self.max_in_flight_global
        } else {
            self.max_in_flight_global * 3 / 4
        };
        let now = self.in_flight_global.fetch_add(1, Ordering::AcqRel);
        if now >= cap {
            self.in_flight_global.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight {
            counter: CounterRef::Global(self.clone()),
        })
    }

    /// Admits a request of a project if the project is under its in-flight cap.
    pub fn admit_project(&self, project: &str, max: usize) -> Option<InFlight> {
        let counter = {
            let mut map = self.projects_in_flight.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(project.to_string()).or_default().clone()
        };
        let now = counter.fetch_add(1, Ordering::AcqRel);
        if now >= max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight {
            counter: CounterRef::Project(counter),
        })
    }

    /// Periodic housekeeping: idle buckets and idle in-flight counters go away.
    pub fn housekeeping(&self) {
        let (p, k, i) = self.local.evict_idle();
        let mut map = self.projects_in_flight.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| c.load(Ordering::Acquire) > 0 || Arc::strong_count(c) > 1);
        metrics::gauge!("tessera_rate_limit_entries", "kind" => "project").set(p as f64);
        metrics::gauge!("tessera_rate_limit_entries", "kind" => "key").set(k as f64);
        metrics::gauge!("tessera_rate_limit_entries", "kind" => "client_ip").set(i as f64);
        metrics::gauge!("tessera_in_flight_counters").set(map.len() as f64);
    }
}

enum CounterRef {
    Global(Arc<Limiter>),
    Project(Arc<AtomicUsize>),
}

/// A slot held while a request is in progress; released on drop.
pub struct InFlight {
    counter: CounterRef,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        match &self.counter {
            CounterRef::Global(l) => {
                l.in_flight_global.fetch_sub(1, Ordering::AcqRel);
            }
            CounterRef::Project(c) => {
                c.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// The bucket a client address falls in: the address itself for IPv4, its /64 for IPv6
/// (one subscriber usually holds a whole /64 and could otherwise rotate through it).
pub fn client_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Voucherify's rate-limit headers.
pub fn headers(h: &mut HeaderMap, d: &Decision) {
    let mut set = |name: &'static str, v: u64| {
        if let Ok(v) = HeaderValue::from_str(&v.to_string()) {
            h.insert(name, v);
        }
    };
    set("x-rate-limit-limit", d.limit as u64);
    set("x-rate-limit-remaining", d.remaining as u64);
    set("x-rate-limit-retry", d.retry_after.as_secs_f64().ceil() as u64);
}

pub fn too_many(d: &Decision) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "Too many requests",
        format!(
            "The rate limit of {} requests per minute is exhausted; retry after the time in Retry-After.",
            d.limit
        ),
    );
    e.retry_after_secs = Some(d.retry_after.as_secs_f64().ceil().max(1.0) as u64);
    e
}

/// Whether a request is on the checkout path (or a health probe), which keeps priority
/// under load: validations, redemptions, rollbacks and qualifications are POSTs.
pub fn is_critical(method: &axum::http::Method, path: &str) -> bool {
    if path.starts_with("/health/") {
        return true;
    }
    *method == axum::http::Method::POST
        && [
            "/validations",
            "/redemptions",
            "/qualifications",
            "/validate",
            "/redemption",
            "/rollback",
            "/rollbacks",
        ]
        .iter()
        .any(|p| path.ends_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_throttles() {
        let l = LocalLimiter::default();
        let limits = RateLimits {
            per_minute: 60,
            burst: 5,
            per_key_per_minute: None,
            per_client_ip_per_minute: None,
            max_in_flight: None,
        };
        let allowed = (0..20).filter(|_| l.check_project("p1", &limits).allowed).count();
        assert_eq!(allowed, 5);
        let d = l.check_project("p1", &limits);
        assert!(!d.allowed && d.retry_after > Duration::ZERO && d.retry_after <= Duration::from_secs(1));
        // Another project has its own budget.
        assert!(l.check_project("p2", &limits).allowed);
    }

    #[test]
    fn changed_budgets_take_effect() {
        let l = LocalLimiter::default();
        let small = RateLimits {
            per_minute: 60,
            burst: 1,
            per_key_per_minute: None,
            per_client_ip_per_minute: None,
            max_in_flight: None,
        };
        assert!(l.check_project("p", &small).allowed);
        assert!(!l.check_project("p", &small).allowed);
        let big = RateLimits { burst: 100, ..small };
        assert!(l.check_project("p", &big).allowed);
    }

    #[test]
    fn ip_buckets_throttle_after_the_burst_and_refill() {
        let mut b = IpBucket {
            tat: 0,
            per_minute: 600,
            burst: 3,
        };
        let t = IpBucket::interval(600);
        let now = 1_000_000_000u64;
        assert_eq!((0..3).map(|_| b.check(now).remaining).collect::<Vec<_>>(), vec![2, 1, 0]);
        let refused = b.check(now);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_nanos(t));
        assert!(b.check(now + t).allowed, "one interval later, one more request fits");
        assert!(!b.check(now + t).allowed);
    }

    proptest::proptest! {
        /// The compact client-IP bucket decides exactly as governor's GCRA (used for
        /// projects and keys) on any sequence of arrivals.
        #[test]
        fn ip_buckets_agree_with_governor(per_minute in 1u32..100_000, burst in 1u32..50, gaps in proptest::collection::vec(0u64..200_000_000, 1..200)) {
            let clock = governor::clock::FakeRelativeClock::default();
            let period = Duration::from_nanos(IpBucket::interval(per_minute));
            let quota = Quota::with_period(period).expect("non-zero period").allow_burst(NonZeroU32::new(burst).expect("non-zero"));
            let reference = RateLimiter::direct_with_clock(quota, clock.clone());
            let mut bucket = IpBucket { tat: 0, per_minute, burst };
            let mut now = 0u64;
            for gap in gaps {
                clock.advance(Duration::from_nanos(gap));
                now += gap;
                proptest::prop_assert_eq!(bucket.check(now).allowed, reference.check().is_ok());
            }
        }
    }

    #[test]
    fn client_ip_table_has_a_fixed_size_and_forgets_only_refilled_buckets() {
        let mut t = IpTable::new(64);
        assert_eq!(t.slots.len(), 64);
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(i));
        // One client on one request a minute spends its burst of 3 at time 0: throttled
        // for the next three minutes.
        assert!((0..3).all(|_| t.check("p", ip(7), 1, 3, 0).allowed));
        assert!(!t.check("p", ip(7), 1, 3, 0).allowed);
        // 10,000 other IPs (100 µs interval), one every 200 µs: each bucket has refilled
        // before the next IP arrives, so its slot is free again and nobody is evicted.
        let mut now = 0;
        for i in 0..10_000u32 {
            now += 200_000;
            assert!(t.check("p", ip(1000 + i), 600_000, 1, now).allowed);
        }
        assert_eq!(t.slots.len(), 64, "the table never grows");
        assert!(!t.check("p", ip(7), 1, 3, now).allowed, "the throttled client was not forgotten");
        // The same IP under another project is another client.
        assert!(t.check("q", ip(7), 1, 3, now).allowed);
        // ip 7 in both projects and the flood's last IP, whose interval has not passed.
        assert_eq!(t.live(now), 3);
    }

    #[test]
    fn client_ip_table_stays_fixed_under_new_ips() {
        let l = LocalLimiter::default();
        for i in 0..(MAX_TRACKED_IPS as u32 * 2) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            l.check_ip("p", ip, &DEFAULT_LIMITS);
        }
        let live = l.entries().2;
        assert!(live > 0 && live <= MAX_TRACKED_IPS, "{live}");
        assert_eq!(l.ips.lock().map(|t| t.slots.len()).unwrap_or(0), MAX_TRACKED_IPS);
    }

    #[test]
    fn checkout_is_critical() {
        use axum::http::Method;
        assert!(is_critical(&Method::POST, "/v1/redemptions"));
        assert!(is_critical(&Method::POST, "/client/v1/validations"));
        assert!(is_critical(&Method::POST, "/v1/redemptions/r_1/rollback"));
        assert!(!is_critical(&Method::GET, "/v1/redemptions"));
        assert!(!is_critical(&Method::POST, "/v1/vouchers/importCSV"));
    }

    #[test]
    fn in_flight_caps() {
        let l = Arc::new(Limiter::new(None, RedisFailure::Open, 4));
        let a: Vec<_> = (0..3).filter_map(|_| l.admit_global(false)).collect();
        assert_eq!(a.len(), 3, "non-critical requests use three quarters");
        assert!(l.admit_global(true).is_some(), "checkout still gets in");
        drop(a);
        let p: Vec<_> = (0..5).filter_map(|_| l.admit_project("p", 2)).collect();
        assert_eq!(p.len(), 2);
        drop(p);
        assert!(l.admit_project("p", 2).is_some());
    }
}
