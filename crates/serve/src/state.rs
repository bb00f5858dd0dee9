//! What every handler shares.

use crate::engine_loop::EngineHandle;
use crate::fault::{FaultInjector, FaultOptions};
use crate::lora::{LoraOptions, LoraRegistry};
use crate::structured::{Scripts, StructuredOptions};
use crate::template_sandbox::TemplateSandbox;
use crate::text::SharedCodec;
use crate::text_jobs::TextJobs;
use llm_emu_perf::{ApiServerQueue, FrontendLatency};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The server's shared state.
pub struct AppState {
    pub engine: EngineHandle,
    pub codec: SharedCodec,
    /// `--served-model-name` values; the first is the name responses carry.
    pub served_model_names: Vec<String>,
    /// The model path or id (`root` in `/v1/models`).
    pub model_root: String,
    pub max_model_len: usize,
    /// Accepted bearer tokens on `/v1` routes; empty: no authentication.
    pub api_keys: Vec<String>,
    /// Generation requests being served (`/load`'s `server_load`).
    pub server_load: AtomicUsize,
    seq: AtomicU64,
    /// Unix seconds at start (the `created` of `/v1/models`).
    pub started_unix: u64,
    /// `--trust-request-chat-template`: whether a request may bring its own chat template.
    pub trust_request_chat_template: bool,
    /// Where tokenizing, template rendering and bulk detokenizing run.
    pub text_jobs: TextJobs,
    /// The real server's front end that responses are paced by (`--frontend-latency`); `None`:
    /// events go out as the engine makes them.
    pub frontend: Option<llm_emu_perf::FrontendLatency>,
    /// This endpoint's API server's queue of ways in, on the clock of `api_clock`.
    api_queue: Mutex<ApiServerQueue>,
    api_clock: Instant,
    /// Tool-call flags and the output mode.
    pub structured: StructuredOptions,
    /// Per-request token rules the engine's sampler reads (scripts, seeds).
    pub scripts: Arc<Scripts>,
    /// Where templates that requests bring are rendered (`None`: in this process).
    pub template_sandbox: Option<Arc<TemplateSandbox>>,
    /// LoRA adapters (`--enable-lora`, `--lora-modules`, runtime loading).
    pub lora: Arc<LoraRegistry>,
    /// `--runner pooling`: the length of the embeddings served (the model's hidden size);
    /// `None`: the generate runner.
    pub pooling_hidden_size: Option<usize>,
    /// Which generation requests fail on purpose (`--fail-rate`, the failure header).
    pub faults: Arc<FaultInjector>,
}

impl AppState {
    /// The way in of a request that arrives now, s: its own way in after those of the requests
    /// that arrived before it at this endpoint ([`ApiServerQueue`]).
    pub fn way_in_now_s(&self, fe: &FrontendLatency, prompt_tokens: usize) -> f64 {
        let mut q = self.api_queue.lock().unwrap_or_else(|e| e.into_inner());
        q.admit(fe, self.api_clock.elapsed().as_secs_f64(), prompt_tokens)
    }

    pub fn new(
        engine: EngineHandle,
        codec: SharedCodec,
        served_model_names: Vec<String>,
        model_root: String,
        max_model_len: usize,
        api_keys: Vec<String>,
    ) -> AppState {
        AppState {
            engine,
            codec,
            served_model_names,
            model_root,
            max_model_len,
            api_keys,
            server_load: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            started_unix: unix_now(),
            trust_request_chat_template: false,
            text_jobs: TextJobs::per_core(),
            frontend: None,
            api_queue: Mutex::new(ApiServerQueue::default()),
            api_clock: Instant::now(),
            structured: StructuredOptions::default(),
            scripts: Scripts::new(),
            template_sandbox: None,
            lora: LoraRegistry::new(LoraOptions::default(), &[]),
            pooling_hidden_size: None,
            faults: Arc::new(FaultInjector::new(FaultOptions::default())),
        }
    }

    /// The tool-call flags, output mode and the registry the engine's sampler reads.
    pub fn with_structured(mut self, opts: StructuredOptions, scripts: Arc<Scripts>) -> AppState {
        self.structured = opts;
        self.scripts = scripts;
        self
    }

    /// Renders templates that requests bring in child processes ([`TemplateSandbox`]).
    pub fn with_template_sandbox(mut self, sandbox: Option<Arc<TemplateSandbox>>) -> AppState {
        self.template_sandbox = sandbox;
        self
    }

    /// The server's LoRA adapters (one registry shared by every endpoint).
    pub fn with_lora(mut self, lora: Arc<LoraRegistry>) -> AppState {
        self.lora = lora;
        self
    }

    /// Serves the pooling routes (embeddings of `hidden_size` components) instead of the
    /// generate ones.
    pub fn with_pooling(mut self, hidden_size: Option<usize>) -> AppState {
        self.pooling_hidden_size = hidden_size;
        self
    }

    /// Fails requests on purpose as `faults` decides (one injector for every endpoint).
    pub fn with_faults(mut self, faults: Arc<FaultInjector>) -> AppState {
        self.faults = faults;
        self
    }

    /// Lets requests bring their own chat template (`--trust-request-chat-template`).
    pub fn with_trust_request_chat_template(mut self, trust: bool) -> AppState {
        self.trust_request_chat_template = trust;
        self
    }

    /// The name responses carry.
    pub fn model_name(&self) -> &str {
        &self.served_model_names[0]
    }

    /// A number unique within this server run.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh request id: 16 hex digits, as vLLM's `random_uuid()` gives.
    pub fn random_id(&self) -> String {
        let mut z = self
            .next_seq()
            .wrapping_add(self.started_unix.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        format!("{:016x}", z ^ (z >> 31))
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
