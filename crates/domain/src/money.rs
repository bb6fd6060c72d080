//! Exact money arithmetic in integer minor units.

/// Splits `total` across `weights` in proportion, exactly: every share is the floor of
/// its proportional part, and the units left over go one each to the largest fractional
/// remainders. Ties are broken by `keys` (content of the item, never its position), so
/// the same cart in any order gets the same split. Zero total weight splits evenly by key.
///
/// Invariants: shares sum to `total`; each share is at most `ceil(total * w / W)`.
pub fn allocate<K: AsRef<str>>(total: i64, weights: &[i64], keys: &[K]) -> Vec<i64> {
    let n = weights.len();
    if n == 0 || total <= 0 {
        return vec![0; n];
    }
    let weights: Vec<i128> = weights.iter().map(|w| (*w).max(0) as i128).collect();
    let sum: i128 = weights.iter().sum();
    let (weights, sum) = if sum == 0 { (vec![1i128; n], n as i128) } else { (weights, sum) };
    let total = total as i128;
    let mut shares: Vec<i64> = Vec::with_capacity(n);
    let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(n);
    for (i, w) in weights.iter().enumerate() {
        let exact = total * w;
        shares.push((exact / sum) as i64);
        remainders.push((exact % sum, i));
    }
    let mut left = total as i64 - shares.iter().sum::<i64>();
    remainders.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| keys.get(a.1).map(AsRef::as_ref).cmp(&keys.get(b.1).map(AsRef::as_ref)))
            .then_with(|| weights[b.1].cmp(&weights[a.1]))
    });
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        if weights[i] > 0 {
            shares[i] += 1;
            left -= 1;
        }
    }
    shares
}

/// `amount * basis_points / 10_000`, rounded half up, without overflow.
pub fn percent_of(amount: i64, basis_points: i64) -> i64 {
    let v = amount.max(0) as i128 * basis_points.max(0) as i128;
    ((v + 5_000) / 10_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let k: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(allocate(100, &[1, 1, 1], &k), vec![34, 33, 33]);
        assert_eq!(allocate(10, &[0, 0, 0], &k).iter().sum::<i64>(), 10);
        assert_eq!(allocate(0, &[5, 5, 5], &k), vec![0, 0, 0]);
        assert_eq!(percent_of(999, 1000), 100);
        assert_eq!(percent_of(995, 1000), 100);
        assert_eq!(percent_of(994, 1000), 99);
    }

    proptest! {
        #[test]
        fn exact_and_order_independent(
            total in 0i64..10_000_000,
            items in prop::collection::vec((0i64..1_000_000, "[a-c]{1,2}"), 1..12),
            seed in any::<u64>(),
        ) {
            let weights: Vec<i64> = items.iter().map(|i| i.0).collect();
            let keys: Vec<String> = items.iter().map(|i| format!("{}|{}", i.1, i.0)).collect();
            let shares = allocate(total, &weights, &keys);
            prop_assert_eq!(shares.iter().sum::<i64>(), total);
            let wsum: i128 = weights.iter().map(|w| *w as i128).sum();
            for (s, w) in shares.iter().zip(&weights) {
                prop_assert!(*s >= 0);
                if wsum > 0 {
                    let ceil = (total as i128 * *w as i128 + wsum - 1) / wsum;
                    prop_assert!((*s as i128) <= ceil);
                }
            }
            // Shuffle and compare as a multiset of (key, weight, share).
            let mut idx: Vec<usize> = (0..items.len()).collect();
            let mut x = seed;
            for i in (1..idx.len()).rev() {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                idx.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let w2: Vec<i64> = idx.iter().map(|&i| weights[i]).collect();
            let k2: Vec<String> = idx.iter().map(|&i| keys[i].clone()).collect();
            let s2 = allocate(total, &w2, &k2);
            let mut a: Vec<(String, i64, i64)> = (0..items.len()).map(|i| (keys[i].clone(), weights[i], shares[i])).collect();
            let mut b: Vec<(String, i64, i64)> = (0..items.len()).map(|i| (k2[i].clone(), w2[i], s2[i])).collect();
            a.sort();
            b.sort();
            prop_assert_eq!(a, b);
        }
    }
}
