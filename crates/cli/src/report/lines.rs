//! Line-by-line reading of JSONL inputs: one JSON object per line, blank lines skipped. Only
//! the current line is held, so a `--requests-out` or `--steps-out` file of millions of lines
//! reads in constant memory (apart from what the caller keeps).

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::io::BufRead;
use std::path::Path;

/// Calls `f` with each line's object and its 1-based line number; fails naming the file and
/// line for a line that is not a JSON object.
pub fn for_each_object(
    path: &Path,
    mut f: impl FnMut(usize, &Map<String, Value>) -> Result<()>,
) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            return Ok(());
        }
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {n}: not JSON", path.display()))?;
        let Value::Object(m) = v else {
            bail!("{} line {n}: not a JSON object", path.display());
        };
        f(n, &m).with_context(|| format!("{} line {n}", path.display()))?;
    }
}

/// The number at `key`, if there is one (null and absent give `None`).
pub fn num(m: &Map<String, Value>, key: &str) -> Option<f64> {
    m.get(key).and_then(Value::as_f64)
}
