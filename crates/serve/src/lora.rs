//! LoRA adapters as vLLM 0.19's OpenAI server knows them (`openai/models/serving.py`,
//! `serve/lora/`): adapters named by `--lora-modules` or loaded at run time, listed in
//! `/v1/models`, accepted as a request's `model`, and reported in `vllm:lora_requests_info`.
//!
//! The emulator has no weights: an adapter is a name and a path, and a request for it runs on
//! the same emulated engine as the base model, at the base model's speed. vLLM's scheduler rule
//! that a batch holds at most `max_loras` distinct adapters is the core scheduler's
//! (`Engine::set_max_loras`): a request carries its adapter's id to the engine (on a single
//! engine; a fleet's engines do not apply the rule).

use crate::errors::ApiError;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;

/// One `--lora-modules` entry (vLLM's `LoRAModulePath`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraModulePath {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub base_model_name: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LoraError {
    /// vLLM's `parser.error` texts for `--lora-modules`.
    #[error("Invalid JSON format for --lora-modules: {0}")]
    InvalidJson(String),
    #[error("Invalid fields for --lora-modules: {item} - {message}")]
    InvalidFields { item: String, message: String },
}

/// Parses one `--lora-modules` value as vLLM's `LoRAParserAction` does: `name=path` when it has
/// `=` and no comma, else a JSON object `{"name", "path", "base_model_name"?}`.
pub fn parse_lora_module(item: &str) -> Result<LoraModulePath, LoraError> {
    if item.contains('=') && !item.contains(',') {
        let mut parts = item.split('=');
        if let (Some(name), Some(path), None) = (parts.next(), parts.next(), parts.next()) {
            return Ok(LoraModulePath {
                name: name.to_string(),
                path: path.to_string(),
                base_model_name: None,
            });
        }
    }
    let value: serde_json::Value =
        serde_json::from_str(item).map_err(|_| LoraError::InvalidJson(item.to_string()))?;
    serde_json::from_value(value).map_err(|e| LoraError::InvalidFields {
        item: item.to_string(),
        message: e.to_string(),
    })
}

/// The LoRA flags of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoraOptions {
    /// `--enable-lora`: without it there is no LoRA config (no adapters, no metric).
    pub enabled: bool,
    /// `--max-loras` (vLLM's default 1): reported as the metric's `max_lora` label.
    pub max_loras: u32,
    /// `--max-lora-rank` (vLLM's default 16): accepted, not otherwise used.
    pub max_lora_rank: u32,
    /// `--lora-modules`, loaded at start.
    pub modules: Vec<LoraModulePath>,
    /// `VLLM_ALLOW_RUNTIME_LORA_UPDATING`: mounts `/v1/load_lora_adapter` and
    /// `/v1/unload_lora_adapter`.
    pub runtime_updating: bool,
}

impl Default for LoraOptions {
    fn default() -> Self {
        LoraOptions {
            enabled: false,
            max_loras: 1,
            max_lora_rank: 16,
            modules: Vec::new(),
            runtime_updating: false,
        }
    }
}

impl LoraOptions {
    /// vLLM's checks at start: static adapters need a LoRA config (`--enable-lora`).
    pub fn check(&self) -> Result<(), String> {
        if !self.enabled && !self.modules.is_empty() {
            return Err(
                "--lora-modules needs --enable-lora (vLLM cannot load adapters \
                        without a LoRA config)"
                    .into(),
            );
        }
        if self.max_loras == 0 {
            return Err("--max-loras must be at least 1".into());
        }
        Ok(())
    }
}

/// vLLM's `VLLM_ALLOW_RUNTIME_LORA_UPDATING` test: "1" or "true", trimmed, any case.
pub fn runtime_updating_from_env(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"))
}

/// A loaded adapter (vLLM's `LoRARequest`, as `/v1/models` shows it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adapter {
    pub name: String,
    pub path: String,
    /// `lora_int_id`: kept when an adapter is reloaded in place.
    pub id: u64,
    /// The base model it was declared for, when that is a served name.
    pub base_model_name: Option<String>,
}

/// `vllm:lora_requests_info`'s label values: `(running, waiting)` adapter lists.
type InfoLabels = (String, String);

#[derive(Default)]
struct Inner {
    /// In load order (vLLM's dict keeps it; an in-place reload keeps the place).
    adapters: Vec<Adapter>,
    next_id: u64,
    /// Requests in flight per adapter name, in the order adapters were first seen busy.
    in_flight: Vec<(String, usize)>,
    /// Every label set the gauge has had, with the Unix time it was last set (prometheus keeps
    /// a series once created).
    series: HashMap<InfoLabels, f64>,
    series_order: Vec<InfoLabels>,
}

/// The server's adapters and their use.
pub struct LoraRegistry {
    pub opts: LoraOptions,
    inner: Mutex<Inner>,
}

