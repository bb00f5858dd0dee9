//! Chat templates: the OpenAI `messages` array turned into a prompt string the way vLLM's
//! chat endpoint does it (message parsing in `vllm/entrypoints/chat_utils.py`, then
//! `transformers`' `apply_chat_template(tokenize=False)` with its Jinja environment).

use crate::error::TextError;
use crate::model::TextModel;
use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{Environment, Error as JError, ErrorKind};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Template instructions one render may execute (minijinja fuel). A real chat template spends
/// a few dozen per message, so this leaves room for conversations of over 100 000 messages
/// while a loop such as `range(100000)` nested twice stops after about 0.5 s of CPU.
pub const TEMPLATE_FUEL: u64 = 10_000_000;

/// Bytes a render may produce: the prompt text, and separately everything `{{ … }}`
/// expressions print (captured blocks and macro bodies included). 32 MiB of text is millions
/// of tokens, far past any context, so no prompt that could be served is refused by it.
pub const TEMPLATE_OUTPUT_LIMIT_BYTES: usize = 32 << 20;

/// Nesting depth of macro calls, includes and recursive loops in a render.
pub const TEMPLATE_RECURSION_LIMIT: usize = 100;

/// How to render a chat (the chat-completion request's template fields).
#[derive(Clone, Debug, PartialEq)]
pub struct ChatTemplateOptions {
    /// End the prompt with the header of an assistant turn (the OpenAI API default).
    pub add_generation_prompt: bool,
    /// Leave the last message open so the model continues it (exclusive with
    /// `add_generation_prompt`, as vLLM enforces).
    pub continue_final_message: bool,
    /// A template string, or the name of one of the tokenizer's named templates; `None`: the
    /// tokenizer's own (`tool_use` when tools are given and it has one, else `default`).
    pub chat_template: Option<String>,
    /// Extra template variables (`chat_template_kwargs`, e.g. `enable_thinking`).
    pub chat_template_kwargs: Map<String, Value>,
    /// The request's `tools` array (OpenAI format), passed to the template as `tools`.
    pub tools: Option<Value>,
}

impl Default for ChatTemplateOptions {
    fn default() -> Self {
        ChatTemplateOptions {
            add_generation_prompt: true,
            continue_final_message: false,
            chat_template: None,
            chat_template_kwargs: Map::new(),
            tools: None,
        }
    }
}

/// A tokenizer's chat templates: tokenizer_config.json's `chat_template` (one string or a
/// list of `{name, template}`), or a `chat_template.jinja` file next to it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChatTemplates {
    default: Option<String>,
    named: HashMap<String, String>,
}

impl ChatTemplates {
    pub fn from_config(
        value: Option<&Value>,
        file: Option<String>,
        origin: &Path,
    ) -> Result<ChatTemplates, TextError> {
        let mut t = ChatTemplates::default();
        match value {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => t.default = Some(s.clone()),
            Some(Value::Array(list)) => {
                for item in list {
                    let name = item.get("name").and_then(Value::as_str);
                    let tpl = item.get("template").and_then(Value::as_str);
                    let (Some(name), Some(tpl)) = (name, tpl) else {
                        return Err(TextError::BadConfig {
                            path: origin.with_file_name("tokenizer_config.json"),
                            message: "chat_template list entries need \"name\" and \"template\""
                                .into(),
                        });
                    };
                    t.named.insert(name.to_string(), tpl.to_string());
                }
                t.default = t.named.get("default").cloned();
            }
            Some(_) => {
                return Err(TextError::BadConfig {
                    path: origin.with_file_name("tokenizer_config.json"),
                    message: "chat_template must be a string or a list".into(),
                })
            }
        }
        // transformers reads chat_template.jinja in preference to the config entry.
        if let Some(f) = file {
            t.default = Some(f);
        }
        Ok(t)
    }

    pub fn has_default(&self) -> bool {
        self.default.is_some() || !self.named.is_empty()
    }

    /// Whether `requested` names one of the tokenizer's own templates (else it is a template).
    fn is_named(&self, requested: &str) -> bool {
        self.named.contains_key(requested)
    }

