//! Voucher code generation from a `code_config`.
//!
//! Codes are drawn without replacement from the space the pattern allows: a keyed
//! Feistel permutation maps the sequence 0, 1, 2... onto distinct, unpredictable points
//! of that space. So a batch never collides with itself, memory stays flat however many
//! codes are made (the generator is a counter and a key), and a space too small for the
//! requested count is detected up front instead of by endless retries.

use crate::error::InvalidInput;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const DEFAULT_CHARSET: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const DEFAULT_LENGTH: u32 = 8;
const MAX_CODE_LEN: usize = 100;
const MAX_CHARSET: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CodeConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postfix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// A validated code configuration, ready to enumerate codes.
#[derive(Debug, Clone)]
pub struct CodeSpace {
    charset: Vec<char>,
    /// The code template: `None` marks a position filled from the charset.
    template: Vec<Option<char>>,
    slots: u32,
    size: u128,
}

impl CodeSpace {
    pub fn parse(cfg: &CodeConfig) -> Result<Self, InvalidInput> {
        let charset: Vec<char> = {
            let raw = cfg.charset.as_deref().filter(|c| !c.is_empty()).unwrap_or(DEFAULT_CHARSET);
            let mut seen = std::collections::BTreeSet::new();
            let chars: Vec<char> = raw.chars().filter(|c| seen.insert(*c)).collect();
            if chars.len() < 2 || chars.len() > MAX_CHARSET || chars.iter().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(InvalidInput::payload(format!(
                    "'code_config.charset' must hold 2 to {MAX_CHARSET} distinct printable characters"
                )));
            }
            chars
        };
        let prefix = cfg.prefix.clone().unwrap_or_default();
        let postfix = cfg.postfix.clone().unwrap_or_default();
        let body = match &cfg.pattern {
            Some(p) if !p.is_empty() => p.clone(),
            _ => {
                let len = cfg.length.unwrap_or(DEFAULT_LENGTH);
                if len == 0 || len as usize > MAX_CODE_LEN {
                    return Err(InvalidInput::payload(format!(
                        "'code_config.length' must be from 1 to {MAX_CODE_LEN}"
                    )));
                }
                "#".repeat(len as usize)
            }
        };
        let full: Vec<char> = prefix.chars().chain(body.chars()).chain(postfix.chars()).collect();
        if full.len() > MAX_CODE_LEN || full.iter().any(|c| c.is_control()) {
            return Err(InvalidInput::payload(format!(
                "generated codes must be at most {MAX_CODE_LEN} printable characters"
            )));
        }
        let prefix_len = prefix.chars().count();
        let body_len = body.chars().count();
        let template: Vec<Option<char>> = full
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if *c == '#' && i >= prefix_len && i < prefix_len + body_len {
                    None
                } else {
                    Some(*c)
                }
            })
            .collect();
        let slots = template.iter().filter(|c| c.is_none()).count() as u32;
        if slots == 0 {
            return Err(InvalidInput::payload("'code_config.pattern' must contain at least one '#'"));
        }
        let size = (charset.len() as u128).checked_pow(slots).unwrap_or(u128::MAX);
        Ok(CodeSpace {
            charset,
            template,
            slots,
            size,
        })
    }

    /// How many distinct codes the configuration can produce.
    pub fn size(&self) -> u128 {
        self.size
    }

    /// Refuses counts the space cannot hold. Half the space is the most we promise, since
    /// codes already taken in the project (other campaigns) also occupy it.
    pub fn check_capacity(&self, count: u64) -> Result<(), InvalidInput> {
        if (count as u128).saturating_mul(2) > self.size {
            return Err(InvalidInput {
                key: "code_space_exhausted",
                message: "Code pattern too small".into(),
                details: format!(
                    "the code configuration allows {} distinct codes; {count} requested needs at least twice that. Use a longer pattern or a larger charset.",
                    self.size
                ),
            });
        }
        Ok(())
    }

    fn render(&self, mut n: u128) -> String {
        let base = self.charset.len() as u128;
        let mut digits = Vec::with_capacity(self.slots as usize);
        for _ in 0..self.slots {
            digits.push(self.charset[(n % base) as usize]);
            n /= base;
        }
        let mut d = digits.into_iter();
        self.template.iter().map(|c| c.or_else(|| d.next()).unwrap_or('?')).collect()
    }
}

/// Enumerates distinct codes of a space in an unpredictable order.
pub struct CodeGenerator {
    space: CodeSpace,
    /// Random 128-bit keys, one per Feistel round: without them the order of codes
    /// cannot be predicted from codes already seen.
    keys: [(u64, u64); 4],
    half_bits: u32,
    next: u128,
}

impl CodeGenerator {
    pub fn new(space: CodeSpace) -> Self {
        let mut rng = rand::rng();
        let keys = [(); 4].map(|_| (rng.next_u64(), rng.next_u64()));
        // Smallest even bit width covering the space; cycle-walking maps back into it.
        let bits = 128 - (space.size.saturating_sub(1)).leading_zeros();
        let half_bits = bits.div_ceil(2).clamp(1, 63);
        CodeGenerator {
            space,
            keys,
            half_bits,
            next: 0,
        }
    }

