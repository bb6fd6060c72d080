//! Webhook secrets and signatures.
//!
//! Deliveries carry two signatures over the exact bytes of the body:
//! - Standard Webhooks (<https://www.standardwebhooks.com>): `webhook-id`,
//!   `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64>`, the
//!   HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed with the base64-decoded part of the
//!   secret after `whsec_`. Its libraries verify it as they are.
//! - `x-voucherify-signature`: the hex HMAC-SHA256 of the body keyed with the whole
//!   secret string, for receivers written against Voucherify.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(key))
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// The `webhook-signature` header value, or `None` if the secret is not `whsec_<base64>`.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix(PREFIX)?)
        .ok()?;
    let sig = mac(&key, &[id.as_bytes(), b".", timestamp.to_string().as_bytes(), b".", body]);
    Some(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(sig)))
}

/// The `x-voucherify-signature` header value.
pub fn voucherify_signature(secret: &str, body: &[u8]) -> String {
    hex::encode(mac(secret.as_bytes(), &[body]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_reference_vector() {
        let sig = standard_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig.as_deref(), Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    }

    #[test]
    fn secrets_are_fresh_and_usable() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(standard_signature(&a, "id", 1, b"x").is_some());
        assert!(standard_signature("not-a-secret", "id", 1, b"x").is_none());
        assert_eq!(voucherify_signature("k", b"body").len(), 64);
        assert_ne!(voucherify_signature("k", b"body"), voucherify_signature("k", b"bodz"));
    }
}
