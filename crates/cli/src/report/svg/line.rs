//! Line charts: one or more series of `(x, y)` points as polylines, with optional markers
//! (e.g. a sweep's saturation points) and horizontal reference lines (e.g. an SLO bound).

use super::axes::{extent, Axes, Scale};
use super::{colour, escape, legend, Canvas, Drawn};

/// One named polyline.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A point called out with a ring and a hover title.
pub struct Marker {
    pub series: usize,
    pub x: f64,
    pub y: f64,
    pub label: String,
}

/// A horizontal dashed reference line at `y`.
pub struct HLine {
    pub y: f64,
    pub label: String,
}

impl HLine {
    /// The dashed line across the plot at `y` on `scale`, its label at the right end.
    pub fn draw(&self, canvas: &Canvas, scale: &Scale) -> String {
        let (px0, px1) = canvas.x_range();
        let py = scale.map(self.y);
        format!(
            "<g class=\"ref\"><line x1=\"{px0:.1}\" x2=\"{px1:.1}\" y1=\"{py:.1}\" \
             y2=\"{py:.1}\" stroke=\"#888\" stroke-dasharray=\"5 4\"/><text x=\"{:.1}\" \
             y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text></g>",
            px1 - 2.0,
            py - 4.0,
            escape(&self.label)
        )
    }
}

/// A line chart's content.
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
    pub hlines: Vec<HLine>,
    /// Start the y axis at 0 (counts, throughput); otherwise it fits the data.
    pub y_from_zero: bool,
    /// Draw each point as a dot too (short series such as a sweep's rates).
    pub dots: bool,
}

impl LineChart {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> LineChart {
        LineChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            markers: Vec::new(),
            hlines: Vec::new(),
            y_from_zero: true,
            dots: false,
        }
    }

    pub fn series(mut self, name: &str, points: Vec<(f64, f64)>) -> LineChart {
        self.series.push(Series {
            name: name.into(),
            points,
        });
        self
    }

    /// Draws the chart; non-finite points are left out.
    pub fn draw(&self, canvas: &Canvas) -> Drawn {
        let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let all = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter().filter(finite))
        };
        let x = extent(all().map(|p| p.0), false);
        let y = extent(
            all()
                .map(|p| p.1)
                .chain(self.hlines.iter().map(|h| h.y))
                .chain(self.markers.iter().map(|m| m.y)),
            self.y_from_zero,
        );
        let axes = Axes::new(canvas, x, y);
        let mut out = canvas.open(&self.title);
        out += &axes.render(canvas, &self.x_label, &self.y_label);
        let names: Vec<String> = self.series.iter().map(|s| s.name.clone()).collect();
        out += &legend(canvas, &names);
        for h in &self.hlines {
            out += &h.draw(canvas, &axes.y);
        }
        let mut points = 0;
        for (i, s) in self.series.iter().enumerate() {
            let mut d = String::new();
            let mut dots = String::new();
            for p in s.points.iter().filter(finite) {
                let (px, py) = (axes.x.map(p.0), axes.y.map(p.1));
                d += &format!("{}{px:.1},{py:.1}", if d.is_empty() { "M" } else { "L" });
                if self.dots {
                    dots += &format!(
                        "<circle class=\"pt\" cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\" fill=\"{}\"/>",
                        colour(i)
                    );
                }
                points += 1;
            }
            if d.is_empty() {
                continue;
            }
            out += &format!(
                "<g class=\"series\" data-name=\"{}\"><path d=\"{d}\" fill=\"none\" \
                 stroke=\"{}\" stroke-width=\"1.5\" stroke-linejoin=\"round\"/>{dots}</g>",
                escape(&s.name),
                colour(i)
            );
        }
        for m in self
            .markers
            .iter()
            .filter(|m| m.x.is_finite() && m.y.is_finite())
        {
            out += &format!(
                "<g class=\"marker\"><circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"7\" fill=\"none\" \
                 stroke=\"{}\" stroke-width=\"2\"/><title>{}</title></g>",
                axes.x.map(m.x),
                axes.y.map(m.y),
                colour(m.series),
                escape(&m.label)
            );
        }
        out += "</svg>";
        Drawn {
            svg: out,
            points,
            kind: "line",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_path_per_series_and_skips_non_finite_points() {
        let c = LineChart::new("t", "x", "y")
            .series("a", vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)])
            .series("b", vec![(0.0, 2.0), (2.0, 2.0)]);
        let d = c.draw(&Canvas::default());
        assert_eq!(d.points, 4);
        assert_eq!(d.svg.matches("<path").count(), 2);
        assert!(!d.svg.contains("NaN"), "{}", d.svg);
    }
}
