//! Where a model's shape comes from: a `config.json` path, the local Hugging Face cache, or the
//! built-in table of popular open models (`data/models/builtin.json`, the published
//! `config.json` facts), so a model name alone works offline.
//!
//! [`ModelShape::builtin`] and [`ModelShape::resolve_in`] are pure apart from reading the given
//! files; [`ModelShape::resolve`] also reads the environment for the cache location
//! (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`), like `huggingface_hub` does.
//!
//! A post-trained release of a known base (`Qwen/Qwen3-30B-A3B-Instruct-2507`,
//! `meta-llama/Llama-3.2-1B-Instruct`) has its base's architecture: when the name itself is
//! neither cached nor built in, trailing release tags ([`release_bases`]) are stripped until a
//! cached or built-in name is found, and [`ModelShape::resolve_noted`] says so in a note.

use super::shape::ModelShape;
use super::SizingError;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const BUILTIN_JSON: &str = include_str!("../../data/models/builtin.json");

struct Builtin {
    /// Canonical Hub name → config.json.
    models: Vec<(String, Value)>,
    /// Other Hub names with the same architecture → canonical name.
    same_as: Vec<(String, String)>,
}

fn builtin_table() -> &'static Builtin {
    static TABLE: OnceLock<Builtin> = OnceLock::new();
    TABLE.get_or_init(|| {
        let v: Value = serde_json::from_str(BUILTIN_JSON).expect("builtin.json is valid JSON");
        let models = v["models"]
            .as_object()
            .expect("builtin.json has `models`")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let same_as = v["same_as"]
            .as_object()
            .expect("builtin.json has `same_as`")
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().expect("same_as values are names").into(),
                )
            })
            .collect();
        Builtin { models, same_as }
    })
}

/// The names of the built-in table (canonical names and their same-architecture variants),
/// sorted.
pub fn builtin_model_names() -> Vec<&'static str> {
    let t = builtin_table();
    let mut names: Vec<&str> = t
        .models
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(t.same_as.iter().map(|(k, _)| k.as_str()))
        .collect();
    names.sort_unstable_by_key(|n| n.to_ascii_lowercase());
    names
}

/// Finds `name` in the built-in table: the full Hub name or the part after `org/`, ignoring
/// case. Returns the canonical name and its config.
fn builtin_lookup(name: &str) -> Option<(&'static str, &'static Value)> {
    let t = builtin_table();
    let want = name.trim().to_ascii_lowercase();
    let matches = |k: &str| {
        let k = k.to_ascii_lowercase();
        k == want || k.rsplit('/').next() == Some(want.as_str())
    };
    let canonical = t
        .models
        .iter()
        .find(|(k, _)| matches(k))
        .map(|(k, _)| k.as_str())
        .or_else(|| {
            t.same_as
                .iter()
                .find(|(k, _)| matches(k))
                .map(|(_, v)| v.as_str())
        })?;
    t.models
        .iter()
        .find(|(k, _)| k == canonical)
        .map(|(k, v)| (k.as_str(), v))
}

/// Dash-separated trailing parts a post-trained release appends to its base model's name
/// without changing the architecture (compared ignoring case); a 4-digit release date
/// (`2507`, `0324`) is stripped too.
pub const RELEASE_TAGS: [&str; 6] = ["instruct", "chat", "thinking", "base", "it", "hf"];