    /// transformers' `get_chat_template`.
    fn select<'a>(
        &'a self,
        requested: Option<&'a str>,
        has_tools: bool,
    ) -> Result<&'a str, TextError> {
        if let Some(r) = requested {
            return Ok(self.named.get(r).map(String::as_str).unwrap_or(r));
        }
        if !self.named.is_empty() {
            if has_tools {
                if let Some(t) = self.named.get("tool_use") {
                    return Ok(t);
                }
            }
            return self
                .named
                .get("default")
                .map(String::as_str)
                .ok_or_else(|| TextError::UnknownChatTemplate("default".into()));
        }
        self.default.as_deref().ok_or(TextError::NoChatTemplate)
    }
}

/// vLLM's content format: `string` templates get each message's text parts joined with "\n";
/// `openai` templates (those that loop over a message's content) get the parts as a list.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum ContentFormat {
    String,
    OpenAi,
}

/// vLLM detects the format from the template's AST (a `for` loop over `message['content']`);
/// this looks for the same loop in the source text.
fn detect_content_format(template: &str) -> ContentFormat {
    let mut rest = template;
    while let Some(i) = rest.find("for ") {
        rest = &rest[i + 4..];
        let stmt_end = rest.find("%}").unwrap_or(rest.len());
        let stmt = &rest[..stmt_end];
        if let Some(j) = stmt.find(" in ") {
            let iter = stmt[j + 4..].trim().trim_end_matches('-').trim();
            if iter.ends_with(".content")
                || iter.ends_with("['content']")
                || iter.ends_with("[\"content\"]")
            {
                return ContentFormat::OpenAi;
            }
        }
    }
    ContentFormat::String
}

/// vLLM's `parse_chat_messages` for text content: each message becomes `{role, content}` plus
/// `tool_calls` (arguments parsed from JSON strings), `tool_call_id`, `name`, `reasoning`.
fn parse_messages(messages: &Value, format: ContentFormat) -> Result<Vec<Value>, TextError> {
    let list = messages
        .as_array()
        .ok_or_else(|| TextError::InvalidMessages("messages must be an array".into()))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let obj = m
            .as_object()
            .ok_or_else(|| TextError::InvalidMessages(format!("messages[{i}] is not an object")))?;
        let role = obj
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| TextError::InvalidMessages(format!("messages[{i}] has no role")))?;
        let texts: Vec<String> = match obj.get("content") {
            None | Some(Value::Null) => vec![],
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(parts)) => {
                let mut texts = Vec::new();
                for (k, p) in parts.iter().enumerate() {
                    texts.push(part_text(p).ok_or_else(|| {
                        TextError::InvalidMessages(format!(
                            "messages[{i}].content[{k}]: only text parts are supported"
                        ))
                    })?);
                }
                texts
            }
            Some(_) => {
                return Err(TextError::InvalidMessages(format!(
                    "messages[{i}].content must be a string, an array of parts or null"
                )))
            }
        };
        let content = match format {
            ContentFormat::String => Value::String(texts.join("\n")),
            ContentFormat::OpenAi => Value::Array(
                texts
                    .into_iter()
                    .map(|t| serde_json::json!({"type": "text", "text": t}))
                    .collect(),
            ),
        };
        let mut msg = Map::new();
        msg.insert("role".into(), Value::String(role.to_string()));
        msg.insert("content".into(), content);
        if role == "assistant" {
            if let Some(calls) = obj.get("tool_calls").filter(|c| !c.is_null()) {
                let mut calls = calls.clone();
                if let Some(arr) = calls.as_array_mut() {
                    for c in arr.iter_mut() {
                        if let Some(f) = c.get_mut("function").and_then(Value::as_object_mut) {
                            let parsed = match f.get("arguments") {
                                Some(Value::String(s)) if !s.is_empty() => serde_json::from_str(s)
                                    .map_err(|e| {
                                        TextError::InvalidMessages(format!(
                                            "messages[{i}]: tool call arguments are not JSON: {e}"
                                        ))
                                    })?,
                                Some(v @ (Value::Object(_) | Value::Array(_))) => v.clone(),
                                _ => Value::Object(Map::new()),
                            };
                            f.insert("arguments".into(), parsed);
                        }
                    }
                }
                // vLLM drops an empty tool_calls list so templates take the plain path.
                if calls.as_array().is_none_or(|a| !a.is_empty()) {
                    msg.insert("tool_calls".into(), calls);
                }
            }
            if let Some(r) = obj.get("reasoning").filter(|r| r.is_string()) {
                msg.insert("reasoning".into(), r.clone());
                msg.insert("reasoning_content".into(), r.clone());
            }
        } else if role == "tool" {
            if let Some(id) = obj.get("tool_call_id") {
                msg.insert("tool_call_id".into(), id.clone());
            }
        }
        if let Some(name) = obj.get("name").filter(|n| n.is_string()) {
            msg.insert("name".into(), name.clone());
        }
        if role == "developer" {
            msg.insert(
                "tools".into(),
                obj.get("tools").cloned().unwrap_or(Value::Null),
            );
        }
        out.push(Value::Object(msg));
    }
    Ok(out)
}

