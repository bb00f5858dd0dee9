//! Where a model's shape comes from: a `config.json` path, the local Hugging Face cache, or the
//! built-in table of popular open models (`data/models/builtin.json`, the published
//! `config.json` facts), so a model name alone works offline.
//!
//! [`ModelShape::builtin`] and [`ModelShape::resolve_in`] are pure apart from reading the given
//! files; [`ModelShape::resolve`] also reads the environment for the cache location
//! (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`), like `huggingface_hub` does.

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
        let path = Path::new(name_or_path);
        if path.is_file() {
            return read_config(path);
        }
        if path.is_dir() {
            return read_config(&path.join("config.json"));
        }
        for dir in cache_dirs {
            if let Some(cfg) = cached_config(dir, name_or_path) {
                return read_config(&cfg);
            }
        }
        ModelShape::builtin(name_or_path)
    }
}

fn read_config(path: &Path) -> Result<ModelShape, SizingError> {
    let text = std::fs::read_to_string(path)
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
