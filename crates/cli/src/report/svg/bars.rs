//! Grouped bar charts: one group per category (a replica, a metric), one bar per series in
//! each group. Negative values (an error in %) grow downwards from 0; dashed reference lines
//! (a bound, the 1.0 of a ratio) may cross the plot.

use super::axes::{extent, Axes};
use super::line::HLine;
use super::{colour, escape, legend, Canvas, Drawn};

/// A bar chart's content: `values[s][c]` is series `s` in category `c`.
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<String>,
    pub values: Vec<Vec<f64>>,
    /// Horizontal reference lines, drawn behind the bars.
    pub hlines: Vec<HLine>,
}

impl BarChart {
    pub fn draw(&self, canvas: &Canvas) -> Drawn {
        let y = extent(
            self.values
                .iter()
                .flatten()
                .copied()
                .chain(self.hlines.iter().map(|h| h.y)),
            true,
        );
        let n = self.categories.len().max(1);
        // The x axis is the category index; ticks are drawn as category names instead.
        let mut axes = Axes::new(canvas, (0.0, 1.0), y);
        let (px0, px1) = canvas.x_range();
        axes.x.px_lo = px0;
        axes.x.px_hi = px1;
        let mut out = canvas.open(&self.title);
        let frame = axes.render(canvas, "", &self.y_label);
        // Keep the y axis and its grid; the numeric x ticks mean nothing here.
        let y_part = frame
            .find("<g class=\"y-axis\">")
            .map_or(frame.as_str(), |i| &frame[i..]);
        out += y_part;
        out += &legend(canvas, &self.series);
        for h in &self.hlines {
            out += &h.draw(canvas, &axes.y);
        }
        let group = (px1 - px0) / n as f64;
        let k = self.series.len().max(1) as f64;
        let bar = (group * 0.8 / k).min(60.0);
        let zero = axes.y.map(0.0);
        let (py0, _) = canvas.y_range();
        let mut points = 0;
        out += &format!(
            "<g class=\"x-axis\"><line class=\"axis\" x1=\"{px0:.1}\" x2=\"{px1:.1}\" \
             y1=\"{zero:.1}\" y2=\"{zero:.1}\"/>"
        );
        // Many or long names are slanted so that they do not run into each other.
        let slant = n > 6 || self.categories.iter().any(|c| c.chars().count() > 12);
        let label_every = (n / 32).max(1);
        for (c, name) in self.categories.iter().enumerate() {
            let mid = px0 + group * (c as f64 + 0.5);
            if c % label_every != 0 {
                continue;
            }
            let y = py0 + 14.0;
            let place = if slant {
                format!("transform=\"translate({mid:.1} {y:.1}) rotate(-35)\" text-anchor=\"end\"")
            } else {
                format!("x=\"{mid:.1}\" y=\"{y:.1}\" text-anchor=\"middle\"")
            };
            out += &format!(
                "<g class=\"tick\"><text {place}>{}</text></g>",
                escape(name)
            );
        }
        out += "</g>";
        for (s, (sname, vals)) in self.series.iter().zip(&self.values).enumerate() {
            out += &format!(
                "<g class=\"series\" data-name=\"{}\" fill=\"{}\">",
                escape(sname),
                colour(s)
            );
            for (c, v) in vals.iter().enumerate().filter(|(_, v)| v.is_finite()) {
                let x = px0 + group * (c as f64 + 0.5) - bar * k / 2.0 + bar * s as f64;
                let top = axes.y.map(*v);
                out += &format!(
                    "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" \
                     height=\"{:.1}\"><title>{}: {}</title></rect>",
                    top.min(zero),
                    (bar - 1.0).max(1.0),
                    (top - zero).abs().max(0.5),
                    escape(&self.categories[c]),
                    escape(&format!("{v:.4}"))
                );
                points += 1;
            }
            out += "</g>";
        }
        out += "</svg>";
        Drawn {
            svg: out,
            points,
            kind: "bars",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_finite_value_and_negative_bars_below_zero() {
        let c = BarChart {
            title: "t".into(),
            y_label: "%".into(),
            categories: vec!["a".into(), "b".into()],
            series: vec!["err".into()],
            values: vec![vec![-2.0, 3.0]],
            hlines: Vec::new(),
        };
        let d = c.draw(&Canvas::default());
        assert_eq!(d.points, 2);
        assert_eq!(d.svg.matches("class=\"bar\"").count(), 2);
    }

    #[test]
    fn a_reference_line_above_every_bar_is_inside_the_plot() {
        let c = BarChart {
            title: "t".into(),
            y_label: "ratio".into(),
            categories: vec!["a".into()],
            series: vec!["x".into()],
            values: vec![vec![0.4]],
            hlines: vec![HLine {
                y: 1.0,
                label: "bound".into(),
            }],
        };
        let canvas = Canvas::default();
        let d = c.draw(&canvas);
        assert!(d.svg.contains("class=\"ref\"") && d.svg.contains(">bound<"));
        // The line's y lies within the plot's vertical range (it widened the axis).
        let i = d.svg.find("class=\"ref\"><line").unwrap();
        let y1: f64 = d.svg[i..]
            .split("y1=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let (bottom, top) = canvas.y_range();
        assert!(y1 >= top && y1 <= bottom, "{y1}");
    }
}