/// The text of a content part vLLM treats as text (`text`, `input_text`, `output_text`,
/// `refusal`, `thinking`), or of a bare string part.
fn part_text(p: &Value) -> Option<String> {
    if let Some(s) = p.as_str() {
        return Some(s.to_string());
    }
    let ty = p.get("type")?.as_str()?;
    let key = match ty {
        "text" | "input_text" | "output_text" => "text",
        "refusal" => "refusal",
        "thinking" => "thinking",
        _ => return None,
    };
    p.get(key)?.as_str().map(str::to_string)
}

/// vLLM passes `[tool.model_dump() for tool in request.tools]`: each tool becomes
/// `{type, function: {name, description, parameters, ..extra}, ..extra}` with `type` defaulting
/// to "function" and absent `description`/`parameters` as null, declared fields first.
fn normalize_tools(tools: &Value) -> Result<Value, TextError> {
    let list = tools
        .as_array()
        .ok_or_else(|| TextError::InvalidMessages("tools must be an array".into()))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let bad = |what: &str| TextError::InvalidMessages(format!("tools[{i}]: {what}"));
        let obj = t.as_object().ok_or_else(|| bad("not an object"))?;
        let ty = match obj.get("type") {
            None => "function",
            Some(Value::String(s)) if s == "function" => "function",
            Some(_) => return Err(bad("type must be \"function\"")),
        };
        let f = obj
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("missing function object"))?;
        let name = f
            .get("name")
            .filter(|n| n.is_string())
            .ok_or_else(|| bad("function.name must be a string"))?;
        let mut func = Map::new();
        func.insert("name".into(), name.clone());
        for key in ["description", "parameters"] {
            func.insert(key.into(), f.get(key).cloned().unwrap_or(Value::Null));
        }
        for (k, v) in f {
            if !func.contains_key(k) {
                func.insert(k.clone(), v.clone());
            }
        }
        let mut tool = Map::new();
        tool.insert("type".into(), Value::String(ty.into()));
        tool.insert("function".into(), Value::Object(func));
        for (k, v) in obj {
            if !tool.contains_key(k) {
                tool.insert(k.clone(), v.clone());
            }
        }
        out.push(Value::Object(tool));
    }
    Ok(Value::Array(out))
}

const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// The template a request asks for, as vLLM 0.19 picks it: the request's `chat_template` unless
/// it is empty (`request.chat_template or default`), else a `chat_template` string inside
/// `chat_template_kwargs` (vLLM merges the kwargs under `chat_template=…` and leaves the kwarg
/// when that is `None`), else none (the tokenizer's own). A `null` or empty one is no template.
fn requested_template(opts: &ChatTemplateOptions) -> Result<Option<&str>, TextError> {
    if let Some(t) = opts.chat_template.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(t));
    }
    match opts.chat_template_kwargs.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => Ok(Some(t.as_str()).filter(|t| !t.is_empty())),
        Some(other) => Err(TextError::InvalidMessages(format!(
            "chat_template in chat_template_kwargs must be a string, got {other}"
        ))),
    }
}

/// The last step of a chat render: a template's source and its variables (`messages`, `tools`,
/// the special tokens, …) made into the prompt text. A server can run a template a request
/// brought in another process ([`TextModel::render_chat_with`]); the tokenizer's own templates
/// always render in this one.
pub trait TemplateRenderer: Send + Sync + std::fmt::Debug {
    fn render(&self, template: &str, context: &Value) -> Result<String, TextError>;
}

/// [`render_template`] in this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcessRenderer;

