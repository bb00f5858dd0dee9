//! kubernetes-sigs/inference-perf's `shared_prefix` and `random` workloads under its `constant`,
//! `poisson` and `concurrent` loads, regenerated, and the client-side figures its report
//! computes from a streamed completion.
//!
//! Read from inference-perf's source as of the runs this serves (the `main` of late October /
//! early November 2025, between commits `b81afa4` and `ad40050`: its resolved `config.yaml`
//! has `load.circuit_breakers` and no `load.trace`):
//!
//! - `datagen/shared_prefix_datagen.py`: `num_groups` system prompts of `system_prompt_len`
//!   random token ids each; per group `num_prompts_per_group` questions of `question_len` random
//!   ids; a prompt is the decoded system prompt, a space and the decoded question; the list of
//!   `num_groups × num_prompts_per_group` prompts is shuffled once. Request `n` of a stage sends
//!   prompt `n mod len` (`get_request`, with the request number restarting at 0 every stage) with
//!   `max_tokens = output_len`.
//! - `loadgen/load_timer.py` `ConstantLoadTimer`: `int(rate × duration)` requests whose gaps are
//!   exponential draws (mean 1/rate) scaled so that they sum to `duration`: Poisson-like spacing,
//!   not a fixed interval, with the last request exactly `duration` after the stage's start.
//! - Later versions (read at their `main` of August 2026): shared-prefix lengths may be drawn
//!   from a distribution, the system prompt's once per group and the question's and output's
//!   per prompt (`datagen/synthetic/shared_prefix_datagen.py`; the legacy
//!   `question_distribution` / `output_distribution` since February 2026, inline distributions
//!   since April), see [`lengths`]; `random` data (`datagen/synthetic/random_datagen.py`): prompt
//!   `n` is random ids of the `n`-th of `input_distribution.total_count` drawn lengths, with the
//!   `n`-th output length, in order, request `n` of every stage sending prompt `n`; the
//!   `poisson` and `concurrent` load timers, see [`timers`].
//! - `loadgen/load_generator.py` `run_stage`: a stage starts 1 s after it is set up, waits until
//!   every one of its requests has finished, then `load.interval` (1 s) passes before the next.
//! - `apis/completion.py` and `reportgen/base.py`: the streamed response is read line by line
//!   and every line gets a time stamp, the blank line ending each SSE event and the `[DONE]`
//!   event included. TTFT = first line − send; request latency = end − send; TPOT = (last line −
//!   first line)/(lines − 1); ITL = every gap between lines. With one event per token, N tokens
//!   give 2(N + 1) lines, so inference-perf's TPOT is about half of vLLM's, and its ITL holds
//!   N − 1 gaps between tokens and N + 2 near-zero gaps (a blank line after its event, `[DONE]`
//!   right after the last token). [`ip_figures`] applies these definitions to the emulator's
//!   client-side tokens.
//!
//! Token ids are synthetic: the prompt text of the real run was random ids decoded and
//! re-tokenized by the server (which changes their number by a few percent and adds the BOS
//! token); here every prompt is one BOS, its group's `system_prompt_len` ids and its own
//! `question_len` ids (a random prompt: BOS and its input length's ids), so prompts of one group
//! share their system prompt token for token and the prefix cache sees exactly the sharing the
//! real server saw.

use crate::client_run::ClientFigures;
use crate::client_side::{ClientRequest, TimedOut};
use crate::client_timeout::{ClientTimeout, AIOHTTP_DEFAULT_TOTAL_S};
use crate::whole_number::value_i64;
use crate::workload::WorkloadItem;
use llm_emu_core::Nanos;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde_json::Value;
use std::sync::Arc;
use thiserror::Error;

pub mod lengths;
pub mod timers;

pub use lengths::{lengths_from_json, LengthDistribution, Lengths, Sampler};
pub use timers::{constant_send_times, poisson_send_times, LoadKind, LoadStage};

#[derive(Debug, Error)]
pub enum InferencePerfError {
    /// A setting the generator does not reproduce (named), so a replay would be wrong.
    #[error("{source_name}: `{key}` = {value}: not modelled ({why})")]
    NotModelled {
        source_name: String,
        key: String,
        value: String,
        why: String,
    },
    /// The prompts the settings ask for hold more token ids than are generated.
    #[error(
        "the run's settings ask for {prompts} prompts of up to {per_prompt} tokens each (cut at \
         max_model_len + 1: a longer prompt is refused as the server refuses it); more than the \
         {max} token ids generated at most"
    )]
    TooLarge {
        prompts: usize,
        per_prompt: usize,
        max: usize,
    },
    /// A setting missing or of the wrong type.
    #[error("{source_name}: `{key}`: {msg}")]
    Bad {
        source_name: String,
        key: String,
        msg: String,
    },
}

/// `data.shared_prefix` as the run used it.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedPrefix {
    pub num_groups: usize,
    pub num_prompts_per_group: usize,
    /// Tokens of a group's system prompt (the shared prefix), drawn once per group.
    pub system_prompt_len: Lengths,
    /// Tokens of a prompt's own question, drawn per prompt.
    pub question_len: Lengths,
    /// `max_tokens` of a prompt's requests (with `ignore_eos`, the tokens each generates),
    /// drawn per prompt.
    pub output_len: Lengths,
}

/// `data.type: random` (no trace): prompt `n` of random ids of the `n`-th input length, with
/// the `n`-th output length as `max_tokens`.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomData {
    pub input: LengthDistribution,
    pub output: LengthDistribution,
}

impl RandomData {
    /// `min(input.total_count, output.total_count)`: the prompts there are
    /// (`get_request_count`). Both counts are set once the run is read (raised to the largest
    /// stage's requests + 1 where smaller), so every request of a stage has its prompt.
    pub fn count(&self) -> usize {
        let total = |d: &LengthDistribution| d.total_count.unwrap_or(0);
        total(&self.input).min(total(&self.output))
    }
}

/// The prompts a run's generator makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    SharedPrefix(SharedPrefix),
    Random(RandomData),
}

impl Data {
    /// The longest prompt the settings allow, BOS included (saturating).
    pub fn longest_prompt(&self) -> usize {
        match self {
            Data::SharedPrefix(d) => 1usize
                .saturating_add(d.system_prompt_len.longest())
                .saturating_add(d.question_len.longest()),
            Data::Random(d) => 1usize.saturating_add(d.input.longest()),
        }
    }

    /// In words, for the report's workload line.
    pub fn describe(&self) -> String {
        match self {
            Data::SharedPrefix(d) => format!(
                "{} system prompts × {} questions, prompt BOS + system {} + question {} tokens, \
                 output {} tokens",
                d.num_groups,
                d.num_prompts_per_group,
                d.system_prompt_len.describe(),
                d.question_len.describe(),
                d.output_len.describe()
            ),
            Data::Random(d) => format!(
                "{} random prompts, BOS + {} tokens, output {} tokens",
                d.count(),
                d.input.describe(),
                d.output.describe()
            ),
        }
    }
}

/// One generated prompt and the `max_tokens` its requests ask for.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub token_ids: Arc<[u32]>,
    pub output_len: u32,
}