/// A load or unload request (vLLM's `LoadLoRAAdapterRequest` / `UnloadLoRAAdapterRequest`).
#[derive(Deserialize)]
pub struct LoadLoraRequest {
    pub lora_name: String,
    pub lora_path: String,
    #[serde(default)]
    pub load_inplace: bool,
}

#[derive(Deserialize)]
pub struct UnloadLoraRequest {
    pub lora_name: String,
    #[serde(default)]
    pub lora_int_id: Option<i64>,
}

impl crate::protocol::ValidateRequest for LoadLoraRequest {}
impl crate::protocol::ValidateRequest for UnloadLoraRequest {}

/// vLLM's `create_error_response(..., err_type="InvalidUserInput", 400)`.
fn invalid_input(message: String) -> ApiError {
    ApiError::Typed {
        status: 400,
        kind: "InvalidUserInput",
        message,
        param: None,
    }
}

impl LoraRegistry {
    /// The registry with `--lora-modules` loaded (`base_names`: the served names, for
    /// `base_model_name`).
    pub fn new(opts: LoraOptions, base_names: &[String]) -> Arc<LoraRegistry> {
        let reg = LoraRegistry {
            opts,
            inner: Mutex::new(Inner::default()),
        };
        for m in reg.opts.modules.clone() {
            let req = LoadLoraRequest {
                lora_name: m.name,
                lora_path: m.path,
                load_inplace: false,
            };
            // A name given twice: vLLM stops at start; the first one stays here.
            let _ = reg.load(&req, m.base_model_name.as_deref(), base_names);
        }
        Arc::new(reg)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The adapters, in load order.
    pub fn adapters(&self) -> Vec<Adapter> {
        self.lock().adapters.clone()
    }

    /// Whether `name` is a loaded adapter.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().adapters.iter().any(|a| a.name == name)
    }

    /// The `lora_int_id` of adapter `name`, if it is loaded.
    pub fn id_of(&self, name: &str) -> Option<u64> {
        self.lock()
            .adapters
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.id)
    }

    /// vLLM's `load_lora_adapter`: the success text, or its error.
    pub fn load(
        &self,
        req: &LoadLoraRequest,
        base_model_name: Option<&str>,
        base_names: &[String],
    ) -> Result<String, ApiError> {
        if req.lora_name.is_empty() || req.lora_path.is_empty() {
            return Err(invalid_input(
                "Both 'lora_name' and 'lora_path' must be provided.".into(),
            ));
        }
        let mut inner = self.lock();
        let existing = inner.adapters.iter().position(|a| a.name == req.lora_name);
        if existing.is_some() && !req.load_inplace {
            return Err(invalid_input(format!(
                "The lora adapter '{}' has already been loaded. If you want to load the adapter \
                 in place, set 'load_inplace' to True.",
                req.lora_name
            )));
        }
        if !self.opts.enabled {
            // vLLM's engine has no LoRA config to add the adapter to.
            return Err(ApiError::Internal(
                "LoRA is not enabled. Use --enable-lora to enable LoRA.".into(),
            ));
        }
        let base = base_model_name
            .filter(|b| base_names.iter().any(|n| n == b))
            .map(str::to_string);
        match existing {
            Some(i) => {
                let a = &mut inner.adapters[i];
                a.path = req.lora_path.clone();
                a.base_model_name = base;
            }
            None => {
                inner.next_id += 1;
                let id = inner.next_id;
                inner.adapters.push(Adapter {
                    name: req.lora_name.clone(),
                    path: req.lora_path.clone(),
                    id,
                    base_model_name: base,
                });
            }
        }
        Ok(format!(
            "Success: LoRA adapter '{}' added successfully.",
            req.lora_name
        ))
    }

    /// vLLM's `unload_lora_adapter`.
    pub fn unload(&self, req: &UnloadLoraRequest) -> Result<String, ApiError> {
        if req.lora_name.is_empty() {
            return Err(invalid_input(
                "'lora_name' needs to be provided to unload a LoRA adapter.".into(),
            ));
        }
        let mut inner = self.lock();
        let Some(i) = inner.adapters.iter().position(|a| a.name == req.lora_name) else {
            return Err(ApiError::Typed {
                status: 404,
                kind: "NotFoundError",
                message: format!("The lora adapter '{}' cannot be found.", req.lora_name),
                param: None,
            });
        };
        inner.adapters.remove(i);
        Ok(format!(
            "Success: LoRA adapter '{}' removed successfully.",
            req.lora_name
        ))
    }

    /// Counts a request for adapter `name` until the guard drops.
    pub fn begin(self: &Arc<Self>, name: &str) -> LoraInFlight {
        let mut inner = self.lock();
        match inner.in_flight.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += 1,
            None => inner.in_flight.push((name.to_string(), 1)),
        }
        LoraInFlight {
            reg: self.clone(),
            name: name.to_string(),
        }
    }

    /// Appends `vllm:lora_requests_info` (only with `--enable-lora`, as vLLM) to a Prometheus
    /// text exposition. The adapters with requests in flight are reported as running: the
    /// emulator does not tell a LoRA request waiting in the engine's queue from a running one,
    /// so `waiting_lora_adapters` stays empty. `now`: Unix seconds, the value vLLM's
    /// `set_to_current_time` gives the current label set.
    pub fn render_metric(&self, out: &mut String, now: f64) {
        if !self.opts.enabled {
            return;
        }
        let mut inner = self.lock();
        let running = inner
            .in_flight
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let labels = (running, String::new());
        if !inner.series.contains_key(&labels) {
            inner.series_order.push(labels.clone());
        }
        inner.series.insert(labels, now);
        out.push_str("# HELP vllm:lora_requests_info Running stats on lora requests.\n");
        out.push_str("# TYPE vllm:lora_requests_info gauge\n");
        for l in &inner.series_order {
            let v = inner.series.get(l).copied().unwrap_or(now);
            let _ = writeln!(
                out,
                "vllm:lora_requests_info{{max_lora=\"{}\",running_lora_adapters=\"{}\",\
                 waiting_lora_adapters=\"{}\"}} {}",
                self.opts.max_loras,
                escape_label(&l.0),
                escape_label(&l.1),
                prom_float(v)
            );
        }
    }
}

