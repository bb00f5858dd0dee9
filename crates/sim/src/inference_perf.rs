//! kubernetes-sigs/inference-perf's `shared_prefix` workload and `constant` load, regenerated,
//! and the client-side figures its report computes from a streamed completion.
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
//! `question_len` ids, so prompts of one group share their system prompt token for token and the
//! prefix cache sees exactly the sharing the real server saw.

use crate::client_run::ClientFigures;
use crate::client_side::{ClientRequest, TimedOut};
use crate::client_timeout::{ClientTimeout, AIOHTTP_DEFAULT_TOTAL_S};
use crate::workload::WorkloadItem;
use llm_emu_core::Nanos;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use rand_pcg::Pcg64Mcg;
use serde_json::Value;
use std::sync::Arc;
use thiserror::Error;

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
    /// Tokens of a group's system prompt (the shared prefix).
    pub system_prompt_len: usize,
    /// Tokens of a prompt's own question.
    pub question_len: usize,
    /// `max_tokens` of every request (with `ignore_eos`, the tokens each generates).
    pub output_len: usize,
}

/// One `constant` load stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadStage {
    /// Requests per second.
    pub rate: f64,
    /// Seconds.
    pub duration_s: f64,
}

impl LoadStage {
    /// `int(rate * duration)`, as `run_stage` counts them.
    pub fn num_requests(&self) -> usize {
        (self.rate * self.duration_s).trunc() as usize
    }
}

/// The settings of an inference-perf run that shape its workload.
#[derive(Clone, Debug, PartialEq)]
pub struct InferencePerfRun {
    pub data: SharedPrefix,
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
        let not_modelled = |key: &str, value: &Value, why: &str| InferencePerfError::NotModelled {
            source_name: source_name.to_string(),
            key: key.to_string(),
            value: show(value),
            why: why.to_string(),
        };
        let bad = |key: &str, msg: &str| InferencePerfError::Bad {
            source_name: source_name.to_string(),
            key: key.to_string(),
            msg: msg.to_string(),
        };
        let mut notes = Vec::new();

        let data_type =
            get(config, &["data", "type"]).ok_or_else(|| bad("data.type", "missing"))?;
        if data_type.as_str() != Some("shared_prefix") {
            return Err(not_modelled(
                "data.type",
                data_type,
                "only `shared_prefix` data is regenerated",
            ));
        }
        for key in ["input_distribution", "output_distribution", "path"] {
            if let Some(v) = get(config, &["data", key]) {
                return Err(not_modelled(
                    &format!("data.{key}"),
                    v,
                    "the shared_prefix generator modelled takes only its own lengths",
                ));
            }
        }
        let sp = get(config, &["data", "shared_prefix"])
            .ok_or_else(|| bad("data.shared_prefix", "missing"))?;
        // inference-perf's field names, with the aliases later versions accept.
        let field = |names: &[&str], default: Option<usize>| -> Result<usize, InferencePerfError> {
            for n in names {
                if let Some(v) = get(sp, &[n]) {
                    return v.as_u64().map(|x| x as usize).ok_or_else(|| {
                        bad(&format!("data.shared_prefix.{n}"), "not a whole number ≥ 0")
                    });
                }
            }
            default.ok_or_else(|| bad(&format!("data.shared_prefix.{}", names[0]), "missing"))
        };
        // inference-perf's defaults (10 groups of 10 prompts, 100/50/50 tokens).
        let data = SharedPrefix {
            num_groups: field(&["num_groups", "num_unique_system_prompts"], Some(10))?,
            num_prompts_per_group: field(
                &["num_prompts_per_group", "num_users_per_system_prompt"],
                Some(10),
            )?,
            system_prompt_len: field(&["system_prompt_len"], Some(100))?,
            question_len: field(&["question_len"], Some(50))?,
            output_len: field(&["output_len"], Some(50))?,
        };
        if data.num_groups == 0 || data.num_prompts_per_group == 0 {
            return Err(bad(
                "data.shared_prefix",
                "no prompts (num_groups or num_prompts_per_group is 0)",
            ));
        }
        if data.output_len == 0 {
            return Err(bad("data.shared_prefix.output_len", "0 output tokens"));
        }
        for key in ["question_distribution", "output_distribution"] {
            if let Some(v) = get(sp, &[key]) {
                return Err(not_modelled(
                    &format!("data.shared_prefix.{key}"),
                    v,
                    "lengths drawn from a distribution are not regenerated; fixed lengths only",
                ));
            }
        }
        if let Some(v) = get(sp, &["enable_multi_turn_chat"]) {
            if v.as_bool() != Some(false) {
                return Err(not_modelled(
                    "data.shared_prefix.enable_multi_turn_chat",
                    v,
                    "multi-turn sessions (each user's history grown turn by turn) are not regenerated",
                ));
            }
        }