/// The settings of an inference-perf run that shape its workload.
#[derive(Clone, Debug, PartialEq)]
pub struct InferencePerfRun {
    pub data: Data,
    /// `load.type`.
    pub load: LoadKind,
    pub stages: Vec<LoadStage>,
    /// `load.interval`: seconds between a stage's last response and the next stage's set-up.
    pub stage_interval_s: f64,
    /// The client's limit per request (`load.request_timeout`, aiohttp's 300 s when not set;
    /// `None`: no limit).
    pub request_timeout: Option<ClientTimeout>,
    /// What `load.request_timeout` held, in words (for the report).
    pub request_timeout_source: String,
    /// Differences between what was asked (`profile.yaml`) and what ran (`config.yaml`), and
    /// settings read as information only; one sentence each.
    pub notes: Vec<String>,
}

/// The most token ids generated for a run's prompts (1 GiB of them): far above the public
/// runs' (inference-sim/training: 100 prompts of at most 7,000 tokens), and a bound on what a
/// config can ask for.
pub const MAX_GENERATED_TOKENS: usize = 1 << 28;

/// The most requests one stage is replayed with (inference-perf's public runs send at most a
/// few tens of thousands).
pub const MAX_STAGE_REQUESTS: usize = 1_000_000;

/// The most prompts a shared-prefix run generates (`num_groups × num_prompts_per_group`).
pub const MAX_PROMPTS: usize = 1 << 20;

/// The longest run replayed: stages and their intervals, s (about 31 years; the emulator's
/// clock holds 584).
pub const MAX_RUN_S: f64 = 1e9;

