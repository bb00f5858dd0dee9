//! A tokenizer named but not there falls back to the embedded one, the miss reported; one
//! that is there but broken stays an error.

use llm_emu_text::{TextError, TextModel, TokenizerSource};

#[test]
fn absent_names_fall_back_to_the_embedded_tokenizer_and_broken_files_do_not() {
    // Removed when `tmp` drops, whether the test passes or fails.
    let tmp = tempfile::Builder::new()
        .prefix("llm-emu-text-fallback-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    // An empty cache: nothing is ever found in it (the only test of this binary sets it).
    std::env::set_var("HF_HUB_CACHE", dir);
    std::env::set_var("HF_HOME", dir);
    let builtin = TextModel::load(&TokenizerSource::Builtin).unwrap();

    for src in [
        TokenizerSource::HfModel("nobody/absent-model".into()),
        TokenizerSource::HfModel("no-org-name".into()),
        TokenizerSource::Path(dir.join("no-such-dir")),
    ] {
        let (m, miss) = TextModel::load_or_builtin(&src).unwrap();
        let miss = miss.unwrap_or_else(|| panic!("{src:?}: the miss is reported"));
        assert!(miss.is_not_found(), "{miss}");
        assert_eq!(m.vocab_size(), builtin.vocab_size(), "{src:?}");
        assert_eq!(m.eos_token_id(), builtin.eos_token_id());
    }
    let (_, miss) = TextModel::load_or_builtin(&TokenizerSource::Builtin).unwrap();
    assert!(miss.is_none());

    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("tokenizer.json"), "{ not json").unwrap();
    let e = TextModel::load_or_builtin(&TokenizerSource::Path(broken)).unwrap_err();
    assert!(matches!(e, TextError::BadTokenizer { .. }), "{e}");
    assert!(!e.is_not_found());
}
