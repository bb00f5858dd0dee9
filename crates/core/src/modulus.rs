//! `n % d` for a divisor fixed ahead of many reductions, without a division instruction.
//!
//! The samplers reduce a 64-bit hash into a token range once per emulated token; a 64-bit `div`
//! stalls about 40 cycles on the machines this runs on, half the sampler's time. The remainder is
//! computed instead from one multiply-high, a subtraction and shifts, with the magic number of
//! Granlund and Montgomery ("Division by invariant integers using multiplication", 1994,
//! figure 4.1): exact for every dividend, so the tokens drawn are the same as with `%`.

/// A divisor `d ≥ 1` prepared for exact remainders.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Modulus {
    divisor: u64,
    /// `floor(2^64 · (2^l − d) / d) + 1`, with `l = ceil(log2 d)`.
    magic: u64,
    /// `min(l, 1)`.
    shift1: u32,
    /// `max(l − 1, 0)`.
    shift2: u32,
}

impl Modulus {
    /// Prepares `divisor`; zero is taken as one (every remainder is then zero).
    pub fn new(divisor: u64) -> Modulus {
        let d = divisor.max(1);
        // l = ceil(log2 d): the bits needed for d − 1.
        let l = 64 - (d - 1).leading_zeros();
        let two_l = 1u128 << l;
        // (2^l − d) < 2^63 whenever l = 64, so the product fits in 128 bits.
        let magic = (((two_l - d as u128) << 64) / d as u128 + 1) as u64;
        Modulus {
            divisor: d,
            magic,
            shift1: l.min(1),
            shift2: l.saturating_sub(1),
        }
    }

    /// The divisor this was prepared for.
    pub fn divisor(&self) -> u64 {
        self.divisor
    }

    /// `n / d`.
    #[inline(always)]
    pub fn quotient(&self, n: u64) -> u64 {
        let t1 = ((self.magic as u128 * n as u128) >> 64) as u64;
        (t1 + ((n - t1) >> self.shift1)) >> self.shift2
    }

    /// `n % d`.
    #[inline(always)]
    pub fn remainder(&self, n: u64) -> u64 {
        n - self.quotient(n) * self.divisor
    }
}

#[cfg(test)]
mod tests {
    use super::Modulus;

    /// SplitMix64 steps: dividends spread over the whole 64-bit range.
    fn spread(count: usize) -> impl Iterator<Item = u64> {
        let mut z = 0x1234_5678_9ABC_DEF0u64;
        (0..count).map(move |_| {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        })
    }

    #[test]
    fn remainders_equal_the_division_instructions() {
        let mut divisors: Vec<u64> = vec![1, 2, 3, 5, 7, 10, 16, 29_000, 32_000, 151_936];
        divisors.extend([u32::MAX as u64, 1 << 32, (1 << 32) + 1, (1 << 63) - 1]);
        divisors.extend([1 << 63, (1 << 63) + 1, u64::MAX - 1, u64::MAX]);
        divisors.extend(spread(200).map(|x| x >> (x % 64)).filter(|&d| d > 0));
        let edges = [0, 1, 2, u32::MAX as u64, u64::MAX - 1, u64::MAX];
        for d in divisors {
            let m = Modulus::new(d);
            let near = [
                d - 1,
                d,
                d.saturating_add(1),
                d.wrapping_mul(2),
                d.wrapping_mul(3) - 1,
            ];
            for n in spread(2_000).chain(edges).chain(near) {
                assert_eq!(m.quotient(n), n / d, "{n} / {d}");
                assert_eq!(m.remainder(n), n % d, "{n} % {d}");
            }
        }
    }

    #[test]
    fn zero_is_taken_as_one() {
        let m = Modulus::new(0);
        assert_eq!(m.divisor(), 1);
        assert_eq!(m.remainder(12345), 0);
    }
}
