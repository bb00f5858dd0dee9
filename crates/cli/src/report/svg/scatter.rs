//! Scatter charts of paired values (real against emulated), with the `y = x` diagonal that
//! perfect agreement would lie on.

use super::axes::{extent, Axes};
use super::{escape, Canvas, Drawn};

/// At most this many dots are drawn; larger sets are thinned by a fixed stride (every k-th pair
/// in input order) so the SVG stays small and the same input draws the same picture.
pub const MAX_DOTS: usize = 4000;

/// A scatter of `pairs` `(x, y)`; non-finite pairs are left out.
pub fn draw(title: &str, x_label: &str, y_label: &str, pairs: &[(f64, f64)], c: &Canvas) -> Drawn {
    let pts: Vec<(f64, f64)> = pairs
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let stride = pts.len().div_ceil(MAX_DOTS).max(1);
    // One range for both axes, so that the diagonal is at 45°.
    let both = extent(pts.iter().flat_map(|p| [p.0, p.1]), true);
    let axes = Axes::new(c, both, both);
    let mut out = c.open(title);
    out += &axes.render(c, x_label, y_label);
    let (lo, hi) = (axes.x.lo.max(axes.y.lo), axes.x.hi.min(axes.y.hi));
    out += &format!(
        "<line class=\"diagonal\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" \
         stroke=\"#888\" stroke-dasharray=\"5 4\"><title>{}</title></line>",
        axes.x.map(lo),
        axes.y.map(lo),
        axes.x.map(hi),
        axes.y.map(hi),
        escape("y = x")
    );
    out += "<g class=\"series\" data-name=\"pairs\" fill=\"#0072B2\" fill-opacity=\"0.55\">";
    let mut points = 0;
    for p in pts.iter().step_by(stride) {
        out += &format!(
            "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"/>",
            axes.x.map(p.0),
            axes.y.map(p.1)
        );
        points += 1;
    }
    out += "</g></svg>";
    Drawn {
        svg: out,
        points,
        kind: "scatter",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thins_large_sets_and_drops_non_finite_pairs() {
        let pairs: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, i as f64 * 1.1)).collect();
        let d = draw("t", "real", "emu", &pairs, &Canvas::default());
        assert!(
            d.points <= MAX_DOTS && d.points >= MAX_DOTS / 2,
            "{}",
            d.points
        );
        let d = draw(
            "t",
            "r",
            "e",
            &[(1.0, f64::NAN), (2.0, 3.0)],
            &Canvas::default(),
        );
        assert_eq!(d.points, 1);
        assert_eq!(d.svg.matches("class=\"pt\"").count(), 1);
    }
}
