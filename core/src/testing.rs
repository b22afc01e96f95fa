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

    /// A number in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal number (Box–Muller), for noise in synthetic test data.
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
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