/// A stage's set-up time before its timer starts (`start_time = perf_counter() + 1`), s.
pub const STAGE_HEAD_START_S: f64 = 1.0;

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut v = v;
    for k in path {
        v = v.get(k)?;
    }
    (!v.is_null()).then_some(v)
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl InferencePerfRun {
    /// From `config` (what ran: inference-perf's resolved `results/config.yaml`, or the profile
    /// when that is missing) and `asked` (`profile.yaml`, compared with it for notes).
    /// `source_name` names `config` in errors.
    pub fn from_config(
        config: &Value,
        source_name: &str,
        asked: Option<&Value>,
    ) -> Result<InferencePerfRun, InferencePerfError> {
        let not_modelled =
            |key: &str, value: &Value, why: &str| not_modelled(source_name, key, value, why);
        let bad = |key: &str, msg: &str| bad(source_name, key, msg);
        let mut notes = Vec::new();

        let data_type =
            get(config, &["data", "type"]).ok_or_else(|| bad("data.type", "missing"))?;
        let data = match data_type.as_str() {
            Some("shared_prefix") => {
                for key in ["input_distribution", "output_distribution", "path"] {
                    if let Some(v) = get(config, &["data", key]) {
                        return Err(not_modelled(
                            &format!("data.{key}"),
                            v,
                            "the shared_prefix generator takes only its own lengths",
                        ));
                    }
                }
                Data::SharedPrefix(shared_prefix(config, source_name, &mut notes)?)
            }
            Some("random") => Data::Random(random_data(config, source_name, &mut notes)?),
            _ => {
                return Err(not_modelled(
                    "data.type",
                    data_type,
                    "only `shared_prefix` and `random` data are regenerated",
                ))
            }
        };

        // Settings that must hold the one value modelled: (path, value when absent, the value
        // modelled, why no other is).
        let required: [(&[&str], Value, Value, &str); 3] = [
            (
                &["api", "type"],
                Value::from("completion"),
                Value::from("completion"),
                "the regenerated prompts are sent to /v1/completions",
            ),
            (
                &["api", "streaming"],
                Value::Bool(false),
                Value::Bool(true),
                "without streaming inference-perf records no token times (TTFT, ITL, TPOT)",
            ),
            (
                &["server", "ignore_eos"],
                // inference-perf's default (`ModelServerClientConfig.ignore_eos = True`).
                Value::Bool(true),
                Value::Bool(true),
                "outputs would stop at the model's end-of-sequence token, which synthetic prompts cannot predict",
            ),
        ];
        for (path, default, wanted, why) in required {
            let value = get(config, path).cloned().unwrap_or(default);
            if value != wanted {
                return Err(not_modelled(&path.join("."), &value, why));
            }
        }
        for key in ["sweep", "trace"] {
            if let Some(v) = get(config, &["load", key]) {
                return Err(not_modelled(
                    &format!("load.{key}"),
                    v,
                    "not part of the loads modelled",
                ));
            }
        }
        if let Some(v) = get(config, &["load", "circuit_breakers"]) {
            if v.as_array().is_none_or(|a| !a.is_empty()) {
                return Err(not_modelled(
                    "load.circuit_breakers",
                    v,
                    "a breaker ends a stage early at a moment the replay cannot know",
                ));
            }
        }
        // `load.request_timeout` goes to each request's aiohttp session: `ClientTimeout(total=t)`
        // when `t` is truthy, aiohttp's default session timeout otherwise (0 too, as Python
        // reads it); a total ≤ 0 starts no timer.
        let (request_timeout, request_timeout_source) =
            match get(config, &["load", "request_timeout"]) {
                None => (
                    ClientTimeout::aiohttp(AIOHTTP_DEFAULT_TOTAL_S),
                    "not set, so aiohttp's default session timeout".to_string(),
                ),
                Some(v) => match v.as_f64().filter(|x| x.is_finite()) {
                    Some(0.0) => (
                        ClientTimeout::aiohttp(AIOHTTP_DEFAULT_TOTAL_S),
                        "0, so aiohttp's default session timeout".to_string(),
                    ),
                    Some(x) => (ClientTimeout::aiohttp(x), show(v)),
                    None => return Err(bad("load.request_timeout", "not a number")),
                },
            };
        let stage_interval_s = match get(config, &["load", "interval"]) {
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| bad("load.interval", "not a number ≥ 0"))?,
            None => 1.0,
        };
        let stages_v = get(config, &["load", "stages"])
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad("load.stages", "missing or empty"))?;
        let load =
            match get(config, &["load", "type"]).map(|v| (v, v.as_str())) {
                None | Some((_, Some("constant"))) => LoadKind::Constant,
                Some((_, Some("poisson"))) => LoadKind::Poisson,
                Some((_, Some("concurrent"))) => LoadKind::Concurrent,
                Some((v, _)) => return Err(not_modelled(
                    "load.type",
                    v,
                    "only the `constant`, `poisson` and `concurrent` load timers are regenerated",
                )),
            };
        let mut stages = Vec::new();
        for (i, s) in stages_v.iter().enumerate() {
            let num = |k: &str| {
                get(s, &[k])
                    .and_then(Value::as_f64)
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| {
                        bad(
                            &format!("load.stages[{i}].{k}"),
                            "missing or not a number > 0",
                        )
                    })
            };
            let whole = |k: &str| {
                get(s, &[k])
                    .and_then(value_i64)
                    .filter(|&x| x > 0)
                    .map(|x| x as u64)
                    .ok_or_else(|| {
                        bad(
                            &format!("load.stages[{i}].{k}"),
                            "missing or not a whole number > 0",
                        )
                    })
            };
            let st = if load == LoadKind::Concurrent {
                // `main.py` runs a concurrent stage as `num_requests` requests over one second.
                LoadStage {
                    rate: whole("num_requests")? as f64,
                    duration_s: 1.0,
                    concurrency: Some(whole("concurrency_level")? as usize),
                }
            } else {
                for k in ["num_requests", "concurrency_level"] {
                    if let Some(c) = get(s, &[k]) {
                        return Err(bad(
                            &format!("load.stages[{i}].{k}"),
                            &format!(
                                "{} is set on a `{}` stage (inference-perf refuses it)",
                                show(c),
                                load.name()
                            ),
                        ));
                    }
                }
                let duration = num("duration")?;
                // `duration: int` in inference-perf's stage model.
                if duration.fract() != 0.0 {
                    return Err(bad(
                        &format!("load.stages[{i}].duration"),
                        "not a whole number of seconds",
                    ));
                }
                LoadStage {
                    rate: num("rate")?,
                    duration_s: duration,
                    concurrency: None,
                }
            };
            if st.rate * st.duration_s > MAX_STAGE_REQUESTS as f64 {
                return Err(bad(
                    &format!("load.stages[{i}]"),
                    &format!(
                        "{} requests: more than one stage is replayed with (at most {})",
                        st.rate * st.duration_s,
                        MAX_STAGE_REQUESTS
                    ),
                ));
            }
            if st.num_requests() == 0 {
                return Err(bad(
                    &format!("load.stages[{i}]"),
                    "rate × duration is under one request",
                ));
            }
            stages.push(st);
        }
        let total_s: f64 = stages
            .iter()
            .map(|st| st.duration_s + stage_interval_s)
            .sum();
        if total_s > MAX_RUN_S {
            return Err(bad(
                "load.stages",
                &format!(
                    "{total_s} s of stages and intervals: longer than a run is replayed over \
                     (at most {MAX_RUN_S} s)"
                ),
            ));
        }
        let most = stages
            .iter()
            .map(LoadStage::num_requests)
            .max()
            .unwrap_or(0);
        let mut data = data;
        if let Data::Random(d) = &mut data {
            // `main.py`: each distribution's `total_count` is raised to the largest stage's
            // requests + 1 when it is unset or smaller.
            let want = most + 1;
            let mut raised = Vec::new();
            for (name, dist) in [("input", &mut d.input), ("output", &mut d.output)] {
                if dist.total_count.is_none_or(|c| c < want) {
                    raised.push(format!(
                        "data.{name}_distribution.total_count {} → {want}",
                        dist.total_count
                            .map_or("unset".to_string(), |c| c.to_string())
                    ));
                    dist.total_count = Some(want);
                }
            }
            if !raised.is_empty() {
                notes.push(format!(
                    "config: {} (inference-perf's main.py raises it to the largest stage's \
                     requests + 1)",
                    raised.join(", ")
                ));
            }
        }
        // Each of `num_workers` processes keeps at most `worker_max_concurrency` requests in
        // flight; the replay sends every request at its time.
        let workers = match get(config, &["load", "num_workers"]) {
            None => None,
            Some(v) => {
                Some(value_i64(v).ok_or_else(|| bad("load.num_workers", "not a whole number"))?)
            }
        };
        let per_worker = match get(config, &["load", "worker_max_concurrency"]) {
            None => 100,
            Some(v) => value_i64(v)
                .filter(|&x| x >= 0)
                .ok_or_else(|| bad("load.worker_max_concurrency", "not a whole number ≥ 0"))?
                as u64,
        };
        match workers {
            // `num_workers > 0` runs worker processes; otherwise one process runs the stage.
            Some(w) if w <= 0 => {
                return Err(not_modelled(
                    "load.num_workers",
                    &Value::from(w),
                    "the single-process load generator cuts a stage at its duration",
                ))
            }
            // A concurrent stage sets the workers' limits to its own level.
            Some(_) if load == LoadKind::Concurrent => {}
            Some(w) => {
                let limit = (w as u64).saturating_mul(per_worker);
                if limit < most as u64 {
                    return Err(not_modelled(
                        "load.num_workers × load.worker_max_concurrency",
                        &Value::from(limit),
                        "a client concurrency limit below a stage's requests",
                    ));
                }
            }
            None => notes.push(
                "config: load.num_workers not recorded; every request is sent at its time \
                 (inference-perf's default of one worker per CPU, 100 requests each, is no limit \
                 at these rates)"
                    .to_string(),
            ),
        }

        if let Some(asked) = asked {
            notes.extend(differences(asked, &data, &stages));
        }
        Ok(InferencePerfRun {
            data,
            load,
            stages,
            stage_interval_s,
            request_timeout,
            request_timeout_source,
            notes,
        })
    }

    /// The prompts ([`prompts`]).
    ///
    /// A prompt's ids are cut at `max_prompt_len` (pass `max_model_len + 1`: a longer prompt is
    /// refused by the engine, as the server refuses it, whatever its length). A random run
    /// makes only the prompts its largest stage sends. Refused when the ids would number more
    /// than [`MAX_GENERATED_TOKENS`].
    pub fn prompts(
        &self,
        seed: u64,
        vocab_size: u32,
        max_prompt_len: usize,
    ) -> Result<Vec<Prompt>, InferencePerfError> {
        let count = match &self.data {
            Data::SharedPrefix(d) => d.num_groups * d.num_prompts_per_group,
            Data::Random(_) => self
                .stages
                .iter()
                .map(LoadStage::num_requests)
                .max()
                .unwrap_or(0),
        };
        let per_prompt = self.data.longest_prompt().min(max_prompt_len);
        if count.saturating_mul(per_prompt) > MAX_GENERATED_TOKENS {
            return Err(InferencePerfError::TooLarge {
                prompts: count,
                per_prompt,
                max: MAX_GENERATED_TOKENS,
            });
        }
        Ok(prompts(&self.data, seed, vocab_size, count, max_prompt_len))
    }

    /// Stage `stage`'s requests, send times from `start` (the stage's set-up: the timer starts
    /// [`STAGE_HEAD_START_S`] later). Request `n` gets prompt `n mod len` (a random run's
    /// stages never send more requests than it has prompts: checked when read).
    pub fn stage_workload(
        &self,
        stage: usize,
        start: Nanos,
        prompts: &[Prompt],
        seed: u64,
    ) -> Vec<WorkloadItem> {
        let st = self.stages[stage];
        let times = st.send_times(self.load, seed ^ (0x5747_4147_4500 + stage as u64));
        times
            .into_iter()
            .enumerate()
            .map(|(n, t)| {
                let p = &prompts[n % prompts.len()];
                WorkloadItem {
                    request_id: format!("stage{stage}-{n}"),
                    arrival: start + Nanos::from_secs_f64(STAGE_HEAD_START_S + t),
                    prompt_token_ids: p.token_ids.clone().into(),
                    output_len: p.output_len,
                    priority: 0,
                    cache_salt: None,
                    tenant: None,
                }
            })
            .collect()
    }
}

fn not_modelled(source_name: &str, key: &str, value: &Value, why: &str) -> InferencePerfError {
    InferencePerfError::NotModelled {
        source_name: source_name.to_string(),
        key: key.to_string(),
        value: show(value),
        why: why.to_string(),
    }
}

fn bad(source_name: &str, key: &str, msg: &str) -> InferencePerfError {
    InferencePerfError::Bad {
        source_name: source_name.to_string(),
        key: key.to_string(),
        msg: msg.to_string(),
    }
}

