//! Axes: a linear scale from data to pixels, "nice" tick positions (steps of 1, 2 or 5 × 10ⁿ)
//! and the SVG of both axes with their ticks, grid lines and labels.

use super::{escape, Canvas};

/// A linear map from the data interval `[lo, hi]` to the pixel interval `[px_lo, px_hi]`.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub lo: f64,
    pub hi: f64,
    pub px_lo: f64,
    pub px_hi: f64,
}

impl Scale {
    /// The pixel position of `v`.
    pub fn map(&self, v: f64) -> f64 {
        self.px_lo + (v - self.lo) / (self.hi - self.lo) * (self.px_hi - self.px_lo)
    }
}

/// The data extent of `values` (finite ones only), widened to a non-empty interval and, with
/// `from_zero`, to include 0; `(0, 1)` when there is no finite value.
pub fn extent(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if from_zero && lo == 0.0 && hi == 0.0 {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    (lo, hi)
}

/// About `target` tick positions covering `[lo, hi]`, at multiples of a step of 1, 2 or 5 ×
/// 10ⁿ, and that step. The returned range `[first, last]` encloses `[lo, hi]`, so the axis
/// ends on a tick.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    // Bounded: span / step ≤ target + 2 by the choice of step.
    let ticks = (first as i64..=last as i64)
        .map(|k| k as f64 * step)
        .collect();
    (ticks, step)
}

/// A tick label: `v` with as many decimals as `step` needs, thousands abbreviated (`12k`,
/// `3.5M`) so labels stay short.
pub fn tick_label(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let (v, step, suffix) = match v.abs().max(step) {
        m if m >= 1e6 => (v / 1e6, step / 1e6, "M"),
        m if m >= 1e4 => (v / 1e3, step / 1e3, "k"),
        _ => (v, step, ""),
    };
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}{suffix}")
}

/// Both axes of a chart: their scales, ticks and labels.
pub struct Axes {
    pub x: Scale,
    pub y: Scale,
    x_ticks: Vec<f64>,
    x_step: f64,
    y_ticks: Vec<f64>,
    y_step: f64,
}

impl Axes {
    /// Axes over the data ranges `x` and `y`, each extended to whole ticks.
    pub fn new(canvas: &Canvas, x: (f64, f64), y: (f64, f64)) -> Axes {
        let (x_ticks, x_step) = nice_ticks(x.0, x.1, 6);
        let (y_ticks, y_step) = nice_ticks(y.0, y.1, 5);
        let ends = |t: &[f64], d: (f64, f64)| {
            (
                t.first().copied().unwrap_or(d.0),
                t.last().copied().unwrap_or(d.1),
            )
        };
        let (xl, xh) = ends(&x_ticks, x);
        let (yl, yh) = ends(&y_ticks, y);
        let (px0, px1) = canvas.x_range();
        let (py0, py1) = canvas.y_range();
        Axes {
            x: Scale {
                lo: xl,
                hi: xh,
                px_lo: px0,
                px_hi: px1,
            },
            y: Scale {
                lo: yl,
                hi: yh,
                px_lo: py0,
                px_hi: py1,
            },
            x_ticks,
            x_step,
            y_ticks,
            y_step,
        }
    }

    /// The SVG of grid lines, axis lines, ticks and the axis titles.
    pub fn render(&self, canvas: &Canvas, x_label: &str, y_label: &str) -> String {
        let (px0, px1) = canvas.x_range();
        let (py0, py1) = canvas.y_range();
        let mut out = String::from("<g class=\"x-axis\">");
        for &t in &self.x_ticks {
            let x = self.x.map(t);
            out += &format!(
                "<g class=\"tick\"><line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{py0:.1}\" \
                 y2=\"{py1:.1}\"/><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{py0:.1}\" y2=\"{:.1}\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></g>",
                py0 + 4.0,
                py0 + 16.0,
                tick_label(t, self.x_step)
            );
        }
        out += &format!(
            "<line class=\"axis\" x1=\"{px0:.1}\" x2=\"{px1:.1}\" y1=\"{py0:.1}\" y2=\"{py0:.1}\"/>\
             <text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></g>",
            (px0 + px1) / 2.0,
            canvas.height - 8.0,
            escape(x_label)
        );
        out += "<g class=\"y-axis\">";
        for &t in &self.y_ticks {
            let y = self.y.map(t);
            out += &format!(
                "<g class=\"tick\"><line class=\"grid\" x1=\"{px0:.1}\" x2=\"{px1:.1}\" y1=\"{y:.1}\" \
                 y2=\"{y:.1}\"/><line x1=\"{:.1}\" x2=\"{px0:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text></g>",
                px0 - 4.0,
                px0 - 6.0,
                y + 4.0,
                tick_label(t, self.y_step)
            );
        }
        out += &format!(
            "<line class=\"axis\" x1=\"{px0:.1}\" x2=\"{px0:.1}\" y1=\"{py0:.1}\" y2=\"{py1:.1}\"/>\
             <text class=\"label\" transform=\"translate(14 {:.1}) rotate(-90)\" \
             text-anchor=\"middle\">{}</text></g>",
            (py0 + py1) / 2.0,
            escape(y_label)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_enclose_the_data() {
        let (t, step) = nice_ticks(0.3, 9.7, 5);
        assert_eq!(step, 2.0);
        assert_eq!(t, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let (t, step) = nice_ticks(1234.0, 1290.0, 5);
        assert_eq!(step, 20.0);
        assert!(t[0] <= 1234.0 && *t.last().unwrap() >= 1290.0);
    }

    #[test]
    fn labels_carry_the_step_precision() {
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_eq!(tick_label(3.0, 1.0), "3");
        assert_eq!(tick_label(20000.0, 5000.0), "20k");
        assert_eq!(tick_label(2_500_000.0, 500_000.0), "2.5M");
        assert_eq!(tick_label(-0.0, 1.0), "0");
        assert_eq!(tick_label(0.0, 10_000.0), "0");
    }

    #[test]
    fn degenerate_extents_widen() {
        assert_eq!(extent([5.0, 5.0].into_iter(), false), (4.5, 5.5));
        assert_eq!(extent([f64::NAN].into_iter(), false), (0.0, 1.0));
        assert_eq!(extent([2.0, 3.0].into_iter(), true), (0.0, 3.0));
        // All zero (no preemptions): the axis starts at 0, never below.
        assert_eq!(extent([0.0, 0.0].into_iter(), true), (0.0, 1.0));
    }
}
