//! Seeded randomness that depends only on the ChaCha8 stream, never on how a `rand` version
//! implements shuffling or ranges, so a seed gives the same split and batches forever.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Independent streams of one seed, so e.g. changing the augmentation leaves the split alone.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Split = 1,
    Shuffle = 2,
    Augment = 3,
}

/// The generator for `stream`, e.g. the shuffle of epoch `index`.
pub(crate) fn rng(seed: u64, stream: Stream, index: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(((stream as u64) << 56) | (index & ((1 << 56) - 1)));
    r
}

/// A uniform integer in `0..n` (n > 0), without modulo bias (Lemire's multiply-and-reject).
pub(crate) fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let n = n as u64;
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as usize;
        }
    }
}

/// Fisher-Yates shuffle.
pub(crate) fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = rng(1, Stream::Split, 0);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[below(&mut r, 7)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(below(&mut r, 1), 0);
    }

    #[test]
    fn shuffle_permutes_and_streams_differ() {
        let mut v: Vec<usize> = (0..100).collect();
        shuffle(&mut rng(5, Stream::Shuffle, 0), &mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
        let mut w: Vec<usize> = (0..100).collect();
        shuffle(&mut rng(5, Stream::Shuffle, 1), &mut w);
        assert_ne!(v, w, "epochs get different orders");
        let mut a = rng(5, Stream::Shuffle, 0);
        let mut b = rng(5, Stream::Augment, 0);
        assert_ne!(a.next_u64(), b.next_u64(), "streams are independent");
    }
}
