//! Per-device rate limit: a token bucket per topic (a topic names one device, gateway or edge
//! node). A device over its limit has its messages dead-lettered, with the reason, instead of
//! flooding the store; nothing is dropped silently.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Token buckets, one per topic.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: f64,
    buckets: HashMap<String, (f64, Instant)>,
    last_prune: Instant,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` messages a minute per topic, in bursts up to that many;
    /// 0 disables it.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute),
            buckets: HashMap::new(),
            last_prune: Instant::now(),
        }
    }

    /// Whether one more message on `topic` at `now` is within the limit (and takes a token).
    pub fn allow(&mut self, topic: &str, now: Instant) -> bool {
        if self.per_minute <= 0.0 {
            return true;
        }
        if now.duration_since(self.last_prune) > Duration::from_secs(120) {
            // Idle buckets are full again anyway; forgetting them bounds memory.
            let full_after = Duration::from_secs(60);
            self.buckets
                .retain(|_, (_, t)| now.duration_since(*t) < full_after);
            self.last_prune = now;
        }
        let rate = self.per_minute / 60.0;
        let (tokens, last) = self
            .buckets
            .entry(topic.to_owned())
            .or_insert((self.per_minute, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(self.per_minute);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_up_to_the_limit_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(60);
        for _ in 0..60 {
            assert!(rl.allow("a", t0));
        }
        assert!(!rl.allow("a", t0));
        assert!(rl.allow("b", t0), "topics are limited separately");
        assert!(!rl.allow("a", t0 + Duration::from_millis(500)));
        assert!(rl.allow("a", t0 + Duration::from_millis(1_600)));
        let mut off = RateLimiter::new(0);
        assert!((0..10_000).all(|_| off.allow("a", t0)));
    }
}
