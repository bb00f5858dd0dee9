//! Tool calls: which calls a request's `tool_choice` asks for, the document the model writes for
//! them (vLLM's forced-tool grammars: the function's `parameters` schema for a named function;
//! for `"required"` a list of `{"name", "parameters"}` objects, `get_json_schema_from_tools`),
//! and the `tool_calls` read back from the text the engine produced.

use super::json_text::dumps;
use super::rng::DocRng;
use super::schema::{self, SchemaError};
use super::StructuredOptions;
use crate::errors::ApiError;
use serde_json::{json, Value};
use std::ops::Range;

/// One function of `tools`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    /// `function.parameters`; vLLM's default when absent: an object with no properties.
    pub parameters: Value,
}

/// A request's `tool_choice`, resolved against `tools` and the server's flags.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolChoice {
    /// No tools, or `"none"`: text.
    None,
    /// `"auto"` (the default when `tools` is given): a tool call with the server's probability.
    Auto { tools: Vec<Tool>, probability: f64 },
    /// `"required"`: one or more calls of any of the tools.
    Required(Vec<Tool>),
    /// `{"type": "function", "function": {"name": …}}`: a call of that function.
    Named(Tool),
}

/// How a choice's tool call was forced (rendering and finish reasons differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolKind {
    Auto,
    Required,
    Named,
}

/// A choice whose text is a tool call: what the document holds and where the arguments are.
#[derive(Clone, Debug)]
pub struct ToolPlan {
    pub kind: ToolKind,
    pub name: String,
    /// `chatcmpl-tool-<32 hex>`, as vLLM's `make_tool_call_id` makes it.
    pub id: String,
    /// Bytes of the document that are the call's `arguments`.
    pub args: Range<usize>,
}

