//! The HTTP routes of vLLM's OpenAI-compatible server (`entrypoints/openai/api_server.py` and
//! the routers it mounts). What runs before them (API key, body, content type) is in
//! [`crate::middleware`].

use crate::errors::{ApiError, UnserializableBody};
use crate::fault::{Fault, FaultKind, Injected};
use crate::generate::{
    build_echo_logprobs, check_fan_out, check_max_output, check_prompt_ids, check_request_template,
    check_truncation, echo_salt, prompt_max_tokens, respond_full, start_stream, truncate_prompt,
    verify_sampling, Endpoint, Prepared, Prompt,
};
use crate::protocol::*;
use crate::state::{unix_now, AppState};
use crate::structured::tools::tool_choice_of;
use crate::structured::{constraint_of, Constraint, ToolChoice};
use crate::text::{encode_in_pieces, encode_within, ChatOptions, TextError};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The vLLM version this server reports (`/version`).
pub const VLLM_VERSION: &str = "0.19.0";

/// The routes; [`crate::middleware::wrap`] adds the checks every request passes first.
pub fn router(state: Arc<AppState>) -> Router {
    // vLLM mounts the generate routes or the pooling ones, as the runner's tasks say.
    let routes = match state.pooling_hidden_size {
        None => Router::new()
            .route("/v1/completions", post(completions))
            .route("/v1/chat/completions", post(chat_completions))
            .route(
                "/inference/v1/generate",
                post(crate::routes_generate::generate),
            )
            .route("/v1/messages", post(crate::routes_messages::messages))
            .route("/v1/responses", post(crate::routes_responses::responses)),
        Some(_) => {
            Router::new().route("/v1/embeddings", post(crate::routes_embeddings::embeddings))
        }
    };
    let routes = routes
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/ping", get(health).post(health))
        .route("/version", get(version))
        .route("/load", get(load))
        .route("/metrics", get(metrics))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/debug/engine", get(debug_engine));
    crate::routes_lora::mount(routes, &state)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Starlette's body for an unknown route, as vLLM's server answers it.
async fn not_found() -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"detail": "Not Found"})),
    )
        .into_response()
}

/// Starlette's body for a known route with the wrong method.
async fn method_not_allowed() -> Response {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({"detail": "Method Not Allowed"})),
    )
        .into_response()
}

/// The body as a request model: not UTF-8 → FastAPI's parse error; bad JSON or types → a
/// validation error (vLLM: `RequestValidationError`, type "Bad Request"); then the model's own
/// validators. (The body's size and arrival time are bounded before, in `middleware`.)
fn parse_body<T: DeserializeOwned + ValidateRequest>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body?;
    if std::str::from_utf8(&body).is_err() {
        return Err(ApiError::BodyNotParsable);
    }
    serde_json::from_slice(&body)
        .map_err(|e| {
            let msg = if e.is_syntax() || e.is_eof() {
                format!(
                    "1 validation error:\n  {{'type': 'json_invalid', 'loc': ('body', {}), 'msg': \
                 'JSON decode error', 'input': {{}}, 'ctx': {{'error': '{e}'}}}}",
                    e.column().saturating_sub(1)
                )
            } else {
                format!(
                "1 validation error:\n  {{'type': 'value_error', 'loc': ('body',), 'msg': '{e}'}}"
            )
            };
            ApiError::Validation(msg)
        })
        .and_then(|req: T| req.validate().map(|()| req))
}

/// Bodies up to this size are parsed on the HTTP worker that read them; larger ones (a 60 MB
/// prompt, 12 M token ids) on the text workers, so that parsing them does not hold a worker
/// that `/health` and the streams of other requests need.
pub const INLINE_PARSE_BYTES: usize = 64 << 10;

/// [`parse_body`], on the text workers for a body over [`INLINE_PARSE_BYTES`].
pub(crate) async fn parse_request<T>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError>
where
    T: DeserializeOwned + ValidateRequest + Send + 'static,
{
    match body {
        Ok(bytes) if bytes.len() > INLINE_PARSE_BYTES => {
            state.text_jobs.run(move || parse_body(Ok(bytes))).await?
        }
        body => parse_body(body),
    }
}

