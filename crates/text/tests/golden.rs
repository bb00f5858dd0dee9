//! Replays golden cases produced by vLLM 0.19 / transformers / tokenizers themselves
//! (tools/text-golden/generate.py): encodings, decodes, chat renders with prompt ids, and the
//! v1 incremental detokenizer's per-token deltas, stop strings and hold-back.

use llm_emu_text::*;
use serde_json::Value;
use std::path::PathBuf;

fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/text-golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Qwen3's tokenizer files: `$LLM_EMU_QWEN3_TOKENIZER`, else where
/// tools/fetch-test-tokenizers.sh puts them (`$LLM_EMU_CACHE` or ~/.cache/llm-emu), else the vLLM reference model directory.
fn qwen3_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let candidates = [
        std::env::var_os("LLM_EMU_QWEN3_TOKENIZER").map(PathBuf::from),
        std::env::var_os("LLM_EMU_CACHE").map(|c| PathBuf::from(c).join("qwen3")),
        Some(home.join(".cache/llm-emu/qwen3")),
        Some(home.join(".cache/vllm-reference/model/qwen3-8b")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("tokenizer.json").is_file())
}

fn qwen3() -> Option<TextModel> {
    match qwen3_dir() {
        Some(d) => Some(TextModel::load(&TokenizerSource::Path(d)).unwrap()),
        None if std::env::var_os("CI").is_some() => {
            panic!("Qwen3 tokenizer files missing: run tools/fetch-test-tokenizers.sh")
        }
        None => {
            eprintln!("skipping Qwen3 golden cases: run tools/fetch-test-tokenizers.sh");
            None
        }
    }
}

/// The embedded meta-llama/Llama-3.1-8B-Instruct tokenizer.
fn llama3_1() -> TextModel {
    TextModel::load(&TokenizerSource::Builtin).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check_facts(m: &TextModel, g: &Value) {
    assert_eq!(m.vocab_size() as u64, g["vocab_size"].as_u64().unwrap());
    assert_eq!(m.eos_token_id().map(u64::from), g["eos_token_id"].as_u64());
}

fn check_encode(m: &TextModel, g: &Value) {
    let cases = g["encode"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let add = c["add_special_tokens"].as_bool().unwrap();
        assert_eq!(
            m.encode(text, add).unwrap(),
            ids(&c["ids"]),
            "encode {text:?} add={add}"
        );
    }
    for c in g["decode"].as_array().unwrap() {
        let skip = c["skip_special_tokens"].as_bool().unwrap();
        assert_eq!(
            m.decode(&ids(&c["ids"]), skip).unwrap(),
            c["text"].as_str().unwrap(),
            "decode {:?} skip={skip}",
            c["ids"]
        );
    }
}

fn check_chat(m: &TextModel, g: &Value) {
    let cases = g["chat"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let o = &c["options"];
        let opts = ChatTemplateOptions {
            add_generation_prompt: o["add_generation_prompt"].as_bool().unwrap_or(true),
            continue_final_message: o["continue_final_message"].as_bool().unwrap_or(false),
            chat_template_kwargs: o["chat_template_kwargs"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
            chat_template: o["chat_template"].as_str().map(str::to_string),
            tools: o.get("tools").cloned(),
        };
        let rendered = m.render_chat(&c["messages"], &opts).unwrap();
        assert_eq!(
            rendered,
            c["rendered"].as_str().unwrap(),
            "render {} {o}",
            c["messages"]
        );
        assert_eq!(m.encode(&rendered, false).unwrap(), ids(&c["prompt_ids"]));
    }
}

fn check_detok(m: &TextModel, g: &Value) {
    let cases = g["detok"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for (n, c) in cases.iter().enumerate() {
        let p = &c["params"];
        let opts = DetokenizeOptions {
            skip_special_tokens: p["skip_special_tokens"].as_bool().unwrap_or(true),
            spaces_between_special_tokens: p["spaces_between_special_tokens"]
                .as_bool()
                .unwrap_or(true),
            stop: p["stop"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default(),
            include_stop_str_in_output: p["include_stop_str_in_output"].as_bool().unwrap_or(false),
            streaming: true,
            min_tokens: p["min_tokens"].as_u64().unwrap_or(0) as u32,
        };
        let stop_terminated = c["stop_terminated"].as_bool().unwrap();
        let out = ids(&c["output_ids"]);
        let mut d = m.detokenizer(&ids(&c["prompt_ids"]), opts);
        let steps = c["steps"].as_array().unwrap();
        for (i, want) in steps.iter().enumerate() {
            let last = i + 1 == out.len();
            let got = if stop_terminated && last {
                d.update(&[out[i]], true, true).unwrap()
            } else {
                d.push(out[i]).unwrap()
            };
            assert_eq!(
                got.delta,
                want["delta"].as_str().unwrap(),
                "case {n} step {i}"
            );
            assert_eq!(
                got.stop_matched.as_deref(),
                want["stop"].as_str(),
                "case {n} step {i}"
            );
        }
        assert_eq!(d.finish(), c["flush"].as_str().unwrap(), "case {n} flush");
        assert_eq!(d.text(), c["text"].as_str().unwrap(), "case {n} text");
    }
}

#[test]
fn llama3_1_encode_decode() {
    let g = golden();
    let m = llama3_1();
    check_facts(&m, &g["llama3_1"]);
    check_encode(&m, &g["llama3_1"]);
}

#[test]
fn llama3_1_chat() {
    check_chat(&llama3_1(), &golden()["llama3_1"]);
}

#[test]
fn llama3_1_detokenize() {
    check_detok(&llama3_1(), &golden()["llama3_1"]);
}

#[test]
fn qwen3_encode_decode() {
    let Some(m) = qwen3() else { return };
    let g = golden();
    check_facts(&m, &g["qwen3"]);
    check_encode(&m, &g["qwen3"]);
}

#[test]
fn qwen3_chat() {
    let Some(m) = qwen3() else { return };
    check_chat(&m, &golden()["qwen3"]);
}

#[test]
fn qwen3_detokenize() {
    let Some(m) = qwen3() else { return };
    check_detok(&m, &golden()["qwen3"]);
}