/// The tools of a request (`tools` is already checked as vLLM's model checks it).
fn tools_of(tools: Option<&Value>) -> Vec<Tool> {
    tools
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .filter_map(|t| {
                    let f = t.get("function")?;
                    Some(Tool {
                        name: f.get("name")?.as_str()?.to_string(),
                        parameters: f
                            .get("parameters")
                            .filter(|p| p.is_object())
                            .cloned()
                            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The request's tool choice. As in vLLM 0.19 (`serve/render/serving.py`), `"auto"` needs
/// `--enable-auto-tool-choice` and `--tool-call-parser`, and `"required"` and named functions
/// need `--tool-call-parser`; each is refused without them in vLLM's words.
pub fn tool_choice_of(
    tools: Option<&Value>,
    tool_choice: Option<&Value>,
    opts: &StructuredOptions,
) -> Result<ToolChoice, ApiError> {
    let list = tools_of(tools);
    let has_tools = tools.is_some_and(|t| !t.is_null());
    let choice = match tool_choice.filter(|v| !v.is_null()) {
        None if has_tools => &Value::String("auto".into()),
        None => return Ok(ToolChoice::None),
        Some(c) => c,
    };
    match choice {
        Value::String(s) if s == "none" => Ok(ToolChoice::None),
        Value::String(s) if s == "auto" => {
            if !opts.enable_auto_tool_choice || opts.tool_call_parser.is_none() {
                return Err(ApiError::bad_request(
                    "\"auto\" tool choice requires --enable-auto-tool-choice and \
                     --tool-call-parser to be set",
                ));
            }
            Ok(ToolChoice::Auto {
                tools: list,
                probability: opts.tool_call_probability,
            })
        }
        // vLLM treats `"required"` with an empty list as `"none"`.
        Value::String(s) if s == "required" && list.is_empty() => Ok(ToolChoice::None),
        Value::String(s) if s == "required" => {
            if opts.tool_call_parser.is_none() {
                return Err(ApiError::bad_request(
                    "tool_choice=\"required\" requires --tool-call-parser to be set",
                ));
            }
            Ok(ToolChoice::Required(list))
        }
        other => {
            let name = other
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            list.into_iter()
                .find(|t| t.name == name)
                .map(ToolChoice::Named)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "The tool specified in `tool_choice` does not match any of the \
                         specified `tools`",
                    )
                })
                .and_then(|named| {
                    if opts.tool_call_parser.is_some() {
                        return Ok(named);
                    }
                    // vLLM formats the pydantic model with `str()`.
                    Err(ApiError::bad_request(format!(
                        "tool_choice=\"function=ChatCompletionNamedFunction(name={}) \
                         type='function'\" requires --tool-call-parser to be set",
                        llm_emu_text::python_str_repr(name)
                    )))
                })
        }
    }
}

/// A tool-call id as vLLM makes it: `chatcmpl-tool-` and 32 hex digits.
pub fn tool_call_id(rng: &mut DocRng) -> String {
    format!(
        "chatcmpl-tool-{:016x}{:016x}",
        rng.next_u64(),
        rng.next_u64()
    )
}

/// The document of a choice under `choice`, and its plan; `None` when the choice writes text
/// (`"none"`, or `"auto"` when the draw says no call).
pub fn plan(
    choice: &ToolChoice,
    rng: &mut DocRng,
    id_rng: &mut DocRng,
) -> Result<Option<(String, ToolPlan)>, SchemaError> {
    let (kind, tool) = match choice {
        ToolChoice::None => return Ok(None),
        ToolChoice::Named(t) => {
            let doc = dumps(&schema::generate(&t.parameters, rng)?);
            let plan = ToolPlan {
                kind: ToolKind::Named,
                name: t.name.clone(),
                id: tool_call_id(id_rng),
                args: 0..doc.len(),
            };
            return Ok(Some((doc, plan)));
        }
        ToolChoice::Required(tools) => (ToolKind::Required, rng.pick(tools)),
        ToolChoice::Auto { tools, probability } => {
            if tools.is_empty() || !rng.chance(*probability) {
                return Ok(None);
            }
            (ToolKind::Auto, rng.pick(tools))
        }
    };
    let args = dumps(&schema::generate(&tool.parameters, rng)?);
    let prefix = format!(
        "[{{\"name\": {}, \"parameters\": ",
        Value::String(tool.name.clone())
    );
    let doc = format!("{prefix}{args}}}]");
    let plan = ToolPlan {
        kind,
        name: tool.name.clone(),
        id: tool_call_id(id_rng),
        args: prefix.len()..prefix.len() + args.len(),
    };
    Ok(Some((doc, plan)))
}

/// The calls (name, arguments) in a finished choice's text: the whole text for a named
/// function (vLLM passes it through, cut short or not); for a list, the calls it parses to,
/// arguments re-serialized as vLLM does (`json.dumps(parameters, ensure_ascii=False)`), or
/// `None` when it does not parse (a document that `max_tokens` or a stop string cut short).
pub fn calls_in(plan: &ToolPlan, text: &str) -> Option<Vec<(String, String)>> {
    if plan.kind == ToolKind::Named {
        return Some(vec![(plan.name.clone(), text.to_string())]);
    }
    let list: Vec<Value> = serde_json::from_str(text).ok()?;
    list.iter()
        .map(|c| {
            let name = c.get("name")?.as_str()?.to_string();
            let params = c.get("parameters")?;
            Some((name, dumps(params)))
        })
        .collect()
}

/// The bytes of a streamed delta that are arguments, relative to the delta: the delta holds
/// bytes `from..from + len` of the text (empty when none are).
pub fn args_in_delta(plan: &ToolPlan, from: usize, len: usize) -> Range<usize> {
    let a = from.max(plan.args.start);
    let b = (from + len).min(plan.args.end);
    if a >= b {
        return 0..0;
    }
    a - from..b - from
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> StructuredOptions {
        StructuredOptions::default()
    }

    #[test]
    fn auto_needs_the_flags_and_tools_default_to_auto() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let e = tool_choice_of(Some(&tools), None, &opts()).unwrap_err();
        assert!(
            e.body().contains("--enable-auto-tool-choice"),
            "{}",
            e.body()
        );
        let on = StructuredOptions {
            enable_auto_tool_choice: true,
            tool_call_parser: Some("hermes".into()),
            ..opts()
        };
        assert!(matches!(
            tool_choice_of(Some(&tools), None, &on).unwrap(),
            ToolChoice::Auto { .. }
        ));
        assert_eq!(
            tool_choice_of(Some(&tools), Some(&json!("none")), &opts()).unwrap(),
            ToolChoice::None
        );
    }

    #[test]
    fn forced_choices_need_a_parser_as_in_vllm() {
        let tools = json!([{"type": "function", "function": {"name": "it's"}}]);
        let named = json!({"type": "function", "function": {"name": "it's"}});
        let e = tool_choice_of(Some(&tools), Some(&json!("required")), &opts()).unwrap_err();
        assert!(e
            .body()
            .contains("tool_choice=\\\"required\\\" requires --tool-call-parser"));
        let e = tool_choice_of(Some(&tools), Some(&named), &opts()).unwrap_err();
        assert!(
            e.body()
                .contains("ChatCompletionNamedFunction(name=\\\"it's\\\") type='function'"),
            "{}",
            e.body()
        );
        let parser = StructuredOptions {
            tool_call_parser: Some("hermes".into()),
            ..opts()
        };
        assert!(matches!(
            tool_choice_of(Some(&tools), Some(&named), &parser).unwrap(),
            ToolChoice::Named(_)
        ));
    }

    #[test]
    fn required_document_parses_back_to_its_call() {
        let tools = vec![Tool {
            name: "get_weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}),
        }];
        let (doc, plan) = plan(
            &ToolChoice::Required(tools),
            &mut DocRng::new(3),
            &mut DocRng::new(4),
        )
        .unwrap()
        .unwrap();
        let calls = calls_in(&plan, &doc).unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, "get_weather");
        assert_eq!(calls[0].1, &doc[plan.args.clone()]);
        let args: Value = serde_json::from_str(&calls[0].1).unwrap();
        assert!(args["city"].is_string());
        assert!(plan.id.starts_with("chatcmpl-tool-") && plan.id.len() == 14 + 32);
        // A document cut short parses to nothing.
        assert!(calls_in(&plan, &doc[..doc.len() - 2]).is_none());
        // The fragments of any split of the text make the arguments.
        let mid = plan.args.start + 3;
        let (head, tail) = doc.split_at(mid);
        let joined = format!(
            "{}{}",
            &head[args_in_delta(&plan, 0, head.len())],
            &tail[args_in_delta(&plan, mid, tail.len())]
        );
        assert_eq!(joined, &doc[plan.args.clone()]);
    }
}