/// The keys of inference-perf's `SharedPrefix` (with the aliases of `num_groups` and
/// `num_prompts_per_group`).
const SHARED_PREFIX_KEYS: [&str; 12] = [
    "num_groups",
    "num_unique_system_prompts",
    "num_prompts_per_group",
    "num_users_per_system_prompt",
    "system_prompt_len",
    "question_len",
    "output_len",
    "seed",
    "question_distribution",
    "output_distribution",
    "enable_multi_turn_chat",
    "multimodal",
];

/// The note that lengths drawn from a distribution are drawn again, not replayed.
fn drawn_again_note(keys: &[&str]) -> String {
    format!(
        "config: {} drawn from a distribution: drawn again from the same distribution with the \
         emulator's generator (inference-perf's numpy draws are not reproduced), so lengths \
         agree in distribution, not request by request",
        keys.join(", ")
    )
}

/// `data.shared_prefix`: its counts, and its lengths (whole numbers, inline distributions, or
/// the legacy `question_distribution` / `output_distribution`).
fn shared_prefix(
    config: &Value,
    source_name: &str,
    notes: &mut Vec<String>,
) -> Result<SharedPrefix, InferencePerfError> {
    let sp = get(config, &["data", "shared_prefix"])
        .ok_or_else(|| bad(source_name, "data.shared_prefix", "missing"))?;
    let Some(keys) = sp.as_object() else {
        return Err(bad(source_name, "data.shared_prefix", "not a mapping"));
    };
    // pydantic's `extra="forbid"`: a misspelt key is an error in inference-perf.
    if let Some(k) = keys
        .keys()
        .find(|k| !SHARED_PREFIX_KEYS.contains(&k.as_str()))
    {
        return Err(bad(
            source_name,
            &format!("data.shared_prefix.{k}"),
            &format!(
                "not a key of shared_prefix ({})",
                SHARED_PREFIX_KEYS.join(", ")
            ),
        ));
    }
    // inference-perf's field names, with the aliases later versions accept.
    let count = |names: &[&str], default: usize| -> Result<usize, InferencePerfError> {
        for n in names {
            if let Some(v) = get(sp, &[n]) {
                return value_i64(v)
                    .filter(|&x| x >= 0)
                    .map(|x| x as usize)
                    .ok_or_else(|| {
                        bad(
                            source_name,
                            &format!("data.shared_prefix.{n}"),
                            "not a whole number ≥ 0",
                        )
                    });
            }
        }
        Ok(default)
    };
    let sampler = Sampler::SampleFromDistribution;
    let mut drawn = Vec::new();
    // A length key, or the legacy distribution that stands in for a whole number.
    let mut length = |key: &str, legacy: Option<&str>, default: usize| {
        let path = format!("data.shared_prefix.{key}");
        let mut l = match get(sp, &[key]) {
            None => Lengths::Fixed(default),
            Some(v) => lengths_from_json(v).map_err(|m| bad(source_name, &path, &m))?,
        };
        if let Some(legacy) = legacy.and_then(|k| get(sp, &[k]).map(|v| (k, v))) {
            let (k, v) = legacy;
            let lpath = format!("data.shared_prefix.{k}");
            if matches!(l, Lengths::Drawn(_)) {
                return Err(bad(
                    source_name,
                    &lpath,
                    &format!("set beside a distribution in `{key}` (inference-perf refuses both)"),
                ));
            }
            l = Lengths::Drawn(
                LengthDistribution::from_json(v).map_err(|m| bad(source_name, &lpath, &m))?,
            );
        }
        if let Lengths::Drawn(d) = &l {
            d.check(sampler).map_err(|m| bad(source_name, &path, &m))?;
            drawn.push(key.to_string());
        }
        Ok(l)
    };
    // inference-perf's defaults (10 groups of 10 prompts, 100/50/50 tokens).
    let system_prompt_len = length("system_prompt_len", None, 100)?;
    let question_len = length("question_len", Some("question_distribution"), 50)?;
    let output_len = length("output_len", Some("output_distribution"), 50)?;
    let data = SharedPrefix {
        num_groups: count(&["num_groups", "num_unique_system_prompts"], 10)?,
        num_prompts_per_group: count(
            &["num_prompts_per_group", "num_users_per_system_prompt"],
            10,
        )?,
        system_prompt_len,
        question_len,
        output_len,
    };
    if data
        .num_groups
        .checked_mul(data.num_prompts_per_group)
        .is_none_or(|n| n > MAX_PROMPTS)
    {
        return Err(bad(
            source_name,
            "data.shared_prefix",
            &format!(
                "{} groups × {} prompts: more prompts than are generated (at most {})",
                data.num_groups, data.num_prompts_per_group, MAX_PROMPTS
            ),
        ));
    }
    if data.num_groups == 0 || data.num_prompts_per_group == 0 {
        return Err(bad(
            source_name,
            "data.shared_prefix",
            "no prompts (num_groups or num_prompts_per_group is 0)",
        ));
    }
    // vLLM refuses `max_tokens` 0.
    if data.output_len.longest() < 1 {
        return Err(bad(
            source_name,
            "data.shared_prefix.output_len",
            "at most 0 output tokens",
        ));
    }
    if let Some(v) = get(sp, &["enable_multi_turn_chat"]) {
        if v.as_bool() != Some(false) {
            return Err(not_modelled(
                source_name,
                "data.shared_prefix.enable_multi_turn_chat",
                v,
                "multi-turn sessions (each user's history grown turn by turn) are not regenerated",
            ));
        }
    }
    if let Some(v) = get(sp, &["multimodal"]).or_else(|| get(config, &["data", "multimodal"])) {
        return Err(not_modelled(
            source_name,
            "data.multimodal",
            v,
            "synthetic images, video and audio are not regenerated",
        ));
    }
    if !drawn.is_empty() {
        let keys: Vec<&str> = drawn.iter().map(String::as_str).collect();
        notes.push(drawn_again_note(&keys));
    }
    Ok(data)
}

/// `data.type: random` without a trace: `input_distribution` and `output_distribution` (their
/// `total_count`s are settled with the stages).
fn random_data(
    config: &Value,
    source_name: &str,
    notes: &mut Vec<String>,
) -> Result<RandomData, InferencePerfError> {
    if let Some(v) = get(config, &["data", "trace"]) {
        return Err(not_modelled(
            source_name,
            "data.trace",
            v,
            "prompt lengths read from a trace file are not regenerated",
        ));
    }
    if let Some(v) = get(config, &["data", "use_chat_template"]) {
        if v.as_bool() != Some(false) {
            return Err(not_modelled(
                source_name,
                "data.use_chat_template",
                v,
                "prompts wrapped in the model's chat template are not regenerated",
            ));
        }
    }
    if let Some(v) = get(config, &["data", "multimodal"]) {
        return Err(not_modelled(
            source_name,
            "data.multimodal",
            v,
            "synthetic images, video and audio are not regenerated",
        ));
    }
    let dist = |key: &str| -> Result<LengthDistribution, InferencePerfError> {
        let path = format!("data.{key}");
        let v = get(config, &["data", key]).ok_or_else(|| {
            bad(
                source_name,
                &path,
                "missing (the random generator needs input and output distributions)",
            )
        })?;
        let d = LengthDistribution::from_json(v).map_err(|m| bad(source_name, &path, &m))?;
        d.check(Sampler::GenerateDistribution)
            .map_err(|m| bad(source_name, &path, &m))?;
        Ok(d)
    };
    let input = dist("input_distribution")?;
    let output = dist("output_distribution")?;
    if output.longest() < 1 {
        return Err(bad(
            source_name,
            "data.output_distribution",
            "at most 0 output tokens",
        ));
    }
    notes.push(drawn_again_note(&[
        "input_distribution",
        "output_distribution",
    ]));
    // The counts are settled once the stages are read (`main.py` raises them to the stages).
    Ok(RandomData { input, output })
}

