//! API secrets: 256-bit random tokens, stored only as SHA-256 digests.
//!
//! A plain SHA-256 is the right hash here: the tokens carry 256 bits of entropy, so there
//! is nothing to brute-force, and a fast hash keeps authentication off the hot path's
//! budget. Argon2id is reserved for human passwords (dashboard logins).

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh 256-bit secret, hex encoded (64 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A public application id: random, but not secret; it names the key in lookups.
pub fn new_app_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("app_{}", hex::encode(bytes))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares a presented token with a stored digest without leaking, through timing, how
/// much of it matched.
pub fn token_matches(presented: &str, stored_hash: &str) -> bool {
    let presented_hash = hash_token(presented);
    presented_hash.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn matching_uses_the_hash() {
        let t = new_token();
        let h = hash_token(&t);
        assert_ne!(h, t);
        assert!(token_matches(&t, &h));
        assert!(!token_matches(&new_token(), &h));
        assert!(!token_matches("", &h));
    }
}
