//! The canonical hash by its first definition, which lists every term of every flattened sum:
//! the reference that [`Graph::canonical_hash`] must agree with.

use std::collections::HashMap;

use crate::ir::Graph;

use super::sha;

/// [`Graph::canonical_hash`] with every sum expanded into its full sorted list of terms
/// (copies repeated). Equal to it wherever no sum has more than 65,536 terms; exponential in
/// time and memory on deep skip-heavy networks, so for tests on small graphs only.
pub fn expanded_canonical_hash(graph: &Graph) -> String {
    // Digest of a sum -> its terms, so nested sums flatten: (a + b) + c == a + (b + c).
    let mut sums: HashMap<[u8; 32], Vec<[u8; 32]>> = HashMap::new();
    graph.hash_with_sums(|live| {
        let mut terms: Vec<[u8; 32]> = Vec::new();
        for d in live {
            match sums.get(d) {
                Some(inner) => terms.extend(inner.iter().copied()),
                None => terms.push(*d),
            }
        }
        terms.sort();
        let mut parts: Vec<&[u8]> = vec![b"sum"];
        parts.extend(terms.iter().map(|t| t.as_slice()));
        let digest = sha(&parts);
        sums.insert(digest, terms);
        digest
    })
}
