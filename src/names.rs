//! Maps keyed by names from the config (upstream names, allow-listed models), looked up
//! several times per request. Their keys come from the operator, not from clients, so
//! they need no protection against chosen collisions and can use FNV-1a, which hashes
//! a short name in a few dozen instructions (the standard SipHash takes a few hundred).
//! Anything keyed by client input (tags) keeps the standard hasher.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` for config-defined keys.
pub type NameMap<V> = HashMap<std::sync::Arc<str>, V, BuildHasherDefault<Fnv1a>>;

/// 64-bit FNV-1a.
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_holds_and_nothing_else() {
        let mut map: NameMap<u32> = NameMap::default();
        for (i, name) in ["openai", "azure-eu", "azure-us", "a", ""]
            .iter()
            .enumerate()
        {
            map.insert((*name).into(), i as u32);
        }
        assert_eq!(map.get("azure-eu"), Some(&1));
        assert_eq!(map.get(""), Some(&4));
        assert_eq!(map.get("azure"), None);
    }

    #[test]
    fn matches_the_published_fnv1a_vectors() {
        let hash = |s: &str| {
            let mut h = Fnv1a::default();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }
}