    /// The round function: SipHash-1-3, a keyed PRF fast enough for millions of codes
    /// a second (SHA-256 here cost more than the database inserts).
    fn round(&self, r: u64, i: usize) -> u64 {
        use std::hash::Hasher;
        let (k0, k1) = self.keys[i];
        let mut h = siphasher::sip::SipHasher13::new_with_keys(k0, k1);
        h.write_u64(r);
        h.finish() & ((1u64 << self.half_bits) - 1)
    }

    fn permute(&self, x: u128) -> u128 {
        let mask = (1u64 << self.half_bits) - 1;
        let mut l = (x >> self.half_bits) as u64 & mask;
        let mut r = x as u64 & mask;
        for i in 0..4usize {
            let f = self.round(r, i);
            (l, r) = (r, l ^ f);
        }
        ((l as u128) << self.half_bits) | r as u128
    }

    /// The next code, or `None` once the whole space has been enumerated.
    pub fn next_code(&mut self) -> Option<String> {
        let domain = 1u128 << (2 * self.half_bits);
        let effective = self.space.size.min(domain);
        if self.next >= effective {
            return None;
        }
        let mut y = self.permute(self.next);
        self.next += 1;
        // Cycle-walking restricts the permutation of the power-of-two domain to
        // [0, effective); the domain is at most 4x larger, so a few steps suffice.
        while y >= effective {
            y = self.permute(y);
        }
        Some(self.space.render(y))
    }
}

impl Iterator for CodeGenerator {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        self.next_code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn cfg(pattern: Option<&str>, charset: Option<&str>, prefix: Option<&str>, length: Option<u32>) -> CodeConfig {
        CodeConfig {
            pattern: pattern.map(str::to_string),
            charset: charset.map(str::to_string),
            prefix: prefix.map(str::to_string),
            length,
            postfix: None,
        }
    }

    #[test]
    fn pattern_prefix_and_charset_are_respected() {
        let space = CodeSpace::parse(&cfg(Some("##-##"), Some("AB"), Some("X-"), None)).expect("valid");
        assert_eq!(space.size(), 16);
        let codes: Vec<String> = CodeGenerator::new(space).take(16).collect();
        let set: HashSet<_> = codes.iter().cloned().collect();
        assert_eq!(set.len(), 16, "all 16 codes distinct: {codes:?}");
        for c in &codes {
            assert!(c.starts_with("X-") && c.len() == 7 && &c[4..5] == "-", "{c}");
            assert!(c[2..4].chars().chain(c[5..7].chars()).all(|ch| ch == 'A' || ch == 'B'), "{c}");
        }
    }

    #[test]
    fn exhausts_exactly_the_space() {
        for n in [2usize, 3, 5, 10, 26, 36, 100, 1000] {
            let charset: String = DEFAULT_CHARSET.chars().take(n.min(62)).collect();
            let space = CodeSpace::parse(&cfg(Some(if n > 62 { "##" } else { "#" }), Some(&charset), None, None)).expect("valid");
            let size = space.size() as usize;
            let codes: Vec<String> = CodeGenerator::new(space).collect();
            assert_eq!(codes.len(), size);
            assert_eq!(codes.iter().collect::<HashSet<_>>().len(), size);
        }
    }

    #[test]
    fn capacity_is_checked() {
        let space = CodeSpace::parse(&cfg(Some("###"), Some("0123456789"), None, None)).expect("valid");
        assert!(space.check_capacity(500).is_ok());
        let err = space.check_capacity(501).expect_err("too many");
        assert_eq!(err.key, "code_space_exhausted");
        assert!(CodeSpace::parse(&cfg(Some("ABC"), None, None, None)).is_err());
        assert!(CodeSpace::parse(&cfg(None, Some("A"), None, None)).is_err());
        assert!(CodeSpace::parse(&cfg(None, None, None, Some(0))).is_err());
    }

    #[test]
    fn defaults_give_eight_alphanumerics() {
        let space = CodeSpace::parse(&CodeConfig::default()).expect("valid");
        let code = CodeGenerator::new(space).next().expect("code");
        assert_eq!(code.len(), 8);
        assert!(code.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn batches_never_repeat(len in 3u32..7, count in 1usize..800) {
            let space = CodeSpace::parse(&cfg(None, Some("0123456789"), Some("P"), Some(len))).expect("valid");
            let take = count.min(space.size() as usize);
            let codes: Vec<String> = CodeGenerator::new(space).take(take).collect();
            prop_assert_eq!(codes.len(), take);
            prop_assert_eq!(codes.iter().collect::<HashSet<_>>().len(), take);
            prop_assert!(codes.iter().all(|c| c.len() == 1 + len as usize));
        }
    }
}