impl TemplateRenderer for InProcessRenderer {
    fn render(&self, template: &str, context: &Value) -> Result<String, TextError> {
        render_template(template, context)
    }
}

/// Renders `template` with the variables of `context` (a JSON object) in transformers' Jinja
/// dialect, under [`TEMPLATE_FUEL`], [`TEMPLATE_OUTPUT_LIMIT_BYTES`] and
/// [`TEMPLATE_RECURSION_LIMIT`].
pub fn render_template(template: &str, context: &Value) -> Result<String, TextError> {
    let printed = Arc::new(AtomicUsize::new(0));
    let env = environment(printed);
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| TextError::Template(describe(&e)))?;
    let mut out = CappedWriter {
        buf: Vec::new(),
        limit: TEMPLATE_OUTPUT_LIMIT_BYTES,
    };
    tmpl.render_captured_to(JValue::from_serialize(context), &mut out)
        .map_err(|e| render_error(&e))?;
    String::from_utf8(out.buf)
        .map_err(|_| TextError::Template("the rendered prompt is not UTF-8".into()))
}

/// `messages` as the chat prompt; a template the request brought (not one of the tokenizer's
/// named ones) is rendered by `request_renderer`.
pub(crate) fn render(
    model: &TextModel,
    messages: &Value,
    opts: &ChatTemplateOptions,
    request_renderer: &dyn TemplateRenderer,
) -> Result<String, TextError> {
    if opts.add_generation_prompt && opts.continue_final_message {
        return Err(TextError::InvalidMessages(
            "continue_final_message and add_generation_prompt cannot both be true".into(),
        ));
    }
    if opts.chat_template_kwargs.contains_key("tokenize") {
        return Err(TextError::InvalidMessages(
            "unexpected chat template kwarg \"tokenize\"".into(),
        ));
    }
    let has_tools = opts.tools.as_ref().is_some_and(|t| !t.is_null());
    let requested = requested_template(opts)?;
    let templates = &model.inner.chat_templates;
    let from_request = requested.is_some_and(|r| !templates.is_named(r));
    let template = templates.select(requested, has_tools)?;
    let format = detect_content_format(template);
    let mut chat = parse_messages(messages, format)?;

    // transformers' continue_final_message: tag the last text, render, cut at the tag.
    let mut final_text = None;
    if opts.continue_final_message {
        let last = chat
            .last_mut()
            .ok_or_else(|| TextError::InvalidMessages("no message to continue".into()))?;
        match last.get_mut("content") {
            Some(Value::String(s)) => {
                final_text = Some(s.clone());
                s.push_str(CONTINUE_TAG);
            }
            Some(Value::Array(parts)) => {
                let part = parts
                    .iter_mut()
                    .rev()
                    .find_map(|p| {
                        p.get_mut("text").and_then(|t| match t {
                            Value::String(s) => Some(s),
                            _ => None,
                        })
                    })
                    .ok_or_else(|| {
                        TextError::InvalidMessages(
                            "continue_final_message is set but the final message has no text"
                                .into(),
                        )
                    })?;
                final_text = Some(part.clone());
                part.push_str(CONTINUE_TAG);
            }
            _ => {}
        }
    }

    // transformers: {**special_tokens_map, **kwargs}, then messages/tools/documents/
    // add_generation_prompt on top.
    let mut ctx: Map<String, Value> = model.special_tokens_map().clone();
    for (k, v) in &opts.chat_template_kwargs {
        // `chat_template` is `apply_chat_template`'s own parameter, not a template variable.
        if k != "chat_template" {
            ctx.insert(k.clone(), v.clone());
        }
    }
    ctx.insert("messages".into(), Value::Array(chat));
    let tools = match &opts.tools {
        Some(t) if !t.is_null() => normalize_tools(t)?,
        _ => Value::Null,
    };
    ctx.insert("tools".into(), tools);
    ctx.insert("documents".into(), Value::Null);
    ctx.insert(
        "add_generation_prompt".into(),
        Value::Bool(opts.add_generation_prompt),
    );
    let context = Value::Object(ctx);
    let mut rendered = if from_request {
        request_renderer.render(template, &context)?
    } else {
        render_template(template, &context)?
    };

    if let Some(final_text) = final_text {
        let tag = CONTINUE_TAG.trim();
        if !rendered.contains(final_text.trim()) || !rendered.contains(tag) {
            return Err(TextError::Template(
                "continue_final_message is set but the final message does not appear in the \
                 chat after applying the chat template"
                    .into(),
            ));
        }
        let loc = rendered.rfind(tag).unwrap_or(rendered.len());
        if rendered[loc..].starts_with(CONTINUE_TAG) {
            rendered.truncate(loc);
        } else {
            rendered.truncate(loc);
            let trimmed = rendered.trim_end().len();
            rendered.truncate(trimmed);
        }
    }
    Ok(rendered)
}

