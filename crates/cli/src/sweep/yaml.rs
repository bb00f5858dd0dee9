//! The YAML a sweep file needs, read into JSON values: block mappings and block lists by
//! indentation, flow lists (`[64, 128]`), plain and quoted scalars, `#` comments. Anchors,
//! multi-line strings and flow mappings are refused rather than misread.

use serde_json::{Map, Number, Value};

/// A line of the document: its indentation (spaces) and its text, comments removed.
struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

/// Why a document could not be read: the line (1-based) and what was wrong.
#[derive(Debug)]
pub struct YamlError {
    line: usize,
    msg: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

impl std::error::Error for YamlError {}

fn err<T>(line: usize, msg: impl Into<String>) -> Result<T, YamlError> {
    Err(YamlError {
        line,
        msg: msg.into(),
    })
}

/// Reads the file at `path` as JSON when its text starts with `{`, else as the YAML subset
/// above; errors name the file and which of the two it failed as.
pub fn read_file(path: &std::path::Path) -> anyhow::Result<Value> {
    use anyhow::Context;
    // A leading byte-order mark is dropped: it is not part of the first key.
    let text = llm_emu_perf::text_file::read_text(path)
        .with_context(|| format!("reading {}", path.display()))?;
    if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
    } else {
        parse(&text).with_context(|| format!("{}: not valid YAML", path.display()))
    }
}

/// Parses `text` (the subset above) into a JSON value.
pub fn parse(text: &str) -> Result<Value, YamlError> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let body = strip_comment(raw);
        if body.trim().is_empty() || body.trim() == "---" {
            continue;
        }
        if body.starts_with('\t') {
            return err(i + 1, "tabs are not allowed for indentation");
        }
        let indent = body.len() - body.trim_start().len();
        lines.push(Line {
            no: i + 1,
            indent,
            text: body.trim(),
        });
    }
    if lines.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let mut pos = 0;
    let v = block(&lines, &mut pos, lines[0].indent)?;
    if let Some(l) = lines.get(pos) {
        return err(l.no, "unexpected indentation");
    }
    Ok(v)
}

/// The line without a `#` comment (one outside quotes, at the start or after a space).
fn strip_comment(s: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &s[..i],
            _ => {}
        }
        prev = c;
    }
    s
}

/// A block (mapping or list) whose lines are indented by `indent`.
fn block(lines: &[Line], pos: &mut usize, indent: usize) -> Result<Value, YamlError> {
    let first = &lines[*pos];
    if first.text.starts_with("- ") || first.text == "-" {
        let mut out = Vec::new();
        while let Some(l) = lines.get(*pos) {
            if l.indent != indent || !(l.text.starts_with("- ") || l.text == "-") {
                break;
            }
            let rest = l.text[1..].trim_start();
            *pos += 1;
            if rest.is_empty() {
                out.push(nested(lines, pos, indent, l.no)?);
            } else if let Some((k, v)) = key_value(rest) {
                // `- key: value` opens a mapping whose other keys sit under `key`.
                let item_indent = indent + (l.text.len() - rest.len());
                let mut m = Map::new();
                let v = match v {
                    Some(v) => scalar_or_flow(v, l.no)?,
                    None => nested(lines, pos, item_indent, l.no)?,
                };
                m.insert(k.to_string(), v);
                if let Some(n) = lines.get(*pos) {
                    if n.indent == item_indent {
                        match block(lines, pos, item_indent)? {
                            Value::Object(more) => m.extend(more),
                            _ => return err(n.no, "expected `key: value` in a list item"),
                        }
                    }
                }
                out.push(Value::Object(m));
            } else {
                out.push(scalar_or_flow(rest, l.no)?);
            }
        }
        return Ok(Value::Array(out));
    }
    let mut m = Map::new();
    while let Some(l) = lines.get(*pos) {
        if l.indent != indent {
            if l.indent > indent {
                return err(l.no, "unexpected indentation");
            }
            break;
        }
        let Some((k, v)) = key_value(l.text) else {
            return err(l.no, format!("expected `key: value`, got `{}`", l.text));
        };
        *pos += 1;
        let v = match v {
            Some(v) => scalar_or_flow(v, l.no)?,
            None => nested(lines, pos, indent, l.no)?,
        };
        if m.insert(unquote(k).to_string(), v).is_some() {
            return err(l.no, format!("key `{k}` given twice"));
        }
    }
    Ok(Value::Object(m))
}

