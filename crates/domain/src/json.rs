//! Cheap structural checks on raw JSON before it reaches the parser.

/// True when no array or object in `bytes` nests deeper than `max_depth`. Runs in one pass
/// without allocating, so a hostile body is refused before serde builds anything from it.
/// Bytes that are not valid JSON pass this check and are left for the parser to reject.
pub fn depth_within(bytes: &[u8], max_depth: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn real_depth(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(a) => 1 + a.iter().map(real_depth).max().unwrap_or(0),
            serde_json::Value::Object(o) => 1 + o.values().map(real_depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            "[\\[\\]{}\"\\\\a-z]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(12, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z\\[{\"]{0,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_parsed_depth(v in arb_json(), max in 0usize..14) {
            let text = serde_json::to_vec(&v).expect("serializable");
            prop_assert_eq!(depth_within(&text, max), real_depth(&v) <= max);
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(!depth_within(deep.as_bytes(), 32));
        assert!(depth_within(br#"{"a":"[[[[[[["}"#, 1));
    }
}
