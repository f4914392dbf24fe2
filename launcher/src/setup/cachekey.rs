//! Names for on-disk cache entries. std's `DefaultHasher` may change between Rust releases,
//! which would orphan every entry a sekexe built with another toolchain wrote; FNV-1a is fixed.

/// A stable 64-bit FNV-1a hash of `parts`, each prefixed with its length so that
/// `["ab", "c"]` and `["a", "bc"]` differ.
pub fn key(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for part in parts {
        for b in (part.len() as u64).to_le_bytes().iter().chain(part.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_fixed_across_builds_and_split_parts_apart() {
        // Pinned values: a change here orphans the users' caches.
        assert_eq!(super::key(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            super::key(&[b"Intel(R) Xeon(R)"]),
            super::key(&[b"Intel(R) Xeon(R)"])
        );
        assert_eq!(
            format!("{:016x}", super::key(&[b"abc"])),
            "c11ab6d2519bc2b2"
        );
        assert_ne!(super::key(&[b"ab", b"c"]), super::key(&[b"a", b"bc"]));
    }
}
