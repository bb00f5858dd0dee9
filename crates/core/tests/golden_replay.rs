//! Replays scheduler traces recorded from vLLM's own engine core (`tools/vllm-golden/`, format in
//! `docs/golden-format.md`) and requires llm-emu to make the same decision at every step:
//! scheduled requests and token counts, preemptions, admissions with their prefix hits, sampled
//! tokens, finish reasons, queue lengths, free KV blocks and prefix-cache counters.

use llm_emu_core::engine::{EngineObserver, StepRecord};
use llm_emu_core::latency::LinearLatency;
use llm_emu_core::request::RequestStatus;
use llm_emu_core::sampler::{SampleContext, TokenSampler};
use llm_emu_core::sched::RequestUpdate;
use llm_emu_core::{
    Engine, EngineConfig, Nanos, NewRequest, Request, SamplingParams, Scheduler, SchedulingPolicy,
    Wake,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The fake model of the generator: a per-request token script, with vLLM's min-tokens rule.
struct ScriptedSampler {
    scripts: HashMap<String, Vec<u32>>,
}

impl TokenSampler for ScriptedSampler {
    fn sample(&mut self, ctx: &SampleContext<'_>) -> u32 {
        let k = ctx.index;
        let t = self
            .scripts
            .get(ctx.request_id)
            .and_then(|s| s.get(k).copied())
            .unwrap_or(100_000 + k as u32);
        if ctx.forbid_stop && ctx.sampling.is_stop_token(t) {
            200_000 + k as u32
        } else {
            t
        }
    }
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("missing integer `{k}` in {v}"))
}

fn config_of(c: &Value) -> EngineConfig {
    EngineConfig {
        block_size: u(c, "block_size") as usize,
        num_gpu_blocks: u(c, "num_gpu_blocks") as u32,
        max_num_seqs: u(c, "max_num_seqs") as usize,
        max_num_batched_tokens: u(c, "max_num_batched_tokens") as usize,
        max_model_len: u(c, "max_model_len") as usize,
        enable_prefix_caching: c["enable_prefix_caching"].as_bool().unwrap(),
        enable_chunked_prefill: c["enable_chunked_prefill"].as_bool().unwrap(),
        long_prefill_token_threshold: c["long_prefill_token_threshold"]
            .as_u64()
            .or(c["long_prefill_threshold"].as_u64())
            .unwrap_or(0) as usize,
        scheduling_policy: c["scheduling_policy"]
            .as_str()
            .unwrap()
            .parse::<SchedulingPolicy>()
            .unwrap(),
        async_scheduling: c["async_scheduling"].as_bool().unwrap(),
        scheduler_reserve_full_isl: c["scheduler_reserve_full_isl"].as_bool().unwrap_or(true),
        enforce_eager: false,
        cudagraph_capture_sizes: None,
        // Absent or null: full attention (the scenarios before windows were recorded).
        sliding_window: c["sliding_window"].as_u64().map(|w| w as usize),
    }
}

/// Records llm-emu's decisions in the golden files' event format.
struct Recorder {
    events: Vec<Value>,
}

fn id_of(sched: &Scheduler, u: &RequestUpdate) -> String {
    match &u.finished {
        Some(r) => r.request_id.clone(),
        None => sched.request(u.key).expect("live").request_id.clone(),
    }
}

fn reason_of(r: &Request) -> &'static str {
    match r.status {
        RequestStatus::Finished(f) => f.as_str(),
        _ => panic!(
            "{} reported finished with status {:?}",
            r.request_id, r.status
        ),
    }
}

impl EngineObserver for Recorder {
    fn on_schedule(&mut self, s: &StepRecord<'_>) {
        let sched = s.scheduler;
        let name = |k| {
            sched
                .request(k)
                .map(|r: &Request| r.request_id.clone())
                .unwrap_or_default()
        };
        let stats = sched.kv().prefix_cache_stats();
        self.events.push(json!({
            "kind": "schedule",
            "t_ns": s.scheduled_at.0,
            "step_end_ns": s.device_end.0,
            "scheduled": s.output.scheduled.iter().map(|x| json!([name(x.key), x.num_tokens])).collect::<Vec<_>>(),
            "preempted": s.output.preempted.iter().map(|k| json!(name(*k))).collect::<Vec<_>>(),
            "admitted": s.output.admitted.iter().map(|(k, n)| json!([name(*k), n])).collect::<Vec<_>>(),
            "num_running": sched.num_running(),
            "num_waiting": sched.num_waiting(),
            "num_free_blocks": sched.kv().num_free_blocks(),
            "prefix_queries": stats.queries,
            "prefix_hits": stats.hits,
            "preempted_prefix_queries": stats.preempted_queries,
            "preempted_prefix_hits": stats.preempted_hits,
        }));
    }

    fn on_update(&mut self, now: Nanos, updates: &[RequestUpdate], sched: &Scheduler) {
        let tokens: Vec<Value> = updates
            .iter()
            .filter_map(|x| x.new_token.map(|t| json!([id_of(sched, x), t])))
            .collect();
        let finished: Vec<Value> = updates
            .iter()
            .filter_map(|x| {
                x.finished
                    .as_ref()
                    .map(|r| json!([r.request_id, reason_of(r)]))
            })
            .collect();
        self.events.push(json!({
            "kind": "update",
            "t_ns": now.0,
            "tokens": tokens,
            "finished": finished,
            "num_running": sched.num_running(),
            "num_waiting": sched.num_waiting(),
            "num_free_blocks": sched.kv().num_free_blocks(),
        }));
    }

