//! The embedded tokenizer is meta-llama/Llama-3.1-8B-Instruct's: its added-token names, its
//! chat template's system header, and its generation_config.json EOS ids.

use llm_emu_text::*;
use serde_json::json;

#[test]
fn builtin_is_llama_3_1_instruct() {
    let m = TextModel::load(&TokenizerSource::Builtin).unwrap();
    assert_eq!(m.vocab_size(), 128_256);

    // Llama 3.1's names for the added tokens Llama 3 left reserved; they encode as one token.
    for (id, name) in [
        (128_004, "<|finetune_right_pad_id|>"),
        (128_008, "<|eom_id|>"),
        (128_009, "<|eot_id|>"),
        (128_010, "<|python_tag|>"),
        (128_011, "<|reserved_special_token_3|>"),
        (128_255, "<|reserved_special_token_247|>"),
    ] {
        assert_eq!(m.id_to_token(id).as_deref(), Some(name));
        assert_eq!(m.encode(name, false).unwrap(), [id], "{name}");
        assert!(m.is_special(id), "{name}");
    }

    // EOS: the tokenizer's <|eot_id|>; generation_config.json adds <|end_of_text|> and <|eom_id|>
    // (vLLM's extra stop token ids).
    assert_eq!(m.eos_token_id(), Some(128_009));
    assert_eq!(m.generation_eos_token_ids(), [128_001, 128_008, 128_009]);

    // The Llama 3.1 system header, with the template's own date when the request gives none.
    let header = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
                  Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
    let opts = ChatTemplateOptions::default();
    let user = json!([{"role": "user", "content": "Hello!"}]);
    let prompt = m.render_chat(&user, &opts).unwrap();
    assert_eq!(
        prompt,
        format!(
            "{header}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        )
    );
    assert_eq!(m.encode(&prompt, false).unwrap().len(), 37);

    let with_system = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello!"}
    ]);
    let prompt = m.render_chat(&with_system, &opts).unwrap();
    assert!(
        prompt.starts_with(&format!("{header}Be brief.<|eot_id|>")),
        "{prompt:?}"
    );

    // chat_template_kwargs' date_string replaces the default date.
    let mut dated = ChatTemplateOptions::default();
    dated
        .chat_template_kwargs
        .insert("date_string".into(), json!("01 Jan 2025"));
    let prompt = m.render_chat(&user, &dated).unwrap();
    assert!(
        prompt.contains("\nToday Date: 01 Jan 2025\n\n"),
        "{prompt:?}"
    );
}
