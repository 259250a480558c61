//! One seed per run, and the project's only source of randomness.
//!
//! A run is a function of one [`Seed`]. Every subsystem gets a child seed
//! derived from it by name ([`Seed::derive`]), so adding a draw in one
//! subsystem never changes another's stream, and every child seed can be
//! logged and reproduced on its own. All random draws go through [`DetRng`],
//! a wrapper over `rand_chacha`; nothing on a simulated path may use OS
//! randomness, so that a run is reproducible from its seed alone.

use std::fmt;
use std::str::FromStr;

use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

/// The seed of a run: a `u64`, written as a decimal number or as a hex
/// string (a commit id works).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seed(u64);

impl Seed {
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    pub const fn value(self) -> u64 {
        self.0
    }

    /// The child seed for a named subsystem (`"network"`, `"faults"`,
    /// `"workload/partition-3"`, ...): a pure function of this seed and the
    /// name, independent of anything drawn so far.
    pub fn derive(self, name: &str) -> Seed {
        Seed(splitmix64(self.0 ^ splitmix64(fnv1a64(name.as_bytes()))))
    }

    /// A generator drawing from this seed.
    pub fn rng(self) -> DetRng {
        DetRng::new(self)
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a seed string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad seed {input:?}: {reason}")]
pub struct SeedParseError {
    pub input: String,
    pub reason: &'static str,
}

impl FromStr for Seed {
    type Err = SeedParseError;

    /// `"42"`: decimal; `"0x2a"`: hex; any other string of hex digits (such
    /// as a 40-digit commit id): folded into 64 bits. Digits-only strings are
    /// read as decimal.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        let err = |reason| SeedParseError {
            input: input.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(err("empty"));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse::<u64>()
                .map(Seed)
                .map_err(|_| err("decimal seed does not fit in 64 bits"));
        }
        let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"));
        if let Some(hex) = hex {
            return u64::from_str_radix(hex, 16)
                .map(Seed)
                .map_err(|_| err("0x seed is not a 64-bit hex number"));
        }
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("expected a decimal number or a hex string"));
        }
        if text.len() <= 16 {
            return Ok(Seed(
                u64::from_str_radix(text, 16).expect("at most 16 hex digits fit in u64"),
            ));
        }
        // Longer hex strings (commit ids): fold 16 digits at a time.
        let mut folded = 0u64;
        for chunk in text.as_bytes().chunks(16) {
            let chunk = std::str::from_utf8(chunk).expect("ascii hex digits");
            let value = u64::from_str_radix(chunk, 16).expect("at most 16 hex digits fit in u64");
            folded = splitmix64(folded ^ value);
        }
        Ok(Seed(folded))
    }
}

/// The project's random number generator: ChaCha12 seeded from a [`Seed`].
/// Same seed, same draws, on every machine.
#[derive(Clone, Debug)]
pub struct DetRng {
    inner: ChaCha12Rng,
}

impl DetRng {
    pub fn new(seed: Seed) -> Self {
        Self {
            inner: ChaCha12Rng::seed_from_u64(seed.0),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A uniform draw from `low..high` (`low < high`), without modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "DetRng::below needs a positive bound");
        // Lemire's nearly-divisionless method, with rejection.
        let zone = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= zone {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniform draw from `low..high`.
    pub fn range_i64(&mut self, low: i64, high: i64) -> i64 {
        assert!(low < high, "empty range {low}..{high}");
        let width = high.abs_diff(low);
        low.wrapping_add(self.below(width) as i64)
    }

    /// A uniform draw from `low..high`.
    pub fn range_u64(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high, "empty range {low}..{high}");
        low + self.below(high - low)
    }

    /// `true` with probability `p` (clamped to `0.0..=1.0`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits give a uniform f64 in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        unit < p
    }

    /// A uniformly chosen element, `None` if the slice is empty.
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        Some(&items[self.below(items.len() as u64) as usize])
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// splitmix64's increment: the golden ratio as a 64-bit fraction.
pub(crate) const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64: one step of its state, then [`mix64`].
fn splitmix64(x: u64) -> u64 {
    mix64(x.wrapping_add(GOLDEN_GAMMA))
}

/// splitmix64's output function: a bijective 64-bit mixer (every input bit
/// moves about half of the output bits). Also folds the trace's hash.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// 64-bit FNV-1a of `bytes` (name hashes for child seeds and the trace).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_as_decimal_hex_or_commit_id() {
        assert_eq!("42".parse::<Seed>().unwrap(), Seed(42));
        assert_eq!("0x2a".parse::<Seed>().unwrap(), Seed(42));
        assert_eq!("2a".parse::<Seed>().unwrap(), Seed(42));
        let commit = "9fceb02d0ae598e95dc970b74767f19372d61af8";
        let a = commit.parse::<Seed>().unwrap();
        assert_eq!(a, commit.parse::<Seed>().unwrap());
        assert_ne!(
            a,
            "9fceb02d0ae598e95dc970b74767f19372d61af9"
                .parse::<Seed>()
                .unwrap()
        );
        assert!("".parse::<Seed>().is_err());
        assert!("seed".parse::<Seed>().is_err());
        assert!("99999999999999999999999".parse::<Seed>().is_err());
    }

    #[test]
    fn same_seed_same_draws_and_children_are_independent_of_order() {
        let seed = Seed(7);
        let a: Vec<u64> = (0..8)
            .map({
                let mut rng = seed.rng();
                move |_| rng.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..8)
            .map({
                let mut rng = seed.rng();
                move |_| rng.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_eq!(seed.derive("network"), Seed(7).derive("network"));
        assert_ne!(seed.derive("network"), seed.derive("faults"));
        assert_ne!(seed.derive("network"), Seed(8).derive("network"));
    }

    #[test]
    fn bounded_draws_stay_in_range() {
        let mut rng = Seed(1).rng();
        for _ in 0..10_000 {
            assert!(rng.below(7) < 7);
            let x = rng.range_i64(-5, 5);
            assert!((-5..5).contains(&x));
        }
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
    }
}
