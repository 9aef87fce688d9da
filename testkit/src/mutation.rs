//! The mutation tests' seeded generator: the cases depend on the seed alone, so a failure is
//! reproduced exactly. `MUTATION_SEED` sets the seed (default: a new one each run; tests print it
//! on failure), `MUTATION_CASES` how many cases a test runs (`bench/mutations.sh` runs many).

/// A seeded generator (xorshift64*).
#[derive(Debug)]
pub struct Seeded {
    state: u64,
    seed: u64,
}

impl Seeded {
    /// From `MUTATION_SEED`, or from the clock.
    pub fn from_env() -> Self {
        let seed = std::env::var("MUTATION_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        Seeded {
            state: seed | 1,
            seed,
        }
    }

    /// The seed, to print with a failure.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.below(256) as u8
    }

    /// `input` changed one way: a byte changed, up to 64 random bytes inserted, up to 32 bytes
    /// removed, up to 32 bytes repeated up to 2,000 times, or cut short. The mutations every
    /// input format shares; a test adds those of its format (a doubled header line, a length
    /// field set to something else).
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        let at = self.below(out.len());
        match self.below(5) {
            0 if !out.is_empty() => out[at] = self.byte(),
            1 => {
                let noise: Vec<u8> = (0..1 + self.below(64)).map(|_| self.byte()).collect();
                out.splice(at..at, noise);
            }
            2 => {
                let end = (at + 1 + self.below(32)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 => {
                let end = (at + 1 + self.below(32)).min(out.len());
                let span = out[at.min(end)..end].to_vec();
                for _ in 0..1 + self.below(2000) {
                    out.splice(at..at, span.iter().copied());
                }
            }
            _ => out.truncate(at),
        }
        out
    }
}

/// Cases per mutation test: `MUTATION_CASES`, or `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("MUTATION_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
