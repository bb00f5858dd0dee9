//! CSV reading with located errors, and the peer's 1-D lookup rules.

use super::ProfileError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One data row of a CSV: its 1-based line number and its fields.
pub(crate) struct CsvRow {
    pub line: usize,
    pub fields: Vec<String>,
}

/// A CSV file read whole, header checked, rows split; `\r\n` endings accepted.
pub(crate) struct Csv {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<CsvRow>,
}

impl Csv {
    /// Reads `path` and checks its header is exactly `expected` (in order).
    pub fn read(path: &Path, expected: &[&str]) -> Result<Csv, ProfileError> {
        let text = read_text(path)?;
        Csv::parse(path, &text, expected)
    }

    pub fn parse(path: &Path, text: &str, expected: &[&str]) -> Result<Csv, ProfileError> {
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
        let header: Vec<String> = match lines.next() {
            Some((_, h)) if !h.trim().is_empty() => {
                h.split(',').map(|s| s.trim().to_string()).collect()
            }
            _ => {
                return Err(ProfileError::Empty {
                    path: path.to_path_buf(),
                })
            }
        };
        if header.len() != expected.len() || header.iter().zip(expected).any(|(a, b)| a != b) {
            return Err(ProfileError::Header {
                path: path.to_path_buf(),
                expected: expected.join(","),
                found: header.join(","),
            });
        }
        let ends_with_newline = text.ends_with('\n');
        let all: Vec<(usize, &str)> = lines.collect();
        let n = all.len();
        let mut rows = Vec::with_capacity(n);
        for (k, (line, l)) in all.into_iter().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let fields: Vec<String> = l.split(',').map(|s| s.trim().to_string()).collect();
            if fields.len() != expected.len() {
                let last = k + 1 == n && !ends_with_newline;
                return Err(ProfileError::Columns {
                    path: path.to_path_buf(),
                    line,
                    column: fields.len().min(expected.len()) + 1,
                    expected: expected.len(),
                    found: fields.len(),
                    truncated: last || fields.len() < expected.len(),
                });
            }
            rows.push(CsvRow { line, fields });
        }
        if rows.is_empty() {
            return Err(ProfileError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Csv {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    fn field_error(&self, row: &CsvRow, col: usize, reason: &str) -> ProfileError {
        ProfileError::Field {
            path: self.path.clone(),
            line: row.line,
            column: col + 1,
            name: self.header[col].clone(),
            value: row.fields[col].clone(),
            reason: reason.to_string(),
        }
    }

    /// A finite number, negative allowed only when `allow_negative`.
    pub fn num(&self, row: &CsvRow, col: usize, allow_negative: bool) -> Result<f64, ProfileError> {
        let s = &row.fields[col];
        let x: f64 = s
            .parse()
            .map_err(|_| self.field_error(row, col, "not a number"))?;
        if !x.is_finite() {
            return Err(self.field_error(row, col, "not a finite number"));
        }
        if !allow_negative && x < 0.0 {
            return Err(self.field_error(row, col, "negative"));
        }
        Ok(x)
    }

    /// A non-negative integer (written as an integer).
    pub fn uint(&self, row: &CsvRow, col: usize) -> Result<u64, ProfileError> {
        row.fields[col]
            .parse::<u64>()
            .map_err(|_| self.field_error(row, col, "not a non-negative integer"))
    }

    /// A time column in µs, stored as the peer stores it: whole nanoseconds, at least 1. Zero
    /// is refused like a negative or NaN time: a measured operator takes time, and a zero row
    /// is a failed or missing measurement that would make steps free.
    pub fn time_ns(&self, row: &CsvRow, col: usize) -> Result<f64, ProfileError> {
        let us = self.num(row, col, false)?;
        if us == 0.0 {
            return Err(self.field_error(row, col, "zero (a measured latency is positive)"));
        }
        Ok((us * 1000.0).round().max(1.0))
    }

    /// Remembers `key` as read on `row`; a key already read is a [`ProfileError::DuplicateRow`]
    /// naming both lines (`what` describes the key for the message).
    pub fn once<K: std::hash::Hash + Eq>(
        &self,
        seen: &mut std::collections::HashMap<K, usize>,
        key: K,
        row: &CsvRow,
        what: impl FnOnce() -> String,
    ) -> Result<(), ProfileError> {
        match seen.insert(key, row.line) {
            Some(first) => Err(ProfileError::DuplicateRow {
                path: self.path.clone(),
                line: row.line,
                first,
                what: what(),
            }),
            None => Ok(()),
        }
    }

    pub fn label_error(&self, row: &CsvRow, col: usize, reason: &str) -> ProfileError {
        self.field_error(row, col, reason)
    }
}

/// `(lo, hi, t)` on a sorted axis, as the peer's `_axis_bracket`: at or below the first value
/// → the first value exactly; above the last → the line through the last two (t > 1).
#[inline]
pub fn axis_bracket(values: &[f64], q: f64) -> (usize, usize, f64) {
    let n = values.len();
    if n <= 1 || q <= values[0] {
        return (0, 0, 0.0);
    }
    let idx = values.partition_point(|&v| v <= q);
    let (lo, hi) = if idx >= n {
        (n - 2, n - 1)
    } else {
        (idx - 1, idx)
    };
    let (x0, x1) = (values[lo], values[hi]);
    if x1 == x0 {
        return (lo, hi, 0.0);
    }
    (lo, hi, (q - x0) / (x1 - x0))
}

/// Linear interpolation of `vals` on sorted `keys` at `q` with the peer's edge rules.
#[inline]
pub fn interp(keys: &[f64], vals: &[f64], q: f64) -> f64 {
    if vals.len() == 1 {
        return vals[0];
    }
    let (lo, hi, t) = axis_bracket(keys, q);
    if lo == hi {
        vals[lo]
    } else {
        vals[lo] + t * (vals[hi] - vals[lo])
    }
}

/// A 1-D table: sorted keys (duplicates resolved last-wins) and their values (ns). Read-only
/// once built and shared by its clones (the instances of a fleet built from one profile look
/// up the same memory, which then stays in the CPU's caches).
#[derive(Clone, Debug, Default)]
pub struct Table1D {
    pub keys: Arc<[f64]>,
    pub vals: Arc<[f64]>,
}

impl Table1D {
    /// Builds from unsorted `(key, value)` pairs; a repeated key keeps its last value.
    pub fn from_pairs(pairs: Vec<(u64, f64)>) -> Table1D {
        let mut m = std::collections::BTreeMap::new();
        for (k, v) in pairs {
            m.insert(k, v);
        }
        Table1D {
            keys: m.keys().map(|&k| k as f64).collect(),
            vals: m.values().copied().collect(),
        }
    }

    /// The peer's `_lookup_dense`/`_lookup_per_sequence`: query at max(x, 1), interpolate,
    /// truncate to whole ns, at least 1.
    #[inline]
    pub fn lookup_ns(&self, x: u64) -> f64 {
        interp(&self.keys, &self.vals, x.max(1) as f64)
            .trunc()
            .max(1.0)
    }
}

/// The prefix under which the profiles compiled into the binary are addressed, e.g.
/// `builtin:rtxpro6000-llama-3.1-8b/tp1/dense.csv`.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// Profiles compiled into the binary: (path under [`BUILTIN_PREFIX`], contents).
const BUILTIN_FILES: &[(&str, &str)] = &[
    (
        "rtxpro6000-llama-3.1-8b/meta.yaml",
        include_str!("../../../data/profiles/rtxpro6000-llama-3.1-8b/meta.yaml"),
    ),
    (
        "rtxpro6000-llama-3.1-8b/overheads.yaml",
        include_str!("../../../data/profiles/rtxpro6000-llama-3.1-8b/overheads.yaml"),
    ),
    (
        "rtxpro6000-llama-3.1-8b/tp1/dense.csv",
        include_str!("../../../data/profiles/rtxpro6000-llama-3.1-8b/tp1/dense.csv"),
    ),
    (
        "rtxpro6000-llama-3.1-8b/tp1/attention.csv",
        include_str!("../../../data/profiles/rtxpro6000-llama-3.1-8b/tp1/attention.csv"),
    ),
    (
        "rtxpro6000-llama-3.1-8b/tp1/per_sequence.csv",
        include_str!("../../../data/profiles/rtxpro6000-llama-3.1-8b/tp1/per_sequence.csv"),
    ),
    (
        "rtxpro6000-llama-3.1-8b/tp1/skew_fit.csv",
        include_str!("../../../data/profiles/rtxpro6000-llama-3.1-8b/tp1/skew_fit.csv"),
    ),
];

/// Reads a profile file: from the binary for paths under [`BUILTIN_PREFIX`], else from disk.
pub(crate) fn read_text(path: &Path) -> Result<String, ProfileError> {
    let not_found = || ProfileError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such built-in profile file",
        ),
    };
    match path.to_str().and_then(|p| p.strip_prefix(BUILTIN_PREFIX)) {
        Some(rel) => {
            let rel = rel.replace('\\', "/");
            BUILTIN_FILES
                .iter()
                .find(|(name, _)| *name == rel)
                .map(|(_, text)| text.to_string())
                .ok_or_else(not_found)
        }
        None => std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracket_rules() {
        let v = [0.0, 16.0, 32.0, 64.0];
        assert_eq!(axis_bracket(&v, 0.0), (0, 0, 0.0));
        assert_eq!(axis_bracket(&v, -3.0), (0, 0, 0.0));
        assert_eq!(axis_bracket(&v, 8.0), (0, 1, 0.5));
        assert_eq!(axis_bracket(&v, 16.0), (1, 2, 0.0));
        assert_eq!(axis_bracket(&v, 48.0), (2, 3, 0.5));
        assert_eq!(axis_bracket(&v, 64.0), (2, 3, 1.0));
        assert_eq!(axis_bracket(&v, 96.0), (2, 3, 2.0));
        assert_eq!(axis_bracket(&[5.0], 100.0), (0, 0, 0.0));
    }

    #[test]
    fn one_d_lookup() {
        let t = Table1D::from_pairs(vec![(4, 40.0), (1, 10.0), (2, 30.0), (2, 20.0)]);
        assert_eq!(t.keys[..], [1.0, 2.0, 4.0]);
        assert_eq!(t.lookup_ns(2), 20.0); // exact, last duplicate wins
        assert_eq!(t.lookup_ns(3), 30.0); // between
        assert_eq!(t.lookup_ns(0), 10.0); // below: first value
        assert_eq!(t.lookup_ns(6), 60.0); // above: line through the last two (2→20, 4→40)
        let flat = Table1D::from_pairs(vec![(8, 7.0)]);
        assert_eq!(flat.lookup_ns(100), 7.0);
        // Truncation to whole ns and the floor of 1 ns.
        let t = Table1D::from_pairs(vec![(1, 1.0), (3, 2.0)]);
        assert_eq!(t.lookup_ns(2), 1.0);
        let down = Table1D::from_pairs(vec![(1, 10.0), (2, 2.0)]);
        assert_eq!(down.lookup_ns(5), 1.0);
    }

    #[test]
    fn csv_errors_are_located() {
        let p = Path::new("x.csv");
        let e = Csv::parse(p, "a,b\n1,2\n3", &["a", "b"]).err().unwrap();
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = Csv::parse(p, "a,c\n1,2\n", &["a", "b"]).err().unwrap();
        assert!(e.to_string().contains("a,b"), "{e}");
        let ok = Csv::parse(p, "a,b\r\n1,2\r\n", &["a", "b"]).unwrap();
        assert_eq!(ok.rows.len(), 1);
        assert_eq!(ok.num(&ok.rows[0], 1, false).unwrap(), 2.0);
    }
}