        // Settings that must hold the one value modelled: (path, value when absent, the value
        // modelled, why no other is).
        let required: [(&[&str], Value, Value, &str); 4] = [
            (
                &["api", "type"],
                Value::from("completion"),
                Value::from("completion"),
                "inference-perf's shared_prefix data is sent to /v1/completions",
            ),
            (
                &["api", "streaming"],
                Value::Bool(false),
                Value::Bool(true),
                "without streaming inference-perf records no token times (TTFT, ITL, TPOT)",
            ),
            (
                &["server", "ignore_eos"],
                Value::Bool(false),
                Value::Bool(true),
                "outputs would stop at the model's end-of-sequence token, which synthetic prompts cannot predict",
            ),
            (
                &["load", "type"],
                Value::from("constant"),
                Value::from("constant"),
                "only the `constant` load timer is regenerated",
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
                    "not part of the constant load modelled",
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
        let mut stages = Vec::new();
        for (i, s) in stages_v.iter().enumerate() {
            if let Some(c) = get(s, &["concurrency_level"]) {
                return Err(not_modelled(
                    &format!("load.stages[{i}].concurrency_level"),
                    c,
                    "a concurrency stage is not a constant-rate stage",
                ));
            }
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
            let st = LoadStage {
                rate: num("rate")?,
                duration_s: num("duration")?,
            };
            if st.num_requests() == 0 {
                return Err(bad(
                    &format!("load.stages[{i}]"),
                    "rate × duration is under one request",
                ));
            }
            stages.push(st);
        }
        // Each of `num_workers` processes keeps at most `worker_max_concurrency` requests in
        // flight; the replay sends every request at its time.
        let workers = get(config, &["load", "num_workers"]).and_then(Value::as_u64);
        let per_worker = get(config, &["load", "worker_max_concurrency"])
            .and_then(Value::as_u64)
            .unwrap_or(100);
        match workers {
            Some(0) => {
                return Err(not_modelled(
                    "load.num_workers",
                    &Value::from(0),
                    "the single-process load generator cuts a stage at its duration",
                ))
            }
            Some(w) => {
                let most = stages
                    .iter()
                    .map(LoadStage::num_requests)
                    .max()
                    .unwrap_or(0);
                if (w * per_worker) < most as u64 {
                    return Err(not_modelled(
                        "load.num_workers × load.worker_max_concurrency",
                        &Value::from(w * per_worker),
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
            stages,
            stage_interval_s,
            request_timeout,
            request_timeout_source,
            notes,
        })
    }

    /// The prompts, shuffled once ([`prompts`]).
    pub fn prompts(&self, seed: u64, vocab_size: u32) -> Vec<Arc<[u32]>> {
        prompts(&self.data, seed, vocab_size)
    }

    /// Stage `stage`'s requests, send times from `start` (the stage's set-up: the timer starts
    /// [`STAGE_HEAD_START_S`] later). Request `n` gets prompt `n mod len`.
    pub fn stage_workload(
        &self,
        stage: usize,
        start: Nanos,
        prompts: &[Arc<[u32]>],
        seed: u64,
    ) -> Vec<WorkloadItem> {
        let st = self.stages[stage];
        let times = constant_send_times(st, seed ^ (0x5747_4147_4500 + stage as u64));
        times
            .into_iter()
            .enumerate()
            .map(|(n, t)| WorkloadItem {
                request_id: format!("stage{stage}-{n}"),
                arrival: start + Nanos::from_secs_f64(STAGE_HEAD_START_S + t),
                prompt_token_ids: prompts[n % prompts.len()].clone(),
                output_len: self.data.output_len as u32,
                priority: 0,
                cache_salt: None,
                tenant: None,
            })
            .collect()
    }
}

/// What `profile.yaml` asked for that differs from what ran, one note each.
fn differences(asked: &Value, ran: &SharedPrefix, stages: &[LoadStage]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(sp) = get(asked, &["data", "shared_prefix"]) else {
        return out;
    };
    let mut unread = Vec::new();
    for (keys, ran_v) in [
        (
            &["num_unique_system_prompts", "num_groups"][..],
            ran.num_groups,
        ),
        (
            &["num_users_per_system_prompt", "num_prompts_per_group"][..],
            ran.num_prompts_per_group,
        ),
        (&["system_prompt_len"][..], ran.system_prompt_len),
        (&["question_len"][..], ran.question_len),
        (&["output_len"][..], ran.output_len),
    ] {
        for k in keys {
            if let Some(v) = get(sp, &[k]) {
                if v.as_u64() != Some(ran_v as u64) {
                    unread.push(format!("{k} {} (ran with {ran_v})", show(v)));
                }
            }
        }
    }
    if let Some(v) = get(sp, &["enable_multi_turn_chat"]) {
        if v.as_bool() == Some(true) {
            unread.push("enable_multi_turn_chat true (ran single-turn)".to_string());
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
            && a.iter().zip(stages).all(|(s, r)| {
                get(s, &["rate"]).and_then(Value::as_f64) == Some(r.rate)
                    && get(s, &["duration"]).and_then(Value::as_f64) == Some(r.duration_s)
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

/// `num_groups × num_prompts_per_group` prompts: BOS, the group's system prompt, the prompt's
/// question (ids drawn in `[BOS + 1, vocab_size)`), in a seeded shuffled order.
pub fn prompts(d: &SharedPrefix, seed: u64, vocab_size: u32) -> Vec<Arc<[u32]>> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let lo = BOS + 1;
    let hi = vocab_size.max(lo + 1);
    let draw = |n: usize, rng: &mut Pcg64Mcg| -> Vec<u32> {
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    };
    let mut out: Vec<Arc<[u32]>> = Vec::with_capacity(d.num_groups * d.num_prompts_per_group);
    for _ in 0..d.num_groups {
        let system = draw(d.system_prompt_len, &mut rng);
        for _ in 0..d.num_prompts_per_group {
            let mut p = Vec::with_capacity(1 + d.system_prompt_len + d.question_len);
            p.push(BOS);
            p.extend_from_slice(&system);
            p.extend(draw(d.question_len, &mut rng));
            out.push(p.into());
        }
    }
    // Fisher–Yates, as `random.shuffle` (the order differs from Python's: only its being a
    // fixed random permutation matters).
    for i in (1..out.len()).rev() {
        let j = rng.random_range(0..=i);
        out.swap(i, j);
    }
    out
}

/// `ConstantLoadTimer`: `int(rate × duration)` exponential gaps of mean 1/rate, scaled to sum to
/// `duration`; the send times (s from the timer's start), ascending, the last = `duration`.
pub fn constant_send_times(st: LoadStage, seed: u64) -> Vec<f64> {
    let n = st.num_requests();
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let exp = Exp::new(st.rate).expect("rate > 0");
    let gaps: Vec<f64> = (0..n).map(|_| exp.sample(&mut rng)).collect();
    let total: f64 = gaps.iter().sum();
    let scale = st.duration_s / total;
    let mut t = 0.0;
    gaps.iter()
        .map(|g| {
            t += g * scale;
            t
        })
        .collect()
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
        let ps = r.prompts(7, 32000);
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
        assert_eq!(ps, r.prompts(7, 32000), "seeded");
        assert!(ps.iter().flat_map(|p| p.iter()).all(|&t| t < 32000));
    }

    #[test]
    fn constant_timer_counts_and_spacing() {
        let st = LoadStage {
            rate: 5.0,
            duration_s: 10.0,
        };
        let t = constant_send_times(st, 3);
        assert_eq!(t.len(), 50);
        assert!(t.windows(2).all(|w| w[1] > w[0]) && t[0] > 0.0);
        // The scaled gaps sum to the duration: the last request at its end.
        assert!((t[49] - 10.0).abs() < 1e-9, "{}", t[49]);
        // Exponential, not fixed: the gaps vary.
        let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        let max = gaps.iter().cloned().fold(0.0, f64::max);
        let min = gaps.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(max > 4.0 * min, "{min} {max}");
        // int(rate × duration): 2.5 × 4 = 10; 0.7 × 3 = 2.1 → 2.
        assert_eq!(
            LoadStage {
                rate: 0.7,
                duration_s: 3.0
            }
            .num_requests(),
            2
        );
    }

    #[test]
    fn stages_restart_the_prompt_cycle() {
        let r = run();
        let ps = r.prompts(1, 32000);
        let s0 = r.stage_workload(0, Nanos::ZERO, &ps, 1);
        let s1 = r.stage_workload(1, Nanos::from_millis(100_000), &ps, 1);
        assert_eq!((s0.len(), s1.len()), (50, 10));
        // Request n sends prompt n mod 12, in both stages.
        assert_eq!(s0[13].prompt_token_ids, ps[1]);
        assert_eq!(s1[0].prompt_token_ids, ps[0]);
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
        let e = err(&|c| c["data"]["type"] = json!("random"));
        assert!(
            e.contains("data.type") && e.contains("random") && e.contains("cfg.yaml"),
            "{e}"
        );
        let e = err(&|c| c["data"]["shared_prefix"]["enable_multi_turn_chat"] = json!(true));
        assert!(e.contains("enable_multi_turn_chat"), "{e}");
        let e = err(&|c| c["load"]["type"] = json!("poisson"));
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