/// The block under a `key:` or `-` line (null when nothing is indented under it).
fn nested(lines: &[Line], pos: &mut usize, indent: usize, no: usize) -> Result<Value, YamlError> {
    match lines.get(*pos) {
        Some(n) if n.indent > indent => block(lines, pos, n.indent),
        Some(n) if n.indent == indent && n.text.starts_with('-') => block(lines, pos, indent),
        _ => {
            let _ = no;
            Ok(Value::Null)
        }
    }
}

/// `key: value` or `key:` split at the first `: ` outside quotes.
fn key_value(s: &str) -> Option<(&str, Option<&str>)> {
    if s.starts_with('[') || s.starts_with('"') && !s.contains("\":") {
        return None;
    }
    if let Some(k) = s.strip_suffix(':') {
        return Some((k.trim(), None));
    }
    let i = s.find(": ")?;
    Some((s[..i].trim(), Some(s[i + 2..].trim())))
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

/// A flow list `[a, b]` or a scalar.
fn scalar_or_flow(s: &str, no: usize) -> Result<Value, YamlError> {
    if let Some(inner) = s.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return err(no, "a flow list must close on its line");
        };
        if inner.contains('[') || inner.contains('{') {
            return err(no, "nested flow collections are not supported");
        }
        if inner.trim().is_empty() {
            return Ok(Value::Array(Vec::new()));
        }
        return inner
            .split(',')
            .map(|x| scalar(x.trim(), no))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if s.starts_with('{') || s.starts_with('&') || s.starts_with('*') || s.starts_with('|') {
        return err(
            no,
            format!("`{s}`: flow mappings, anchors and block strings are not supported"),
        );
    }
    scalar(s, no)
}

/// A plain or quoted scalar: null, a boolean, an integer, a number or a string.
fn scalar(s: &str, no: usize) -> Result<Value, YamlError> {
    if s.is_empty() {
        return err(no, "empty value in a list");
    }
    if s.len() >= 2
        && (s.starts_with('"') && s.ends_with('"') || s.starts_with('\'') && s.ends_with('\''))
    {
        return Ok(Value::String(unquote(s).to_string()));
    }
    match s {
        "null" | "~" => return Ok(Value::Null),
        "true" | "True" => return Ok(Value::Bool(true)),
        "false" | "False" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let numeric = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
    if numeric {
        if let Ok(i) = s.parse::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        if let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
            return Ok(Value::Number(n));
        }
    }
    Ok(Value::String(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "\u{feff}api:\n  streaming: true\n").unwrap();
        assert_eq!(read_file(&p).unwrap(), json!({"api": {"streaming": true}}));
        std::fs::write(&p, "\u{feff}{\"a\": 1}").unwrap();
        assert_eq!(read_file(&p).unwrap(), json!({"a": 1}));
    }

    #[test]
    fn grid_document() {
        let v = parse(
            "# a sweep\nbase:\n  synthetic: 200\n  model: meta-llama/Llama-3.1-8B\ngrid:\n  \
             gpu: [h100, h200]\n  max-num-seqs:\n    - 64\n    - 128\nrates: [1, 2.5, inf]\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"base": {"synthetic": 200, "model": "meta-llama/Llama-3.1-8B"},
                   "grid": {"gpu": ["h100", "h200"], "max-num-seqs": [64, 128]},
                   "rates": [1, 2.5, "inf"]})
        );
    }

    #[test]
    fn list_of_points() {
        let v = parse("points:\n  - gpu: h100\n    tensor-parallel-size: 2\n  - gpu: 'h200'\n")
            .unwrap();
        assert_eq!(
            v,
            json!({"points": [{"gpu": "h100", "tensor-parallel-size": 2}, {"gpu": "h200"}]})
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(parse("grid:\n  gpu: [h100\n").is_err());
        assert!(parse("grid: {a: 1}\n").is_err());
        assert!(parse("a: 1\n    b: 2\n").is_err());
    }
}
