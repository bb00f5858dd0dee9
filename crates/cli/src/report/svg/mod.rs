//! SVG drawing for the report: every chart is an inline `<svg>` string, drawn here without a
//! JavaScript library so that the page works offline and renders the same in any browser.
//!
//! Coordinates are CSS pixels of a fixed-size canvas ([`Canvas`]); the page scales the SVG to
//! its column with `viewBox`. Data values are never trusted to be finite: charts drop NaN and
//! infinite points before scaling.

pub mod axes;
pub mod bars;
pub mod cdf;
pub mod line;
pub mod scatter;

/// Series colours, cycled in order (colour-blind-safe Okabe–Ito palette).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
];

/// The colour of series `i`.
pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// A drawn chart: its SVG and how many data points it draws (the page records the count so that
/// a test can compare it with what the browser rendered).
pub struct Drawn {
    pub svg: String,
    pub points: usize,
    /// `line`, `cdf`, `scatter` or `bars`.
    pub kind: &'static str,
}

/// The drawing area: the canvas size and the margins around the plot, in pixels.
#[derive(Clone, Copy, Debug)]
pub struct Canvas {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

impl Default for Canvas {
    fn default() -> Self {
        Canvas {
            width: 560.0,
            height: 320.0,
            left: 64.0,
            right: 16.0,
            top: 34.0,
            bottom: 48.0,
        }
    }
}

impl Canvas {
    /// The plot's horizontal pixel range.
    pub fn x_range(&self) -> (f64, f64) {
        (self.left, self.width - self.right)
    }
    /// The plot's vertical pixel range, bottom first (values grow upwards).
    pub fn y_range(&self) -> (f64, f64) {
        (self.height - self.bottom, self.top)
    }
    /// The opening `<svg>` tag and the chart's title.
    pub fn open(&self, title: &str) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" \
             height=\"{h}\" role=\"img\" aria-label=\"{t}\"><rect class=\"bg\" width=\"{w}\" \
             height=\"{h}\" fill=\"#fff\"/><text class=\"title\" x=\"{x}\" y=\"20\" \
             text-anchor=\"middle\">{t}</text>",
            w = self.width,
            h = self.height,
            x = self.width / 2.0,
            t = escape(title)
        )
    }
}

/// `s` with the five XML special characters escaped, for text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The width of one character of a legend name at the legend's 11 px font, pixels: DejaVu
/// Sans (the `sans-serif` of headless Chromium on Linux, which takes `--png` screenshots) draws
/// 11 px digits and lower-case letters about 7 px wide (`gpu=h100`, 8 characters, spans 58 px
/// in docs/report/sweep.png); at 6 px a name ran into the next swatch.
const LEGEND_CHAR_PX: f64 = 7.0;

/// A legend: one coloured swatch and name per series, in a row under the title.
pub fn legend(canvas: &Canvas, names: &[String]) -> String {
    if names.len() < 2 {
        return String::new();
    }
    let mut out = String::from("<g class=\"legend\">");
    let mut x = canvas.left + 4.0;
    let y = canvas.top - 2.0;
    for (i, n) in names.iter().enumerate() {
        out += &format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            y - 9.0,
            colour(i),
            x + 13.0,
            escape(n)
        );
        // The next swatch 12 px after this name's end: swatch (10 px) and gap (3 px), then
        // the name at LEGEND_CHAR_PX per character.
        x += 25.0 + LEGEND_CHAR_PX * n.chars().count() as f64;
    }
    out + "</g>"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
