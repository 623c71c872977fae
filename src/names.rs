//! Maps keyed by names from the config (upstream names, allow-listed models), looked up
//! several times per request. Their keys come from the operator, not from clients, so
//! they need no protection against chosen collisions and can use FNV-1a, which hashes
//! a short name in a few dozen instructions (the standard SipHash takes a few hundred).
//! Anything keyed by client input (tags) keeps the standard hasher.
//!
//! A config names a few upstreams, usually: up to `FEW` names are compared in turn (a
//! length check, then the bytes), which costs less than hashing the name and probing;
//! past that an FNV index finds them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Up to this many names, a lookup compares them in turn.
const FEW: usize = 8;

/// A map for config-defined keys, in the order they were first inserted.
#[derive(Debug, Clone)]
pub struct NameMap<V> {
    entries: Vec<(Arc<str>, V)>,
    /// Each name's place in `entries`, once there are more than `FEW`.
    index: Option<HashMap<Arc<str>, usize, BuildHasherDefault<Fnv1a>>>,
}

impl<V> Default for NameMap<V> {
    fn default() -> NameMap<V> {
        NameMap {
            entries: Vec::new(),
            index: None,
        }
    }
}

impl<V> NameMap<V> {
    pub fn get(&self, name: &str) -> Option<&V> {
        let at = match &self.index {
            Some(index) => *index.get(name)?,
            None => self.entries.iter().position(|(key, _)| **key == *name)?,
        };
        self.entries.get(at).map(|(_, value)| value)
    }

    /// Adds `value` under `name`, replacing the value a name already had.
    pub fn insert(&mut self, name: Arc<str>, value: V) {
        if let Some(at) = self.position(&name) {
            self.entries[at].1 = value;
            return;
        }
        self.entries.push((name.clone(), value));
        match &mut self.index {
            Some(index) => {
                index.insert(name, self.entries.len() - 1);
            }
            None if self.entries.len() > FEW => {
                let index = self.entries.iter().enumerate();
                self.index = Some(index.map(|(at, (key, _))| (key.clone(), at)).collect());
            }
            None => {}
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.entries.iter().position(|(key, _)| **key == *name),
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, value)| value)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<V> FromIterator<(Arc<str>, V)> for NameMap<V> {
    fn from_iter<I: IntoIterator<Item = (Arc<str>, V)>>(pairs: I) -> NameMap<V> {
        let mut map = NameMap::default();
        for (name, value) in pairs {
            map.insert(name, value);
        }
        map
    }
}

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
    fn past_a_few_names_an_index_finds_them_the_same() {
        let names: Vec<String> = (0..3 * FEW).map(|i| format!("upstream-{i}")).collect();
        let map: NameMap<usize> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_str().into(), i))
            .collect();
        assert!(map.index.is_some());
        for (i, name) in names.iter().enumerate() {
            assert_eq!(map.get(name), Some(&i));
        }
        assert_eq!(map.get("upstream-"), None);
        assert_eq!(map.len(), 3 * FEW);
        assert!(map.values().copied().eq(0..3 * FEW));
    }

    #[test]
    fn a_name_inserted_again_keeps_its_place_and_takes_the_new_value() {
        for count in [2, 2 * FEW] {
            let mut map: NameMap<usize> = (0..count).map(|i| (i.to_string().into(), i)).collect();
            map.insert("1".into(), 100);
            assert_eq!(map.get("1"), Some(&100));
            assert_eq!(map.len(), count);
            assert_eq!(map.values().nth(1), Some(&100));
        }
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
