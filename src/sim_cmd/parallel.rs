//! Seeds in parallel: each simulation is single-threaded and deterministic,
//! so a sweep runs several at once, one per OS thread, and reports each
//! result on the calling thread as it arrives (for the progress bar).
//!
//! Only the command line spawns threads; nothing inside a simulation does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Runs `work` on every item with `jobs` threads; calls `done` on the
/// calling thread with each item's index and result as it finishes, and
/// returns the results in the items' order.
pub fn run_all<I, T>(
    items: &[I],
    jobs: usize,
    work: impl Fn(&I) -> T + Sync,
    mut done: impl FnMut(usize, &T),
) -> Vec<T>
where
    I: Sync,
    T: Send,
{
    let jobs = jobs.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel::<(usize, T)>();
        for _ in 0..jobs {
            let sender = sender.clone();
            let (next, work) = (&next, &work);
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else { break };
                    if sender.send((index, work(item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for (index, result) in receiver {
            done(index, &result);
            results[index] = Some(result);
        }
    });
    results
        .into_iter()
        .map(|result| result.expect("every item was run (a worker thread panicked otherwise)"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_and_results_keep_the_items_order() {
        let items: Vec<u64> = (0..50).collect();
        let mut seen = Vec::new();
        let results = run_all(&items, 3, |n| n * 2, |index, _| seen.push(index));
        assert_eq!(results, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn no_items_is_no_work() {
        let results: Vec<u64> = run_all(&[] as &[u64], 4, |n| *n, |_, _| {});
        assert!(results.is_empty());
    }
}
