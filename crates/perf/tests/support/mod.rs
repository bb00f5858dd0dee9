//! Fixtures shared by the profile tests.

/// The files of a minimal valid operator profile, as (path under the profile dir, text):
/// every dense row at 1 and 64 tokens, `lm_head`/`sampler`, and three attention points, with
/// `meta` as its `meta.yaml`.
pub fn minimal_profile(meta: &str) -> Vec<(&'static str, String)> {
    let mut dense = String::from("layer,tokens,time_us\n");
    for l in [
        "embedding",
        "layernorm",
        "qkv_proj",
        "rotary_emb",
        "o_proj",
        "gate_up_proj",
        "act_fn",
        "down_proj",
        "final_layernorm",
    ] {
        dense.push_str(&format!("{l},1,1.0\n{l},64,2.0\n"));
    }
    vec![
        ("meta.yaml", meta.to_string()),
        ("tp1/dense.csv", dense),
        (
            "tp1/per_sequence.csv",
            "layer,sequences,time_us\nlm_head,1,10\nlm_head,8,20\nsampler,1,5\n".into(),
        ),
        (
            "tp1/attention.csv",
            "prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n0,0,1,16,3\n0,0,1,32,5\n\
             16,0,0,0,7\n"
                .into(),
        ),
    ]
}
