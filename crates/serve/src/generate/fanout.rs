//! Fan-out of one HTTP request into engine requests: one per prompt and choice (`n`), each with
//! its own detokenizer, submitted together and aborted together when the request goes away.

use super::output::{hash_str, Choice};
use super::{Prepared, Prompt};
use crate::engine_loop::{EngineEvent, EngineHandle};
use crate::errors::ApiError;
use crate::state::AppState;
use crate::structured::rng::{mix, DocRng};
use crate::structured::schema::SchemaError;
use crate::structured::{document, tools, AfterScript, OutputMode, Script, Scripts, ToolPlan};
use crate::text::{DetokOptions, SharedCodec};
use llm_emu_core::{NewRequest, SamplingParams};
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Engine requests one HTTP request may create (prompts × `n`). vLLM has no such limit beyond
/// `n ≤ 2048` per prompt; llm-emu keeps each choice's state (detokenizer, engine request,
/// output) for the request's lifetime, so a batch of many prompts times a large `n` is refused
/// before any of it is built. One prompt with vLLM's largest `n` always fits.
pub const MAX_CHOICES_PER_REQUEST: usize = 4096;

/// Refuses a request whose prompts × `n` exceed [`MAX_CHOICES_PER_REQUEST`]. An `n` outside
/// vLLM's range is left to [`verify_sampling`](super::verify_sampling), which reports it as
/// vLLM does.
pub fn check_fan_out(num_prompts: usize, n: i64) -> Result<(), ApiError> {
    if !(1..=2048).contains(&n) {
        return Ok(());
    }
    let choices = num_prompts.saturating_mul(n as usize);
    if choices > MAX_CHOICES_PER_REQUEST {
        return Err(ApiError::invalid_param(
            &format!(
                "The request asks for {choices} completions ({num_prompts} prompts with n={n}); \
                 this server accepts at most {MAX_CHOICES_PER_REQUEST} per request."
            ),
            "n",
            n,
        ));
    }
    Ok(())
}

/// Bytes of the HTTP request id kept in engine request ids (which only need to be unique and
/// readable in logs), so that a long `request_id` is not copied once per choice.
const ENGINE_ID_PREFIX_BYTES: usize = 64;

/// The engine request id of choice `c` of prompt `pi`.
fn engine_request_id(http_id: &str, pi: usize, c: u32, seq: u64) -> String {
    let mut end = http_id.len().min(ENGINE_ID_PREFIX_BYTES);
    while !http_id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{pi}-{c}-{seq:x}", &http_id[..end])
}

/// The engine requests of one HTTP request, aborted if it goes away before they finish (client
/// disconnect: vLLM aborts on `CancelledError`).
pub(super) struct Submission {
    pub(super) engine: EngineHandle,
    pub(super) codec: SharedCodec,
    /// [`Prepared::logprobs`].
    pub(super) logprobs: Option<i64>,
    pub(super) choices: Vec<Choice>,
    pub(super) rx: UnboundedReceiver<(u32, EngineEvent)>,
    pub(super) unfinished: usize,
    pub(super) error: Option<ApiError>,
    /// Where the choices' scripts are registered.
    scripts: Arc<Scripts>,
}

impl Submission {
    /// Whether an injected failure after `after_tokens` output tokens strikes now: the
    /// request is still running and its choices have generated that many tokens.
    pub(super) fn fails_now(&self, after_tokens: Option<u64>) -> bool {
        after_tokens.is_some_and(|k| {
            self.unfinished > 0 && self.choices.iter().map(|c| c.num_tokens).sum::<u64>() >= k
        })
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        for c in &self.choices {
            if !c.engine_done {
                self.engine.abort(&c.engine_id);
            }
            if c.scripted {
                self.scripts.remove(&c.engine_id);
            }
        }
    }
}

