//! `meta.yaml` (the few fields needed, read by a tiny indentation-based reader) and the skew
//! correction's alpha table (`tp<N>/skew_fit.csv`), resolved as the peer's `_skew_alpha` does.

use super::tables::Csv;
use super::ProfileError;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `meta.yaml` flattened to dotted keys (`skew_fit.per_tp.1.alpha_default`) → (line, scalar
/// text). Block lists (`- item`) are skipped; flow lists stay as their `[...]` text.
pub(crate) struct Meta {
    pub path: PathBuf,
    pub fields: BTreeMap<String, (usize, String)>,
}

impl Meta {
    pub fn read(path: &Path) -> Result<Meta, ProfileError> {
        let text = super::tables::read_text(path)?;
        Meta::parse(path, &text)
    }

    /// Parses the subset of YAML profiles use: `key: value` and `key:` lines nested by
    /// indentation (spaces), `- item` lines (skipped), `#` comments. Anything else is refused
    /// with its line — a garbage file is never read as an empty profile: no control characters,
    /// no tab indentation, no line without `key:`, no key defined twice, at least one key.
    pub fn parse(path: &Path, text: &str) -> Result<Meta, ProfileError> {
        let syntax = |line: usize, reason: String| ProfileError::Syntax {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut fields: BTreeMap<String, (usize, String)> = BTreeMap::new();
        let mut stack: Vec<(usize, String)> = Vec::new();
        // Every key seen (scalar or block) → its line, to refuse a second definition.
        let mut seen: HashMap<String, usize> = HashMap::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            if let Some(c) = raw.chars().find(|c| c.is_control() && *c != '\t') {
                return Err(syntax(
                    line_no,
                    format!("control character U+{:04X}: not a YAML text file", c as u32),
                ));
            }
            let line = raw.trim_end();
            let body = line.trim_start_matches([' ', '\t']);
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let indent_text = &line[..line.len() - body.len()];
            if indent_text.contains('\t') {
                return Err(syntax(
                    line_no,
                    "tab in indentation (YAML indents with spaces)".into(),
                ));
            }
            if body == "-" || body.starts_with("- ") {
                continue;
            }
            let indent = indent_text.len();
            let parsed = body.split_once(':').filter(|(k, v)| {
                !k.trim().is_empty() && (v.is_empty() || v.starts_with([' ', '\t']))
            });
            let Some((key, value)) = parsed else {
                let shown: String = body.chars().take(40).collect();
                return Err(syntax(
                    line_no,
                    format!(
                        "expected `key: value`, `key:`, `- item` or `# comment`, found `{shown}`"
                    ),
                ));
            };
            while stack.last().is_some_and(|(d, _)| *d >= indent) {
                stack.pop();
            }
            let key = unquote(key.trim());
            let value = value.trim();
            let mut full: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
            full.push(&key);
            let full = full.join(".");
            if let Some(first) = seen.insert(full.clone(), line_no) {
                return Err(syntax(
                    line_no,
                    format!("`{full}` is defined twice (first on line {first})"),
                ));
            }
            if value.is_empty() {
                stack.push((indent, key));
            } else {
                fields.insert(full, (line_no, unquote(value)));
            }
        }
        if fields.is_empty() {
            return Err(syntax(
                text.lines().count().max(1),
                "no `key: value` field at all".into(),
            ));
        }
        Ok(Meta {
            path: path.to_path_buf(),
            fields,
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(|(_, v)| v.as_str())
    }

    fn bad(&self, key: &str, reason: &str) -> ProfileError {
        let (line, value) = self.fields.get(key).cloned().unwrap_or_default();
        ProfileError::Meta {
            path: self.path.clone(),
            line,
            key: key.to_string(),
            reason: format!("{reason} (value `{value}`)"),
        }
    }

    pub fn number(&self, key: &str) -> Result<Option<f64>, ProfileError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(self.bad(key, "not a finite number")),
            },
        }
    }

    fn list(&self, key: &str) -> Result<Option<Vec<String>>, ProfileError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let inner = v
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .ok_or_else(|| self.bad(key, "expected a `[a, b, ...]` list"))?;
        Ok(Some(
            inner
                .split(',')
                .map(|s| unquote(s.trim()))
                .filter(|s| !s.is_empty())
                .collect(),
        ))
    }

    fn number_list(&self, key: &str) -> Result<Option<Vec<f64>>, ProfileError> {
        let Some(items) = self.list(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|s| match s.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err(self.bad(key, "list item is not a finite number")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// One bucket axis: `(bins[i], bins[i+1]]` → `labels[i]`; above the last bin the last label.
#[derive(Clone, Debug)]
struct Axis {
    bins: Vec<f64>,
    labels: Vec<String>,
}

impl Axis {
    fn new(bins: &[f64], labels: &[&str]) -> Axis {
        Axis {
            bins: bins.to_vec(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[inline]
    fn index(&self, v: f64) -> usize {
        (0..self.labels.len())
            .find(|&i| v <= self.bins[i + 1])
            .unwrap_or(self.labels.len() - 1)
    }

    fn label_index(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }
}

/// Bucket key: raw pc, then label indices of n, skew rate, kv_max, kp.
type Key = (u64, u8, u8, u8, u8);

#[derive(Clone, Debug)]
pub struct SkewFit {
    /// `skew_fit.enabled` (false: no correction, alpha 0).
    enabled: bool,
    alpha_default: f64,
    /// n, skew-rate, kv_max, kp axes.
    axes: [Axis; 4],
    /// Shared by the fit's clones, like [`super::tables::Table1D`]'s values.
    buckets: Arc<HashMap<Key, f64>>,
}

impl SkewFit {
    /// No correction at all (alpha 0), the peer's behaviour without a skew profile.
    pub fn disabled() -> SkewFit {
        SkewFit {
            enabled: false,
            alpha_default: 0.0,
            axes: default_axes(),
            buckets: Default::default(),
        }
    }

    pub fn load(meta: &Meta, root: &Path, tp: u32) -> Result<SkewFit, ProfileError> {
        if meta.get("skew_fit.enabled") != Some("true") {
            return Ok(SkewFit::disabled());
        }
        let entry = format!("skew_fit.per_tp.{tp}");
        let has_entry = meta
            .fields
            .keys()
            .any(|k| k.starts_with(&format!("{entry}.")));
        if !has_entry {
            return Ok(SkewFit {
                enabled: true,
                alpha_default: meta.number("skew_fit.alpha_default")?.unwrap_or(0.0),
                axes: default_axes(),
                buckets: Default::default(),
            });
        }
        let alpha_default = meta
            .number(&format!("{entry}.alpha_default"))?
            .unwrap_or(0.0);
        // Axes: per-TP entry, then the block's top level, then the peer's defaults.
        let prefix = if meta
            .fields
            .keys()
            .any(|k| k.starts_with(&format!("{entry}.bucket_axes.")))
        {
            format!("{entry}.bucket_axes")
        } else {
            "skew_fit.bucket_axes".to_string()
        };
        let mut axes = default_axes();
        for (i, name) in ["n", "skew_rate", "kv_big", "kp"].iter().enumerate() {
            let bk = format!("{prefix}.{name}_bins");
            let lk = format!("{prefix}.{name}_labels");
            match (meta.number_list(&bk)?, meta.list(&lk)?) {
                (None, None) => {}
                (Some(bins), Some(labels)) => {
                    if labels.is_empty() || bins.len() != labels.len() + 1 {
                        return Err(meta.bad(&lk, "needs one label per bin interval"));
                    }
                    axes[i] = Axis { bins, labels };
                }
                (None, Some(_)) => return Err(meta.bad(&lk, "labels without bins")),
                (Some(_), None) => return Err(meta.bad(&bk, "bins without labels")),
            }
        }
        let mut buckets = HashMap::new();
        if let Some(rel) = meta.get(&format!("{entry}.bucket_table")) {
            let csv = Csv::read(
                &root.join(rel),
                &[
                    "pc",
                    "n_label",
                    "skew_rate_label",
                    "kv_big_label",
                    "kp_label",
                    "alpha",
                    "n_samples",
                ],
            )?;
            let mut seen = HashMap::new();
            for row in &csv.rows {
                let pc = csv.uint(row, 0)?;
                let mut idx = [0u8; 4];
                for (a, slot) in idx.iter_mut().enumerate() {
                    *slot = axes[a].label_index(&row.fields[a + 1]).ok_or_else(|| {
                        csv.label_error(row, a + 1, "label not in meta.yaml skew_fit.bucket_axes")
                    })? as u8;
                }
                let alpha = csv.num(row, 5, true)?;
                csv.uint(row, 6)?;
                csv.once(&mut seen, (pc, idx), row, || {
                    format!("bucket (pc {pc}, {})", row.fields[1..5].join(", "))
                })?;
                buckets.insert((pc, idx[0], idx[1], idx[2], idx[3]), alpha);
            }
        }
        Ok(SkewFit {
            enabled: true,
            alpha_default,
            axes,
            buckets: Arc::new(buckets),
        })
    }

    /// Alpha for a batch: the bucket of (raw pc, n, skew rate, kv_max, kp), else the default.
    #[inline]
    pub fn alpha(&self, pc: u64, n: u64, skew_rate: f64, kv_max: u64, kp: u64) -> f64 {
        if !self.enabled {
            return 0.0;
        }
        let sr = skew_rate.clamp(0.0, 1.0);
        let key = (
            pc,
            self.axes[0].index(n as f64) as u8,
            self.axes[1].index(sr) as u8,
            self.axes[2].index(kv_max as f64) as u8,
            self.axes[3].index(kp as f64) as u8,
        );
        self.buckets
            .get(&key)
            .copied()
            .unwrap_or(self.alpha_default)
    }

    pub fn num_buckets(&self) -> usize {
        self.buckets.len()
    }
}

/// The peer's `_DEFAULT_SKEW_AXES`, for a meta.yaml without `bucket_axes`.
fn default_axes() -> [Axis; 4] {
    [
        Axis::new(
            &[0., 2., 4., 8., 16., 32., 64., 128., 1e6],
            &[
                "n<=2", "n<=4", "n<=8", "n<=16", "n<=32", "n<=64", "n<=128", "n>128",
            ],
        ),
        Axis::new(
            &[-0.01, 0.05, 0.15, 0.40, 0.70, 1.01],
            &["sr<=5%", "sr<=15%", "sr<=40%", "sr<=70%", "sr>70%"],
        ),
        Axis::new(
            &[0., 1024., 4096., 16384., 1e9],
            &["kvB<=1k", "kvB<=4k", "kvB<=16k", "kvB>16k"],
        ),
        Axis::new(&[-1., 0., 2048., 1e9], &["kp=0", "kp<=2k", "kp>2k"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_yaml_and_buckets() {
        let m = Meta::parse(
            Path::new("meta.yaml"),
            "a: 1\nskew_fit:\n  enabled: true\n  bucket_axes:\n    n_bins: [0, 2, 1000]\n    \
             n_labels: [n<=2, n>2]\n  per_tp:\n    1:\n      alpha_default: 0.05\n    2:\n      \
             alpha_default: '0.07'\nb: x\n",
        )
        .unwrap();
        assert_eq!(m.get("a"), Some("1"));
        assert_eq!(m.get("b"), Some("x"));
        assert_eq!(m.get("skew_fit.per_tp.2.alpha_default"), Some("0.07"));
        assert_eq!(m.get("skew_fit.bucket_axes.n_labels"), Some("[n<=2, n>2]"));
        let f = SkewFit::load(&m, Path::new("."), 1).unwrap();
        assert_eq!(f.axes[0].labels, vec!["n<=2", "n>2"]);
        assert_eq!(f.alpha(0, 5, 0.3, 100, 0), 0.05);
        assert_eq!(f.axes[0].index(2.0), 0);
        assert_eq!(f.axes[0].index(3.0), 1);
        assert_eq!(f.axes[0].index(1e7), 1);
        // Disabled → alpha 0.
        let off = Meta::parse(Path::new("m"), "skew_fit:\n  enabled: false\n").unwrap();
        assert_eq!(
            SkewFit::load(&off, Path::new("."), 1)
                .unwrap()
                .alpha(0, 5, 0.3, 1, 0),
            0.0
        );
        // Malformed list → located error.
        let bad = Meta::parse(
            Path::new("m"),
            "skew_fit:\n  enabled: true\n  per_tp:\n    1:\n      alpha_default: zz\n",
        )
        .unwrap();
        let e = SkewFit::load(&bad, Path::new("."), 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 5") && e.contains("alpha_default"), "{e}");
    }

    #[test]
    fn garbage_meta_is_refused_with_its_line() {
        let p = Path::new("meta.yaml");
        let err = |text: &str| Meta::parse(p, text).err().unwrap().to_string();
        let e = err("model: x\nthis is not yaml at all\n");
        assert!(
            e.starts_with("meta.yaml: line 2: expected `key: value`"),
            "{e}"
        );
        let e = err("a: 1\nb:\n  c: 2\nb:\n  d: 3\n");
        assert!(
            e.contains("line 4") && e.contains("`b` is defined twice (first on line 2)"),
            "{e}"
        );
        let e = err("a:\n  c: 2\n  c: 3\n");
        assert!(
            e.contains("line 3") && e.contains("`a.c` is defined twice"),
            "{e}"
        );
        let e = err("a: 1\n\tb: 2\n");
        assert!(e.contains("line 2") && e.contains("tab"), "{e}");
        let e = err("a: 1\nb: \u{0}\u{1}\n");
        assert!(
            e.contains("line 2") && e.contains("control character"),
            "{e}"
        );
        assert!(err("").contains("no `key: value` field"));
        assert!(err("# only a comment\n\n").contains("no `key: value` field"));
        assert!(err("a:b\n").contains("line 1"));
        // A byte-order mark and `- item` lists are fine.
        let m = Meta::parse(p, "\u{feff}a: 1\nl:\n  - x\n  - y\n").unwrap();
        assert_eq!(m.get("a"), Some("1"));
    }
}