/// A Prometheus label value, escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as Python's prometheus client writes it (`repr`, with `e+09`).
fn prom_float(v: f64) -> String {
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let m = if m.contains('.') {
                m.to_string()
            } else {
                format!("{m}.0")
            };
            let e: i32 = e.parse().unwrap_or(0);
            format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
        }
        None => s,
    }
}

/// One request for an adapter, counted while it is served.
pub struct LoraInFlight {
    reg: Arc<LoraRegistry>,
    name: String,
}

impl Drop for LoraInFlight {
    fn drop(&mut self) {
        let mut inner = self.reg.lock();
        if let Some(i) = inner.in_flight.iter().position(|(n, _)| *n == self.name) {
            inner.in_flight[i].1 -= 1;
            if inner.in_flight[i].1 == 0 {
                inner.in_flight.remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_parse_in_both_forms() {
        assert_eq!(
            parse_lora_module("sql=/adapters/sql").unwrap(),
            LoraModulePath {
                name: "sql".into(),
                path: "/adapters/sql".into(),
                base_model_name: None
            }
        );
        let j = parse_lora_module(r#"{"name":"a","path":"/p","base_model_name":"m"}"#).unwrap();
        assert_eq!(j.base_model_name.as_deref(), Some("m"));
        assert!(matches!(
            parse_lora_module("a=b=c"),
            Err(LoraError::InvalidJson(_))
        ));
        assert!(matches!(
            parse_lora_module(r#"{"name":"a"}"#),
            Err(LoraError::InvalidFields { .. })
        ));
    }

    #[test]
    fn env_flag_reads_as_vllm() {
        assert!(runtime_updating_from_env(Some(" True ")));
        assert!(runtime_updating_from_env(Some("1")));
        assert!(!runtime_updating_from_env(Some("yes")));
        assert!(!runtime_updating_from_env(None));
    }

    #[test]
    fn floats_render_as_python() {
        assert_eq!(prom_float(1.7e9), "1.7e+09");
        assert_eq!(prom_float(1_764_900_000.0), "1.7649e+09");
    }

    #[test]
    fn load_unload_and_in_place() {
        let opts = LoraOptions {
            enabled: true,
            ..Default::default()
        };
        let reg = LoraRegistry::new(opts, &["base".into()]);
        let req = |n: &str, inplace| LoadLoraRequest {
            lora_name: n.into(),
            lora_path: "/x".into(),
            load_inplace: inplace,
        };
        assert!(reg.load(&req("a", false), None, &[]).is_ok());
        let again = reg.load(&req("a", false), None, &[]).unwrap_err();
        assert_eq!(again.status().as_u16(), 400);
        assert!(reg.load(&req("a", true), None, &[]).is_ok());
        assert_eq!(reg.adapters()[0].id, 1);
        let un = |n: &str| UnloadLoraRequest {
            lora_name: n.into(),
            lora_int_id: None,
        };
        assert!(reg.unload(&un("a")).is_ok());
        assert_eq!(reg.unload(&un("a")).unwrap_err().status().as_u16(), 404);
    }

    #[test]
    fn metric_lists_busy_adapters_and_keeps_old_series() {
        let opts = LoraOptions {
            enabled: true,
            max_loras: 2,
            ..Default::default()
        };
        let reg = LoraRegistry::new(opts, &[]);
        let g = reg.begin("a");
        let mut out = String::new();
        reg.render_metric(&mut out, 1.0e9);
        assert!(out.contains(
            "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"a\",\
             waiting_lora_adapters=\"\"} 1.0e+09"
        ));
        drop(g);
        let mut out = String::new();
        reg.render_metric(&mut out, 2.0e9);
        assert!(out.contains("running_lora_adapters=\"a\""));
        assert!(out.contains("running_lora_adapters=\"\",waiting_lora_adapters=\"\"} 2.0e+09"));
    }
}
