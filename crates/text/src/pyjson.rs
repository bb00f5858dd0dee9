//! Python's `json.dumps` output format (what chat templates' `tojson` writes in transformers).

use serde_json::Value;
use std::fmt::Write;

/// `json.dumps` options.
pub(crate) struct PyJson {
    /// `indent`: None for one line, else the string repeated per nesting level.
    pub indent: Option<String>,
    pub item_sep: String,
    pub key_sep: String,
    pub ensure_ascii: bool,
    pub sort_keys: bool,
}

impl PyJson {
    pub fn dumps(&self, v: &Value) -> String {
        let mut out = String::new();
        self.write(&mut out, v, 0);
        out
    }

    fn newline(&self, out: &mut String, level: usize) {
        if let Some(ind) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    }

    fn write(&self, out: &mut String, v: &Value, level: usize) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => write_number(out, n),
            Value::String(s) => self.write_str(out, s),
            Value::Array(a) => {
                if a.is_empty() {
                    out.push_str("[]");
                    return;
                }
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(out, level + 1);
                    self.write(out, x, level + 1);
                }
                self.newline(out, level);
                out.push(']');
            }
            Value::Object(o) => {
                if o.is_empty() {
                    out.push_str("{}");
                    return;
                }
                let mut items: Vec<(&String, &Value)> = o.iter().collect();
                if self.sort_keys {
                    items.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, x)) in items.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(out, level + 1);
                    self.write_str(out, k);
                    out.push_str(&self.key_sep);
                    self.write(out, x, level + 1);
                }
                self.newline(out, level);
                out.push('}');
            }
        }
    }

    fn write_str(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && (c as u32) > 0x7e) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        let _ = write!(out, "\\u{:04x}", unit);
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Integers as digits; floats as Python's `repr` (shortest round-trip, `1.0`, `1e+16`).
fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        out.push_str(&py_float_repr(f));
    }
}

fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits; lay them out as Python's repr does:
    // positional for exponents in [-4, 16), scientific (e+XX / e-XX) otherwise.
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compact() -> PyJson {
        PyJson {
            indent: None,
            item_sep: ", ".into(),
            key_sep: ": ".into(),
            ensure_ascii: false,
            sort_keys: false,
        }
    }

    #[test]
    fn python_separators_and_order() {
        let v: Value = serde_json::from_str(r#"{"b": [1, 2.5, "x"], "a": {}, "c": null}"#).unwrap();
        assert_eq!(
            compact().dumps(&v),
            r#"{"b": [1, 2.5, "x"], "a": {}, "c": null}"#
        );
    }

    #[test]
    fn indent_and_escapes() {
        let d = PyJson {
            indent: Some("  ".into()),
            item_sep: ",".into(),
            key_sep: ": ".into(),
            ensure_ascii: true,
            sort_keys: true,
        };
        let v = json!({"z": "é\n😀", "a": [true]});
        assert_eq!(
            d.dumps(&v),
            "{\n  \"a\": [\n    true\n  ],\n  \"z\": \"\\u00e9\\n\\ud83d\\ude00\"\n}"
        );
    }

    #[test]
    fn floats_like_python_repr() {
        assert_eq!(py_float_repr(1.0), "1.0");
        assert_eq!(py_float_repr(0.1), "0.1");
        assert_eq!(py_float_repr(1e16), "1e+16");
        assert_eq!(py_float_repr(1.5e-5), "1.5e-05");
        assert_eq!(py_float_repr(123456.789), "123456.789");
    }
}
