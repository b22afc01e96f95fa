//! Helpers for the bounded, deterministic robustness tests of the decoders (here and in the
//! crates that use them). Not part of the domain model.

/// xorshift64: a tiny deterministic pseudo-random generator, so that a failing robustness run
/// is reproducible from its seed. Not for anything that needs real randomness.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A pseudo-random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}
