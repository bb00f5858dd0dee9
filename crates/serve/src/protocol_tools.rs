//! Response shapes of tool calls (vLLM's `ToolCall`, `FunctionCall`, `DeltaToolCall`,
//! `DeltaFunctionCall`), serialized as vLLM dumps them: the whole message with every field,
//! stream deltas with the fields it set (`exclude_unset`).

use serde::Serialize;

/// `FunctionCall` (its internal `id` is excluded from output).
#[derive(Serialize, Debug, Clone)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// `ToolCall` of a chat message.
#[derive(Serialize, Debug, Clone)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

/// `DeltaFunctionCall`: `name` absent (unset), `null` (set to None: `"required"`'s later
/// deltas) or a name.
#[derive(Serialize, Debug)]
pub struct DeltaFunctionCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a str>,
}

/// `DeltaToolCall`: the first delta of a call has its id, type and name.
#[derive(Serialize, Debug)]
pub struct DeltaToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub index: u32,
    pub function: DeltaFunctionCall<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_match_vllm_exclude_unset_bytes() {
        let first = DeltaToolCall {
            id: Some("chatcmpl-tool-1"),
            kind: Some("function"),
            index: 0,
            function: DeltaFunctionCall {
                name: Some(Some("f")),
                arguments: Some("{\"a\""),
            },
        };
        assert_eq!(
            serde_json::to_string(&first).unwrap(),
            r#"{"id":"chatcmpl-tool-1","type":"function","index":0,"function":{"name":"f","arguments":"{\"a\""}}"#
        );
        let header = DeltaToolCall {
            id: Some("chatcmpl-tool-1"),
            kind: Some("function"),
            index: 0,
            function: DeltaFunctionCall {
                name: Some(Some("f")),
                arguments: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&header).unwrap(),
            r#"{"id":"chatcmpl-tool-1","type":"function","index":0,"function":{"name":"f"}}"#
        );
        let later = DeltaToolCall {
            id: None,
            kind: None,
            index: 0,
            function: DeltaFunctionCall {
                name: Some(None),
                arguments: Some(": 1}"),
            },
        };
        assert_eq!(
            serde_json::to_string(&later).unwrap(),
            r#"{"index":0,"function":{"name":null,"arguments":": 1}"}}"#
        );
    }
}
