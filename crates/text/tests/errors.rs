//! Bad input gives a typed, explained error: missing or corrupt files, unknown models,
//! template failures, invalid messages and token ids.

use llm_emu_text::*;
use serde_json::json;
use std::path::Path;
use tempfile::TempDir;

/// A small word-level tokenizer.json (enough for loading and template tests).
const TINY_TOKENIZER: &str = r#"{
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [{"id": 3, "content": "</s>", "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true}],
  "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
  "decoder": null,
  "model": {"type": "WordLevel", "vocab": {"hello": 0, "world": 1, "[UNK]": 2, "</s>": 3},
            "unk_token": "[UNK]"}
}"#;

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn scratch(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-text-{name}-"))
        .tempdir()
        .unwrap()
}

fn tiny_dir(name: &str, config: Option<&str>) -> TempDir {
    let d = scratch(name);
    std::fs::write(d.path().join("tokenizer.json"), TINY_TOKENIZER).unwrap();
    if let Some(c) = config {
        std::fs::write(d.path().join("tokenizer_config.json"), c).unwrap();
    }
    d
}

fn load(p: &Path) -> Result<TextModel, TextError> {
    TextModel::load(&TokenizerSource::Path(p.to_path_buf()))
}

#[test]
fn missing_tokenizer_file() {
    let tmp = scratch("missing");
    let d = tmp.path();
    let e = load(&d.join("nope")).unwrap_err();
    assert!(matches!(e, TextError::MissingTokenizer(_)), "{e}");
    let e = load(d).unwrap_err();
    assert!(e.to_string().contains("no tokenizer.json"), "{e}");
}

#[test]
fn corrupt_tokenizer_and_config() {
    let tmp = scratch("corrupt");
    let d = tmp.path();
    std::fs::write(d.join("tokenizer.json"), "{ not json").unwrap();
    let e = load(d).unwrap_err();
    assert!(matches!(e, TextError::BadTokenizer { .. }), "{e}");

    let tmp_badconfig = tiny_dir("badconfig", Some("{\"chat_template\": "));
    let d = tmp_badconfig.path();
    let e = load(d).unwrap_err();
    assert!(matches!(e, TextError::BadConfig { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer_config.json"), "{e}");

    let tmp_badtemplatetype = tiny_dir("badtemplatetype", Some("{\"chat_template\": 5}"));
    let d = tmp_badtemplatetype.path();
    assert!(matches!(load(d).unwrap_err(), TextError::BadConfig { .. }));
}

#[test]
fn loads_a_file_path_and_its_side_files() {
    let tmp = tiny_dir(
        "tiny",
        Some(
            r#"{"eos_token": {"content": "</s>"}, "chat_template": "{% for m in messages %}{{ m.content }} {% endfor %}"}"#,
        ),
    );
    let d = tmp.path();
    std::fs::write(
        d.join("generation_config.json"),
        r#"{"eos_token_id": [3, 1]}"#,
    )
    .unwrap();
    let m = load(&d.join("tokenizer.json")).unwrap();
    assert_eq!(m.vocab_size(), 4);
    assert_eq!(m.eos_token_id(), Some(3));
    assert_eq!(m.generation_eos_token_ids(), &[3, 1]);
    assert!(m.is_special(3) && !m.is_special(0));
    assert_eq!(m.encode("hello world zzz", false).unwrap(), vec![0, 1, 2]);
    let r = m
        .render_chat(
            &json!([{"role": "user", "content": "hi"}]),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(r, "hi ");
    // chat_template.jinja wins over the config's entry, as in transformers.
    std::fs::write(d.join("chat_template.jinja"), "J{{ messages|length }}").unwrap();
    let m = load(d).unwrap();
    let r = m
        .render_chat(
            &json!([{"role": "user", "content": "hi"}]),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(r, "J1");
}

#[test]
fn template_errors() {
    let tmp = tiny_dir("tplerr", Some("{}"));
    let d = tmp.path();
    let m = load(d).unwrap();
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let e = m.render_chat(&msgs, &Default::default()).unwrap_err();
    assert!(matches!(e, TextError::NoChatTemplate), "{e}");

    let opts = |t: &str| ChatTemplateOptions {
        chat_template: Some(t.to_string()),
        ..Default::default()
    };
    let e = m.render_chat(&msgs, &opts("{% for %}")).unwrap_err();
    assert!(matches!(e, TextError::Template(_)), "{e}");
    let e = m
        .render_chat(
            &msgs,
            &opts("{{ raise_exception('roles must alternate') }}"),
        )
        .unwrap_err();
    assert!(e.to_string().contains("roles must alternate"), "{e}");

    let both = ChatTemplateOptions {
        continue_final_message: true,
        chat_template: Some("x".into()),
        ..Default::default()
    };
    assert!(matches!(
        m.render_chat(&msgs, &both).unwrap_err(),
        TextError::InvalidMessages(_)
    ));
}

#[test]
fn invalid_messages() {
    let m = TextModel::load(&TokenizerSource::Builtin).unwrap();
    let o = ChatTemplateOptions::default();
    for bad in [
        json!({"role": "user"}),
        json!([{"content": "no role"}]),
        json!([{"role": "user", "content": 5}]),
        json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        json!([{"role": "assistant", "content": null,
                "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]),
    ] {
        let e = m.render_chat(&bad, &o).unwrap_err();
        assert!(matches!(e, TextError::InvalidMessages(_)), "{bad}: {e}");
    }
    for tools in [
        json!({"a": 1}),
        json!([{"type": "function"}]),
        json!([{"type": "x", "function": {"name": "f"}}]),
    ] {
        let o = ChatTemplateOptions {
            tools: Some(tools.clone()),
            ..Default::default()
        };
        let e = m
            .render_chat(&json!([{"role": "user", "content": "hi"}]), &o)
            .unwrap_err();
        assert!(matches!(e, TextError::InvalidMessages(_)), "{tools}: {e}");
    }
    let mut kw = ChatTemplateOptions::default();
    kw.chat_template_kwargs
        .insert("tokenize".into(), json!(true));
    assert!(m.render_chat(&json!([]), &kw).is_err());
}

#[test]
fn token_ids_outside_the_vocabulary() {
    let m = TextModel::load(&TokenizerSource::Builtin).unwrap();
    let e = m.decode(&[1, 999_999], false).unwrap_err();
    assert!(
        matches!(e, TextError::UnknownToken { id: 999_999, .. }),
        "{e}"
    );
    let mut d = m.detokenizer(&[1, 2, 999_999], DetokenizeOptions::default());
    assert!(matches!(
        d.push(u32::MAX),
        Err(TextError::UnknownToken { .. })
    ));
    assert_eq!(d.push(9906).unwrap().delta, "Hello");
}

/// One test for everything that sets the process-wide HF cache variables.
#[test]
fn hugging_face_cache_lookup() {
    let tmp_hub = scratch("hub");
    let hub = tmp_hub.path();
    let repo = hub.join("models--acme--tiny");
    let snap = repo.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("tokenizer.json"), TINY_TOKENIZER).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd\n").unwrap();

    std::env::set_var("HF_HUB_CACHE", hub);
    let m = TextModel::load(&TokenizerSource::HfModel("acme/tiny".into())).unwrap();
    assert_eq!(m.vocab_size(), 4);
    let e = TextModel::load(&TokenizerSource::HfModel("acme/absent".into())).unwrap_err();
    assert!(matches!(e, TextError::ModelNotCached { .. }), "{e}");
    assert!(e.to_string().contains(&hub.display().to_string()), "{e}");
    for bad in ["noslash", "a/b/c", "/x", "../x"] {
        let e = TextModel::load(&TokenizerSource::HfModel(bad.into())).unwrap_err();
        assert!(matches!(e, TextError::BadModelName(_)), "{bad}: {e}");
    }

    // $HF_HOME/hub when HF_HUB_CACHE is unset; refs/main missing: the snapshot is found anyway.
    std::env::remove_var("HF_HUB_CACHE");
    let tmp_home = scratch("hfhome");
    let home = tmp_home.path();
    let snap = home.join("hub/models--acme--other/snapshots/ffff");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("tokenizer.json"), TINY_TOKENIZER).unwrap();
    std::env::set_var("HF_HOME", home);
    assert!(TextModel::load(&TokenizerSource::HfModel("acme/other".into())).is_ok());
    std::env::remove_var("HF_HOME");
}