    fn on_abort(&mut self, now: Nanos, finished: &[Box<Request>], sched: &Scheduler) {
        self.events.push(json!({
            "kind": "abort",
            "t_ns": now.0,
            "request_ids": finished.iter().map(|r| json!(r.request_id)).collect::<Vec<_>>(),
            "num_free_blocks": sched.kv().num_free_blocks(),
        }));
    }
}

enum Input {
    Arrive(NewRequest),
    Abort(String),
}

/// Runs one golden scenario through llm-emu and returns the recorded events.
fn replay(golden: &Value) -> Vec<Value> {
    let cfg = config_of(&golden["config"]);
    let lat = &golden["config"]["latency"];
    let latency = LinearLatency::new(
        lat["base_us"].as_f64().unwrap(),
        lat["per_token_us"].as_f64().unwrap(),
    );
    let mut scripts = HashMap::new();
    let mut inputs: Vec<(u64, Input)> = Vec::new();
    for r in golden["requests"].as_array().unwrap() {
        let id = r["request_id"].as_str().unwrap().to_string();
        let ids = |k: &str| -> Vec<u32> {
            r[k].as_array()
                .map(|a| a.iter().map(|x| x.as_u64().unwrap() as u32).collect())
                .unwrap_or_default()
        };
        scripts.insert(id.clone(), ids("output_token_ids"));
        let ignore_eos = r["ignore_eos"].as_bool().unwrap_or(false);
        let eos = r["eos_token_id"].as_u64().map(|x| x as u32);
        let sampling = SamplingParams {
            max_tokens: u(r, "max_tokens") as u32,
            min_tokens: r["min_tokens"].as_u64().unwrap_or(0) as u32,
            ignore_eos,
            eos_token_id: eos,
            stop_token_ids: ids("stop_token_ids"),
        };
        let arrival = u(r, "arrival_ns");
        inputs.push((
            arrival,
            Input::Arrive(NewRequest {
                tenant: None,
                request_id: id,
                prompt_token_ids: llm_emu_core::PromptTokens::from(ids("prompt_token_ids")),
                sampling,
                priority: r["priority"].as_i64().unwrap_or(0) as i32,
                cache_salt: r["cache_salt"].as_str().map(str::to_string),
                arrival: Nanos(arrival),
            }),
        ));
    }
    for a in golden["aborts"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        inputs.push((
            u(a, "at_ns"),
            Input::Abort(a["request_id"].as_str().unwrap().to_string()),
        ));
    }
    // The generator adds every due arrival (file order), then every due abort (file order).
    let (mut arrivals, mut aborts): (Vec<_>, Vec<_>) = inputs
        .into_iter()
        .partition(|(_, i)| matches!(i, Input::Arrive(_)));
    arrivals.sort_by_key(|(t, _)| *t);
    aborts.sort_by_key(|(t, _)| *t);

    let mut engine = Engine::new(
        cfg,
        Box::new(latency),
        Box::new(ScriptedSampler { scripts }),
    )
    .unwrap();
    let mut rec = Recorder { events: Vec::new() };
    let mut arrivals = arrivals.into_iter().peekable();
    let mut aborts = aborts.into_iter().peekable();
    let mut now = Nanos::ZERO;
    loop {
        for queue in [&mut arrivals, &mut aborts] {
            while queue.peek().is_some_and(|(t, _)| *t <= now.0) {
                match queue.next().unwrap().1 {
                    Input::Arrive(r) => engine.add_request(r).expect("golden request accepted"),
                    Input::Abort(id) => engine.abort(&id),
                }
            }
        }
        match engine.run(now, &mut rec) {
            Wake::At(t) => now = t,
            Wake::Idle => match [arrivals.peek(), aborts.peek()]
                .into_iter()
                .flatten()
                .map(|(t, _)| *t)
                .min()
            {
                Some(t) => now = Nanos(t),
                None => break,
            },
        }
        assert!(rec.events.len() < 1_000_000, "runaway replay");
    }
    rec.events
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares event streams; on mismatch, shows the first differing event with context.
fn compare(name: &str, want: &[Value], got: &[Value]) -> Result<(), String> {
    for (i, w) in want.iter().enumerate() {
        let Some(g) = got.get(i) else {
            return Err(format!(
                "{name}: llm-emu stopped after {} events; vLLM's event {i}: {w}",
                got.len()
            ));
        };
        let keys: Vec<&String> = g.as_object().unwrap().keys().collect();
        let mut diff = Vec::new();
        for k in keys {
            if w.get(k.as_str()) != g.get(k.as_str()) {
                diff.push(format!(
                    "  {k}: vLLM {} vs llm-emu {}",
                    w.get(k.as_str()).unwrap_or(&Value::Null),
                    g[k.as_str()]
                ));
            }
        }
        if !diff.is_empty() {
            let from = i.saturating_sub(3);
            let ctx: Vec<String> = want[from..i].iter().map(|e| format!("  {e}")).collect();
            return Err(format!(
                "{name}: event {i} ({}) differs:\n{}\npreceding vLLM events:\n{}",
                w["kind"],
                diff.join("\n"),
                ctx.join("\n")
            ));
        }
    }
    if got.len() > want.len() {
        return Err(format!(
            "{name}: llm-emu has {} extra events, first: {}",
            got.len() - want.len(),
            got[want.len()]
        ));
    }
    Ok(())
}

#[test]
fn golden_traces_match_vllm() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("golden directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the golden scenarios, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let golden: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        assert_eq!(golden["vllm_version"], "0.19.0");
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        let want = golden["events"].as_array().unwrap();
        let got = replay(&golden);
        match compare(&name, want, &got) {
            Ok(()) => println!("{name}: {} events identical", want.len()),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios differ from vLLM:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}