/// A stable hash of a prompt's token ids (FNV-1a), computed once per prompt of a seeded
/// request.
fn prompt_hash(prompt: &[u32]) -> u64 {
    prompt.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &t| {
        (h ^ u64::from(t)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The key of a seeded choice: the same `seed`, choice index and prompt give the same tokens,
/// document and log-probabilities (vLLM gives child `c` of a seeded request seed + c).
fn seeded_key(seed: i64, choice: u32, prompt_hash: u64) -> u64 {
    mix((seed as u64).wrapping_add(u64::from(choice)) ^ mix(prompt_hash))
}

/// A choice's output rules: the document it must be (a structured output or a tool call, with
/// its plan), else echo mode's prompt, else just its seed; `None`: the sampler as it is.
fn choice_script(
    state: &AppState,
    p: &Prepared,
    prompt: &Prompt,
    key: u64,
    seeded: bool,
) -> Result<(Option<Script>, Option<ToolPlan>), ApiError> {
    let seed = seeded.then_some(key);
    let mut rng = DocRng::new(key);
    let mut id_rng = DocRng::new(mix(key ^ state.next_seq()));
    let refused = |e: SchemaError| ApiError::bad_request(format!("Grammar error: {e}"));
    let (doc, tool) = match tools::plan(&p.tool_choice, &mut rng, &mut id_rng).map_err(refused)? {
        Some((doc, plan)) => (Some(doc), Some(plan)),
        None => match &p.constraint {
            Some(c) => (document(c, &mut rng)?, None),
            None => (None, None),
        },
    };
    let script = match doc {
        Some(d) => Some(Script {
            tokens: state.codec.encode(&d, false)?.into(),
            after: AfterScript::Eos,
            seed,
        }),
        None if state.structured.output_mode == OutputMode::Echo => Some(Script {
            tokens: prompt.ids.clone(),
            after: AfterScript::Cycle,
            seed,
        }),
        None if seeded => Some(Script {
            tokens: Arc::from(Vec::new()),
            after: AfterScript::Eos,
            seed,
        }),
        None => None,
    };
    Ok((script, tool))
}

impl Submission {
    pub(super) fn start(state: &AppState, p: &Prepared) -> Result<Submission, ApiError> {
        let (tx, rx) = unbounded_channel();
        let mut choices = Vec::new();
        // vLLM's `update_from_generation_config`.
        let mut stop_token_ids = p.stop_token_ids.clone();
        if !p.ignore_eos {
            for t in state.codec.generation_eos_ids() {
                if !stop_token_ids.contains(&t) {
                    stop_token_ids.push(t);
                }
            }
        }
        let seq = state.next_seq();
        let mut requests = Vec::with_capacity(p.prompts.len() * p.n as usize);
        let mut pending = Vec::new();
        for (pi, prompt) in p.prompts.iter().enumerate() {
            let hashed = p.seed.map(|_| prompt_hash(&prompt.ids));
            state
                .engine
                .metrics
                .observe_request_params(p.n, p.max_tokens_param, prompt.max_tokens);
            for c in 0..p.n {
                let tag = choices.len() as u32;
                let engine_id = engine_request_id(&p.id, pi, c, seq);
                let sampling = SamplingParams {
                    max_tokens: prompt.max_tokens,
                    min_tokens: p.min_tokens,
                    ignore_eos: p.ignore_eos,
                    eos_token_id: state.codec.eos_token_id(),
                    stop_token_ids: stop_token_ids.clone(),
                };
                let req = NewRequest {
                    request_id: engine_id.clone(),
                    prompt_token_ids: prompt.ids.clone().into(),
                    sampling,
                    priority: p.priority,
                    cache_salt: p.cache_salt.clone(),
                    tenant: p.user.as_deref().map(Arc::from),
                    arrival: state.engine.clock.now(),
                };
                let detok = state.codec.detokenizer(
                    &prompt.ids,
                    DetokOptions {
                        skip_special_tokens: p.skip_special_tokens,
                        spaces_between_special_tokens: p.spaces_between_special_tokens,
                        stop: p.stop.clone(),
                        include_stop_str_in_output: p.include_stop_str_in_output,
                        streaming: p.stream,
                        min_tokens: p.min_tokens,
                    },
                );
                let key = match (p.seed, hashed) {
                    (Some(seed), Some(h)) => seeded_key(seed, c, h),
                    _ => hash_str(&engine_id),
                };
                let (script, tool) = choice_script(state, p, prompt, key, p.seed.is_some())?;
                let scripted = script.is_some();
                if let Some(script) = script {
                    pending.push((engine_id.clone(), script));
                }
                choices.push(Choice {
                    prompt: pi,
                    detok,
                    token_ids: Vec::new(),
                    text: String::new(),
                    num_tokens: 0,
                    finished: None,
                    salt: key,
                    engine_id,
                    engine_done: false,
                    logprobs: Vec::new(),
                    text_chars_sent: 0,
                    tool,
                    text_bytes_sent: 0,
                    tool_started: false,
                    scripted,
                });
                requests.push((req, tag));
            }
        }
        // Registered once every choice's document is made, so that a refusal leaves none.
        for (id, script) in pending {
            state.scripts.insert(&id, script);
        }
        let unfinished = choices.len();
        // Built before submitting, so that dropping it on a refusal clears the scripts.
        let mut sub = Submission {
            engine: state.engine.clone(),
            codec: state.codec.clone(),
            logprobs: p.logprobs,
            choices,
            rx,
            unfinished,
            error: None,
            scripts: state.scripts.clone(),
        };
        if let Err(e) = state.engine.add(requests, tx) {
            for c in &mut sub.choices {
                c.engine_done = true;
            }
            return Err(e.into());
        }
        Ok(sub)
    }
}
