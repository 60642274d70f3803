//! Flattened sums as multisets: each distinct term once, with its multiplicity.
//!
//! A sum's canonical form is the sorted list of the non-sum terms it adds up after nested sums
//! are flattened. In skip-heavy cells the same term recurs many times (an NB201 cell of skips
//! adds its input four times, so `n` such cells add it `4^n` times); listing every copy is
//! exponential, counting copies is not.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::sha;

/// Sums of at most this many terms (copies counted) hash by their full sorted term list, the
/// encoding every earlier version used for all sums, so stored hashes keep matching. Larger
/// sums hash their `(term, multiplicity)` pairs instead: still one digest per distinct
/// multiset, in time linear in the number of distinct terms.
pub(super) const LISTED_TERMS_LIMIT: u64 = 1 << 16;

/// A multiplicity: a natural number of any size, as little-endian 64-bit limbs with no
/// trailing zero limb (so equal numbers have equal limbs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Count(Vec<u64>);

impl Count {
    pub(super) fn one() -> Count {
        Count(vec![1])
    }

    pub(super) fn add(&mut self, other: &Count) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        let mut carry = false;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let o = other.0.get(i).copied().unwrap_or(0);
            let (s, c1) = limb.overflowing_add(o);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            *limb = s;
            carry = c1 || c2;
        }
        if carry {
            self.0.push(1);
        }
    }

    /// The value, or `u64::MAX` when it does not fit.
    fn saturating_u64(&self) -> u64 {
        match self.0.as_slice() {
            [v] => *v,
            _ => u64::MAX,
        }
    }

    /// Minimal little-endian bytes (no trailing zero byte): one encoding per number.
    fn le_bytes(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self.0.iter().flat_map(|l| l.to_le_bytes()).collect();
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        bytes
    }
}

/// The flattened terms of one sum, sorted by digest, each distinct digest once.
pub(super) type Terms = Vec<([u8; 32], Count)>;

/// Adds up `parts`, each a flattened sum or a single term (multiplicity one).
pub(super) fn merge<'a>(parts: impl IntoIterator<Item = Part<'a>>) -> Terms {
    let mut acc: BTreeMap<[u8; 32], Count> = BTreeMap::new();
    let mut add = |digest: [u8; 32], count: &Count| match acc.get_mut(&digest) {
        Some(c) => c.add(count),
        None => {
            acc.insert(digest, count.clone());
        }
    };
    for part in parts {
        match part {
            Part::Term(d) => add(d, &Count::one()),
            Part::Sum(terms) => {
                for (d, c) in terms {
                    add(*d, c);
                }
            }
        }
    }
    acc.into_iter().collect()
}

/// One input of a sum.
pub(super) enum Part<'a> {
    Term([u8; 32]),
    Sum(&'a Terms),
}

/// The digest of a flattened sum, and how many term digests it fed through SHA-256.
pub(super) fn digest(terms: &Terms) -> ([u8; 32], u64) {
    let total = terms
        .iter()
        .fold(0u64, |t, (_, c)| t.saturating_add(c.saturating_u64()));
    if total <= LISTED_TERMS_LIMIT {
        // sha(["sum", t1, t1, t2, ...]) with every copy listed, streamed.
        let mut h = Sha256::new();
        h.update((b"sum".len() as u64).to_le_bytes());
        h.update(b"sum");
        for (d, c) in terms {
            for _ in 0..c.saturating_u64() {
                h.update((d.len() as u64).to_le_bytes());
                h.update(d);
            }
        }
        (h.finalize().into(), total)
    } else {
        let counts: Vec<Vec<u8>> = terms.iter().map(|(_, c)| c.le_bytes()).collect();
        let mut parts: Vec<&[u8]> = vec![b"counted sum"];
        for ((d, _), c) in terms.iter().zip(&counts) {
            parts.push(d);
            parts.push(c);
        }
        (sha(&parts), terms.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_with_carries_across_limbs() {
        let mut a = Count(vec![u64::MAX]);
        a.add(&Count::one());
        assert_eq!(a, Count(vec![0, 1]));
        assert_eq!(a.saturating_u64(), u64::MAX);
        assert_eq!(a.le_bytes(), [0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let mut b = Count(vec![u64::MAX, u64::MAX]);
        b.add(&Count(vec![1]));
        assert_eq!(b, Count(vec![0, 0, 1]));
        let mut c = Count::one();
        c.add(&Count::one());
        assert_eq!(c.le_bytes(), [2]);
    }

    #[test]
    fn small_sums_list_every_copy_as_before() {
        let (x, y) = ([1u8; 32], [2u8; 32]);
        let terms = merge([Part::Term(y), Part::Term(x), Part::Term(x)]);
        assert_eq!(terms.len(), 2);
        let (d, fed) = digest(&terms);
        assert_eq!(fed, 3);
        assert_eq!(d, sha(&[b"sum", &x, &x, &y]));
    }

    #[test]
    fn large_sums_hash_their_counts() {
        let x = [7u8; 32];
        let mut big = Count::one();
        for _ in 0..70 {
            let copy = big.clone();
            big.add(&copy);
        }
        let a = vec![(x, big.clone())];
        let mut bigger = big.clone();
        bigger.add(&Count::one());
        let b = vec![(x, bigger)];
        let (da, fed) = digest(&a);
        assert_eq!(fed, 1);
        assert_ne!(da, digest(&b).0);
        // Merging is associative: (a + a) + b == a + (a + b).
        let left = merge([
            Part::Sum(&merge([Part::Sum(&a), Part::Sum(&a)])),
            Part::Sum(&b),
        ]);
        let right = merge([
            Part::Sum(&a),
            Part::Sum(&merge([Part::Sum(&a), Part::Sum(&b)])),
        ]);
        assert_eq!(left, right);
    }
}