/// vLLM's `_check_model`: no name, or an empty one, means the served model; a loaded LoRA
/// adapter's name is served too.
pub(crate) fn check_model(state: &AppState, model: &Option<String>) -> Result<(), ApiError> {
    match model {
        Some(m)
            if !m.is_empty()
                && !state.served_model_names.iter().any(|n| n == m)
                && !state.lora.contains(m) =>
        {
            Err(ApiError::ModelNotFound(m.clone()))
        }
        _ => Ok(()),
    }
}

/// The name a response carries: the adapter's for a LoRA request (vLLM's `model_name`), else
/// the first served name.
pub(crate) fn response_model(state: &AppState, model: &Option<String>) -> String {
    match model {
        Some(m) if !state.served_model_names.iter().any(|n| n == m) && state.lora.contains(m) => {
            m.clone()
        }
        _ => state.model_name().to_string(),
    }
}

fn base_id(headers: &HeaderMap, c: &CommonParams, state: &AppState) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| c.request_id.clone())
        .unwrap_or_else(|| state.random_id())
}

/// The chat-template options of a request that renders messages (`/v1/chat/completions`, and
/// `/tokenize` with `messages`): both requests carry the same five fields.
fn chat_options(
    add_generation_prompt: bool,
    continue_final_message: bool,
    chat_template: &Option<String>,
    chat_template_kwargs: &Option<serde_json::Value>,
    tools: &Option<serde_json::Value>,
) -> ChatOptions {
    ChatOptions {
        add_generation_prompt,
        continue_final_message,
        chat_template: chat_template.clone(),
        chat_template_kwargs: chat_template_kwargs.clone(),
        tools: tools.clone(),
        request_renderer: None,
    }
}

/// A child-process renderer for a request that brings its own template, when the server has
/// a template sandbox: waits (asynchronously, before any text-work slot is taken) for one of
/// its child slots.
pub(crate) async fn request_renderer(
    state: &AppState,
    opts: &ChatOptions,
) -> Option<Arc<dyn llm_emu_text::TemplateRenderer>> {
    let sandbox = state.template_sandbox.as_ref()?;
    let in_kwargs = opts
        .chat_template_kwargs
        .as_ref()
        .and_then(|k| k.get("chat_template"))
        .is_some_and(|t| !t.is_null());
    if opts.chat_template.is_none() && !in_kwargs {
        return None;
    }
    Some(Arc::new(sandbox.ticket().await))
}

fn to_u32(v: i64) -> u32 {
    v.clamp(0, u32::MAX as i64) as u32
}

fn common_prepared(
    state: &AppState,
    endpoint: Endpoint,
    id: String,
    c: CommonParams,
    prompts: Vec<Prompt>,
    max_tokens_param: Option<i64>,
    logprobs: Option<i64>,
) -> Prepared {
    let (include_usage, continuous_usage) = StreamOptions::flags(&c.stream_options);
    Prepared {
        endpoint,
        id,
        created: unix_now(),
        model: response_model(state, &c.model),
        prompts,
        n: to_u32(c.n),
        stream: c.stream.unwrap_or(false),
        include_usage,
        continuous_usage,
        return_token_ids: c.return_token_ids.unwrap_or(false),
        echo: c.echo,
        stop: c.stop.map(StopInput::into_vec).unwrap_or_default(),
        include_stop_str_in_output: c.include_stop_str_in_output,
        skip_special_tokens: c.skip_special_tokens,
        spaces_between_special_tokens: c.spaces_between_special_tokens,
        min_tokens: to_u32(c.min_tokens),
        ignore_eos: c.ignore_eos,
        stop_token_ids: c.stop_token_ids.unwrap_or_default(),
        priority: c.priority.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
        cache_salt: c.cache_salt,
        user: c.user,
        max_tokens_param: max_tokens_param.map(to_u32),
        logprobs,
        constraint: None,
        tool_choice: ToolChoice::None,
        seed: c.seed,
        fail_after_tokens: None,
    }
}

