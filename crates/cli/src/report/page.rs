//! The HTML page: one self-contained file (inline CSS, inline SVG, one small inline script, no
//! network), a section per input with its facts, notes and charts.
//!
//! Every chart is a `<figure class="chart">` carrying the number of points drawn
//! (`data-points`). The script counts what the browser actually laid out — per series its
//! line's vertices or its dots and bars, whichever are more (a line may have a dot per vertex);
//! axis ticks; whether the series have a non-empty box — into `data-dom-*`
//! attributes, so a headless browser's `--dump-dom` tells a test that every chart rendered with
//! data.

use super::svg::{escape, Drawn};
use std::path::Path;

/// One chart of a section.
pub struct Chart {
    pub caption: String,
    pub drawn: Drawn,
}

/// One input's part of the report.
pub struct Section {
    pub title: String,
    pub source: String,
    pub facts: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub charts: Vec<Chart>,
}

impl Section {
    pub fn new(title: &str, source: &Path) -> Section {
        Section {
            title: title.into(),
            source: source.display().to_string(),
            facts: Vec::new(),
            notes: Vec::new(),
            charts: Vec::new(),
        }
    }
    pub fn fact(&mut self, k: &str, v: String) {
        self.facts.push((k.into(), v));
    }
    pub fn note(&mut self, n: &str) {
        self.notes.push(n.into());
    }
    pub fn chart(&mut self, caption: &str, drawn: Drawn) {
        self.charts.push(Chart {
            caption: caption.into(),
            drawn,
        });
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:16px 24px;color:#222;\
background:#fff;width:1160px}h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:24px 0 \
4px}.src{color:#666;font-size:12px;margin:0 0 8px}table{border-collapse:collapse;font-size:13px;\
margin:4px 0 8px}td{padding:1px 12px 1px 0}td:first-child{color:#555}.note{font-size:13px;\
color:#7a4b00}.charts{display:grid;grid-template-columns:repeat(2,560px);gap:12px 24px}\
figure{margin:0}figcaption{font-size:12px;color:#555}svg{font-size:11px;display:block}\
svg .title{font-size:13px;font-weight:600}svg .grid{stroke:#eee}svg .tick line:not(.grid),\
svg .axis{stroke:#444}svg .label{font-size:12px}";

/// Counts what the browser rendered into `data-dom-*` attributes of each chart and of `<body>`.
const SCRIPT: &str = r#"(function(){var n=0;document.querySelectorAll('figure.chart').forEach(function(f){
var pts=0,drawn=0;f.querySelectorAll('g.series').forEach(function(g){var v=0;
g.querySelectorAll('path').forEach(function(p){v+=((p.getAttribute('d')||'').match(/[ML]/g)||[]).length;});
pts+=Math.max(v,g.querySelectorAll('circle.pt,rect.bar').length);
var b=g.getBBox();if(b.width>0||b.height>0)drawn++;});
f.dataset.domPoints=pts;f.dataset.domSeriesDrawn=drawn;
f.dataset.domXticks=f.querySelectorAll('g.x-axis g.tick').length;
f.dataset.domYticks=f.querySelectorAll('g.y-axis g.tick').length;n++;});
document.body.dataset.domCharts=n;})();"#;

/// The page's approximate height in CSS pixels, for a full-page screenshot.
pub fn height(sections: &[Section]) -> u32 {
    let mut h = 90.0;
    for s in sections {
        h += 70.0 + 20.0 * (s.facts.len() + s.notes.len()) as f64;
        h += 350.0 * s.charts.len().div_ceil(2) as f64;
    }
    h as u32
}

/// The whole page.
pub fn render(title: &str, sections: &[Section]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{t}</h1><p class=\"src\">llm-emu {v}</p>\n",
        t = escape(title),
        v = env!("CARGO_PKG_VERSION")
    );
    for (i, s) in sections.iter().enumerate() {
        out += &format!(
            "<section id=\"s{i}\"><h2>{}</h2><p class=\"src\">{}</p>",
            escape(&s.title),
            escape(&s.source)
        );
        if !s.facts.is_empty() {
            out += "<table>";
            for (k, v) in &s.facts {
                out += &format!("<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(v));
            }
            out += "</table>";
        }
        for n in &s.notes {
            out += &format!("<p class=\"note\">{}</p>", escape(n));
        }
        out += "<div class=\"charts\">";
        for (j, c) in s.charts.iter().enumerate() {
            out += &format!(
                "\n<figure class=\"chart\" id=\"s{i}c{j}\" data-kind=\"{}\" data-points=\"{}\">{}\
                 <figcaption>{}</figcaption></figure>",
                c.drawn.kind,
                c.drawn.points,
                c.drawn.svg,
                escape(&c.caption)
            );
        }
        out += "</div></section>\n";
    }
    out += &format!("<script>{SCRIPT}</script></body></html>\n");
    out
}
