//! Structured output, tool calls, seeds and echo mode: what a request asks its output to be,
//! and the synthetic document that satisfies it.
//!
//! vLLM constrains sampling with a grammar (`structured_outputs`, `response_format`, forced
//! tool calls); llm-emu writes a document that satisfies the constraint ([`schema`],
//! [`regex_gen`]), tokenizes it, and has the engine emit exactly those token ids followed by
//! EOS ([`script`]). The engine's rules still end the request: `max_tokens` cuts a document
//! short (finish reason `length`, truncated text, as vLLM does when `max_tokens` cuts a
//! grammar), a stop string or stop token id inside it ends it there, `ignore_eos` and
//! `min_tokens` keep it going past its end with EOS tokens (all the grammar admits then). The
//! synthetic reply length (`--output-len`) does not apply: the document decides where EOS
//! falls.

pub mod json_text;
pub mod regex_gen;
pub mod rng;
pub mod schema;
pub mod script;
pub mod tools;

use crate::errors::ApiError;
use crate::protocol::model_validator_error;
use rng::DocRng;
use serde_json::Value;

pub use script::{AfterScript, Script, ScriptedSampler, Scripts};
pub use tools::{ToolChoice, ToolPlan};

/// What the generated text must be (vLLM's `StructuredOutputsParams`, one kind at a time).
#[derive(Clone, Debug, PartialEq)]
pub enum Constraint {
    /// A JSON document valid against the schema (`json`, `response_format` `json_schema`).
    Json(Value),
    /// Any JSON object (`json_object`, `response_format` `json_object`).
    JsonObject,
    /// One of the strings (`choice`).
    Choice(Vec<String>),
    /// A full match of the regular expression (`regex`).
    Regex(String),
    /// A grammar or structural tag: accepted, but the text is not constrained (llm-emu has no
    /// EBNF/Lark generator).
    Unconstrained,
}

/// What `llm-emu serve` generates for requests without a constraint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputMode {
    /// Synthetic words of the tokenizer's vocabulary (the default).
    #[default]
    Synthetic,
    /// The prompt's tokens repeated cyclically, for conformance tests that compare text.
    Echo,
}

/// Server-wide settings of structured output and tools (`llm-emu serve` flags).
#[derive(Clone, Debug)]
pub struct StructuredOptions {
    /// `--enable-auto-tool-choice`.
    pub enable_auto_tool_choice: bool,
    /// `--tool-call-parser`.
    pub tool_call_parser: Option<String>,
    /// Probability that a `tool_choice: "auto"` reply is a tool call (`--tool-call-probability`).
    pub tool_call_probability: f64,
    pub output_mode: OutputMode,
}

/// `--tool-call-probability`'s default: half of `auto` replies call a tool.
pub const DEFAULT_TOOL_CALL_PROBABILITY: f64 = 0.5;

impl Default for StructuredOptions {
    fn default() -> Self {
        StructuredOptions {
            enable_auto_tool_choice: false,
            tool_call_parser: None,
            tool_call_probability: DEFAULT_TOOL_CALL_PROBABILITY,
            output_mode: OutputMode::Synthetic,
        }
    }
}

/// The constraint keys of `structured_outputs`, in vLLM's order.
const KINDS: [&str; 6] = [
    "json",
    "regex",
    "choice",
    "grammar",
    "json_object",
    "structural_tag",
];

/// vLLM's `check_structured_outputs_count` (a model validator): at most one of `json`,
/// `regex`, `choice` in `structured_outputs`.
pub fn check_structured_outputs(so: Option<&Value>) -> Result<(), ApiError> {
    let Some(so) = so.and_then(Value::as_object) else {
        return Ok(());
    };
    let count = ["json", "regex", "choice"]
        .iter()
        .filter(|k| so.get(**k).is_some_and(|v| !v.is_null()))
        .count();
    if count > 1 {
        return Err(model_validator_error(
            "You can only use one kind of constraints for structured outputs ('json', 'regex' \
             or 'choice').",
            None,
            None,
        ));
    }
    Ok(())
}