/// What `profile.yaml` asked for that differs from what ran, one note each.
fn differences(asked: &Value, ran: &Data, stages: &[LoadStage]) -> Vec<String> {
    let mut out = Vec::new();
    let mut unread = Vec::new();
    if let (Some(sp), Data::SharedPrefix(ran)) = (get(asked, &["data", "shared_prefix"]), ran) {
        for (keys, ran_v) in [
            (
                &["num_unique_system_prompts", "num_groups"][..],
                ran.num_groups,
            ),
            (
                &["num_users_per_system_prompt", "num_prompts_per_group"][..],
                ran.num_prompts_per_group,
            ),
        ] {
            for k in keys {
                if let Some(v) = get(sp, &[k]) {
                    if v.as_u64() != Some(ran_v as u64) {
                        unread.push(format!("{k} {} (ran with {ran_v})", show(v)));
                    }
                }
            }
        }
        for (k, ran_v) in [
            ("system_prompt_len", &ran.system_prompt_len),
            ("question_len", &ran.question_len),
            ("output_len", &ran.output_len),
        ] {
            if let Some(v) = get(sp, &[k]) {
                if lengths_from_json(v).ok().as_ref() != Some(ran_v) {
                    unread.push(format!("{k} {} (ran with {})", show(v), ran_v.describe()));
                }
            }
        }
        if let Some(v) = get(sp, &["enable_multi_turn_chat"]) {
            if v.as_bool() == Some(true) {
                unread.push("enable_multi_turn_chat true (ran single-turn)".to_string());
            }
        }
    }
    if !unread.is_empty() {
        out.push(format!(
            "profile.yaml asks for {}, which the inference-perf that ran did not read (its \
             resolved config is what the workload is regenerated from)",
            unread.join(", ")
        ));
    }
    if let Some(a) = get(asked, &["load", "stages"]).and_then(Value::as_array) {
        let same = a.len() == stages.len()
            && a.iter().zip(stages).all(|(s, r)| match r.concurrency {
                Some(c) => {
                    get(s, &["num_requests"]).and_then(Value::as_f64) == Some(r.rate)
                        && get(s, &["concurrency_level"]).and_then(Value::as_u64) == Some(c as u64)
                }
                None => {
                    get(s, &["rate"]).and_then(Value::as_f64) == Some(r.rate)
                        && get(s, &["duration"]).and_then(Value::as_f64) == Some(r.duration_s)
                }
            });
        if !same {
            out.push("profile.yaml's load stages differ from the resolved config's; the resolved ones are used".into());
        }
    }
    out
}

/// The BOS token every prompt starts with (vLLM tokenizes a completions prompt with the
/// tokenizer's special tokens; the Llama-2, CodeLlama and Mixtral tokenizers add BOS = 1).
pub const BOS: u32 = 1;

/// The run's prompts with their output lengths; token ids drawn in `[BOS + 1, vocab_size)`.
///
/// - shared prefix: `num_groups × num_prompts_per_group` prompts (BOS, the group's system
///   prompt, the prompt's question), in a seeded shuffled order;
/// - random: prompt `n` is BOS and the `n`-th input length's ids, in order, the first `count`.
///
/// Ids are cut at `max_prompt_len` (BOS included).
///
/// Lengths drawn from a distribution come from their own generator, so that fixed lengths
/// give the same ids whatever else is drawn.
pub fn prompts(
    d: &Data,
    seed: u64,
    vocab_size: u32,
    count: usize,
    max_prompt_len: usize,
) -> Vec<Prompt> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut len_rng = Pcg64Mcg::seed_from_u64(seed ^ 0x4c45_4e47_5448_5321);
    let lo = BOS + 1;
    let hi = vocab_size.max(lo + 1);
    let draw = |n: usize, rng: &mut Pcg64Mcg| -> Vec<u32> {
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    };
    let with_bos = |parts: &[&[u32]]| -> Arc<[u32]> {
        let mut p = Vec::with_capacity(1 + parts.iter().map(|x| x.len()).sum::<usize>());
        p.push(BOS);
        for x in parts {
            p.extend_from_slice(x);
        }
        p.truncate(max_prompt_len.max(1));
        p.into()
    };
    // A part is drawn no longer than the prompt can hold.
    let cap = max_prompt_len.saturating_sub(1);
    let clamp_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    match d {
        Data::SharedPrefix(d) => {
            let sampler = Sampler::SampleFromDistribution;
            let n = d.num_prompts_per_group;
            let system_lens = d
                .system_prompt_len
                .draw(d.num_groups, sampler, &mut len_rng);
            // Per group: its questions' lengths, then its outputs' (inference-perf's order).
            let mut per_group = Vec::with_capacity(d.num_groups);
            for _ in 0..d.num_groups {
                let q = d.question_len.draw(n, sampler, &mut len_rng);
                let o = d.output_len.draw(n, sampler, &mut len_rng);
                per_group.push((q, o));
            }
            let mut out = Vec::with_capacity(d.num_groups * n);
            for (system_len, (q, o)) in system_lens.into_iter().zip(per_group) {
                let system = draw(system_len.min(cap), &mut rng);
                for (q_len, o_len) in q.into_iter().zip(o) {
                    let question = draw(q_len.min(cap - system.len()), &mut rng);
                    out.push(Prompt {
                        token_ids: with_bos(&[&system, &question]),
                        output_len: clamp_u32(o_len),
                    });
                }
            }
            // Fisher–Yates, as numpy's permutation (the order differs from inference-perf's:
            // only its being a fixed random permutation matters).
            for i in (1..out.len()).rev() {
                let j = rng.random_range(0..=i);
                out.swap(i, j);
            }
            out
        }
        Data::Random(d) => {
            let sampler = Sampler::GenerateDistribution;
            let n = count.min(d.count());
            let input = d.input.draw(n, sampler, &mut len_rng);
            let output = d.output.draw(n, sampler, &mut len_rng);
            input
                .into_iter()
                .zip(output)
                .map(|(i, o)| Prompt {
                    token_ids: with_bos(&[&draw(i.min(cap), &mut rng)]),
                    output_len: clamp_u32(o),
                })
                .collect()
        }
    }
}

/// inference-perf's client-side figures of emulated streamed completions: TTFT and request
/// latency as they are, TPOT = (last line − first line)/(lines − 1) with 2(N + 1) lines for N
/// tokens, ITL = the emulator's gaps between tokens and N + 2 zero gaps per request (the blank
/// line of each event and the `[DONE]` event, which follow their token at once). Requests
/// of fewer than one token are left out, as inference-perf leaves out streams of one line.
pub fn ip_figures(reqs: &[ClientRequest], token_gaps_ms: &[f64]) -> ClientFigures {
    let mut f = ClientFigures {
        itl: token_gaps_ms.to_vec(),
        ..Default::default()
    };
    for r in reqs.iter().filter(|r| r.output_len > 0) {
        let n = r.output_len;
        f.ttft.push(r.ttft_ms);
        f.e2el.push(r.e2el_ms);
        f.tpot.push((r.e2el_ms - r.ttft_ms) / (2 * n + 1) as f64);
        f.itl.extend(std::iter::repeat_n(0.0, n + 2));
    }
    f
}

