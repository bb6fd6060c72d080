//! Named limits. Every input the server accepts is bounded; a limit that is hit yields a
//! clear client error instead of unbounded memory or CPU use.

/// Largest request body accepted on any endpoint, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Deepest JSON nesting accepted in a request body.
pub const MAX_JSON_DEPTH: usize = 32;
/// Largest page a list endpoint returns.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Highest page number a list endpoint accepts (as Voucherify: deep paging is refused).
pub const MAX_PAGE: u32 = 100;
/// Widest date range accepted in a list filter (`created_at[after]`..`[before]`), in days.
pub const MAX_DATE_RANGE_DAYS: i64 = 366;
/// Items per order.
pub const MAX_ORDER_ITEMS: usize = 500;
/// Longest identifier, source id, code or name accepted.
pub const MAX_ID_LEN: usize = 255;
/// Longest free-text field (description).
pub const MAX_TEXT_LEN: usize = 4096;
/// Largest serialized metadata object, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest `Idempotency-Key` header value.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// How long an idempotency record is kept, in seconds.
pub const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;
/// After this long an in-flight idempotency record is considered abandoned (its request
/// crashed with the process) and may be taken over by a retry.
pub const IDEMPOTENCY_IN_FLIGHT_STALE_SECS: i64 = 60;
/// Largest amount (minor units) accepted anywhere; keeps all sums far from i64 overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;
/// Largest item quantity.
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// Records of one customer (redemptions and publications) a permanent deletion rewrites
/// in its single transaction, with their events. Its time grows with them: 10,000
/// redemptions took 1.4 s on SQLite, where every other write waits meanwhile, and 4.0 s
/// on PostgreSQL (bench/erase.sh, bench/RESULTS.md). Past this, 409 `limit_exceeded`
/// instead of stalling every checkout behind the writer for seconds.
pub const MAX_ERASURE_RECORDS: i64 = 20_000;
