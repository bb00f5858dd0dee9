//! Reading the text files a real run leaves (`meta.json`, `requests.jsonl`, a benchmark's
//! result JSON). Some tools begin them with a UTF-8 byte-order mark (Windows editors, Python's
//! `encoding="utf-8-sig"`), which JSON parsers refuse; it carries nothing, so it is dropped.

use std::path::Path;

/// The text without a leading byte-order mark.
pub fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The file's text, without a leading byte-order mark.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_mark_is_dropped_and_nothing_else() {
        assert_eq!(without_bom("\u{feff}{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(
            without_bom("{\"a\": \"\u{feff}\"}"),
            "{\"a\": \"\u{feff}\"}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.json");
        std::fs::write(&p, "\u{feff}{}").unwrap();
        assert_eq!(read_text(&p).unwrap(), "{}");
    }
}
