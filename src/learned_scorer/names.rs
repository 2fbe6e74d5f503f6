//! Capability names compared as `Ord` compares strings, without a call to `memcmp` for names of up
//! to eight bytes (most capability names): string comparisons were most of the cost of the overlap
//! feature and of looking up outcomes per capability.

use std::cmp::Ordering;

/// The first eight bytes of a name as a big-endian word, zero-padded: words order as the bytes do.
/// Names of four to seven bytes are read as two overlapping four-byte loads.
fn leading_word(bytes: &[u8]) -> u64 {
    let length = bytes.len();
    match length {
        8.. => u64::from_be_bytes(*bytes.first_chunk::<8>().expect("eight bytes")),
        4..=7 => {
            let head = u64::from(u32::from_be_bytes(*bytes.first_chunk::<4>().expect("four")));
            let tail = u64::from(u32::from_be_bytes(*bytes.last_chunk::<4>().expect("four")));
            (head << 32) | (tail << (64 - 8 * length))
        }
        1..=3 => {
            let word = bytes
                .iter()
                .fold(0u64, |word, byte| (word << 8) | u64::from(*byte));
            word << (64 - 8 * length)
        }
        0 => 0,
    }
}

/// `left.cmp(right)`: the leading words decide unless they are equal.
pub fn compare_names(left: &str, right: &str) -> Ordering {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    match leading_word(left).cmp(&leading_word(right)) {
        // Equal words and both within eight bytes: one is the other plus zero bytes, so the
        // shorter one is the lesser.
        Ordering::Equal if left.len() <= 8 && right.len() <= 8 => left.len().cmp(&right.len()),
        Ordering::Equal => left.cmp(right),
        unequal => unequal,
    }
}

/// `domain::scoring::capability_factor`, the same value: the same binary searches with
/// `compare_names` for `Ord::cmp`.
pub fn overlap(capabilities: &[String], required: &[String]) -> f64 {
    if required.is_empty() {
        return 1.0;
    }
    let matched = required
        .iter()
        .filter(|wanted| {
            capabilities
                .binary_search_by(|probe| compare_names(probe, wanted))
                .is_ok()
        })
        .count();
    matched as f64 / required.len() as f64
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::scoring::capability_factor;

    /// Short names over a small alphabet (with a zero byte and a non-ASCII letter) collide on
    /// prefixes and lengths often; some are longer than eight bytes.
    fn name() -> impl Strategy<Value = String> {
        "[ab\\x00é]{0,10}"
    }

    proptest! {
        #[test]
        fn names_compare_as_strings_do(left in name(), right in name()) {
            prop_assert_eq!(compare_names(&left, &right), left.cmp(&right));
        }

        #[test]
        fn overlap_is_the_capability_factor(
            capabilities in proptest::collection::vec(name(), 0..6),
            required in proptest::collection::vec(name(), 0..4),
            sort in any::<bool>(),
        ) {
            // Sorted as the stores give them, and unsorted: the same binary searches either way.
            let mut capabilities = capabilities;
            if sort {
                capabilities.sort();
            }
            prop_assert_eq!(
                overlap(&capabilities, &required).to_bits(),
                capability_factor(&capabilities, &required).to_bits()
            );
        }
    }
}
