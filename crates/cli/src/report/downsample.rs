//! Streaming min/max downsampling of a time series: whatever the number of samples (a million
//! engine steps), at most `2 × buckets` points are kept, and every bucket keeps its lowest and
//! its highest sample, so peaks (a burst of waiting requests, a full KV cache) survive.
//!
//! The time span is not known while streaming: buckets start `width` wide from the first
//! sample, and when a sample falls past the last bucket, neighbouring buckets are merged in
//! pairs and the width doubles, as often as needed.

/// The kept extremes of one time bucket: `(t, v)` of its minimum and of its maximum.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    min: (f64, f64),
    max: (f64, f64),
}

impl Bucket {
    fn merge(self, o: Bucket) -> Bucket {
        Bucket {
            min: if o.min.1 < self.min.1 {
                o.min
            } else {
                self.min
            },
            max: if o.max.1 > self.max.1 {
                o.max
            } else {
                self.max
            },
        }
    }
}

/// A min/max-preserving downsampler over time `t` (any unit, samples roughly in time order).
pub struct MinMax {
    buckets: usize,
    origin: Option<f64>,
    width: f64,
    cells: Vec<Option<Bucket>>,
}

impl MinMax {
    /// At most `buckets` buckets (so at most `2 × buckets` points).
    pub fn new(buckets: usize) -> MinMax {
        MinMax {
            buckets: buckets.max(1),
            origin: None,
            width: 1e-3,
            cells: Vec::new(),
        }
    }

    /// Adds the sample `v` at time `t`; non-finite samples are ignored.
    pub fn push(&mut self, t: f64, v: f64) {
        if !t.is_finite() || !v.is_finite() {
            return;
        }
        let origin = *self.origin.get_or_insert(t);
        // Samples slightly out of order (steps of different engines) before the first one go
        // into the first bucket.
        let mut i = ((t - origin) / self.width).max(0.0);
        while i >= self.buckets as f64 {
            self.halve();
            i = ((t - origin) / self.width).max(0.0);
        }
        let i = i as usize;
        if self.cells.len() <= i {
            self.cells.resize(i + 1, None);
        }
        let b = Bucket {
            min: (t, v),
            max: (t, v),
        };
        self.cells[i] = Some(self.cells[i].map_or(b, |c| c.merge(b)));
    }

    /// Merges buckets in pairs and doubles their width.
    fn halve(&mut self) {
        let merged = self
            .cells
            .chunks(2)
            .map(|pair| pair.iter().flatten().copied().reduce(Bucket::merge))
            .collect();
        self.cells = merged;
        self.width *= 2.0;
    }

    /// The kept points in time order: per bucket its minimum and maximum (one point when they
    /// are the same sample).
    pub fn points(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(self.cells.len() * 2);
        for b in self.cells.iter().flatten() {
            let (a, c) = if b.min.0 <= b.max.0 {
                (b.min, b.max)
            } else {
                (b.max, b.min)
            };
            out.push(a);
            if c != a {
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_samples_keep_at_most_twice_the_buckets_and_every_extreme() {
        let mut m = MinMax::new(1000);
        let mut hi = (0.0, f64::NEG_INFINITY);
        for i in 0..1_000_000u32 {
            let t = f64::from(i) * 0.01;
            // A slow wave with one spike.
            let v = if i == 777_777 {
                1e6
            } else {
                (t / 50.0).sin() * 100.0
            };
            if v > hi.1 {
                hi = (t, v);
            }
            m.push(t, v);
        }
        let p = m.points();
        assert!(p.len() <= 2000, "{}", p.len());
        assert!(p.len() > 1000, "{}", p.len());
        assert!(p.contains(&hi), "the spike was lost");
        assert!(p.windows(2).all(|w| w[0].0 <= w[1].0), "not in time order");
        let lo = p.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
        assert!(lo < -99.99, "{lo}");
    }

    #[test]
    fn few_samples_are_kept_as_they_are() {
        let mut m = MinMax::new(1000);
        for (t, v) in [(0.0, 1.0), (1.0, 5.0), (2.0, 2.0)] {
            m.push(t, v);
        }
        m.push(3.0, f64::NAN);
        assert_eq!(m.points(), vec![(0.0, 1.0), (1.0, 5.0), (2.0, 2.0)]);
    }
}