/// The names `name` may be a post-trained release of, most specific first, by stripping
/// trailing [`RELEASE_TAGS`] and 4-digit dates one at a time: `Qwen/Qwen3-30B-A3B-Instruct-2507`
/// → `Qwen/Qwen3-30B-A3B-Instruct`, `Qwen/Qwen3-30B-A3B`. Empty when the name ends in no such
/// part or is a path. The `org/` prefix is kept; a base is never empty.
pub fn release_bases(name: &str) -> Vec<String> {
    let name = name.trim();
    if name.starts_with(['/', '.', '~']) || name.matches('/').count() > 1 {
        return Vec::new();
    }
    let (org, mut rest) = match name.split_once('/') {
        Some((org, rest)) => (format!("{org}/"), rest),
        None => (String::new(), name),
    };
    let is_tag = |part: &str| {
        RELEASE_TAGS.iter().any(|t| t.eq_ignore_ascii_case(part))
            || (part.len() == 4 && part.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut out = Vec::new();
    while let Some((head, tail)) = rest.rsplit_once('-') {
        if head.is_empty() || !is_tag(tail) {
            break;
        }
        rest = head;
        out.push(format!("{org}{rest}"));
    }
    out
}

/// One key for the names of one model's weights, to tell whether a profile was measured with
/// the model an engine serves: the part after `org/`, mapped to the built-in table's canonical
/// name where the table lists it (`Meta-Llama-3.1-8B-Instruct` → `Llama-3.1-8B`), else less its
/// release tags ([`release_bases`]); lower-case.
pub fn same_weights_key(name: &str) -> String {
    let last = name
        .trim()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(name);
    let key = match builtin_lookup(last) {
        Some((canonical, _)) => canonical
            .rsplit('/')
            .next()
            .unwrap_or(canonical)
            .to_string(),
        None => release_bases(last)
            .pop()
            .unwrap_or_else(|| last.to_string()),
    };
    key.to_ascii_lowercase()
}

/// A resolved shape and, when it was found under another name, a note saying which.
#[derive(Clone, Debug)]
pub struct ResolvedShape {
    pub shape: ModelShape,
    /// Set when the name was read as a post-trained release of a known base.
    pub note: Option<String>,
}

impl ModelShape {
    /// A model of the built-in table by Hub name (`meta-llama/Llama-3.1-8B`, or just
    /// `Llama-3.1-8B`; case-insensitive).
    pub fn builtin(name: &str) -> Result<ModelShape, SizingError> {
        match builtin_lookup(name) {
            Some((canonical, config)) => ModelShape::from_hf_config_value(config.clone())
                .map_err(|e| SizingError::BadConfig(format!("built-in {canonical}: {e}"))),
            None => Err(SizingError::UnknownModel {
                name: name.to_string(),
                known: builtin_model_names().join(", "),
            }),
        }
    }

    /// The shape of `name_or_path`: a `config.json` file or a directory holding one; else the
    /// model's `config.json` in a local Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME/hub`,
    /// `~/.cache/huggingface/hub`); else the built-in table.
    pub fn resolve(name_or_path: &str) -> Result<ModelShape, SizingError> {
        ModelShape::resolve_in(name_or_path, &hf_cache_dirs())
    }

    /// [`Self::resolve`] with the cache directories given (tests, embedders).
    pub fn resolve_in(
        name_or_path: &str,
        cache_dirs: &[PathBuf],
    ) -> Result<ModelShape, SizingError> {
        ModelShape::resolve_noted_in(name_or_path, cache_dirs).map(|r| r.shape)
    }

    /// [`Self::resolve`], with a note when the name was read as a post-trained release of a
    /// known base (see [`release_bases`]).
    pub fn resolve_noted(name_or_path: &str) -> Result<ResolvedShape, SizingError> {
        ModelShape::resolve_noted_in(name_or_path, &hf_cache_dirs())
    }

    /// [`Self::resolve_noted`] with the cache directories given. The name as given wins (path,
    /// cache, built-in table); only then is each release base tried, most specific first, in
    /// the cache and the built-in table. An unknown name whose bases are unknown too is the
    /// error for the name as given.
    pub fn resolve_noted_in(
        name_or_path: &str,
        cache_dirs: &[PathBuf],
    ) -> Result<ResolvedShape, SizingError> {
        let exact = |name: &str| -> Option<Result<ModelShape, SizingError>> {
            cache_dirs
                .iter()
                .find_map(|dir| cached_config(dir, name))
                .map(|cfg| read_config(&cfg))
                .or_else(|| builtin_lookup(name).map(|_| ModelShape::builtin(name)))
        };
        let path = Path::new(name_or_path);
        let plain = |shape| ResolvedShape { shape, note: None };
        if path.is_file() {
            return read_config(path).map(plain);
        }
        if path.is_dir() {
            return read_config(&path.join("config.json")).map(plain);
        }
        if let Some(r) = exact(name_or_path) {
            return r.map(plain);
        }
        for base in release_bases(name_or_path) {
            if let Some(r) = exact(&base) {
                let shape = r?;
                return Ok(ResolvedShape {
                    shape,
                    note: Some(format!(
                        "`{name_or_path}` is neither in the Hugging Face cache nor built in; \
                         read as a post-trained release of `{base}`, whose architecture it \
                         shares"
                    )),
                });
            }
        }
        ModelShape::builtin(name_or_path).map(plain)
    }
}

fn read_config(path: &Path) -> Result<ModelShape, SizingError> {
    let text = crate::text_file::read_text(path)
        .map_err(|e| SizingError::BadConfig(format!("{}: {e}", path.display())))?;
    ModelShape::from_hf_config_json(&text)
        .map_err(|e| SizingError::BadConfig(format!("{}: {e}", path.display())))
}

/// `<cache>/models--<org>--<name>/snapshots/<rev>/config.json`: the revision `refs/main`
/// points to, else the first snapshot (by name) that has a config.
fn cached_config(cache: &Path, name: &str) -> Option<PathBuf> {
    if !name.contains('/') || name.starts_with('/') || name.contains("..") {
        return None;
    }
    let repo = cache.join(format!("models--{}", name.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
        let p = snapshots.join(rev.trim()).join("config.json");
        if p.is_file() {
            return Some(p);
        }
    }
    let mut revs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("config.json")))
        .filter(|p| p.is_file())
        .collect();
    revs.sort();
    revs.into_iter().next()
}

/// The cache directories `huggingface_hub` would use, in its order of precedence.
pub fn hf_cache_dirs() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("HF_HUB_CACHE") {
        return vec![d];
    }
    if let Some(d) = env("HF_HOME") {
        return vec![d.join("hub")];
    }
    let home_cache = env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")));
    home_cache
        .map(|c| vec![c.join("huggingface").join("hub")])
        .unwrap_or_default()
}
