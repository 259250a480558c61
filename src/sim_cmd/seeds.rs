//! Seed ranges (`A..B`, `A..=B`, or one seed) and shards (`I/N`).

use eddyline_scenarios::scenario::SeedRange;
use eddyline_sim::Seed;

/// A range of seeds as the command line writes it: `1..200` (200
/// excluded, as in Rust), `1..=200` (the grammar of a scenario file's
/// `seeds`), or a single seed (decimal or hex).
pub fn parse_range(text: &str) -> Result<Vec<Seed>, String> {
    if !text.contains("..") {
        let seed: Seed = text.parse().map_err(|e| format!("{e}"))?;
        return Ok(vec![seed]);
    }
    let range: SeedRange = text.parse()?;
    const MAX_SEEDS: u64 = 10_000_000;
    if range.end - range.start > MAX_SEEDS {
        return Err(format!(
            "bad seed range {text:?}: more than {MAX_SEEDS} seeds"
        ));
    }
    Ok(range.range().map(Seed::new).collect())
}

/// A shard `I/N`: the I-th (1-based) of N disjoint slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("bad shard {text:?}: expected I/N with 1 <= I <= N (e.g. 2/4)");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = index.trim().parse().map_err(|_| bad())?;
        let count: usize = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// This shard's part of `seeds`: every N-th seed, starting at the
    /// (I-1)-th, so that the N shards are disjoint, cover every seed, and
    /// each gets a similar mix of early and late seeds.
    pub fn slice<T: Clone>(self, seeds: &[T]) -> Vec<T> {
        seeds
            .iter()
            .skip(self.index - 1)
            .step_by(self.count)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(seeds: &[Seed]) -> Vec<u64> {
        seeds.iter().map(|s| s.value()).collect()
    }

    #[test]
    fn ranges_are_half_open_or_inclusive_or_one_seed() {
        assert_eq!(values(&parse_range("1..4").unwrap()), vec![1, 2, 3]);
        assert_eq!(values(&parse_range("1..=4").unwrap()), vec![1, 2, 3, 4]);
        assert_eq!(values(&parse_range("7").unwrap()), vec![7]);
        assert_eq!(values(&parse_range("0x10").unwrap()), vec![16]);
        for bad in ["4..1", "1..1", "a..3", "..", "1..x"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_are_disjoint_and_cover_every_seed() {
        let seeds: Vec<u64> = (1..=10).collect();
        let mut all: Vec<u64> = (1..=3)
            .flat_map(|i| Shard { index: i, count: 3 }.slice(&seeds))
            .collect();
        all.sort_unstable();
        assert_eq!(all, seeds);
        assert_eq!(Shard::parse("2/3").unwrap().slice(&seeds), vec![2, 5, 8]);
        for bad in ["0/3", "4/3", "1/0", "1", "a/b"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
