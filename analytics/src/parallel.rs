//! Independent passes (one per sensor, one per zone, one per piece of a file) shared out over the machine's cores,
//! without a thread pool: scoped threads take the next item from a shared counter.

/// Runs `f` on every item, the items shared out over the machine's cores; the results come
/// back in the items' order.
pub(crate) fn map_in_parallel<'a, I: Sync + ?Sized, T: Send>(
    items: &[&'a I],
    f: impl Fn(&'a I) -> T + Sync,
) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(s) = items.get(i) else { break };
                        done.push((i, f(s)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_the_items_order() {
        let items: Vec<u64> = (0..97).collect();
        let refs: Vec<&u64> = items.iter().collect();
        let out = map_in_parallel(&refs, |x| {
            // Uneven work, so that the threads finish out of order.
            std::thread::sleep(std::time::Duration::from_micros((x % 7) * 300));
            x * 2
        });
        let doubled: Vec<u64> = items.iter().map(|x| x * 2).collect();
        assert_eq!(out, doubled);
        assert!(map_in_parallel(&Vec::<&u64>::new(), |x| *x).is_empty());
    }
}
