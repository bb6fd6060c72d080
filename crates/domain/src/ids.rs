//! Prefixed, time-sortable identifiers in Voucherify's style (`cust_...`, `ord_...`).
//!
//! The body is 48 bits of milliseconds since the epoch followed by 80 random bits, written
//! in lowercase Crockford base32 (26 characters). Sorting ids sorts by creation time, which
//! keeps B-tree inserts append-mostly and makes `starting_after` pagination cheap.

use rand::RngCore;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The last id body handed out, so ids from one process are strictly increasing even
/// within one millisecond (and if the clock steps back): lists ordered by id then follow
/// creation order exactly.
static LAST: std::sync::Mutex<u128> = std::sync::Mutex::new(0);

pub fn new_id(prefix: &str) -> String {
    let millis = jiff::Timestamp::now().as_millisecond().max(0) as u128;
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    let mut value: u128 = millis << 80;
    for (i, b) in random.iter().enumerate() {
        value |= (*b as u128) << (8 * (9 - i));
    }
    {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if value <= *last {
            value = *last + 1;
        }
        *last = value;
    }
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        let idx = ((value >> (5 * i)) & 0x1f) as usize;
        out.push(ALPHABET[idx] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_fixed_length() {
        let id = new_id("cust");
        assert!(id.starts_with("cust_"));
        assert_eq!(id.len(), 5 + 26);
        assert!(id[5..].bytes().all(|b| ALPHABET.contains(&b)));
    }

    #[test]
    fn ids_sort_by_time() {
        let a = new_id("x");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("x");
        assert!(a < b, "{a} should sort before {b}");
    }

    #[test]
    fn ids_increase_within_a_millisecond() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("x")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn ids_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(new_id("v")));
        }
    }
}
