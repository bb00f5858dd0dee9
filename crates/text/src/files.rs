//! Where tokenizer files come from: a path, the local Hugging Face cache, or the embedded
//! default; and reading them into memory.

use crate::error::TextError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where to load a tokenizer from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenizerSource {
    /// A `tokenizer.json` file, or a directory holding one (with the optional
    /// `tokenizer_config.json`, `generation_config.json`, `special_tokens_map.json`,
    /// `chat_template.jinja` next to it).
    Path(PathBuf),
    /// `"org/name"`, looked up in the local Hugging Face cache (`$HF_HUB_CACHE`,
    /// `$HF_HOME/hub`, `~/.cache/huggingface/hub`), never downloaded.
    HfModel(String),
    /// The embedded meta-llama/Llama-3.1-8B-Instruct tokenizer, with its tokenizer_config.json
    /// and generation_config.json (see `crates/text/data/README.md`).
    Builtin,
}

/// The embedded tokenizer, gzip-compressed (9 MB of JSON kept as 2.3 MB in the repository).
const BUILTIN_TOKENIZER_GZ: &[u8] = include_bytes!("../data/llama3_1-tokenizer.json.gz");
const BUILTIN_TOKENIZER_CONFIG: &str = include_str!("../data/llama3_1-tokenizer_config.json");
const BUILTIN_GENERATION_CONFIG: &str = include_str!("../data/llama3_1-generation_config.json");

/// The raw contents of a tokenizer's files.
#[derive(Debug)]
pub(crate) struct TokenizerFiles {
    /// What to call the tokenizer in messages (a path or `builtin`).
    pub origin: PathBuf,
    pub tokenizer_json: Vec<u8>,
    pub tokenizer_config: Option<serde_json::Value>,
    pub generation_config: Option<serde_json::Value>,
    pub special_tokens_map: Option<serde_json::Value>,
    pub chat_template_file: Option<String>,
}

impl TokenizerFiles {
    pub fn read(src: &TokenizerSource) -> Result<TokenizerFiles, TextError> {
        match src {
            TokenizerSource::Path(p) => read_path(p),
            TokenizerSource::HfModel(name) => read_path(&hf_cache_snapshot(name)?),
            TokenizerSource::Builtin => builtin(),
        }
    }
}

fn builtin() -> Result<TokenizerFiles, TextError> {
    let origin = PathBuf::from("builtin:llama3.1");
    let mut json = Vec::with_capacity(9 << 20);
    flate2::read::GzDecoder::new(BUILTIN_TOKENIZER_GZ)
        .read_to_end(&mut json)
        .map_err(|e| TextError::io(&origin, e))?;
    let parse = |s: &str, what: &str| {
        serde_json::from_str(s).map_err(|e| TextError::BadConfig {
            path: origin.join(what),
            message: e.to_string(),
        })
    };
    Ok(TokenizerFiles {
        tokenizer_json: json,
        tokenizer_config: Some(parse(BUILTIN_TOKENIZER_CONFIG, "tokenizer_config.json")?),
        generation_config: Some(parse(BUILTIN_GENERATION_CONFIG, "generation_config.json")?),
        special_tokens_map: None,
        chat_template_file: None,
        origin,
    })
}

fn read_path(p: &Path) -> Result<TokenizerFiles, TextError> {
    let (dir, tok) = if p.is_dir() {
        (p.to_path_buf(), p.join("tokenizer.json"))
    } else {
        let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
        (dir, p.to_path_buf())
    };
    if !tok.is_file() {
        return Err(TextError::MissingTokenizer(p.to_path_buf()));
    }
    let tokenizer_json = std::fs::read(&tok).map_err(|e| TextError::io(&tok, e))?;
    Ok(TokenizerFiles {
        origin: tok,
        tokenizer_json,
        tokenizer_config: read_json_opt(&dir.join("tokenizer_config.json"))?,
        generation_config: read_json_opt(&dir.join("generation_config.json"))?,
        special_tokens_map: read_json_opt(&dir.join("special_tokens_map.json"))?,
        chat_template_file: read_text_opt(&dir.join("chat_template.jinja"))?,
    })
}

fn read_text_opt(path: &Path) -> Result<Option<String>, TextError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TextError::io(path, e)),
    }
}

fn read_json_opt(path: &Path) -> Result<Option<serde_json::Value>, TextError> {
    let Some(text) = read_text_opt(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TextError::BadConfig {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// `models--org--name/snapshots/<rev>/` of `name` in the first cache that has it: the revision
/// `refs/main` points at, else the only (or newest) snapshot holding a tokenizer.json.
fn hf_cache_snapshot(name: &str) -> Result<PathBuf, TextError> {
    let mut parts = name.split('/');
    let (Some(org), Some(model), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(TextError::BadModelName(name.to_string()));
    };
    if org.is_empty() || model.is_empty() || name.contains("..") {
        return Err(TextError::BadModelName(name.to_string()));
    }
    let dirs = llm_emu_perf::sizing::hf_cache_dirs();
    for cache in &dirs {
        let repo = cache.join(format!("models--{org}--{model}"));
        let snapshots = repo.join("snapshots");
        if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
            let snap = snapshots.join(rev.trim());
            if snap.join("tokenizer.json").is_file() {
                return Ok(snap);
            }
        }
        let Ok(entries) = std::fs::read_dir(&snapshots) else {
            continue;
        };
        let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
        for e in entries.flatten() {
            let p = e.path();
            if !p.join("tokenizer.json").is_file() {
                continue;
            }
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            if best.as_ref().is_none_or(|(bt, _)| t > *bt) {
                best = Some((t, p));
            }
        }
        if let Some((_, p)) = best {
            return Ok(p);
        }
    }
    Err(TextError::ModelNotCached {
        model: name.to_string(),
        searched: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}