/// The request's constraint: `structured_outputs` with `response_format` merged over it, as
/// vLLM's `to_sampling_params` merges them; `None` when the output is free text.
pub fn constraint_of(
    response_format: Option<&Value>,
    structured_outputs: Option<&Value>,
) -> Result<Option<Constraint>, ApiError> {
    let mut kinds: Vec<(&str, Value)> = structured_outputs
        .and_then(Value::as_object)
        .map(|so| {
            KINDS
                .iter()
                .filter_map(|k| so.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v.clone())))
                .collect()
        })
        .unwrap_or_default();
    let mut set = |k: &'static str, v: Value| {
        kinds.retain(|(have, _)| *have != k);
        kinds.push((k, v));
    };
    if let Some(rf) = response_format.filter(|v| !v.is_null()) {
        match rf.get("type").and_then(Value::as_str) {
            Some("json_object") => set("json_object", Value::Bool(true)),
            Some("json_schema") => {
                // `schema` is the wire name of vLLM's `json_schema` field; absent → None.
                let schema = rf
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .cloned()
                    .unwrap_or(Value::Null);
                if schema.is_null() {
                    // vLLM builds `StructuredOutputsParams(json=None)`, which holds no kind.
                    return Err(ApiError::bad_request(
                        "You must use one kind of structured outputs constraint but none are \
                         specified",
                    ));
                }
                set("json", schema);
            }
            Some("structural_tag") => set("structural_tag", rf.clone()),
            _ => {}
        }
    }
    if structured_outputs.is_none() && kinds.is_empty() {
        return Ok(None);
    }
    match kinds.len() {
        0 if structured_outputs.is_some() => Err(ApiError::bad_request(
            "You must use one kind of structured outputs constraint but none are specified",
        )),
        0 => Ok(None),
        1 => constraint_from(kinds.remove(0)).map(Some),
        _ => {
            let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
            Err(ApiError::bad_request(format!(
                "You can only use one kind of structured outputs constraint but multiple are \
                 specified: {}",
                names.join(", ")
            )))
        }
    }
}

fn constraint_from((kind, v): (&str, Value)) -> Result<Constraint, ApiError> {
    Ok(match kind {
        "json" => match v {
            // A string is a schema in JSON text (vLLM parses it).
            Value::String(s) => Constraint::Json(
                serde_json::from_str(&s)
                    .map_err(|_| ApiError::bad_request("Invalid JSON grammar specification."))?,
            ),
            v => Constraint::Json(v),
        },
        "json_object" => Constraint::JsonObject,
        "choice" => {
            let list: Vec<String> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if list.is_empty() {
                return Err(ApiError::bad_request("Choice '[]' cannot be an empty list"));
            }
            Constraint::Choice(list)
        }
        "regex" => Constraint::Regex(v.as_str().unwrap_or_default().to_string()),
        "grammar" => {
            if v.as_str().is_some_and(|g| g.trim().is_empty()) {
                return Err(ApiError::bad_request(
                    "structured_outputs.grammar cannot be an empty string",
                ));
            }
            Constraint::Unconstrained
        }
        _ => Constraint::Unconstrained,
    })
}

/// The document a constraint asks for (`None`: free text), or why none can be made, worded as
/// vLLM's default (`auto`) structured-output backend words a grammar it refuses.
pub fn document(c: &Constraint, rng: &mut DocRng) -> Result<Option<String>, ApiError> {
    let refused = |e: String| ApiError::bad_request(format!("Grammar error: {e}"));
    Ok(match c {
        Constraint::Json(s) => Some(json_text::dumps(
            &schema::generate(s, rng).map_err(|e| refused(e.to_string()))?,
        )),
        Constraint::JsonObject => Some(json_text::dumps(&schema::free_object(rng))),
        Constraint::Choice(list) => Some(rng.pick(list).clone()),
        Constraint::Regex(r) => Some(regex_gen::generate(r, rng).map_err(refused)?),
        Constraint::Unconstrained => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn response_format_and_structured_outputs_map_to_one_constraint() {
        let schema = json!({"type": "object"});
        let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
        assert_eq!(
            constraint_of(Some(&rf), None).unwrap(),
            Some(Constraint::Json(schema.clone()))
        );
        let rf = json!({"type": "json_object"});
        assert_eq!(
            constraint_of(Some(&rf), None).unwrap(),
            Some(Constraint::JsonObject)
        );
        assert_eq!(
            constraint_of(Some(&json!({"type": "text"})), None).unwrap(),
            None
        );
        let so = json!({"choice": ["a", "b"]});
        assert_eq!(
            constraint_of(None, Some(&so)).unwrap(),
            Some(Constraint::Choice(vec!["a".into(), "b".into()]))
        );
        // response_format's json next to structured_outputs' regex: two kinds, refused.
        let so = json!({"regex": "a+"});
        let rf = json!({"type": "json_object"});
        assert!(constraint_of(Some(&rf), Some(&so)).is_err());
        assert!(constraint_of(None, Some(&json!({"choice": []}))).is_err());
    }
}