/// The output constraint of a request: none when a forced tool call replaces the request's
/// structured outputs with its own grammar (vLLM's `adjust_request`), else what
/// `structured_outputs` and `response_format` ask for.
fn output_constraint(
    c: &CommonParams,
    tool_choice: &ToolChoice,
) -> Result<Option<Constraint>, ApiError> {
    match tool_choice {
        ToolChoice::Required(_) | ToolChoice::Named(_) => Ok(None),
        _ => constraint_of(c.response_format.as_ref(), c.structured_outputs.as_ref()),
    }
}

pub(crate) async fn completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let fault = state.faults.decide(&headers)?;
    if fault.is_some_and(|f| f.kind == FaultKind::Unavailable) {
        // vLLM's scaling middleware answers before the request is read.
        return Ok(crate::fault::unavailable());
    }
    let req: CompletionRequest = parse_request(&state, body).await?;
    check_model(&state, &req.common.model)?;
    if req.suffix.is_some() {
        return Err(ApiError::bad_request("suffix is not currently supported"));
    }
    let prompt =
        match req.prompt {
            None => return Err(ApiError::Validation(
                "1 validation error:\n  {'type': 'value_error', 'loc': ('body',), 'msg': 'Value \
                 error, Either prompt or prompt_embeds must be provided and non-empty.'}"
                    .into(),
            )),
            Some(p) => p,
        };
    let texts: Vec<(Option<String>, Option<Vec<u32>>)> = match prompt {
        PromptInput::Text(t) => vec![(Some(t), None)],
        PromptInput::Texts(ts) => ts.into_iter().map(|t| (Some(t), None)).collect(),
        PromptInput::Ids(ids) => vec![(None, Some(ids))],
        PromptInput::IdLists(l) => l.into_iter().map(|ids| (None, Some(ids))).collect(),
    };
    if texts.is_empty() {
        return Err(ApiError::bad_request("You must pass at least one prompt"));
    }
    if texts
        .iter()
        .any(|(t, ids)| t.as_deref() == Some("") || ids.as_ref().is_some_and(|i| i.is_empty()))
    {
        return Err(ApiError::Validation(
            "1 validation error:\n  {'type': 'value_error', 'loc': ('body',), 'msg': 'Value \
             error, Either prompt or prompt_embeds must be provided and non-empty.'}"
                .into(),
        ));
    }
    check_max_output(req.max_tokens, "max_tokens", state.max_model_len)?;
    check_truncation(
        req.common.truncate_prompt_tokens,
        req.max_tokens,
        "max_tokens",
        state.max_model_len,
    )?;
    check_fan_out(texts.len(), req.common.n)?;
    // Tokenizing runs on the text workers, and stops early for a prompt that is certainly
    // longer than the context (vLLM reports it as "at least max_input + 1" tokens).
    let max_input = (state.max_model_len as i64)
        .saturating_sub(req.max_tokens.unwrap_or(0))
        .max(0) as usize;
    let codec = state.codec.clone();
    let add_special_tokens = req.add_special_tokens;
    let texts = state
        .text_jobs
        .run(move || {
            texts
                .into_iter()
                .map(|(text, ids)| {
                    let encoded = match (&ids, &text) {
                        (None, Some(t)) => {
                            Some(encode_within(&*codec, t, add_special_tokens, max_input)?)
                        }
                        _ => None,
                    };
                    Ok((text, ids, encoded))
                })
                .collect::<Result<Vec<_>, TextError>>()
        })
        .await??;
    let id = format!("cmpl-{}", base_id(&headers, &req.common, &state));
    let mut prompts = Vec::with_capacity(texts.len());
    for (text, ids, encoded) in texts {
        let from_text = ids.is_none();
        let mut ids = match (ids, encoded) {
            (Some(ids), _) => ids,
            (None, Some(ids)) => ids,
            (None, None) => unreachable!("a prompt is text or ids"),
        };
        truncate_prompt(&mut ids, req.common.truncate_prompt_tokens, max_input);
        let max_tokens =
            prompt_max_tokens(ids.len(), req.max_tokens, state.max_model_len, from_text)?;
        // With `echo`, vLLM asks for prompt log-probabilities as many as `logprobs`.
        let prompt_logprobs =
            req.common
                .prompt_logprobs
                .or(if req.common.echo { req.logprobs } else { None });
        verify_sampling(
            &req.common,
            max_tokens,
            req.logprobs,
            prompt_logprobs,
            state.codec.vocab_size(),
        )?;
        check_prompt_ids(&ids, state.codec.vocab_size())?;
        // With `echo`, the prompt's text (decoded when the prompt is ids) and, with `logprobs`,
        // its log-probabilities: built once per prompt on the text workers, shared by its
        // choices.
        let ids: Arc<[u32]> = ids.into();
        let (text, echo_logprobs) = if req.common.echo {
            let (codec, echoed) = (state.codec.clone(), ids.clone());
            let lp = req
                .logprobs
                .map(|n| (n.max(0) as usize, echo_salt(&id, prompts.len())));
            state
                .text_jobs
                .run(move || {
                    let text = match text {
                        Some(t) => t,
                        None => codec.decode(&echoed, false)?,
                    };
                    let lps = lp
                        .map(|(n, salt)| Arc::new(build_echo_logprobs(&*codec, &echoed, n, salt)));
                    Ok::<_, TextError>((Some(text), lps))
                })
                .await??
        } else {
            (text, None)
        };
        prompts.push(Prompt {
            ids,
            text,
            max_tokens: to_u32(max_tokens),
            echo_logprobs,
        });
    }
    let constraint = output_constraint(&req.common, &ToolChoice::None)?;
    let mut p = common_prepared(
        &state,
        Endpoint::Completions,
        id,
        req.common,
        prompts,
        req.max_tokens,
        req.logprobs,
    );
    p.constraint = constraint;
    run(state, p, fault).await
}

pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let fault = state.faults.decide(&headers)?;
    if fault.is_some_and(|f| f.kind == FaultKind::Unavailable) {
        return Ok(crate::fault::unavailable());
    }
    let req: ChatCompletionRequest = parse_request(&state, body).await?;
    check_model(&state, &req.common.model)?;
    check_request_template(
        state.trust_request_chat_template,
        &req.chat_template,
        &req.chat_template_kwargs,
    )?;
    if req.messages.is_empty() {
        // What vLLM 0.19 answers (its chat parser indexes the last message).
        return Err(ApiError::bad_request("list index out of range"));
    }
    let (requested, param) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => (Some(m), "max_completion_tokens"),
        (None, m) => (m, "max_tokens"),
    };
    check_max_output(requested, param, state.max_model_len)?;
    check_truncation(
        req.common.truncate_prompt_tokens,
        requested,
        param,
        state.max_model_len,
    )?;
    let tool_choice = tool_choice_of(
        req.tools.as_ref(),
        req.tool_choice.as_ref(),
        &state.structured,
    )?;
    let mut opts = chat_options(
        req.add_generation_prompt,
        req.continue_final_message,
        &req.chat_template,
        &req.chat_template_kwargs,
        &req.tools,
    );
    opts.request_renderer = request_renderer(&state, &opts).await;
    let messages = serde_json::Value::Array(req.messages);
    // Rendering and tokenizing run on the text workers; tokenizing stops early for a prompt
    // that is certainly longer than the context.
    let max_input = (state.max_model_len as i64)
        .saturating_sub(requested.unwrap_or(0))
        .max(0) as usize;
    let (codec, add_special_tokens) = (state.codec.clone(), req.add_special_tokens);
    let mut ids = state
        .text_jobs
        .run(move || {
            let text = codec.render_chat(&messages, &opts)?;
            encode_within(&*codec, &text, add_special_tokens, max_input)
        })
        .await??;
    truncate_prompt(&mut ids, req.common.truncate_prompt_tokens, max_input);
    let max_tokens = prompt_max_tokens(ids.len(), requested, state.max_model_len, true)?;
    let top_logprobs = if req.logprobs.unwrap_or(false) {
        req.top_logprobs.or(Some(0))
    } else {
        None
    };
    // With `echo`, vLLM asks for prompt log-probabilities as many as `top_logprobs`.
    let prompt_logprobs = req.common.prompt_logprobs.or(if req.common.echo {
        req.top_logprobs
    } else {
        None
    });
    verify_sampling(
        &req.common,
        max_tokens,
        top_logprobs,
        prompt_logprobs,
        state.codec.vocab_size(),
    )?;
    check_prompt_ids(&ids, state.codec.vocab_size())?;
    let id = format!("chatcmpl-{}", base_id(&headers, &req.common, &state));
    let prompts = vec![Prompt {
        ids: ids.into(),
        text: None,
        max_tokens: to_u32(max_tokens),
        echo_logprobs: None,
    }];
    let constraint = output_constraint(&req.common, &tool_choice)?;
    let mut p = common_prepared(
        &state,
        Endpoint::Chat,
        id,
        req.common,
        prompts,
        requested,
        top_logprobs,
    );
    p.constraint = constraint;
    p.tool_choice = tool_choice;
    run(state, p, fault).await
}

