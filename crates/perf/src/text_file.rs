//! Reading the JSON text files a user or a real run gives (`meta.json`, `requests.jsonl`, a
//! benchmark's result JSON, a cluster config, a model's `config.json`). Some tools begin them
//! with a UTF-8 byte-order mark (Windows editors, Python's `encoding="utf-8-sig"`), which JSON
//! parsers refuse; it carries nothing, so it is dropped.

use std::path::Path;

/// The UTF-8 byte-order mark.
pub const UTF8_BOM: &str = "\u{feff}";

/// The file's text, without a leading byte-order mark.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(match text.strip_prefix(UTF8_BOM) {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_mark_is_dropped_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.json");
        std::fs::write(&p, "\u{feff}{\"a\": \"\u{feff}\"}").unwrap();
        assert_eq!(read_text(&p).unwrap(), "{\"a\": \"\u{feff}\"}");
        std::fs::write(&p, "{}").unwrap();
        assert_eq!(read_text(&p).unwrap(), "{}");
    }
}