/// Requests per second as inference-perf reports it (`summarize_requests`): successes / (last
/// end − first send), over every request of the stage, the failed ones included.
pub fn requests_per_s(reqs: &[ClientRequest], failed: &[TimedOut]) -> Option<f64> {
    let sends = reqs
        .iter()
        .map(|r| r.send_s)
        .chain(failed.iter().map(|f| f.send_s));
    let ends = reqs
        .iter()
        .map(|r| r.send_s + r.e2el_ms / 1e3)
        .chain(failed.iter().map(|f| f.end_s));
    let first = sends.min_by(f64::total_cmp)?;
    let last = ends.max_by(f64::total_cmp)?;
    (last > first).then(|| reqs.len() as f64 / (last - first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Value {
        json!({
            "api": {"type": "completion", "streaming": true, "headers": null},
            "data": {"type": "shared_prefix", "path": null, "input_distribution": null,
                "shared_prefix": {"num_groups": 3, "num_prompts_per_group": 4,
                    "system_prompt_len": 20, "question_len": 7, "output_len": 9}},
            "load": {"type": "constant", "interval": 1.0,
                "stages": [{"rate": 5.0, "duration": 10}, {"rate": 2.5, "duration": 4}],
                "sweep": null, "num_workers": 4, "worker_max_concurrency": 100,
                "circuit_breakers": [], "request_timeout": null},
            "server": {"type": "vllm", "ignore_eos": true},
        })
    }

    fn run() -> InferencePerfRun {
        InferencePerfRun::from_config(&config(), "config.yaml", None).unwrap()
    }

    #[test]
    fn prompts_share_their_group_prefix_token_for_token() {
        let r = run();
        let ps: Vec<Arc<[u32]>> = r
            .prompts(7, 32000, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|p| p.token_ids)
            .collect();
        assert_eq!(ps.len(), 12);
        assert!(ps.iter().all(|p| p.len() == 1 + 20 + 7 && p[0] == BOS));
        // Group prompts by their system prompt: 3 groups of 4.
        let mut groups: std::collections::BTreeMap<Vec<u32>, usize> = Default::default();
        for p in &ps {
            *groups.entry(p[..21].to_vec()).or_default() += 1;
        }
        assert_eq!(groups.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
        // Questions are each their own.
        let qs: std::collections::BTreeSet<Vec<u32>> =
            ps.iter().map(|p| p[21..].to_vec()).collect();
        assert_eq!(qs.len(), 12);
        // Shuffled: the first four are not one group in order.
        assert!(ps[..4].iter().any(|p| p[..21] != ps[0][..21]));
        let again: Vec<Arc<[u32]>> = r
            .prompts(7, 32000, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|p| p.token_ids)
            .collect();
        assert_eq!(ps, again, "seeded");
        assert!(ps.iter().flat_map(|p| p.iter()).all(|&t| t < 32000));
    }

    #[test]
    fn stages_restart_the_prompt_cycle() {
        let r = run();
        let ps = r.prompts(1, 32000, usize::MAX).unwrap();
        let s0 = r.stage_workload(0, Nanos::ZERO, &ps, 1);
        let s1 = r.stage_workload(1, Nanos::from_millis(100_000), &ps, 1);
        assert_eq!((s0.len(), s1.len()), (50, 10));
        // Request n sends prompt n mod 12, in both stages.
        assert_eq!(s0[13].prompt_token_ids, ps[1].token_ids);
        assert_eq!(s1[0].prompt_token_ids, ps[0].token_ids);
        assert!(s0.iter().all(|w| w.output_len == 9));
        // The timer starts 1 s after the stage's set-up; the last request at its end.
        assert!(s0[0].arrival > Nanos::from_millis(1_000));
        assert_eq!(s0[49].arrival, Nanos::from_millis(11_000));
        assert_eq!(s1[9].arrival, Nanos::from_millis(105_000));
    }

    #[test]
    fn inference_perf_line_figures() {
        let req = |ttft: f64, e2el: f64, n: usize| ClientRequest {
            request_id: "r".into(),
            send_s: 0.0,
            prompt_len: 10,
            output_len: n,
            ttft_ms: ttft,
            e2el_ms: e2el,
        };
        // 3 tokens 10 ms apart: 8 lines, TPOT = 20 ms / 7; gaps 10, 10 and five zeros.
        let f = ip_figures(&[req(5.0, 25.0, 3)], &[10.0, 10.0]);
        assert!((f.tpot[0] - 20.0 / 7.0).abs() < 1e-12);
        assert_eq!(f.itl.len(), 7);
        assert_eq!(f.itl.iter().filter(|g| **g == 0.0).count(), 5);
        let s = f.stats();
        assert!(
            (s["itl_mean"] - 20.0 / 7.0).abs() < 1e-12,
            "mean ITL = TPOT for one request"
        );
        assert_eq!(s["e2el_mean"], 25.0);
        let mut r2 = req(5.0, 25.0, 3);
        r2.send_s = 1.0;
        // Two requests: first send 0, last end 1.025 s.
        let rps = requests_per_s(&[req(5.0, 25.0, 3), r2.clone()], &[]).unwrap();
        assert!((rps - 2.0 / 1.025).abs() < 1e-12);
        // A failure sent first and ending last widens the span; it is not a success.
        let failed = TimedOut {
            request_id: "f".into(),
            send_s: -1.0,
            end_s: 300.0,
        };
        let rps = requests_per_s(&[req(5.0, 25.0, 3), r2], &[failed]).unwrap();
        assert!((rps - 2.0 / 301.0).abs() < 1e-12);
    }

    #[test]
    fn request_timeout_is_aiohttps() {
        let timeout = |patch: &dyn Fn(&mut Value)| {
            let mut c = config();
            patch(&mut c);
            InferencePerfRun::from_config(&c, "cfg.yaml", None).map(|r| r.request_timeout)
        };
        let default = ClientTimeout::aiohttp(300.0);
        assert!(default.is_some());
        assert_eq!(timeout(&|_| {}).unwrap(), default, "null: aiohttp's 300 s");
        assert_eq!(
            timeout(&|c| {
                c["load"].as_object_mut().unwrap().remove("request_timeout");
            })
            .unwrap(),
            default
        );
        assert_eq!(
            timeout(&|c| c["load"]["request_timeout"] = json!(0)).unwrap(),
            default,
            "0 is falsy in Python: aiohttp's default"
        );
        assert_eq!(
            timeout(&|c| c["load"]["request_timeout"] = json!(30.5)).unwrap(),
            ClientTimeout::aiohttp(30.5)
        );
        assert_eq!(
            timeout(&|c| c["load"]["request_timeout"] = json!(-1)).unwrap(),
            None,
            "a total ≤ 0 starts no timer"
        );
        let e = timeout(&|c| c["load"]["request_timeout"] = json!("soon")).unwrap_err();
        assert!(e.to_string().contains("load.request_timeout"), "{e}");
    }

    #[test]
    fn unmodelled_settings_are_named() {
        let err = |patch: &dyn Fn(&mut Value)| {
            let mut c = config();
            patch(&mut c);
            InferencePerfRun::from_config(&c, "cfg.yaml", None)
                .err()
                .unwrap()
                .to_string()
        };
        let e = err(&|c| c["data"]["type"] = json!("synthetic"));
        assert!(
            e.contains("data.type") && e.contains("synthetic") && e.contains("cfg.yaml"),
            "{e}"
        );
        let e = err(&|c| c["data"]["shared_prefix"]["enable_multi_turn_chat"] = json!(true));
        assert!(e.contains("enable_multi_turn_chat"), "{e}");
        let e = err(&|c| c["load"]["type"] = json!("trace_replay"));
        assert!(e.contains("load.type"), "{e}");
        let e = err(&|c| c["server"]["ignore_eos"] = json!(false));
        assert!(e.contains("ignore_eos"), "{e}");
        let e = err(&|c| c["api"]["streaming"] = json!(false));
        assert!(e.contains("api.streaming") && e.contains("false"), "{e}");
        let e = err(&|c| c["api"]["type"] = json!("chat"));
        assert!(e.contains("api.type") && e.contains("chat"), "{e}");
        let e = err(&|c| c["api"]["streaming"] = Value::Null);
        assert!(
            e.contains("api.streaming"),
            "absent means not streamed: {e}"
        );
        let e = err(&|c| c["load"]["stages"] = json!([{"rate": 0.1, "duration": 5}]));
        assert!(e.contains("under one request"), "{e}");
        let e = err(&|c| c["load"]["num_workers"] = json!(0));
        assert!(e.contains("num_workers"), "{e}");
        let e = err(&|c| c["load"]["num_workers"] = json!(-3));
        assert!(
            e.contains("num_workers") && e.contains("single-process"),
            "{e}"
        );
        let e = err(&|c| c["load"]["num_workers"] = json!("many"));
        assert!(e.contains("load.num_workers"), "{e}");
        let e = err(&|c| {
            c["load"]["num_workers"] = json!(1u64 << 32);
            c["load"]["worker_max_concurrency"] = json!(1u64 << 32);
            c["load"]["stages"] = json!([{"rate": 1e6, "duration": 2}]);
        });
        assert!(e.contains("more than one stage"), "{e}");
        let e = err(&|c| c["load"]["stages"][0]["duration"] = json!(2.5));
        assert!(e.contains("duration") && e.contains("whole"), "{e}");
        let e = err(&|c| c["load"]["stages"] = json!([{"rate": 1e-8, "duration": 2e11 as u64}]));
        assert!(e.contains("longer than a run"), "{e}");
        let e = err(&|c| c["data"]["shared_prefix"]["question_lenght"] = json!(300));
        assert!(
            e.contains("question_lenght") && e.contains("not a key"),
            "{e}"
        );
        let e = err(&|c| c["data"]["shared_prefix"] = json!(5));
        assert!(e.contains("not a mapping"), "{e}");
        let e = err(&|c| {
            c["data"]["shared_prefix"]["output_len"] = json!({"type": "fixed", "mean": 0})
        });
        assert!(
            e.contains("output_len") && e.contains("0 output tokens"),
            "{e}"
        );
        // inference-perf's default of `ignore_eos` is true; whole floats are whole numbers.
        let r = from(&|c| {
            c["server"].as_object_mut().unwrap().remove("ignore_eos");
            c["data"]["shared_prefix"]["num_groups"] = json!(2.0);
        })
        .unwrap();
        let Data::SharedPrefix(d) = &r.data else {
            panic!("shared prefix")
        };
        assert_eq!(d.num_groups, 2);
    }

    fn from(patch: &dyn Fn(&mut Value)) -> Result<InferencePerfRun, InferencePerfError> {
        let mut c = config();
        patch(&mut c);
        InferencePerfRun::from_config(&c, "cfg.yaml", None)
    }

    #[test]
    fn shared_prefix_lengths_drawn_per_group_and_per_prompt() {
        let r = from(&|c| {
            let sp = &mut c["data"]["shared_prefix"];
            sp["num_groups"] = json!(6);
            sp["num_prompts_per_group"] = json!(50);
            sp["system_prompt_len"] =
                json!({"type": "uniform", "min": 30, "max": 60, "mean": 45, "std_dev": 0});
            sp["question_len"] = json!({"mean": 20, "std_dev": 5, "min": 1, "max": 40});
            sp["output_len"] = json!({"type": "lognormal", "mean": 30, "std_dev": 10,
                "min": 1, "max": 200});
        })
        .unwrap();
        assert!(
            r.notes.iter().any(
                |n| n.contains("system_prompt_len, question_len, output_len")
                    && n.contains("not request by request")
            ),
            "{:?}",
            r.notes
        );
        let ps = r.prompts(3, 32000, usize::MAX).unwrap();
        assert_eq!(ps.len(), 300);
        // Prompts of one group share its system prompt token for token; the groups' system
        // prompts differ in length, each within [30, 60].
        let mut systems: std::collections::BTreeMap<u32, (usize, usize)> = Default::default();
        for p in &ps {
            // The first system token names the group (6 draws from 32k ids: distinct here).
            let e = systems.entry(p.token_ids[1]).or_default();
            e.0 += 1;
            e.1 = e.1.max(p.token_ids.len());
        }
        assert_eq!(systems.len(), 6);
        assert!(systems.values().all(|&(n, _)| n == 50));
        let outs: std::collections::BTreeSet<u32> = ps.iter().map(|p| p.output_len).collect();
        assert!(outs.len() > 20 && outs.iter().all(|&o| (1..=200).contains(&o)));
        let mean_out = ps.iter().map(|p| p.output_len as f64).sum::<f64>() / 300.0;
        assert!((mean_out - 30.0).abs() < 3.0, "{mean_out}");
        // The stage's requests carry their prompt's output length.
        let w = r.stage_workload(0, Nanos::ZERO, &ps, 3);
        assert_eq!(w[7].output_len, ps[7].output_len);
        assert_eq!(w[7].prompt_token_ids, ps[7].token_ids);
        // Fixed lengths draw nothing from the length generator: the ids are those of the
        // fixed-length run.
        let fixed = from(&|c| {
            let sp = &mut c["data"]["shared_prefix"];
            sp["num_groups"] = json!(6);
            sp["num_prompts_per_group"] = json!(50);
            sp["system_prompt_len"] = json!(45);
            sp["question_len"] = json!({"type": "fixed", "mean": 20});
        })
        .unwrap();
        assert!(fixed
            .prompts(3, 32000, usize::MAX)
            .unwrap()
            .iter()
            .all(|p| p.token_ids.len() == 66));
    }

    #[test]
    fn legacy_distributions_stand_in_for_whole_numbers() {
        let r = from(&|c| {
            c["data"]["shared_prefix"]["question_distribution"] =
                json!({"mean": 7, "std_dev": 3, "min": 2, "max": 12});
            c["data"]["shared_prefix"]["output_distribution"] = Value::Null;
        })
        .unwrap();
        let Data::SharedPrefix(d) = &r.data else {
            panic!("shared prefix")
        };
        assert!(matches!(d.question_len, Lengths::Drawn(_)));
        assert_eq!(d.output_len, Lengths::Fixed(9));
        let e = from(&|c| {
            c["data"]["shared_prefix"]["question_len"] = json!({"mean": 7, "min": 1, "max": 9});
            c["data"]["shared_prefix"]["question_distribution"] = json!({"mean": 7});
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("question_distribution") && e.contains("both"),
            "{e}"
        );
        let e = from(&|c| c["data"]["shared_prefix"]["output_len"] = json!({"type": "zipf"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.shared_prefix.output_len") && e.contains("zipf"),
            "{e}"
        );
    }

    fn random_config(c: &mut Value) {
        c["data"] = json!({"type": "random",
            "input_distribution": {"mean": 300, "std_dev": 100, "min": 10, "max": 1000,
                "total_count": 80},
            "output_distribution": {"type": "uniform", "mean": 0, "std_dev": 0, "min": 20,
                "max": 60, "total_count": 60}});
        c["load"]["stages"] = json!([{"rate": 5.0, "duration": 10}, {"rate": 2.5, "duration": 4}]);
    }

    #[test]
    fn random_data_gives_each_request_its_own_lengths_in_order() {
        let r = from(&random_config).unwrap();
        let Data::Random(d) = &r.data else {
            panic!("random")
        };
        assert_eq!(d.count(), 60, "min of the two total_counts");
        let ps = r.prompts(4, 32000, usize::MAX).unwrap();
        assert_eq!(ps.len(), 50, "the prompts the largest stage sends");
        assert!(ps.iter().all(|p| p.token_ids[0] == BOS
            && (11..=1001).contains(&p.token_ids.len())
            && (20..60).contains(&p.output_len)));
        let lens: std::collections::BTreeSet<usize> =
            ps.iter().map(|p| p.token_ids.len()).collect();
        assert!(lens.len() > 30);
        // Request n of every stage sends prompt n.
        let w = r.stage_workload(1, Nanos::ZERO, &ps, 4);
        assert_eq!(w.len(), 10);
        assert_eq!(w[9].prompt_token_ids, ps[9].token_ids);
        assert_eq!(w[9].output_len, ps[9].output_len);
        // A stage of more requests than prompts: the counts are raised to its requests + 1,
        // as inference-perf's main.py does, and said so.
        let r = from(&|c| {
            random_config(c);
            c["load"]["stages"] = json!([{"rate": 7, "duration": 10}]);
            c["data"]["input_distribution"]["total_count"] = Value::Null;
        })
        .unwrap();
        let Data::Random(d) = &r.data else {
            panic!("random")
        };
        assert_eq!(d.count(), 71);
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("input_distribution.total_count unset → 71")
                    && n.contains("output_distribution.total_count 60 → 71")),
            "{:?}",
            r.notes
        );
        assert_eq!(r.prompts(4, 32000, usize::MAX).unwrap().len(), 70);
        // The random generator's sampler refuses what inference-perf's refuses.
        let e = from(&|c| {
            random_config(c);
            c["data"]["input_distribution"]["type"] = json!("poisson");
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("data.input_distribution"), "{e}");
        let e = from(&|c| {
            random_config(c);
            c["data"]["trace"] = json!({"file": "azure.csv"});
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("data.trace"), "{e}");
    }

    #[test]
    fn prompts_are_cut_past_the_model_length_and_bounded_in_number() {
        let r = from(&|c| c["data"]["shared_prefix"]["question_len"] = json!(5_000)).unwrap();
        // Cut at the limit given (max_model_len + 1): still refused by the engine as too long.
        let ps = r.prompts(1, 32000, 4097).unwrap();
        assert!(ps.iter().all(|p| p.token_ids.len() == 4097));
        let ps = r.prompts(1, 32000, usize::MAX).unwrap();
        assert!(ps.iter().all(|p| p.token_ids.len() == 1 + 20 + 5_000));
        // Prompts of a billion tokens each are refused before anything is drawn.
        let r =
            from(&|c| c["data"]["shared_prefix"]["system_prompt_len"] = json!(1u64 << 30)).unwrap();
        let e = r.prompts(1, 32000, usize::MAX).unwrap_err().to_string();
        assert!(e.contains("12 prompts") && e.contains("token ids"), "{e}");
        // A random run's `fixed` input length is int(mean), whatever its max says.
        let random = from(&|c| {
            random_config(c);
            c["data"]["input_distribution"] =
                json!({"type": "fixed", "mean": 1u64 << 30, "min": 0, "max": 1, "total_count": 80});
        })
        .unwrap();
        let e = random
            .prompts(1, 32000, usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(e.contains("50 prompts") && e.contains("token ids"), "{e}");
        assert_eq!(r.prompts(1, 32000, 4097).unwrap().len(), 12);
        // Group counts whose product overflows are a named error, not a crash.
        let e = from(&|c| {
            c["data"]["shared_prefix"]["num_groups"] = json!(1u64 << 40);
            c["data"]["shared_prefix"]["num_prompts_per_group"] = json!(1u64 << 40);
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("data.shared_prefix") && e.contains("more prompts"),
            "{e}"
        );
    }

    #[test]
    fn poisson_and_concurrent_loads() {
        let r = from(&|c| c["load"]["type"] = json!("poisson")).unwrap();
        assert_eq!(r.load, LoadKind::Poisson);
        let ps = r.prompts(1, 32000, usize::MAX).unwrap();
        let w = r.stage_workload(0, Nanos::ZERO, &ps, 1);
        assert_eq!(w.len(), 50);
        let times = r.stages[0].send_times(LoadKind::Poisson, 1 ^ 0x5747_4147_4500);
        assert_eq!(w[49].arrival, Nanos::from_secs_f64(1.0 + times[49]));

        let r = from(&|c| {
            c["load"]["type"] = json!("concurrent");
            c["load"]["stages"] = json!([{"num_requests": 40, "concurrency_level": 8}]);
            c["load"]["num_workers"] = json!(1);
            c["load"]["worker_max_concurrency"] = json!(1);
        })
        .unwrap();
        assert_eq!(
            r.stages,
            vec![LoadStage {
                rate: 40.0,
                duration_s: 1.0,
                concurrency: Some(8)
            }]
        );
        let w = r.stage_workload(0, Nanos::ZERO, &r.prompts(1, 32000, usize::MAX).unwrap(), 1);
        assert_eq!(w.len(), 40);
        assert_eq!(
            w[39].arrival,
            Nanos::from_secs_f64(2.0),
            "all sent within one second"
        );
        // A rate stage under the concurrent type, and a concurrency level on a constant stage,
        // are refused as inference-perf refuses them.
        let e = from(&|c| c["load"]["type"] = json!("concurrent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_requests"), "{e}");
        let e = from(&|c| c["load"]["stages"][0]["concurrency_level"] = json!(4))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("concurrency_level") && e.contains("constant"),
            "{e}"
        );
    }

    #[test]
    fn profile_asking_for_unread_fields_is_a_note() {
        let asked = json!({"data": {"type": "shared_prefix", "shared_prefix": {
            "enable_multi_turn_chat": true, "num_unique_system_prompts": 11,
            "num_users_per_system_prompt": 4, "system_prompt_len": 20, "question_len": 7,
            "output_len": 9}},
            "load": {"stages": [{"rate": 5, "duration": 10}, {"rate": 2.5, "duration": 4}]}});
        let r = InferencePerfRun::from_config(&config(), "c", Some(&asked)).unwrap();
        assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
        assert!(
            r.notes[0].contains("num_unique_system_prompts 11 (ran with 3)")
                && r.notes[0].contains("enable_multi_turn_chat"),
            "{:?}",
            r.notes
        );
    }
}
