//! A string that a regular expression matches in full: `structured_outputs.regex` and JSON
//! schema `pattern`s. Anchors and word boundaries are left out (the whole output is the
//! match); unbounded repetitions run at most [`OPEN_REPEAT`] times past their minimum; classes
//! prefer printable ASCII.

use super::rng::DocRng;
use regex_syntax::hir::{Class, Hir, HirKind};

/// Extra repetitions of `*`, `+` and `{n,}` beyond their minimum, at most.
const OPEN_REPEAT: u32 = 3;

/// Characters past a class range's start considered, so that `[a-z]` gives any letter but a
/// range of all of Unicode stays near its start.
const RANGE_SPAN: u32 = 26;

/// A match of `pattern`, or the parser's message for a pattern it refuses.
pub fn generate(pattern: &str, rng: &mut DocRng) -> Result<String, String> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    walk(&hir, rng, &mut out);
    Ok(out)
}

fn walk(hir: &Hir, rng: &mut DocRng, out: &mut String) {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(l) => out.push_str(&String::from_utf8_lossy(&l.0)),
        HirKind::Class(Class::Unicode(c)) => {
            let ranges = c.ranges();
            if ranges.is_empty() {
                return;
            }
            // Printable ASCII ranges first, when the class has any.
            let printable: Vec<_> = ranges
                .iter()
                .filter(|r| r.start() <= '~' && r.end() >= ' ')
                .collect();
            let (lo, hi) = if printable.is_empty() {
                let r = rng.pick(ranges);
                (r.start() as u32, r.end() as u32)
            } else {
                let r = rng.pick(&printable);
                ((r.start() as u32).max(0x20), (r.end() as u32).min(0x7e))
            };
            let hi = hi.min(lo.saturating_add(RANGE_SPAN));
            let pick = rng.between(lo as u64, hi as u64) as u32;
            out.push(char::from_u32(pick).unwrap_or(r_start(lo)));
        }
        HirKind::Class(Class::Bytes(c)) => {
            let ascii: Vec<_> = c.ranges().iter().filter(|r| r.start() < 0x80).collect();
            if let Some(r) = (!ascii.is_empty()).then(|| rng.pick(&ascii)) {
                let hi = r.end().min(0x7f);
                out.push(rng.between(r.start() as u64, hi as u64) as u8 as char);
            }
        }
        HirKind::Repetition(r) => {
            let max = r.max.unwrap_or(r.min.saturating_add(OPEN_REPEAT));
            let max = max.min(r.min.saturating_add(OPEN_REPEAT));
            let n = rng.between(r.min as u64, max as u64);
            for _ in 0..n {
                walk(&r.sub, rng, out);
            }
        }
        HirKind::Capture(c) => walk(&c.sub, rng, out),
        HirKind::Concat(parts) => {
            for p in parts {
                walk(p, rng, out);
            }
        }
        HirKind::Alternation(alts) => walk(rng.pick(alts), rng, out),
    }
}

/// A range's start as a character (class ranges only hold valid scalar values).
fn r_start(lo: u32) -> char {
    char::from_u32(lo).unwrap_or('a')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a generated string has the pattern's shape.
    type Check = fn(&str) -> bool;

    fn digits_dash_caps(s: &str) -> bool {
        s.len() == 6
            && s[..3].chars().all(|c| c.is_ascii_digit())
            && &s[3..4] == "-"
            && s[4..].chars().all(|c| c.is_ascii_uppercase())
    }

    fn yes_no(s: &str) -> bool {
        s == "yes" || s == "no"
    }

    fn email(s: &str) -> bool {
        s.ends_with("@example.com") && s.len() > 12
    }

    #[test]
    fn matches_follow_the_pattern() {
        let cases: [(&str, Check); 3] = [
            (r"^\d{3}-[A-Z]{2}$", digits_dash_caps),
            (r"(yes|no)", yes_no),
            (r"[a-z]+@example\.com", email),
        ];
        for seed in 0..100 {
            for (p, ok) in &cases {
                let s = generate(p, &mut DocRng::new(seed)).unwrap();
                assert!(ok(&s), "{p} gave {s:?}");
            }
        }
    }

    #[test]
    fn bad_pattern_is_an_error() {
        assert!(generate("(unclosed", &mut DocRng::new(0)).is_err());
    }
}
