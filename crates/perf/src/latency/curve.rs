//! Piecewise-linear interpolation over measured grids, the one rule the public operator
//! formats (Vidur, aiconfigurator) are read with: between two measured points, the straight
//! line through them; below the first point, the first point's value (small kernels do not get
//! faster with less work); above the last, the line through the last two points, never
//! decreasing. Values are whatever the table measures (ms in both formats).

/// A measured curve `y(x)`: points sorted by `x`, one per `x` (repeats averaged).
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    points: Vec<(f64, f64)>,
}

impl Curve {
    /// The curve through `points` (any order; points at the same `x` are averaged). `None`
    /// when there is no finite point.
    pub fn new(points: impl IntoIterator<Item = (f64, f64)>) -> Option<Curve> {
        let mut p: Vec<(f64, f64)> = points
            .into_iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut out: Vec<(f64, f64, u32)> = Vec::with_capacity(p.len());
        for (x, y) in p {
            match out.last_mut() {
                Some((lx, ly, n)) if *lx == x => {
                    *ly += y;
                    *n += 1;
                }
                _ => out.push((x, y, 1)),
            }
        }
        if out.is_empty() {
            return None;
        }
        Some(Curve {
            points: out
                .into_iter()
                .map(|(x, y, n)| (x, y / f64::from(n)))
                .collect(),
        })
    }

    /// `y` at `x` by the rule of the module.
    pub fn at(&self, x: f64) -> f64 {
        let p = &self.points;
        let (x0, y0) = p[0];
        if x <= x0 || p.len() == 1 {
            return if x <= x0 { y0 } else { p[p.len() - 1].1 };
        }
        let i = p.partition_point(|&(px, _)| px < x);
        let (a, b) = if i >= p.len() {
            (p[p.len() - 2], p[p.len() - 1])
        } else {
            (p[i - 1], p[i])
        };
        let slope = (b.1 - a.1) / (b.0 - a.0);
        if i >= p.len() {
            // Extrapolation: never below the last measurement.
            return b.1 + slope.max(0.0) * (x - b.0);
        }
        a.1 + slope * (x - a.0)
    }

    /// The largest measured `x`.
    pub fn max_x(&self) -> f64 {
        self.points[self.points.len() - 1].0
    }
}

/// A measured surface `z(a, b)`: one [`Curve`] over `b` per measured `a`, interpolated between
/// the two measured `a` around the query by the same rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Surface {
    rows: Vec<(f64, Curve)>,
}

impl Surface {
    /// The surface through `(a, b, z)` points; `None` without a finite point.
    pub fn new(points: impl IntoIterator<Item = (f64, f64, f64)>) -> Option<Surface> {
        let mut by_a: Vec<(f64, Vec<(f64, f64)>)> = Vec::new();
        for (a, b, z) in points {
            if !a.is_finite() {
                continue;
            }
            match by_a.iter_mut().find(|(x, _)| *x == a) {
                Some((_, v)) => v.push((b, z)),
                None => by_a.push((a, vec![(b, z)])),
            }
        }
        let mut rows: Vec<(f64, Curve)> = by_a
            .into_iter()
            .filter_map(|(a, v)| Curve::new(v).map(|c| (a, c)))
            .collect();
        rows.sort_by(|x, y| x.0.total_cmp(&y.0));
        (!rows.is_empty()).then_some(Surface { rows })
    }

    /// `z` at `(a, b)`.
    pub fn at(&self, a: f64, b: f64) -> f64 {
        let line = Curve {
            points: self.rows.iter().map(|(x, c)| (*x, c.at(b))).collect(),
        };
        line.at(a)
    }

    /// The largest measured `a` and `b`.
    pub fn max(&self) -> (f64, f64) {
        let a = self.rows[self.rows.len() - 1].0;
        let b = self
            .rows
            .iter()
            .map(|(_, c)| c.max_x())
            .fold(f64::MIN, f64::max);
        (a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_clamps_and_extrapolates() {
        let c = Curve::new([(8.0, 2.0), (1.0, 1.0), (8.0, 4.0), (16.0, 5.0)]).unwrap();
        // (8, 2) and (8, 4) average to (8, 3).
        assert_eq!(c.at(8.0), 3.0);
        assert_eq!(c.at(0.0), 1.0);
        assert!((c.at(4.5) - 2.0).abs() < 1e-12);
        // Beyond the last point: slope of the last segment, (5 − 3) / 8 per unit.
        assert!((c.at(24.0) - 7.0).abs() < 1e-12);
        // A falling last segment extrapolates flat.
        let f = Curve::new([(1.0, 3.0), (2.0, 2.0)]).unwrap();
        assert_eq!(f.at(10.0), 2.0);
        assert!(Curve::new([(f64::NAN, 1.0)]).is_none());
    }

    #[test]
    fn surfaces_interpolate_along_both_axes() {
        let s = Surface::new([
            (1.0, 0.0, 10.0),
            (1.0, 100.0, 20.0),
            (3.0, 0.0, 30.0),
            (3.0, 100.0, 60.0),
        ])
        .unwrap();
        // At a = 2: halfway between 15 (a = 1, b = 50) and 45 (a = 3, b = 50).
        assert!((s.at(2.0, 50.0) - 30.0).abs() < 1e-12);
        assert_eq!(s.max(), (3.0, 100.0));
    }
}
