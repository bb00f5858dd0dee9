//! The two random streams `vllm bench serve` draws from, reproduced bit for bit so that the
//! same `--seed` gives the same sample and the same arrival times as vLLM:
//! - Python's `random` module (`random.seed(n)`, `random.shuffle`, `random.choice`), which
//!   shuffles the ShareGPT and custom datasets and picks oversampled requests;
//! - numpy's legacy global generator (`np.random.seed(n)`, `np.random.gamma`), which draws the
//!   inter-arrival gaps.
//!
//! Both are MT19937; they differ in seeding (`init_by_array` for Python, `init_genrand` for
//! numpy) and in how they turn words into numbers.

const N: usize = 624;
const M: usize = 397;

/// The Mersenne Twister MT19937 (Matsumoto & Nishimura), as CPython and numpy implement it.
#[derive(Clone)]
pub struct Mt19937 {
    mt: [u32; N],
    index: usize,
}

impl Mt19937 {
    /// `init_genrand(s)`: numpy's `RandomState(seed)` for an integer seed.
    pub fn init_genrand(s: u32) -> Mt19937 {
        let mut mt = [0u32; N];
        mt[0] = s;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { mt, index: N }
    }

    /// `init_by_array(key)`: CPython's `random.seed(int)`.
    pub fn init_by_array(key: &[u32]) -> Mt19937 {
        let mut g = Mt19937::init_genrand(19_650_218);
        let mt = &mut g.mt;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        g
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % N] & 0x7fff_ffff);
            let mut v = self.mt[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.mt[i] = v;
        }
        self.index = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A double in [0, 1) from 53 random bits (`genrand_res53`), as both libraries make it.
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

/// Python's `random.Random`, for the calls vLLM's dataset code makes.
pub struct PyRandom {
    mt: Mt19937,
}

impl PyRandom {
    /// `random.seed(seed)` for an integer seed: the key is |seed| in 32-bit words, low first.
    pub fn new(seed: i64) -> PyRandom {
        let mut n = seed.unsigned_abs();
        let mut key = Vec::new();
        while n > 0 {
            key.push(n as u32);
            n >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        PyRandom {
            mt: Mt19937::init_by_array(&key),
        }
    }

    /// `random.getrandbits(k)` for 1 ≤ k ≤ 32.
    fn getrandbits(&mut self, k: u32) -> u32 {
        self.mt.next_u32() >> (32 - k)
    }

    /// `random._randbelow(n)`: rejection sampling on `n.bit_length()` bits. `n` < 2^32.
    pub fn randbelow(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let k = usize::BITS - n.leading_zeros();
        debug_assert!(k <= 32, "lists of 2^32 items are out of scope");
        loop {
            let r = self.getrandbits(k) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `random.shuffle(xs)` (Fisher–Yates from the end).
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.randbelow(i + 1);
            xs.swap(i, j);
        }
    }

    /// The index `random.choice(seq)` picks for a sequence of `len` items.
    pub fn choice_index(&mut self, len: usize) -> usize {
        self.randbelow(len)
    }
}

/// numpy's legacy `np.random` global state after `np.random.seed(seed)`.
pub struct NumpyLegacy {
    mt: Mt19937,
    gauss: Option<f64>,
}

impl NumpyLegacy {
    /// `np.random.seed(seed)`; numpy accepts 0 ≤ seed < 2^32.
    pub fn new(seed: u32) -> NumpyLegacy {
        NumpyLegacy {
            mt: Mt19937::init_genrand(seed),
            gauss: None,
        }
    }

    fn standard_exponential(&mut self) -> f64 {
        -(1.0 - self.mt.next_f64()).ln()
    }

    /// Polar Box–Muller, keeping the second value for the next call (`legacy_gauss`).
    fn gauss(&mut self) -> f64 {
        if let Some(g) = self.gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.mt.next_f64() - 1.0;
            let x2 = 2.0 * self.mt.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.gauss = Some(f * x1);
                return f * x2;
            }
        }
    }

    /// `legacy_standard_gamma`: exponential for shape 1, Johnk-style rejection below 1,
    /// Marsaglia–Tsang above.
    fn standard_gamma(&mut self, shape: f64) -> f64 {
        if shape == 1.0 {
            self.standard_exponential()
        } else if shape == 0.0 {
            0.0
        } else if shape < 1.0 {
            loop {
                let u = self.mt.next_f64();
                let v = self.standard_exponential();
                if u <= 1.0 - shape {
                    let x = u.powf(1.0 / shape);
                    if x <= v {
                        return x;
                    }
                } else {
                    let y = -((1.0 - u) / shape).ln();
                    let x = (1.0 - shape + shape * y).powf(1.0 / shape);
                    if x <= v + y {
                        return x;
                    }
                }
            }
        } else {
            let b = shape - 1.0 / 3.0;
            let c = 1.0 / (9.0 * b).sqrt();
            loop {
                let (mut x, mut v);
                loop {
                    x = self.gauss();
                    v = 1.0 + c * x;
                    if v > 0.0 {
                        break;
                    }
                }
                v = v * v * v;
                let u = self.mt.next_f64();
                if u < 1.0 - 0.0331 * (x * x) * (x * x) {
                    return b * v;
                }
                if u.ln() < 0.5 * x * x + b * (1.0 - v + v.ln()) {
                    return b * v;
                }
            }
        }
    }

    /// `np.random.gamma(shape, scale)`.
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        scale * self.standard_gamma(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values printed by CPython 3.11 and numpy from vLLM 0.19's environment.
    #[test]
    fn python_random_matches_cpython() {
        let mut r = PyRandom::new(0);
        let words: Vec<u32> = (0..3).map(|_| r.getrandbits(32)).collect();
        assert_eq!(words, [3626764237, 1654615998, 3255389356]);

        let mut xs: Vec<u32> = (0..10).collect();
        PyRandom::new(0).shuffle(&mut xs);
        assert_eq!(xs, [7, 8, 1, 5, 3, 4, 2, 0, 9, 6]);

        let mut xs: Vec<u32> = (0..20).collect();
        PyRandom::new(12_345_678_901).shuffle(&mut xs);
        assert_eq!(
            xs,
            [1, 6, 0, 9, 8, 18, 13, 7, 4, 16, 15, 14, 5, 2, 17, 3, 11, 12, 10, 19]
        );

        let mut r = PyRandom::new(3);
        let picks: Vec<usize> = (0..6).map(|_| r.choice_index(7)).collect();
        assert_eq!(picks, [1, 4, 4, 1, 2, 4]);
    }

    /// Same libm underneath, but allow an ulp or two across platforms.
    fn assert_close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-14 * y.abs(), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn numpy_gamma_matches_numpy() {
        let mut g = NumpyLegacy::new(0);
        let xs: Vec<f64> = (0..3).map(|_| g.gamma(1.0, 0.1)).collect();
        assert_close(
            &xs,
            &[
                0.07958745081631101,
                0.12559307629658378,
                0.09232231458040689,
            ],
        );
        let mut g = NumpyLegacy::new(42);
        let xs: Vec<f64> = (0..3).map(|_| g.gamma(0.5, 0.2)).collect();
        assert_close(
            &xs,
            &[
                0.028056060125239285,
                0.131803606568437,
                0.004868363233101258,
            ],
        );
        let mut g = NumpyLegacy::new(7);
        let xs: Vec<f64> = (0..4).map(|_| g.gamma(2.5, 0.04)).collect();
        assert_close(
            &xs,
            &[
                0.062025843996355266,
                0.048020595543739095,
                0.08678834120313765,
                0.16145385071192864,
            ],
        );
    }
}
