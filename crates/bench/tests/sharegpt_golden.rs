//! The ShareGPT sample is vLLM's: the same seed picks the same conversations, in the same
//! order, with the same lengths and request ids (oversampling included). The golden file was
//! written by vLLM 0.19's own `ShareGPTDataset` with the then built-in Llama 3 tokenizer
//! (`tools/bench-golden/sharegpt_sample.py`); the Llama 3.1 one built in now encodes text the
//! same way (only reserved added tokens were renamed, and the sample holds none of them).

use llm_emu_bench::dataset::{sharegpt, DatasetReport};
use llm_emu_bench::tokenizer::Tokenizer;
use llm_emu_text::{TextModel, TokenizerSource};
use serde_json::Value;
use std::path::Path;

#[test]
fn samples_what_vllm_samples() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let tok = TextModel::load(&TokenizerSource::Builtin).unwrap();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("sharegpt_small_golden.json")).unwrap(),
    )
    .unwrap();
    for case in golden.as_array().unwrap() {
        let mut report = DatasetReport::default();
        let data = sharegpt::load(&dir.join("sharegpt_small.json"), &mut report).unwrap();
        let opts = sharegpt::ShareGptOptions {
            num_requests: case["num_requests"].as_u64().unwrap() as usize,
            seed: case["seed"].as_i64().unwrap(),
            output_len: case["output_len"].as_u64().map(|n| n as usize),
            request_id_prefix: "r-",
            disable_shuffle: false,
            no_oversample: false,
        };
        let got = sharegpt::sample(data, &tok, &opts, &mut report).unwrap();
        let want = case["requests"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{case:?}");
        for (g, w) in got.iter().zip(want) {
            let ctx = format!("seed {} request {}", case["seed"], w[0]);
            assert_eq!(g.request_id, w[0].as_str().unwrap(), "{ctx}");
            assert_eq!(g.prompt_len as u64, w[1].as_u64().unwrap(), "{ctx}");
            assert_eq!(
                g.expected_output_len as u64,
                w[2].as_u64().unwrap(),
                "{ctx}"
            );
            let llm_emu_bench::dataset::Prompt::Text(p) = &g.prompt else {
                panic!("text prompt")
            };
            assert_eq!(p, w[3].as_str().unwrap(), "{ctx}");
        }
    }
}

#[test]
fn random_prompts_have_the_asked_lengths() {
    use llm_emu_bench::dataset::random;
    let tok = TextModel::load(&TokenizerSource::Builtin).unwrap();
    let o = random::RandomOptions {
        num_requests: 20,
        seed: 0,
        input_len: 200,
        output_len: 50,
        range_ratio: 0.5,
        prefix_len: 16,
        request_id_prefix: "x-",
    };
    let reqs = random::sample(&tok, &o).unwrap();
    assert_eq!(reqs.len(), 20);
    let special = tok.num_special_tokens_to_add();
    let (lo, hi) = (
        ((200 - special) as f64 * 0.5).floor() as usize,
        ((200 - special) as f64 * 1.5).ceil() as usize,
    );
    let mut exact = 0;
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.request_id, format!("x-{i}"));
        assert!(
            (25..=75).contains(&r.expected_output_len),
            "{}",
            r.expected_output_len
        );
        assert!(
            r.prompt_len >= 16 + lo - 5 && r.prompt_len <= 16 + hi + 5,
            "{}",
            r.prompt_len
        );
        let llm_emu_bench::dataset::Prompt::Text(p) = &r.prompt else {
            panic!()
        };
        // The reported length is the prompt's own re-encoded length.
        let n = tok.encode(p, false).unwrap().len();
        if n == r.prompt_len {
            exact += 1;
        }
    }
    assert!(
        exact >= 18,
        "decode/re-encode keeps lengths: {exact}/20 exact"
    );
    // The same seed gives the same sample; another, another.
    assert_eq!(reqs, random::sample(&tok, &o).unwrap());
    let o2 = random::RandomOptions { seed: 1, ..o };
    assert_ne!(reqs, random::sample(&tok, &o2).unwrap());
}