/// Counts a generation request in `/load` (and, for a LoRA adapter, in
/// `vllm:lora_requests_info`) while it is served.
struct LoadGuard {
    state: Arc<AppState>,
    /// Held, not read: dropping it ends the adapter's count.
    _lora: Option<crate::lora::LoraInFlight>,
}

impl LoadGuard {
    fn new(state: &Arc<AppState>, model: &str) -> LoadGuard {
        state.server_load.fetch_add(1, Ordering::Relaxed);
        let lora = (model != state.model_name() && state.lora.contains(model))
            .then(|| state.lora.begin(model));
        if let Some(id) = lora.as_ref().and_then(|_| state.lora.id_of(model)) {
            crate::fleet_front::set_lora(id);
        }
        LoadGuard {
            state: state.clone(),
            _lora: lora,
        }
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.state.server_load.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run(
    state: Arc<AppState>,
    mut p: Prepared,
    fault: Option<Fault>,
) -> Result<Response, ApiError> {
    if let Some(f) = fault {
        let max_tokens = p.prompts.iter().map(|x| x.max_tokens).min().unwrap_or(1);
        match crate::fault::inject(
            f,
            p.stream,
            p.prompts[0].ids.len(),
            max_tokens,
            state.max_model_len,
        ) {
            Injected::Answer(resp) => return Ok(resp),
            Injected::StreamError(e) => return Ok(sse_response(Body::from(stream_error(&e)))),
            Injected::FailAfter(k) => p.fail_after_tokens = Some(k),
        }
    }
    let load = LoadGuard::new(&state, &p.model);
    if !p.stream {
        let body = respond_full(state, p).await?;
        drop(load);
        return Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let stream = start_stream(&state, p)?;
    Ok(sse_response(Body::new(stream.into_body(load))))
}

/// A streamed answer.
fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    resp
}

/// A stream that holds only an error: vLLM's stream generator failing before its first output.
fn stream_error(e: &ApiError) -> String {
    format!("data: {}\n\ndata: [DONE]\n\n", e.body())
}

/// vLLM's `ModelPermission` with its defaults.
pub(crate) fn model_permission(state: &AppState, created: u64) -> serde_json::Value {
    json!({
        "id": format!("modelperm-{}", state.random_id()),
        "object": "model_permission",
        "created": created,
        "allow_create_engine": false,
        "allow_sampling": true,
        "allow_logprobs": true,
        "allow_search_indices": false,
        "allow_view": true,
        "allow_fine_tuning": false,
        "organization": "*",
        "group": null,
        "is_blocking": false,
    })
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    let created = unix_now();
    let data: Vec<_> = state
        .served_model_names
        .iter()
        .map(|name| {
            json!({
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": state.model_root,
                "parent": null,
                "max_model_len": state.max_model_len,
                "permission": [model_permission(&state, created)],
            })
        })
        .chain(crate::routes_lora::adapter_cards(&state, created))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// vLLM's `/health`: 200 while the engine runs, 503 (empty body) once it is dead.
async fn health(State(state): State<Arc<AppState>>) -> StatusCode {
    if state.engine.is_alive() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn version() -> Response {
    axum::Json(json!({ "version": VLLM_VERSION })).into_response()
}

async fn load(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(json!({ "server_load": state.server_load.load(Ordering::Relaxed) })).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let mut text = state.engine.metrics.render();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            state.lora.render_metric(&mut text, now);
            text
        },
    )
        .into_response()
}

/// The engine thread's figures, and per engine its requests and KV usage (`engines`: the
/// engines this front serves, by engine index; the totals cover the same engines, KV usage
/// their mean).
async fn debug_engine(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.engine.metrics;
    let (running, waiting) = m.num_requests();
    let engines: Vec<_> = m
        .engine_indexes()
        .map(|i| {
            let (running, waiting) = m.engine_requests(i);
            json!({
                "engine": i,
                "num_requests_running": running,
                "num_requests_waiting": waiting,
                "kv_cache_usage_perc": m.engine_kv_cache_usage(i),
            })
        })
        .collect();
    axum::Json(json!({
        "engines": engines,
        "step_lateness": state.engine.lateness(),
        "engine_thread_priority": state.engine.priority.to_string(),
        "first_token_delivery": state.engine.delivery.lock().map(|d| d.summary()).ok(),
        "num_requests_running": running,
        "num_requests_waiting": waiting,
        "kv_cache_usage_perc": state.engine.metrics.kv_cache_usage(),
        "server_load": state.server_load.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: TokenizeRequest = parse_request(&state, body).await?;
    check_model(&state, &req.model)?;
    if req.messages.is_some() {
        check_request_template(
            state.trust_request_chat_template,
            &req.chat_template,
            &req.chat_template_kwargs,
        )?;
    }
    if req.messages.is_none() && req.prompt.is_none() {
        return Err(ApiError::Validation(
            "1 validation error:\n  {'type': 'missing', 'loc': ('body', 'prompt'), 'msg': \
             'Field required'}"
                .into(),
        ));
    }
    // vLLM's /tokenize has no length limit (`max_total_tokens=None`): the whole text is
    // tokenized, on the text workers.
    let codec = state.codec.clone();
    let max_model_len = state.max_model_len;
    let mut opts = chat_options(
        req.add_generation_prompt,
        req.continue_final_message,
        &req.chat_template,
        &req.chat_template_kwargs,
        &req.tools,
    );
    if req.messages.is_some() {
        opts.request_renderer = request_renderer(&state, &opts).await;
    }
    let body = state
        .text_jobs
        .run(move || {
            let ids = match (&req.messages, &req.prompt) {
                (Some(messages), _) => {
                    let text =
                        codec.render_chat(&serde_json::Value::Array(messages.clone()), &opts)?;
                    encode_in_pieces(&*codec, &text, false)?
                }
                (None, Some(p)) => encode_in_pieces(&*codec, p, req.add_special_tokens)?,
                (None, None) => unreachable!("checked above"),
            };
            // Serialized straight from the ids (and each token's string, made a block at a
            // time), not through a JSON tree: a 60 MB prompt's answer costs about its own size.
            let body = serde_json::to_vec(&TokenizeResponse {
                count: ids.len(),
                max_model_len,
                tokens: &ids,
                token_strs: req.return_token_strs.unwrap_or(false).then_some(TokenStrs {
                    codec: &*codec,
                    ids: &ids,
                }),
            })
            .map_err(UnserializableBody)?;
            Ok::<_, ApiError>(body)
        })
        .await??;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn detokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: DetokenizeRequest = parse_request(&state, body).await?;
    check_model(&state, &req.model)?;
    let codec = state.codec.clone();
    // Decoded and serialized on the text workers: 12 M ids make a text of tens of MB.
    let body = state
        .text_jobs
        .run(move || {
            let text = codec.decode(&req.tokens, false)?;
            let body = serde_json::to_vec(&DetokenizeResponse { prompt: &text })
                .map_err(UnserializableBody)?;
            Ok::<_, ApiError>(body)
        })
        .await??;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