/// The prompt text as it is rendered, refusing to grow past `limit` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > self.limit {
            return Err(std::io::Error::other(output_limit_message()));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn output_limit_message() -> String {
    format!("the chat template's output exceeds {TEMPLATE_OUTPUT_LIMIT_BYTES} bytes")
}

/// A failed render: a bound that was hit ([`TextError::TemplateLimit`]) or the template's own
/// error.
fn render_error(e: &JError) -> TextError {
    let described = describe(e);
    match e.kind() {
        ErrorKind::OutOfFuel => TextError::TemplateLimit(format!(
            "the chat template ran more than {TEMPLATE_FUEL} instructions"
        )),
        ErrorKind::InvalidOperation if described.contains("recursion limit exceeded") => {
            TextError::TemplateLimit(format!(
                "the chat template nests deeper than {TEMPLATE_RECURSION_LIMIT} levels"
            ))
        }
        ErrorKind::WriteFailure if described.contains(&output_limit_message()) => {
            TextError::TemplateLimit(output_limit_message())
        }
        _ => TextError::Template(described),
    }
}

/// A minijinja error with its cause chain, as one line.
fn describe(e: &JError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The Jinja environment transformers compiles chat templates in: `trim_blocks`,
/// `lstrip_blocks`, loop controls, its `tojson`, `raise_exception` and `strftime_now`, plus
/// Python string/dict methods (`.strip()`, `.split()`, `.items()`, ...); bounded by
/// [`TEMPLATE_FUEL`], [`TEMPLATE_RECURSION_LIMIT`] and, through `printed` (bytes printed by
/// expressions so far), [`TEMPLATE_OUTPUT_LIMIT_BYTES`].
fn environment(printed: Arc<AtomicUsize>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_recursion_limit(TEMPLATE_RECURSION_LIMIT);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", tojson);
    bounded::add_filters(&mut env);
    env.set_formatter(move |out, state, value| python_formatter(out, state, value, &printed));
    env.add_function("raise_exception", |msg: String| -> Result<JValue, JError> {
        Err(JError::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |fmt: String| -> Result<String, JError> {
        crate::strftime::strftime_now(&fmt).map_err(|m| JError::new(ErrorKind::InvalidOperation, m))
    });
    env
}

/// Filters that can build a value far larger than their input (`indent`, `replace`, `join`,
/// `list`, `string`, `center`) replaced by versions that refuse to make one larger than
/// [`TEMPLATE_OUTPUT_LIMIT_BYTES`] (items, for `list`) before building it: without printing
/// anything, `('a\n' * 1000000)|indent(100000)` asked for 100 GB and aborted the process.
/// minijinja's operators cannot be replaced: `*` refuses strings over 100 MB itself, and
/// sequences repeated by `*` stay lazy until a filter or a print makes them real.
mod bounded {
    use super::{output_limit_message, TEMPLATE_OUTPUT_LIMIT_BYTES};
    use minijinja::value::{Kwargs, Value as JValue};
    use minijinja::{Environment, Error as JError, ErrorKind};
    use std::fmt::Write as _;

    /// The error of a value that would pass the limit (reported as the output limit).
    fn too_large() -> JError {
        JError::new(ErrorKind::WriteFailure, output_limit_message())
    }

    fn check(len: usize) -> Result<(), JError> {
        if len > TEMPLATE_OUTPUT_LIMIT_BYTES {
            Err(too_large())
        } else {
            Ok(())
        }
    }

    pub(super) fn add_filters(env: &mut Environment<'static>) {
        env.add_filter("indent", indent);
        env.add_filter("replace", replace);
        env.add_filter("join", join);
        env.add_filter("list", list);
        env.add_filter("string", string);
        env.add_filter("center", center);
    }

    /// A `String` that refuses to grow past the limit (a `Display` writing into it stops).
    struct Capped(String);

    impl std::fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            if self.0.len() + s.len() > TEMPLATE_OUTPUT_LIMIT_BYTES {
                return Err(std::fmt::Error);
            }
            self.0.push_str(s);
            Ok(())
        }
    }

    /// `value` as text (`str()`), refused past the limit without building more of it.
    fn text_of(value: &JValue) -> Result<String, JError> {
        if let Some(s) = value.as_str() {
            return Ok(s.to_string());
        }
        // A sequence prints at least a byte per item; its `Display` goes through every item
        // even once the writer refuses more, so a long one is refused by its length first.
        if value.len().is_some_and(|n| n > TEMPLATE_OUTPUT_LIMIT_BYTES) {
            return Err(too_large());
        }
        let mut out = Capped(String::new());
        write!(out, "{value}").map_err(|_| too_large())?;
        Ok(out.0)
    }

    /// minijinja's `indent` (width, `first`, `blank`), its size checked first.
    fn indent(
        value: JValue,
        width: Option<usize>,
        first: Option<bool>,
        blank: Option<bool>,
        kwargs: Kwargs,
    ) -> Result<JValue, JError> {
        let width = match width {
            Some(w) => w,
            None => kwargs.get::<Option<usize>>("width")?.unwrap_or(4),
        };
        let first = match first {
            Some(f) => f,
            None => kwargs.get::<Option<bool>>("first")?.unwrap_or(false),
        };
        let blank = match blank {
            Some(b) => b,
            None => kwargs.get::<Option<bool>>("blank")?.unwrap_or(false),
        };
        kwargs.assert_all_used()?;
        let text = text_of(&value)?;
        let lines = text.matches('\n').count() + 1;
        check(text.len().saturating_add(lines.saturating_mul(width)))?;
        let input = strip_trailing_newline(&text);
        let pad = " ".repeat(width);
        let mut out = String::with_capacity(input.len() + lines * width);
        let mut iter = input.split('\n');
        if !first {
            out.push_str(iter.next().unwrap_or_default());
            out.push('\n');
        }
        for line in iter {
            if !line.is_empty() {
                out.push_str(&pad);
                out.push_str(line);
            } else if blank {
                out.push_str(&pad);
            }
            out.push('\n');
        }
        let end = strip_trailing_newline(&out).len();
        out.truncate(end);
        Ok(JValue::from(out))
    }

    fn strip_trailing_newline(s: &str) -> &str {
        let s = s.strip_suffix('\n').unwrap_or(s);
        s.strip_suffix('\r').unwrap_or(s)
    }

    /// `replace(old, new[, count])`, its size checked first.
    fn replace(
        value: JValue,
        from: JValue,
        to: JValue,
        count: Option<usize>,
    ) -> Result<JValue, JError> {
        let (text, from, to) = (text_of(&value)?, text_of(&from)?, text_of(&to)?);
        let found = text.matches(from.as_str()).count();
        let n = count.map_or(found, |c| c.min(found));
        let grows = to.len().saturating_sub(from.len());
        check(text.len().saturating_add(n.saturating_mul(grows)))?;
        Ok(JValue::from(match count {
            Some(c) => text.replacen(from.as_str(), &to, c),
            None => text.replace(from.as_str(), &to),
        }))
    }

    /// `join(sep)`, refused once the result (each item counted at least a byte) passes the
    /// limit.
    fn join(value: JValue, joiner: Option<JValue>) -> Result<JValue, JError> {
        let joiner = match joiner {
            Some(j) => text_of(&j)?,
            None => String::new(),
        };
        if value.is_undefined() || value.is_none() {
            return Ok(JValue::from(""));
        }
        if let Some(s) = value.as_str() {
            let chars = s.chars().count();
            check(s.len().saturating_add(chars.saturating_mul(joiner.len())))?;
        } else if let Some(n) = value.len() {
            // Each item is charged at least a byte.
            check(n)?;
        }
        let mut out = Capped(String::new());
        let mut charged = 0usize;
        for (i, item) in value.try_iter()?.enumerate() {
            if i > 0 {
                out.write_str(&joiner).map_err(|_| too_large())?;
            }
            let before = out.0.len();
            match item.as_str() {
                Some(s) => out.write_str(s),
                None => write!(out, "{item}"),
            }
            .map_err(|_| too_large())?;
            charged = charged.saturating_add((out.0.len() - before).max(1));
            check(charged)?;
        }
        Ok(JValue::from(out.0))
    }

    /// Items `list` may make (each a value of a few dozen bytes).
    const MAX_LIST_ITEMS: usize = TEMPLATE_OUTPUT_LIMIT_BYTES / 8;

    /// `list`, refused past [`MAX_LIST_ITEMS`] items.
    fn list(value: JValue) -> Result<JValue, JError> {
        if value.is_undefined() {
            return Ok(JValue::from(Vec::<JValue>::new()));
        }
        if let Some(n) = value.len() {
            if n > MAX_LIST_ITEMS {
                return Err(too_large());
            }
        }
        let mut items = Vec::new();
        for item in value.try_iter()? {
            if items.len() >= MAX_LIST_ITEMS {
                return Err(too_large());
            }
            items.push(item);
        }
        Ok(JValue::from(items))
    }

    /// `string`, refused past the limit.
    fn string(value: JValue) -> Result<JValue, JError> {
        if value.as_str().is_some() {
            return Ok(value);
        }
        Ok(JValue::from(text_of(&value)?))
    }

    /// `center(width)`, its size checked first.
    fn center(value: JValue, width: Option<usize>) -> Result<JValue, JError> {
        let width = width.unwrap_or(80);
        check(width)?;
        let text = text_of(&value)?;
        let len = text.chars().count();
        if len >= width {
            return Ok(JValue::from(text));
        }
        let left = (width - len) / 2;
        let right = width - len - left;
        Ok(JValue::from(format!(
            "{}{text}{}",
            " ".repeat(left),
            " ".repeat(right)
        )))
    }

    /// Refuses a `tojson` of a value whose JSON passes the limit, before building it.
    pub(super) fn check_json_size(value: &JValue) -> Result<(), JError> {
        struct Counting(usize);
        impl std::io::Write for Counting {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0 += b.len();
                if self.0 > TEMPLATE_OUTPUT_LIMIT_BYTES {
                    return Err(std::io::Error::other("too large"));
                }
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = Counting(0);
        match serde_json::to_writer(&mut w, value) {
            Err(_) if w.0 > TEMPLATE_OUTPUT_LIMIT_BYTES => Err(too_large()),
            _ => Ok(()),
        }
    }
}

/// Jinja2 prints values with Python's `str()`: `None`, `True`/`False`, and containers as their
/// `repr` (`['a', 1]`, `{'k': None}`); minijinja would print `none`, `true`, JSON-ish lists.
/// Counts the bytes printed in `printed`, captured output included, and fails past
/// [`TEMPLATE_OUTPUT_LIMIT_BYTES`].
fn python_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &JValue,
    printed: &AtomicUsize,
) -> Result<(), JError> {
    use minijinja::value::ValueKind;
    let charge = |len: usize| {
        if printed.fetch_add(len, Ordering::Relaxed) + len > TEMPLATE_OUTPUT_LIMIT_BYTES {
            Err(JError::new(ErrorKind::WriteFailure, output_limit_message()))
        } else {
            Ok(())
        }
    };
    match value.kind() {
        ValueKind::None
        | ValueKind::Bool
        | ValueKind::Seq
        | ValueKind::Iterable
        | ValueKind::Map => {
            let mut s = String::new();
            py_repr(&mut s, value, true);
            charge(s.len())?;
            out.write_str(&s)
                .map_err(|e| JError::new(ErrorKind::WriteFailure, e.to_string()))
        }
        _ => {
            // Strings are charged their length; numbers and the like are a few bytes.
            charge(value.as_str().map_or(24, str::len))?;
            minijinja::escape_formatter(out, state, value)
        }
    }
}

/// Python's `str()` (top level) / `repr()` (inside containers) of a template value.
fn py_repr(out: &mut String, v: &JValue, top: bool) {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::String if top => out.push_str(v.as_str().unwrap_or_default()),
        ValueKind::String => py_str_repr(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(iter) = v.try_iter() {
                for (i, x) in iter.enumerate() {
                    if out.len() > TEMPLATE_OUTPUT_LIMIT_BYTES {
                        // Past the limit already: the caller refuses it; stop building.
                        break;
                    }
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &x, false);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = v.try_iter() {
                for (i, k) in iter.enumerate() {
                    if out.len() > TEMPLATE_OUTPUT_LIMIT_BYTES {
                        break;
                    }
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &k, false);
                    out.push_str(": ");
                    py_repr(out, &v.get_item(&k).unwrap_or_default(), false);
                }
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

/// Python's `repr` of a str, as a new string (for messages that quote a value as Python
/// would, such as pydantic's `str()` of a model).
pub fn python_str_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    py_str_repr(&mut out, s);
    out
}

/// Python's `repr` of a str: single quotes unless the text has a `'` and no `"`.
fn py_str_repr(out: &mut String, s: &str) {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(q);
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)` — no HTML escaping, Python's separators.
fn tojson(value: JValue, kwargs: Kwargs) -> Result<String, JError> {
    let indent: Option<JValue> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(if let Some(s) = v.as_str() {
            s.to_string()
        } else {
            let n = i64::try_from(v.clone()).map_err(|_| {
                JError::new(
                    ErrorKind::InvalidOperation,
                    "tojson indent must be an int or str",
                )
            })?;
            " ".repeat(n.max(0) as usize)
        }),
    };
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(JError::new(
                ErrorKind::InvalidOperation,
                "tojson separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    bounded::check_json_size(&value)?;
    let json = serde_json::to_value(&value)
        .map_err(|e| JError::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let dumper = crate::pyjson::PyJson {
        indent,
        item_sep,
        key_sep,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        sort_keys: sort_keys.unwrap_or(false),
    };
    Ok(dumper.dumps(&json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_str(template: &str) -> Result<String, TextError> {
        let env = environment(Arc::new(AtomicUsize::new(0)));
        let tmpl = env
            .template_from_str(template)
            .map_err(|e| TextError::Template(describe(&e)))?;
        tmpl.render(JValue::UNDEFINED).map_err(|e| render_error(&e))
    }

    #[test]
    fn bounded_filters_give_minijinjas_results() {
        let cases = [
            ("{{ 'a\\nb\\n\\nc\\n'|indent(2) }}", "a\n  b\n\n  c"),
            (
                "{{ 'a\\nb\\n\\nc'|indent(2, true, true) }}",
                "  a\n  b\n  \n  c",
            ),
            ("{{ 'a\\nb'|indent(width=3, first=true) }}", "   a\n   b"),
            ("{{ 'a-b-c'|replace('-', '+') }}", "a+b+c"),
            ("{{ 'a-b-c'|replace('-', '', 1) }}", "ab-c"),
            ("{{ [1, 'x', none]|join(', ') }}", "1, x, None"),
            ("{{ 'abc'|join('.') }}", "a.b.c"),
            ("{{ ('ab'|list)[1] }}{{ (range(3)|list)|length }}", "b3"),
            ("{{ [1, 2]|string }}", "[1, 2]"),
            ("[{{ 'ab'|center(6) }}]", "[  ab  ]"),
            ("{{ {'a': [1, 'x']}|tojson }}", "{\"a\": [1, \"x\"]}"),
        ];
        for (tpl, want) in cases {
            assert_eq!(render_str(tpl).unwrap(), want, "{tpl}");
        }
    }

    #[test]
    fn filters_refuse_values_past_the_output_limit_before_building_them() {
        for tpl in [
            "{% set s = ('a\\n' * 1000000)|indent(100000) %}{{ s|length }}",
            "{% set s = ('a' * 1000000)|replace('a', 'b' * 100000) %}{{ s|length }}",
            "{% set s = ([1] * 1000000000)|join(',') %}{{ s|length }}",
            "{% set s = ([''] * 1000000000)|join %}{{ s|length }}",
            "{{ ([1] * 1000000000)|list|length }}",
            "{{ ([1] * 1000000000)|string|length }}",
            "{{ ([1] * 1000000000)|tojson|length }}",
            "{{ 'a'|center(1000000000000) }}",
            "{{ [1] * 1000000000 }}",
        ] {
            let e = render_str(tpl).unwrap_err();
            assert!(
                matches!(&e, TextError::TemplateLimit(m) if m == &output_limit_message()),
                "{tpl}: {e:?}"
            );
        }
    }
}
