//! Helpers for the crate's unit tests.

use rand::SeedableRng;
use rand::rngs::StdRng;

/// A generator from `CHAINRULE_SEED`, or from a fresh random seed, printed
/// with `test`'s name so that a failure can be replayed.
pub(crate) fn rng(test: &str) -> StdRng {
    let seed = std::env::var("CHAINRULE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{test}: seed {seed} (replay with CHAINRULE_SEED={seed})");
    StdRng::seed_from_u64(seed)
}
