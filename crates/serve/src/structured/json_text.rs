//! JSON text as Python's `json.dumps(..., ensure_ascii=False)` writes it (`", "` and `": "`
//! separators): the spacing models commonly emit under a JSON grammar, and the form vLLM gives
//! tool-call arguments (`json.dumps(parameters, ensure_ascii=False)`).

use serde_json::Value;

/// `v` on one line with Python's separators.
pub fn dumps(v: &Value) -> String {
    let mut out = String::new();
    write(&mut out, v);
    out
}

fn write(out: &mut String, v: &Value) {
    match v {
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write(out, x);
            }
            out.push('}');
        }
        // Scalars: serde_json's own text (strings escaped as JSON requires, UTF-8 kept).
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_separators_and_utf8() {
        let v: Value = serde_json::from_str(r#"{"a": [1, 2.5, "é\n"], "b": {"c": null}}"#).unwrap();
        assert_eq!(dumps(&v), r#"{"a": [1, 2.5, "é\n"], "b": {"c": null}}"#);
        assert_eq!(serde_json::from_str::<Value>(&dumps(&v)).unwrap(), v);
    }
}
